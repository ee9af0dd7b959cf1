"""Side-by-side throughput: this project's networks against GluonCV's same networks and plain PyTorch, same run.

Engines, each a training step (forward, backward, update) or an inference forward on a fixed random batch:

- ``module``  : this project's Symbol through ``mx.mod.Module`` (train: ``forward_backward`` + ``update`` with NAG
  momentum 0.9, wd 1e-4, as ``train_resnet.py``; infer: an inference-bound module);
- ``gluon``   : this project's Gluon net, hybridized, ``gluon.Trainer`` with the same NAG settings;
- ``gluoncv`` : GluonCV's same model (``*_v2``; ``resnet*_v1b`` for ``resnet*_v1``, ``resnet*_v1d`` for
  ``resnet*_vd``, ``resnext*`` and ``cifar_resnext29_*`` under their names), set up as
  ``../shared/peers/peer_mxnet_gluoncv.py`` does (SGD momentum);
- ``onnxruntime``, ``openvino`` (inference only): the same network exported to ONNX
  (:mod:`resnet_toolkit.backends`, what ``--backend`` in predict.py/score.py runs): ONNX Runtime's CPU session
  with every graph optimisation, OpenVINO's CPU plugin compiled for the batch, float32, latency hint;
- ``torch``   : the same networks in PyTorch (channels_last), run under ``--torch-python`` (a separate venv):
  the pre-activation ones from ``../shared/peers/peer_torch.py``'s classes, the v1b / ResNeXt bottleneck ones
  (``resnet50_v1``, ``resnext50_32x4d``, ...) from torchvision itself where it is installed, else
  :data:`TORCH_V1`, torchvision's ``Bottleneck``/``ResNet`` in a few lines (same layers, same parameter count).
  Models with neither are timed without a PyTorch column. ``--torch-variants``: ``eager``, ``jit`` (traced and
  frozen TorchScript, inference only), ``compile`` (``torch.compile``, inductor; freezing for inference), each a
  column; ``÷ torch`` is against the fastest of them in each round, ``÷ fastest peer`` against every peer's.

Ours run in two variants: ``base`` (the code before any speed work: plain graph, ``hybridize()``) and ``fast``
(:mod:`resnet_toolkit.fastpath`: training-graph rewrites, folded/fused inference graph, static memory).

Timing is interleaved: every MXNet engine lives in one worker process and PyTorch in another, both kept alive
for a cell, and each round runs one step of every engine in turn (rotating order). Load from other processes on
a shared machine then falls on all engines alike, and each ratio is the median over rounds of the ratio of two
step times measured seconds apart. Process-level settings (threads) are therefore the same for every MXNet
engine in a run: ``--threads N`` for all engines, else :func:`resnet_toolkit.runtime.configure` for MXNet and
PyTorch's own default. Output: a Markdown table (img/s, ratios, p50/p90 step latency in ms) and ``--json``.

    .venv/bin/python -m bench.throughput --models cifar_resnet20_v2 --torch-python /tmp/ptv/bin/python
    .venv/bin/python -m bench.throughput --models resnet50_v2 --batches 1 8 --what infer --threads 1
    .venv/bin/python -m bench.throughput --models resnet50_v1 resnext50_32x4d --torch-python /tmp/ptv/bin/python
    .venv/bin/python -m bench.throughput --models resnet50_v2 --what infer --engines module onnxruntime openvino \
        torch --torch-variants eager jit compile --threads 1 --torch-python /tmp/ptv/bin/python

``--precision``: low precision against float32 and the peers, same run and same timing (bfloat16 training, INT8
inference). Its engines (``--engines ours gluoncv torch``) and cells:

- ``ours/fp32``     : this project's Symbol through ``mx.mod.Module``, :mod:`resnet_toolkit.fastpath`'s graphs (the
  training graph; the folded, fused inference model): the float32 baseline, ``module/fast`` above;
- ``ours/bf16``     : train only: the same training graph through
  :func:`resnet_toolkit.precision.mixed_precision_symbol`, policy 'fp32-bn'
  (convolutions and FC in bfloat16; BN, softmax, weights float32);
- ``ours/bf16-mxbn``: train only: policy 'mxnet', MXNet AMP's own lists (BatchNorm also reads/writes bfloat16):
  what ``train_resnet.py --dtype bfloat16`` runs by default since 2026-12-05;
- ``ours/int8``     : infer only: :func:`resnet_toolkit.quantize`'s oneDNN INT8 graph (naive calibration on 2 random
  batches: fine for speed, meaningless for accuracy);
- ``onnxruntime/fp32``, ``openvino/fp32``, ``onnxruntime/int8``, ``openvino/int8``: infer only: ours exported to
  ONNX (the ``onnxruntime``/``openvino`` engines above) and its INT8 version as ``tools/quantize.py`` writes it
  (:func:`resnet_toolkit.backends.quantize_onnx_file`: ONNX Runtime's static QDQ quantization, min/max ranges from
  the same 2 random batches), run by each engine;
- ``gluoncv/fp32``  : GluonCV's ``*_v2`` model, hybridized with static memory (the ``gluoncv`` engine above);
- ``torch/fp32``, ``torch/bf16`` (``torch.autocast('cpu', torch.bfloat16)``), ``torch/int8`` (FX graph-mode
  post-training quantization, x86 backend), and for inference ``torch/compile`` (torch.compile, inductor with
  freezing) and ``torch/int8-compile`` (PT2E with torchao's x86 inductor quantizer, then torch.compile; only where
  torchao imports beside torch): the peer networks of ``../shared/peers/peer_torch.py``, channels_last, under
  ``--torch-python``.

Its output: a Markdown table per cell (img/s; each cell ÷ ours fp32, ÷ gluoncv fp32, ÷ each PyTorch cell, ÷ the
ONNX engines' INT8) and
``--json``; ``--kernels`` adds, per cell and MXNet engine, the oneDNN kernels of one step and their share of its
time. (Until the bench became a package this was ``bench/precision.py``, with the same flags.)

    .venv/bin/python -m bench.throughput --precision --what train --models cifar_resnet20_v2 --threads 1 \
        --torch-python /tmp/ptv/bin/python
    .venv/bin/python -m bench.throughput --precision --what infer --models resnet50_v2 --batches 1 32 --threads 1
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO.parent / "shared" / "peers"
MODELS = ("cifar_resnet20_v2", "cifar_resnet56_v2", "cifar_resnet164_v2", "resnet50_v2", "resnet101_v2")
FAMILY_MODELS = ("resnet50_v1", "resnext50_32x4d")  # the baselines' cells (not in the default run)
TORCH_V2 = ("resnet50_v2", "resnet101_v2", "cifar_resnet20_v2", "cifar_resnet56_v2", "cifar_resnet164_v2")
DEFAULT_BATCHES = {"cifar": (128,), "imagenet": (1, 8, 32)}
ENGINES = ("module", "gluon", "gluoncv", "onnxruntime", "openvino", "torch")
INFER_ONLY = ("onnxruntime", "openvino")
OURS = ("module", "gluon")
VARIANTS = ("base", "fast")
NAG = {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}  # train_resnet.py's optimizer settings
# --precision: its default models and batches, its low-precision variants of ours, its engines
PRECISION_MODELS = ("cifar_resnet20_v2", "cifar_resnet56_v2", "resnet50_v2")
PRECISION_BATCHES = {("cifar", "train"): (128,), ("imagenet", "train"): (8,), ("cifar", "infer"): (1, 32),
                     ("imagenet", "infer"): (1, 32)}
LOW = {"train": ("bf16", "bf16-mxbn"), "infer": ("int8",)}
PRECISION_ENGINES = ("ours", "gluoncv", "onnxruntime", "openvino", "torch")


def model_shape(model: str) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) input shape and class count of a benchmark model name."""
    return ((3, 32, 32), 10) if model.startswith("cifar_") else ((3, 224, 224), 1000)


# ---------------------------------------------------------------- results

def summarize(times: list[float], batch: int) -> dict:
    """img/s over all timed steps and per-step latency percentiles in ms."""
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1e3

    return {"img_s": round(batch * len(times) / sum(times), 3), "p50_ms": round(pct(50), 2),
            "p90_ms": round(pct(90), 2), "steps": len(times)}


# ---------------------------------------------------------------- MXNet workers (run in a subprocess)

def _mx_data(batch: int, shape: tuple, classes: int):
    import mxnet as mx
    rng = mx.random.seed(7) or None  # noqa: F841
    data = mx.nd.random.uniform(0, 255, shape=(batch,) + shape)
    label = mx.nd.array([i % classes for i in range(batch)])
    return data, label


def _module_train_step(sym, data, label, init, seed: int | None = None):
    """One NAG training step of ``sym`` bound in a Module on the CPU (the gradient averaged over the batch), as
    a function to time; ``seed`` seeds MXNet before the parameters are initialised."""
    import mxnet as mx

    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    if seed is not None:
        mx.random.seed(seed)
    mod.init_params(init)
    mod.init_optimizer(kvstore="local", optimizer="nag",
                       optimizer_params={**NAG, "rescale_grad": 1.0 / data.shape[0]})
    dbatch = mx.io.DataBatch([data], [label])

    def step():
        mod.forward_backward(dbatch)
        mod.update()
        mx.nd.waitall()
    return step


def _build_module(model: str, batch: int, variant: str, what: str):
    import mxnet as mx

    from resnet_toolkit import fastpath
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = _mx_data(batch, shape, classes)
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if what == "train":
        if variant == "fast":
            sym = fastpath.training_graph(sym)[0]
        return _module_train_step(sym, data, label, init)
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    mod.init_params(init)
    arg_params, aux_params = mod.get_params()
    if variant == "fast":
        model_obj = fastpath.FusedExecutor(sym, arg_params, aux_params, data.shape)

        def step():
            model_obj.forward(data).wait_to_read()
    else:
        mod = mx.mod.Module(sym, context=mx.cpu())
        mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)],
                 for_training=False)
        mod.set_params(arg_params, aux_params)
        dbatch = mx.io.DataBatch([data])

        def step():
            mod.forward(dbatch, is_train=False)
            mod.get_outputs()[0].wait_to_read()
    return step


def _gluon_train_step(net, trainer, data, label):
    """One Gluon training step as a closure: forward under autograd, softmax cross-entropy, backward, update."""
    import mxnet as mx
    from mxnet import autograd, gluon

    loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

    def step():
        with autograd.record():
            loss = loss_fn(net(data), label)
        loss.backward()
        trainer.step(data.shape[0])
        mx.nd.waitall()
    return step


def _build_gluon(model: str, batch: int, variant: str, what: str):
    import mxnet as mx
    from mxnet import gluon

    from resnet_toolkit import fastpath
    from symbols import get_model

    shape, classes = model_shape(model)
    net = get_model(model, classes, api="gluon")
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    data, label = _mx_data(batch, shape, classes)
    if what == "train":
        if variant == "fast":
            net = fastpath.hybridize_for_training(net, data.shape)
        else:
            net.hybridize()
        for name, param in net.collect_params().items():
            if name.endswith(("_beta", "_bias")):
                param.wd_mult = 0.0  # as the Symbol optimizer: decay weights and gammas only
        return _gluon_train_step(net, gluon.Trainer(net.collect_params(), "nag", dict(NAG)), data, label)
    if variant == "fast":
        net = fastpath.gluon_inference_block(net, data.shape)
    else:
        net.hybridize()

    def step():
        net(data).wait_to_read()
    return step


def gluoncv_name(model: str) -> str:
    """GluonCV's name for the same network: ``resnet50_v1`` -> ``resnet50_v1b`` (stride on the 3x3, as ours),
    ``resnet50_vd`` -> ``resnet50_v1d``; ``*_v2`` and ResNeXt names are GluonCV's own."""
    if model.endswith("_v1") and not model.startswith("cifar_"):
        return model + "b"
    if model.endswith("_vd"):
        return model[:-1] + "1d"
    return model


def _gluoncv_net(model: str, classes: int):
    from gluoncv.model_zoo import get_model
    if model == "cifar_resnet164_v2":  # GluonCV has no 164; its own classes with the paper's bottleneck layout
        from gluoncv.model_zoo.cifarresnet import CIFARResNetV2
        from gluoncv.model_zoo.resnet import BottleneckV2
        return CIFARResNetV2(BottleneckV2, [18, 18, 18], [16, 64, 128, 256], classes=classes)
    return get_model(gluoncv_name(model), classes=classes)


def _build_gluoncv(model: str, batch: int, variant: str, what: str):
    """As peer_mxnet_gluoncv.py: Xavier init, hybridize(static_alloc, static_shape), SGD momentum 0.9 wd 1e-4."""
    import mxnet as mx
    from mxnet import gluon

    shape, classes = model_shape(model)
    net = _gluoncv_net(model, classes)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    data, label = _mx_data(batch, shape, classes)
    if what == "train":
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})
        return _gluon_train_step(net, trainer, data, label)

    def step():
        net(data).wait_to_read()
    return step


# torchvision's ResNet with Bottleneck units (models/resnet.py: stride and groups on the 3x3, width
# int(planes * width_per_group / 64) * groups, downsample = 1x1 conv + BN where the shape changes), in a few lines.
TORCH_V1 = r"""
import torch, torch.nn as nn, torch.nn.functional as F
class V1Bottleneck(nn.Module):
    def __init__(s, cin, planes, stride, groups, width_per_group):
        super().__init__(); w = int(planes * width_per_group / 64) * groups; out = planes * 4
        s.c1 = nn.Conv2d(cin, w, 1, bias=False); s.b1 = nn.BatchNorm2d(w)
        s.c2 = nn.Conv2d(w, w, 3, stride, 1, groups=groups, bias=False); s.b2 = nn.BatchNorm2d(w)
        s.c3 = nn.Conv2d(w, out, 1, bias=False); s.b3 = nn.BatchNorm2d(out)
        s.sc = (nn.Sequential(nn.Conv2d(cin, out, 1, stride, bias=False), nn.BatchNorm2d(out))
                if stride != 1 or cin != out else None)
    def forward(s, x):
        y = F.relu(s.b1(s.c1(x))); y = F.relu(s.b2(s.c2(y))); y = s.b3(s.c3(y))
        return F.relu(y + (x if s.sc is None else s.sc(x)))
class V1ResNet(nn.Module):
    def __init__(s, units, groups, width_per_group, classes):
        super().__init__()
        s.stem = nn.Sequential(nn.Conv2d(3, 64, 7, 2, 3, bias=False), nn.BatchNorm2d(64), nn.ReLU(),
                               nn.MaxPool2d(3, 2, 1))
        layers, cin = [], 64
        for i, (n, planes) in enumerate(zip(units, (64, 128, 256, 512))):
            for j in range(n):
                layers.append(V1Bottleneck(cin, planes, 2 if (i > 0 and j == 0) else 1, groups, width_per_group))
                cin = planes * 4
        s.body = nn.Sequential(*layers); s.fc = nn.Linear(cin, classes)
    def forward(s, x):
        return s.fc(torch.flatten(F.adaptive_avg_pool2d(s.body(s.stem(x)), 1), 1))
"""
# model -> (units, groups, width per group) of TORCH_V1's network
TORCH_V1_ARCH = {"resnet50_v1": ((3, 4, 6, 3), 1, 64), "resnet101_v1": ((3, 4, 23, 3), 1, 64),
                 "resnet152_v1": ((3, 8, 36, 3), 1, 64), "resnext50_32x4d": ((3, 4, 6, 3), 32, 4),
                 "resnext101_32x4d": ((3, 4, 23, 3), 32, 4), "resnext101_32x8d": ((3, 4, 23, 3), 32, 8),
                 "resnext101_64x4d": ((3, 4, 23, 3), 64, 4)}

# torchvision's own networks for the v1b / ResNeXt names, where the torch venv has torchvision (else TORCH_V1's copy)
TORCHVISION = {"resnet18_v1": "resnet18", "resnet34_v1": "resnet34", "resnet50_v1": "resnet50",
               "resnet101_v1": "resnet101", "resnet152_v1": "resnet152", "resnext50_32x4d": "resnext50_32x4d",
               "resnext101_32x8d": "resnext101_32x8d", "resnext101_64x4d": "resnext101_64x4d"}
# PyTorch's configurations: eager (channels_last), TorchScript traced + frozen (inference only), torch.compile
# (inductor; with freezing for inference, which folds BN into the convolutions as our fused graph does)
TORCH_VARIANTS = ("eager", "jit", "compile")

# What both PyTorch workers (TORCH_BUILDER, PRECISION_TORCH_BUILDER) share: the peer networks, an inference step,
# torch.compile for inference.
TORCH_COMMON = r"""
import importlib.util
import torch


def peer_net(spec):  # the pre-activation network spec["model"] from ../shared/peers/peer_torch.py's classes
    loader = importlib.util.spec_from_file_location("peer_torch", spec["peer"])
    peer = importlib.util.module_from_spec(loader); loader.loader.exec_module(peer)
    block, units, filters, imagenet = {
        "resnet50_v2": (peer.Bottleneck, [3, 4, 6, 3], [64, 256, 512, 1024, 2048], True),
        "resnet101_v2": (peer.Bottleneck, [3, 4, 23, 3], [64, 256, 512, 1024, 2048], True),
        "cifar_resnet20_v2": (peer.Basic, [3, 3, 3], [16, 16, 32, 64], False),
        "cifar_resnet56_v2": (peer.Basic, [9, 9, 9], [16, 16, 32, 64], False),
        "cifar_resnet164_v2": (peer.Bottleneck, [18, 18, 18], [16, 64, 128, 256], False)}[spec["model"]]
    return peer.PreActResNet(block, units, filters, spec["classes"], imagenet)


def inference_step(model, x):
    def step():
        with torch.inference_mode():
            model(x)
    return step


def compile_for_inference(model):  # torch.compile (inductor) with freezing: BN folded into the convs, prepacked
    import torch._inductor.config
    torch._inductor.config.freezing = True
    return torch.compile(model)
"""

TORCH_BUILDER = r"""
import copy, json, os, sys
import torch, torch.nn.functional as F
spec = json.loads(sys.argv[1])
if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
classes, batch = spec["classes"], spec["batch"]
source = None
if spec["torchvision"]:
    try:
        import torchvision
        net = getattr(torchvision.models, spec["torchvision"])(num_classes=classes)
        source = f"torchvision {torchvision.__version__} models.{spec['torchvision']}"
    except ImportError:
        pass
if source is None and spec["v1"]:
    units, groups, width = spec["v1"]
    net = V1ResNet(units, groups, width, classes)
    source = "torchvision's Bottleneck/ResNet written out (bench/throughput.py TORCH_V1)"
elif source is None:
    net = peer_net(spec)
    source = "peer_torch.py PreActResNet"
mf = torch.channels_last if spec["channels_last"] else torch.contiguous_format
net = net.to(memory_format=mf)
x = torch.rand([batch] + spec["shape"]).to(memory_format=mf) * 255
y = torch.arange(batch) % classes
steps = {}
if spec["what"] == "train":
    def train_step(model, params):
        opt = torch.optim.SGD(params, lr=0.01, momentum=0.9, weight_decay=1e-4)
        def step():
            opt.zero_grad(set_to_none=True); loss = F.cross_entropy(model(x), y); loss.backward(); opt.step()
        return step
    for variant in spec["variants"]:
        own = net if variant == "eager" else copy.deepcopy(net)  # compile trains its own copy of the weights
        own.train()
        model = own if variant == "eager" else torch.compile(own)
        steps["torch/" + variant] = train_step(model, own.parameters())
else:
    net.eval()
    for variant in spec["variants"]:
        if variant == "eager":
            model = net
        elif variant == "jit":
            with torch.no_grad():
                model = torch.jit.freeze(torch.jit.trace(net, x))
        else:
            model = compile_for_inference(net)
        steps["torch/" + variant] = inference_step(model, x)
print(f"INFO torch {torch.__version__}, {source}", flush=True)
serve(steps)
"""

def _xavier_inference_net(model: str, batch: int):
    """``(inference symbol, data batch, arg_params, aux_params)`` of ``model``, Xavier-initialised as
    ``_build_module`` does: what the ONNX engines' builders export."""
    import mxnet as mx

    from resnet_toolkit.model_facts import inference_symbol
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = _mx_data(batch, shape, classes)
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)], for_training=False)
    mx.random.seed(0)
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    arg_params, aux_params = mod.get_params()
    return inference_symbol(sym), data, arg_params, aux_params


def _build_exported(backend: str):
    """A builder for ``backend`` ('onnxruntime'/'openvino'): this project's Symbol, Xavier-initialised as
    ``_build_module`` does, exported to ONNX and run there (threads: OMP_NUM_THREADS, as MXNet)."""
    def build(model: str, batch: int, variant: str, what: str):

        from resnet_toolkit.backends import make_runner

        net, data, arg_params, aux_params = _xavier_inference_net(model, batch)
        run = make_runner(backend, net, arg_params, aux_params, data.shape)
        images = data.asnumpy()

        def step():
            run(images)
        return step
    return build


BUILDERS = {"module": _build_module, "gluon": _build_gluon, "gluoncv": _build_gluoncv,
            "onnxruntime": _build_exported("onnxruntime"), "openvino": _build_exported("openvino")}


def serve(steps: dict) -> None:
    """Step server: print ``READY``, then answer ``step KEY`` with ``T seconds`` (one step's wall time) until
    ``quit``. ``profile KEY PATH`` (MXNet only) writes MXNet's per-op aggregate over 3 steps to PATH. Its source
    is sent to the PyTorch worker too, so both sides time a step the same way."""
    import os
    import sys
    import time
    print("READY", flush=True)
    for line in sys.stdin:
        cmd, *rest = line.split()
        if cmd == "quit":
            break
        if cmd == "profile":
            import mxnet as mx
            mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=os.devnull)
            mx.profiler.set_state("run")
            t = time.perf_counter()
            for _ in range(3):
                steps[rest[0]]()
            mx.profiler.set_state("stop")
            with open(rest[1], "w") as out:
                out.write(f"3 steps, {time.perf_counter() - t:.3f} s wall\n")
                out.write(mx.profiler.dumps(sort_by="total", ascending=False, reset=True))  # these 3 steps only
            print("T 0", flush=True)
            continue
        t = time.perf_counter()
        steps[rest[0]]()
        print(f"T {time.perf_counter() - t:.6f}", flush=True)


def run_server(args: argparse.Namespace) -> int:
    """Subprocess entry for the MXNet engines of one (model, batch, what): build every requested step, serve."""
    spec = json.loads(args.serve)
    if spec["configure"]:
        from resnet_toolkit import runtime
        runtime.configure()
    import resnet_toolkit  # noqa: F401  (numpy shim before mxnet)
    builders = PRECISION_BUILDERS if spec.get("precision") else BUILDERS
    steps = {}
    for key in spec["keys"]:
        engine, variant = key.split("/")
        steps[key] = builders[engine](spec["model"], spec["batch"], variant, spec["what"])
    serve(steps)
    return 0


# ---------------------------------------------------------------- --precision: low precision against float32

def precision_mx_keys(what: str, engines) -> list[str]:
    """The MXNet cells of a ``--precision`` run: ours in float32 and each low precision this CPU runs (oneDNN
    asked, :mod:`resnet_toolkit.capability`: no bfloat16 cells on an AVX2-only one), GluonCV's float32."""
    from resnet_toolkit.capability import probe

    caps = probe()
    keys = []
    if "ours" in engines:
        low = [v for v in LOW[what] if caps.supports("bfloat16" if v.startswith("bf16") else "int8")]
        keys += ["ours/fp32"] + [f"ours/{v}" for v in low]
    if "gluoncv" in engines:
        keys.append("gluoncv/fp32")
    if what == "infer":
        for engine in INFER_ONLY:
            if engine in engines:
                keys += [f"{engine}/fp32", f"{engine}/int8"]
    return keys


def precision_torch_keys(what: str, torchao: bool = False) -> list[str]:
    """The PyTorch cells of a ``--precision`` run: float32 and bfloat16 autocast (train); float32, FX INT8 and
    torch.compile's float32 (infer), and with ``torchao`` (importable beside torch) torch.compile's INT8."""
    if what == "train":
        return ["torch/fp32", "torch/bf16"]
    return ["torch/fp32", "torch/int8", "torch/compile"] + (["torch/int8-compile"] if torchao else [])


def _build_ours_low(model: str, batch: int, variant: str, what: str):
    """A step of ours in ``variant`` ('fp32', 'bf16', 'bf16-mxbn' for training; 'fp32', 'int8' for inference)."""
    import mxnet as mx

    from resnet_toolkit import fastpath
    from resnet_toolkit.precision import mixed_precision_symbol
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = _mx_data(batch, shape, classes)
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if what == "train":
        sym = fastpath.training_graph(sym)[0]
        if variant != "fp32":
            sym = mixed_precision_symbol(sym, "bfloat16", policy="mxnet" if variant == "bf16-mxbn" else "fp32-bn")
        return _module_train_step(sym, data, label, init, seed=0)
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)], for_training=False)
    mx.random.seed(0)
    mod.init_params(init)
    arg_params, aux_params = mod.get_params()
    if variant == "fp32":
        model_obj = fastpath.FusedExecutor(sym, arg_params, aux_params, data.shape)
    else:
        from mxnet.contrib.quantization import quantize_model_mkldnn

        from resnet_toolkit.quantize import Int8Executor

        calib = mx.io.NDArrayIter(mx.nd.random.uniform(0, 255, (2 * batch,) + shape), batch_size=batch)
        qsym, qarg, qaux = quantize_model_mkldnn(
            fastpath.strip_softmax(sym), arg_params, aux_params, label_names=(), ctx=mx.cpu(), calib_mode="naive",
            calib_data=calib, num_calib_examples=2 * batch, quantized_dtype="auto", quantize_mode="smart")
        model_obj = Int8Executor(qsym, qarg, qaux, data.shape)

    def step():
        model_obj.forward(data).wait_to_read()
    return step


def _build_exported_low(backend: str):
    """A ``--precision`` builder for ``backend`` ('onnxruntime'/'openvino'): 'fp32' is the exported network of
    :func:`_build_exported`; 'int8' its ONNX Runtime static quantization (QDQ, min/max of the same 2 random
    batches ``ours/int8`` calibrates on), the file ``tools/quantize.py`` writes, run by ``backend``."""
    def build(model: str, batch: int, variant: str, what: str):
        if variant == "fp32":
            return _build_exported(backend)(model, batch, variant, what)
        import tempfile

        import mxnet as mx

        from resnet_toolkit.backends import export_onnx_file, file_runner, quantize_onnx_file

        net, data, arg_params, aux_params = _xavier_inference_net(model, batch)
        shape = data.shape[1:]
        calib = mx.nd.random.uniform(0, 255, (2 * batch,) + shape).asnumpy()
        with tempfile.TemporaryDirectory() as tmp:
            export_onnx_file(net, arg_params, aux_params, shape, f"{tmp}/fp32.onnx")
            quantize_onnx_file(f"{tmp}/fp32.onnx", f"{tmp}/int8.onnx", [calib[:batch], calib[batch:]])
            run = file_runner(backend, f"{tmp}/int8.onnx", data.shape)
        images = data.asnumpy()

        def step():
            run(images)
        return step
    return build


PRECISION_BUILDERS = {"ours": _build_ours_low, "gluoncv": _build_gluoncv,
                      "onnxruntime": _build_exported_low("onnxruntime"), "openvino": _build_exported_low("openvino")}

PRECISION_TORCH_BUILDER = r"""
import copy, json, os, sys
import torch, torch.nn.functional as F
spec = json.loads(sys.argv[1])
if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
classes, batch = spec["classes"], spec["batch"]
torch.manual_seed(0)
net = peer_net(spec).to(memory_format=torch.channels_last)
x = (torch.rand([batch] + spec["shape"]) * 255).to(memory_format=torch.channels_last)
y = torch.arange(batch) % classes
steps = {}
if spec["what"] == "train":
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    def make(bf16):
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), y)
            loss.backward(); opt.step()
        return step
    steps = {"torch/fp32": make(False), "torch/bf16": make(True)}
else:
    net.eval()
    steps["torch/fp32"] = inference_step(net, x)
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping("x86"), (x,))
    with torch.inference_mode():
        prepared(x); prepared(x)  # calibration: 2 random batches, as ours
    steps["torch/int8"] = inference_step(convert_fx(prepared), x)
    steps["torch/compile"] = inference_step(compile_for_inference(net), x)
    if spec["torchao"]:  # PyTorch's INT8 for inductor: PT2E with the x86 quantizer (torchao), then torch.compile
        from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
        from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq
        quantizer = xiq.X86InductorQuantizer().set_global(xiq.get_default_x86_inductor_quantization_config())
        with torch.no_grad():
            graph = torch.export.export(copy.deepcopy(net), (x,), strict=True).module()
            prepared = prepare_pt2e(graph, quantizer)
            prepared(x); prepared(x)  # the same 2-batch calibration
            steps["torch/int8-compile"] = inference_step(compile_for_inference(convert_pt2e(prepared)), x)
print(f"INFO torch {torch.__version__}" + (", torchao INT8" if spec["torchao"] else ""), flush=True)
serve(steps)
"""


def run_kernel_step(spec: dict) -> int:
    """Worker entry for ``--kernels``: build one MXNet step, run it twice (primitives created), print a marker,
    run it once more: the oneDNN verbose lines after the marker are one step's kernels."""
    import resnet_toolkit  # noqa: F401  (numpy shim before mxnet)
    engine, variant = spec["key"].split("/")
    step = PRECISION_BUILDERS[engine](spec["model"], spec["batch"], variant, spec["what"])
    step()
    step()
    print("KERNELS-START", flush=True)
    step()
    return 0


def kernel_tally(lines) -> dict[tuple[str, str, str, str], list[float]]:
    """``dnnl_verbose,exec,...`` lines -> (primitive, implementation, propagation, source dtype) -> [calls, ms]."""
    tally: dict[tuple[str, str, str, str], list[float]] = {}
    for line in lines:
        if not line.startswith("dnnl_verbose,exec,cpu,"):
            continue
        fields = line.strip().split(",")
        primitive, impl, prop, mds = fields[3], fields[4], fields[5], fields[6]
        src = mds.split()[0].split("::")[0].split("_")[-1] if mds else "?"  # 'src_bf16::blocked..' -> 'bf16'
        entry = tally.setdefault((primitive, impl, prop, src), [0, 0.0])
        entry[0] += 1
        entry[1] += float(fields[-1])
    return tally


def step_kernels(model: str, batch: int, what: str, key: str, env: dict,
                 timeout: float = 900) -> dict[tuple[str, str, str, str], list[float]]:
    """:func:`kernel_tally` of one step of the MXNet cell ``key`` (after two untimed steps), run in a subprocess
    under ``DNNL_VERBOSE=1``; a RuntimeError with its last error line when that step fails."""
    spec = {"model": model, "batch": batch, "what": what, "key": key}
    proc = subprocess.run([sys.executable, "-m", "bench.throughput", "--kernel-step", json.dumps(spec)],
                          capture_output=True, text=True, env={**env, "DNNL_VERBOSE": "1"}, timeout=timeout,
                          cwd=REPO)
    if proc.returncode != 0:
        raise RuntimeError(f"{key}: the kernel step failed: {proc.stderr.strip().splitlines()[-1:]}")
    return kernel_tally(proc.stdout.split("KERNELS-START", 1)[-1].splitlines())


def show_kernels(model: str, batch: int, what: str, args: argparse.Namespace, env: dict, top: int = 8) -> str:
    """One step of every MXNet engine of the cell under ``DNNL_VERBOSE=1``: its most expensive kernels."""
    out = []
    for key in precision_mx_keys(what, args.engines):
        if key.split("/")[0] in INFER_ONLY:
            continue  # their kernels are not oneDNN's verbose lines
        try:
            tally = step_kernels(model, batch, what, key, env)
        except RuntimeError as exc:  # one engine's failure is a line of the report, as before
            out += [f"**{model} bs{batch} {what} {key}**: {exc}", ""]
            continue
        total = sum(ms for _, ms in tally.values()) or float("nan")
        out += [f"**{model} bs{batch} {what} {key}**: oneDNN kernels of one step ({total:.1f} ms in primitives)",
                "", "| primitive | implementation | pass | src | calls | ms | share |", "|---|---|---|---|---|---|---|"]
        for (prim, impl, prop, src), (calls, ms) in sorted(tally.items(), key=lambda kv: -kv[1][1])[:top]:
            out.append(f"| {prim} | {impl} | {prop} | {src} | {calls} | {ms:.1f} | {100 * ms / total:.0f} % |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- orchestration

class Server:
    """One step-server subprocess and its keys (``engine/variant``)."""

    def __init__(self, cmd: list[str], keys: list[str], env: dict):
        self.keys = keys
        self.info: list[str] = []  # the worker's ``INFO ...`` lines (PyTorch's: its version and the net's source)
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env, cwd=REPO)
        line = self._read_line()
        if line != "READY":
            err = self.proc.stderr.read().strip().splitlines()[-3:] if self.proc.poll() is not None else []
            self.close()
            raise RuntimeError(f"{keys}: worker did not start ({line!r}; {' | '.join(err)})")

    def _read_line(self) -> str:
        while True:
            line = self.proc.stdout.readline()
            if not line:
                return ""
            if line.startswith(("READY", "T ")):
                return line.strip()
            if line.startswith("INFO "):
                self.info.append(line[5:].strip())

    def step(self, key: str, command: str = "step") -> float:
        self.proc.stdin.write(f"{command} {key}\n")
        self.proc.stdin.flush()
        line = self._read_line()
        if not line.startswith("T "):
            raise RuntimeError(f"{key}: worker died")
        return float(line[2:])

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                self.proc.stdin.write("quit\n")
                self.proc.stdin.flush()
                self.proc.wait(timeout=60)
            except (BrokenPipeError, subprocess.TimeoutExpired):
                self.proc.kill()


def start_servers(model: str, batch: int, what: str, args: argparse.Namespace, env: dict) -> list[Server]:
    """The MXNet server (every MXNet engine/variant asked for) and, with --torch-python, the PyTorch one."""
    keys = [f"{e}/{v}" for e in args.engines if e in BUILDERS and not (e in INFER_ONLY and what == "train")
            for v in (args.variants if e in OURS else ["-"])]
    servers = []
    if keys:
        spec = {"model": model, "batch": batch, "what": what, "keys": keys, "configure": not args.threads}
        servers.append(Server([sys.executable, "-m", "bench.throughput", "--serve", json.dumps(spec)], keys, env))
    variants = [v for v in args.torch_variants if not (v == "jit" and what == "train")]
    if "torch" in args.engines and args.torch_python and variants:
        if model not in TORCH_V2 and model not in TORCH_V1_ARCH and model not in TORCHVISION:
            print(f"{model}: no PyTorch definition here; timed without the torch column", file=sys.stderr)
            return servers
        shape, classes = model_shape(model)
        spec = {"peer": str(PEERS / "peer_torch.py"), "model": model, "batch": batch, "what": what,
                "shape": list(shape), "classes": classes, "channels_last": not args.torch_nchw,
                "v1": TORCH_V1_ARCH.get(model), "torchvision": TORCHVISION.get(model), "variants": variants}
        code = inspect.getsource(serve) + TORCH_COMMON + TORCH_V1 + TORCH_BUILDER
        try:
            servers.append(Server([args.torch_python, "-c", code, json.dumps(spec)],
                                  [f"torch/{v}" for v in variants], env))
        except RuntimeError:
            for srv in servers:  # the MXNet worker already started
                srv.close()
            raise
    return servers


def start_precision_servers(model: str, batch: int, what: str, args: argparse.Namespace, env: dict) -> list[Server]:
    """``--precision``: the MXNet server (ours in each precision, GluonCV) and, with --torch-python, PyTorch's."""
    servers = []
    keys = precision_mx_keys(what, args.engines)
    if keys:
        spec = {"model": model, "batch": batch, "what": what, "keys": keys, "configure": not args.threads,
                "precision": True}
        servers.append(Server([sys.executable, "-m", "bench.throughput", "--serve", json.dumps(spec)], keys, env))
    if "torch" in args.engines and args.torch_python:
        shape, classes = model_shape(model)
        spec = {"peer": str(PEERS / "peer_torch.py"), "model": model, "batch": batch, "what": what,
                "shape": list(shape), "classes": classes, "torchao": args.torchao}
        try:
            code = inspect.getsource(serve) + TORCH_COMMON + PRECISION_TORCH_BUILDER
            servers.append(Server([args.torch_python, "-c", code, json.dumps(spec)],
                                  precision_torch_keys(what, args.torchao), env))
        except RuntimeError:
            for srv in servers:
                srv.close()
            raise
    return servers


def time_cell(model: str, batch: int, what: str, args: argparse.Namespace, env: dict,
              start=None) -> dict[str, list[float]]:
    """Per key, the wall time of every timed step, interleaved: each round runs one step of every engine, in a
    rotating order, so load from other processes falls on all of them alike. ``start`` makes the step servers
    (default :func:`start_servers`; ``--precision`` passes :func:`start_precision_servers`)."""
    servers = (start or start_servers)(model, batch, what, args, env)
    for srv in servers:
        args.worker_info.update(srv.info)
    try:
        owner = {key: srv for srv in servers for key in srv.keys}
        keys = list(owner)
        for key in keys:
            for _ in range(args.warmup):
                owner[key].step(key)
        times: dict[str, list[float]] = {key: [] for key in keys}
        rnd = 0
        while keys and rnd < args.max_steps and (rnd < args.min_steps
                                                 or min(sum(t) for t in times.values()) < args.seconds):
            for key in keys[rnd % len(keys):] + keys[:rnd % len(keys)]:
                times[key].append(owner[key].step(key))
            rnd += 1
        if getattr(args, "profile_dir", None):
            args.profile_dir.mkdir(parents=True, exist_ok=True)
            for key in keys:
                if key.split("/")[0] in OURS or key.startswith("gluoncv"):
                    path = args.profile_dir.resolve() / f"{model}-bs{batch}-{what}-{key.replace('/', '-')}.txt"
                    owner[key].step(f"{key} {path}", command="profile")
        return times
    finally:
        for srv in servers:
            srv.close()


PEER_KEYS = ("gluoncv/-", *(f"torch/{v}" for v in TORCH_VARIANTS), "onnxruntime/-", "openvino/-")


def per_round_fastest(cells: dict[str, list[float]], keys) -> list[float] | None:
    """Per round, the shortest step time among ``keys`` present in ``cells`` (None when none is): the fastest
    configuration of a round, against which a ratio is again a median of per-round ratios."""
    present = [cells[k] for k in keys if k in cells]
    return [min(times) for times in zip(*present)] if present else None


LOW_VARIANTS = ("int8", "int8-compile", "bf16", "bf16-mxbn")  # the low-precision cells' variant names, all engines


def versus_fastest(cells: dict[str, list[float]]) -> dict[str, float]:
    """Each engine's img/s ÷ the fastest engine's of the same round, median over rounds (1.0: fastest in at least
    half the rounds): which engine to run on this CPU. Low-precision cells (:data:`LOW_VARIANTS`) are compared
    among themselves, the float32 ones among themselves."""
    groups: dict[bool, list[str]] = {}
    for key in cells:
        groups.setdefault(key.split("/")[1] in LOW_VARIANTS, []).append(key)
    out = {}
    for keys in groups.values():
        fastest = per_round_fastest(cells, keys)
        for key in keys:
            out[key] = round(statistics.median(f / t for t, f in zip(cells[key], fastest)), 3)
    return out


def format_versus_fastest(raw: dict) -> str:
    """One line per cell: the engines ordered by :func:`versus_fastest`."""
    lines = ["Each engine ÷ the fastest of each round (median), per cell:"]
    for (model, batch, what), cells in raw.items():
        ranked = sorted(versus_fastest(cells).items(), key=lambda kv: -kv[1])
        lines.append(f"- {model} bs{batch} {what}: " + ", ".join(f"{k.removesuffix('/-')} {v:.2f}" for k, v in ranked))
    return "\n".join(lines)


def ratios(raw: dict) -> dict:
    """Ours (each engine/variant) / each peer and / our own base, in img/s: the median over rounds of the ratio of
    the two step times within a round. Keys: ``model|batch|what|engine/variant|peer``, peer ``gluoncv``,
    ``torch/eager`` (``torch/jit``, ``torch/compile``), ``onnxruntime``, ``openvino``, ``ENGINE/base``, and two
    per-round minimums: ``torch`` (the fastest PyTorch configuration of each round) and ``fastest peer``."""
    out = {}
    for (model, batch, what), cells in raw.items():
        peers = {k.removesuffix("/-"): cells[k] for k in PEER_KEYS if k in cells}
        peers["torch"] = per_round_fastest(cells, [f"torch/{v}" for v in TORCH_VARIANTS])
        peers["fastest peer"] = per_round_fastest(cells, PEER_KEYS)
        for ours in [f"{e}/{v}" for e in OURS for v in VARIANTS if f"{e}/{v}" in cells]:
            own = {f"{ours.split('/')[0]}/base": cells.get(f"{ours.split('/')[0]}/base")} if ours.endswith(
                "/fast") else {}
            for name, theirs in {**peers, **own}.items():
                if theirs:
                    out[f"{model}|{batch}|{what}|{ours}|{name}"] = round(statistics.median(
                        tp / to for to, tp in zip(cells[ours], theirs)), 3)
    return out


def format_table(rows: dict, ratio: dict) -> str:
    """Markdown table: one line per (model, batch, what): img/s per engine, the best of ours, its ratios (``÷
    torch``: the fastest PyTorch configuration of each round; ``÷ fastest peer``: the fastest of all peers)."""
    cols = [f"{e}/{v}" for e in OURS for v in VARIANTS] + list(PEER_KEYS)
    shown = ("gluoncv", "torch", "onnxruntime", "openvino", "fastest peer")
    head = ["model", "batch", "what"] + [c.replace("/-", "") for c in cols] + [
        "best ours", "÷ own base"] + [f"÷ {p}" for p in shown] + ["p50/p90 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, batch, what), cells in rows.items():
        ours = [c for c in cols[:4] if c in cells and c.endswith("/fast")] or [c for c in cols[:4] if c in cells]
        best = max(ours, key=lambda c: cells[c]["img_s"]) if ours else None
        vals = [f"{cells[c]['img_s']:.2f}" if c in cells else "–" for c in cols]
        key = f"{model}|{batch}|{what}|{best}|"
        own = f"{best.split('/')[0]}/base" if best else ""
        rat = [f"{ratio[key + p]:.2f}" if key + p in ratio else "–" for p in (own, *shown)]
        lat = f"{cells[best]['p50_ms']:.1f}/{cells[best]['p90_ms']:.1f}" if best else "–"
        lines.append("| " + " | ".join([model, str(batch), what] + vals + [best or "–"] + rat + [lat]) + " |")
    return "\n".join(lines)


def precision_refs(what: str) -> list[str]:
    """``--precision``: the cells every low-precision one is compared with (the table's ``÷`` columns)."""
    if what == "train":
        return ["ours/fp32", "gluoncv/fp32", "torch/fp32", "torch/bf16"]
    return ["ours/fp32", "gluoncv/fp32", "torch/fp32", "torch/int8", "torch/compile", "torch/int8-compile",
            *(f"{engine}/int8" for engine in INFER_ONLY)]


def precision_ratios(times: dict[str, list[float]], what: str) -> dict[str, float]:
    """``--precision``: ``low|reference`` -> median over rounds of reference step time / low step time (img/s
    ratio). The low cells: ours in each low precision, PyTorch's (only against its own float32, eager and
    compiled) and, inference, the ONNX engines' INT8; references: :func:`precision_refs`."""
    out = {}
    torch_lows = ["torch/bf16"] if what == "train" else ["torch/int8", "torch/int8-compile"]
    lows = [f"ours/{v}" for v in LOW[what]] + torch_lows
    if what == "infer":
        lows += [f"{engine}/int8" for engine in INFER_ONLY]
    for low in lows:
        for ref in precision_refs(what):
            if low.startswith("torch") and ref not in ("torch/fp32", "torch/compile"):
                continue
            if low != ref and low in times and ref in times:
                out[f"{low}|{ref}"] = round(statistics.median(r / x for x, r in zip(times[low], times[ref])), 3)
    return out


def format_precision_table(rows: dict, ratio: dict) -> str:
    """``--precision``: one Markdown table per (model, batch, what): img/s, latency and ratios of every engine."""
    lines = []
    for (model, batch, what), cells in rows.items():
        refs = [ref for ref in precision_refs(what) if ref in cells or ref in ("ours/fp32", "torch/fp32")]
        lines += [f"**{model} bs{batch} {what}** (img/s; p50/p90 ms)", "",
                  "| engine | img/s | p50/p90 ms |" + "".join(f" ÷ {ref.replace('/', ' ')} |" for ref in refs),
                  "|---|---|---|" + "---|" * len(refs)]
        for key, c in cells.items():
            r = ratio[(model, batch, what)]
            vals = [r.get(f"{key}|{ref}") for ref in refs]
            lines.append(f"| {key} | {c['img_s']:.2f} | {c['p50_ms']:.1f}/{c['p90_ms']:.1f} | "
                         + " | ".join("–" if v is None else f"{v:.2f}" for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--precision", action="store_true",
                   help="low precision against float32 (bfloat16 training, INT8 inference), engines ours gluoncv "
                        "torch, instead of ours before/after against the peers (see the module's docstring)")
    p.add_argument("--models", nargs="+", default=None,
                   help=f"model names (symbols.model_names(); default: the five v2 ones, with --precision "
                        f"{' '.join(PRECISION_MODELS)}; the baselines' cells: {' '.join(FAMILY_MODELS)})")
    p.add_argument("--batches", nargs="+", type=int, default=None,
                   help="batch sizes (default: 128 for cifar, 1 8 32 for imagenet; with --precision: train 128 "
                        "cifar / 8 imagenet, infer 1 32)")
    p.add_argument("--what", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    p.add_argument("--engines", nargs="+", choices=(*ENGINES, "ours"), default=None,
                   help=f"default: {' '.join(ENGINES)}; with --precision: {' '.join(PRECISION_ENGINES)}")
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=None,
                   help="our engines' variants (default: both; not with --precision)")
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per engine and cell (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per engine and cell")
    p.add_argument("--min-steps", type=int, default=3, help="at least this many rounds")
    p.add_argument("--max-steps", type=int, default=200, help="at most this many rounds")
    p.add_argument("--torch-python", default=None, help="python of a venv with torch (runs peer_torch.py's nets)")
    p.add_argument("--torch-nchw", action="store_true", help="PyTorch in NCHW instead of channels_last")
    p.add_argument("--torch-variants", nargs="+", choices=TORCH_VARIANTS, default=None,
                   help="PyTorch's configurations: eager, jit (traced + frozen TorchScript, inference only), "
                        "compile (torch.compile, inductor; freezing for inference) (default: eager; not with "
                        "--precision)")
    p.add_argument("--threads", type=int, default=None,
                   help="the same OpenMP/intra-op thread count for every engine (default: each one's own: "
                        "MXNet engines resnet_toolkit.runtime's choice, PyTorch all cores)")
    p.add_argument("--json", type=Path, default=None, help="write every cell, step time and ratio here")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="after timing, profile 3 steps of each MXNet engine per op (MXNet profiler) into this "
                        "folder; switches bulk execution off for the whole run")
    p.add_argument("--kernels", action="store_true",
                   help="with --precision: also list, per cell and MXNet engine, the oneDNN kernels of one step "
                        "(DNNL_VERBOSE=1)")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--kernel-step", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def resolve_mode(args: argparse.Namespace) -> None:
    """Fill the defaults of the mode (``--precision`` or not) and refuse the flags the other mode owns."""
    from resnet_toolkit.errors import UserError

    engines = PRECISION_ENGINES if args.precision else ENGINES
    args.engines = args.engines or list(engines)
    wrong = [e for e in args.engines if e not in engines]
    if wrong:
        raise UserError(f"--engines {' '.join(wrong)}: {'with' if args.precision else 'without'} --precision the "
                        f"engines are {' '.join(engines)}")
    if args.precision:
        other = [flag for flag, given in (("--variants", args.variants), ("--torch-nchw", args.torch_nchw),
                                          ("--torch-variants", args.torch_variants),
                                          ("--profile-dir", args.profile_dir)) if given]
        if other:
            raise UserError(f"{', '.join(other)}: not with --precision")
    elif args.kernels:
        raise UserError("--kernels lists the kernels of a --precision run: add --precision")
    args.models = args.models or list(PRECISION_MODELS if args.precision else MODELS)
    args.variants = args.variants or list(VARIANTS)
    args.torch_variants = args.torch_variants or ["eager"]


def main(argv: list[str] | None = None) -> int:
    from resnet_toolkit.errors import UserError
    from symbols import parse_model_name

    args = parse_args(argv)
    if args.serve:
        return run_server(args)
    if args.kernel_step:
        return run_kernel_step(json.loads(args.kernel_step))
    resolve_mode(args)
    args.worker_info = set()  # what the workers say of themselves (PyTorch's version, its nets' source)
    for model in args.models:
        parse_model_name(model)
    if args.torch_python and not Path(args.torch_python).exists():
        raise UserError(f"--torch-python {args.torch_python}: no such file")
    if "torch" in args.engines and args.torch_python and not (PEERS / "peer_torch.py").exists():
        raise UserError(f"no {PEERS / 'peer_torch.py'}")
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)  # every engine starts from its own defaults...
    env.pop("MXNET_CPU_WORKER_NTHREADS", None)
    if args.threads:  # ...unless one thread count is asked for all
        env["OMP_NUM_THREADS"] = str(args.threads)
    if args.precision:
        return main_precision(args, env)
    if args.profile_dir:
        env["MXNET_EXEC_BULK_EXEC_TRAIN"] = "0"  # per-op times (bulked segments hide which op costs what)
        env["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"
    raw: dict = {}
    for model in args.models:
        kind = "cifar" if model.startswith("cifar_") else "imagenet"
        for batch in args.batches or DEFAULT_BATCHES[kind]:
            for what in args.what:
                t0 = time.perf_counter()
                try:
                    raw[(model, batch, what)] = time_cell(model, batch, what, args, env)
                except RuntimeError as exc:
                    print(f"{model} bs{batch} {what}: {exc}", file=sys.stderr)
                    continue
                summary = ", ".join(f"{k} {batch * len(t) / sum(t):.2f}" for k, t in raw[(model, batch, what)].items())
                print(f"{model} bs{batch} {what}: {summary} img/s ({time.perf_counter() - t0:.0f} s, "
                      f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    rows = {key: {tag: summarize(t, key[1]) for tag, t in cells.items()} for key, cells in raw.items()}
    ratio = ratios(raw)
    from resnet_toolkit.capability import cpu_model, probe

    print(f"CPU: oneDNN runs {probe().isa_words()}; threads: {args.threads or 'each engine its own default'}")
    for line in sorted(args.worker_info):
        print(line)
    print()
    print(format_table(rows, ratio))
    print("\n" + format_versus_fastest(raw))

    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "threads": args.threads,
              "onednn_isa": probe().isa_words(), "cpu": cpu_model(), "workers": sorted(args.worker_info),
              "loadavg_end": os.getloadavg(),
              "cells": [{"model": m, "batch": b, "what": w, "engine": t, **c}
                        for (m, b, w), cells in rows.items() for t, c in cells.items()],
              "step_seconds": [{"model": m, "batch": b, "what": w, "engine": t, "times": [round(x, 5) for x in ts]}
                               for (m, b, w), cells in raw.items() for t, ts in cells.items()],
              "ratios": ratio,
              "versus_fastest": {f"{m}|{b}|{w}": versus_fastest(cells) for (m, b, w), cells in raw.items()}}
    if args.json:
        from resnet_toolkit.fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    else:
        print(json.dumps(ratio))
    return 0


def main_precision(args: argparse.Namespace, env: dict) -> int:
    """``--precision``: every (what, model, batch) cell timed, its tables printed, ``--json`` written."""
    env["MXNET_SUBGRAPH_VERBOSE"] = "0"
    args.torchao = bool(args.torch_python) and subprocess.run(  # PyTorch's INT8 for torch.compile needs torchao
        [args.torch_python, "-c", "import torchao"], capture_output=True).returncode == 0
    raw, ratio = {}, {}
    for what in args.what:
        for model in args.models:
            kind = "cifar" if model.startswith("cifar_") else "imagenet"
            for batch in args.batches or PRECISION_BATCHES[(kind, what)]:
                t0 = time.perf_counter()
                try:
                    raw[(model, batch, what)] = time_cell(model, batch, what, args, env,
                                                          start=start_precision_servers)
                except RuntimeError as exc:
                    print(f"{model} bs{batch} {what}: {exc}", file=sys.stderr)
                    continue
                ratio[(model, batch, what)] = precision_ratios(raw[(model, batch, what)], what)
                summary = ", ".join(f"{k} {batch * len(t) / sum(t):.2f}" for k, t in raw[(model, batch, what)].items())
                print(f"{model} bs{batch} {what}: {summary} img/s ({time.perf_counter() - t0:.0f} s, "
                      f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    rows = {key: {k: summarize(t, key[1]) for k, t in cells.items() if t} for key, cells in raw.items()}
    print(format_precision_table(rows, ratio))
    print(format_versus_fastest(raw))
    if args.kernels:
        for model, batch, what in raw:
            print(show_kernels(model, batch, what, args, env))
    if args.json:
        from resnet_toolkit.capability import probe
        from resnet_toolkit.fileio import atomic_write_text
        from resnet_toolkit.precision import cpu_flags

        report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "threads": args.threads,
                  "onednn_isa": probe().isa_words(), "native_bf16": probe().native_bf16,
                  "vnni": "avx512_vnni" in cpu_flags(),
                  "loadavg_end": os.getloadavg(),
                  "cells": [{"model": m, "batch": b, "what": w, "engine": k, **c}
                            for (m, b, w), cells in rows.items() for k, c in cells.items()],
                  "step_seconds": [{"model": m, "batch": b, "what": w, "engine": k, "times": [round(x, 5) for x in t]}
                                   for (m, b, w), cells in raw.items() for k, t in cells.items()],
                  "ratios": {f"{m}|{b}|{w}|{k}": v for (m, b, w), r in ratio.items() for k, v in r.items()},
                  "versus_fastest": {f"{m}|{b}|{w}": versus_fastest(cells) for (m, b, w), cells in raw.items()}}
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from resnet_toolkit.errors import run_cli
    run_cli(main)
