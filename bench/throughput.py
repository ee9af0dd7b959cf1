"""Side-by-side throughput: this project's networks against GluonCV's same networks and plain PyTorch, same run.

Engines, each a training step (forward, backward, update) or an inference forward on a fixed random batch:

- ``module``  : this project's Symbol through ``mx.mod.Module`` (train: ``forward_backward`` + ``update`` with NAG
  momentum 0.9, wd 1e-4, as ``train_resnet.py``; infer: an inference-bound module);
- ``gluon``   : this project's Gluon net, hybridized, ``gluon.Trainer`` with the same NAG settings;
- ``gluoncv`` : GluonCV's same model (``*_v2``; ``resnet*_v1b`` for ``resnet*_v1``, ``resnet*_v1d`` for
  ``resnet*_vd``, ``resnext*`` and ``cifar_resnext29_*`` under their names), set up as
  ``../shared/peers/peer_mxnet_gluoncv.py`` does (SGD momentum);
- ``torch``   : the same networks in plain PyTorch (channels_last), run under ``--torch-python`` (a separate venv):
  the pre-activation ones from ``../shared/peers/peer_torch.py``'s classes, the v1b / ResNeXt bottleneck ones
  (``resnet50_v1``, ``resnext50_32x4d``, ...) from :data:`TORCH_V1`, torchvision's ``Bottleneck``/``ResNet`` in
  a few lines (same layers, same parameter count). Models with neither are timed without a PyTorch column.

Ours run in two variants: ``base`` (the code before any speed work: plain graph, ``hybridize()``) and ``fast``
(:mod:`resnet_toolkit.fastpath`: training-graph rewrites, folded/fused inference graph, static memory).

Timing is interleaved: every MXNet engine lives in one worker process and PyTorch in another, both kept alive
for a cell, and each round runs one step of every engine in turn (rotating order). Load from other processes on
a shared machine then falls on all engines alike, and each ratio is the median over rounds of the ratio of two
step times measured seconds apart. Process-level settings (threads) are therefore the same for every MXNet
engine in a run: ``--threads N`` for all engines, else :func:`resnet_toolkit.runtime.configure` for MXNet and
PyTorch's own default. Output: a Markdown table (img/s, ratios, p50/p90 step latency in ms) and ``--json``.

    .venv/bin/python bench/throughput.py --models cifar_resnet20_v2 --torch-python /tmp/ptv/bin/python
    .venv/bin/python bench/throughput.py --models resnet50_v2 --batches 1 8 --what infer --threads 1
    .venv/bin/python bench/throughput.py --models resnet50_v1 resnext50_32x4d --torch-python /tmp/ptv/bin/python
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
ENGINES = ("module", "gluon", "gluoncv", "torch")
OURS = ("module", "gluon")
VARIANTS = ("base", "fast")
NAG = {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}  # train_resnet.py's optimizer settings


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


def _build_module(model: str, batch: int, variant: str, what: str):
    import mxnet as mx

    from resnet_toolkit import fastpath
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = _mx_data(batch, shape, classes)
    dbatch = mx.io.DataBatch([data], [label])
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if what == "train":
        if variant == "fast":
            sym = fastpath.training_graph(sym)[0]
        mod = mx.mod.Module(sym, context=mx.cpu())
        mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
        mod.init_params(init)
        mod.init_optimizer(kvstore="local", optimizer="nag",
                           optimizer_params={**NAG, "rescale_grad": 1.0 / batch})

        def step():
            mod.forward_backward(dbatch)
            mod.update()
            mx.nd.waitall()
        return step
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    mod.init_params(init)
    arg_params, aux_params = mod.get_params()
    if variant == "fast":
        model_obj = fastpath.InferenceModel(sym, arg_params, aux_params, data.shape)

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

TORCH_BUILDER = r"""
import importlib.util, json, os, sys, time
import torch, torch.nn.functional as F
spec = json.loads(sys.argv[1])
if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
classes, batch = spec["classes"], spec["batch"]
if spec["v1"]:
    units, groups, width = spec["v1"]
    net = V1ResNet(units, groups, width, classes)
else:
    loader = importlib.util.spec_from_file_location("peer_torch", spec["peer"])
    peer = importlib.util.module_from_spec(loader); loader.loader.exec_module(peer)
    arch = {"resnet50_v2": (peer.Bottleneck, [3, 4, 6, 3], [64, 256, 512, 1024, 2048], True),
            "resnet101_v2": (peer.Bottleneck, [3, 4, 23, 3], [64, 256, 512, 1024, 2048], True),
            "cifar_resnet20_v2": (peer.Basic, [3, 3, 3], [16, 16, 32, 64], False),
            "cifar_resnet56_v2": (peer.Basic, [9, 9, 9], [16, 16, 32, 64], False),
            "cifar_resnet164_v2": (peer.Bottleneck, [18, 18, 18], [16, 64, 128, 256], False)}[spec["model"]]
    block, units, filters, imagenet = arch
    net = peer.PreActResNet(block, units, filters, classes, imagenet)
mf = torch.channels_last if spec["channels_last"] else torch.contiguous_format
net = net.to(memory_format=mf)
x = torch.rand([batch] + spec["shape"]).to(memory_format=mf) * 255
y = torch.arange(batch) % classes
if spec["what"] == "train":
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    def step():
        opt.zero_grad(set_to_none=True); loss = F.cross_entropy(net(x), y); loss.backward(); opt.step()
else:
    net.eval()
    def step():
        with torch.inference_mode():
            net(x)
serve({"torch/-": step})
"""

BUILDERS = {"module": _build_module, "gluon": _build_gluon, "gluoncv": _build_gluoncv}


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
    steps = {}
    for key in spec["keys"]:
        engine, variant = key.split("/")
        steps[key] = BUILDERS[engine](spec["model"], spec["batch"], variant, spec["what"])
    serve(steps)
    return 0


# ---------------------------------------------------------------- orchestration

class Server:
    """One step-server subprocess and its keys (``engine/variant``)."""

    def __init__(self, cmd: list[str], keys: list[str], env: dict):
        self.keys = keys
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True, env=env)
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
    keys = [f"{e}/{v}" for e in args.engines if e in BUILDERS for v in (args.variants if e in OURS else ["-"])]
    servers = []
    if keys:
        spec = {"model": model, "batch": batch, "what": what, "keys": keys, "configure": not args.threads}
        cmd = [sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(spec)]
        servers.append(Server(cmd, keys, env))
    if "torch" in args.engines and args.torch_python:
        if model not in TORCH_V2 and model not in TORCH_V1_ARCH:
            print(f"{model}: no PyTorch definition here; timed without the torch column", file=sys.stderr)
            return servers
        shape, classes = model_shape(model)
        spec = {"peer": str(PEERS / "peer_torch.py"), "model": model, "batch": batch, "what": what,
                "shape": list(shape), "classes": classes, "channels_last": not args.torch_nchw,
                "v1": TORCH_V1_ARCH.get(model)}
        code = inspect.getsource(serve) + TORCH_V1 + TORCH_BUILDER
        try:
            servers.append(Server([args.torch_python, "-c", code, json.dumps(spec)], ["torch/-"], env))
        except RuntimeError:
            for srv in servers:  # the MXNet worker already started
                srv.close()
            raise
    return servers


def time_cell(model: str, batch: int, what: str, args: argparse.Namespace, env: dict,
              start=None) -> dict[str, list[float]]:
    """Per key, the wall time of every timed step, interleaved: each round runs one step of every engine, in a
    rotating order, so load from other processes falls on all of them alike. ``start`` makes the step servers
    (default :func:`start_servers`; bench/precision.py passes its own)."""
    servers = (start or start_servers)(model, batch, what, args, env)
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


def ratios(raw: dict) -> dict:
    """Ours (each engine/variant) / each peer and / our own base, in img/s: the median over rounds of the ratio of
    the two step times within a round. Keys: ``model|batch|what|engine/variant|peer``."""
    out = {}
    for (model, batch, what), cells in raw.items():
        for ours in [f"{e}/{v}" for e in OURS for v in VARIANTS]:
            peers = ["gluoncv/-", "torch/-"] + ([f"{ours.split('/')[0]}/base"] if ours.endswith("/fast") else [])
            for peer in peers:
                if ours in cells and peer in cells:
                    out[f"{model}|{batch}|{what}|{ours}|{peer.removesuffix('/-')}"] = round(statistics.median(
                        tp / to for to, tp in zip(cells[ours], cells[peer])), 3)
    return out


def format_table(rows: dict, ratio: dict) -> str:
    """Markdown table: one line per (model, batch, what): img/s per engine, the best of ours, its ratios."""
    cols = [f"{e}/{v}" for e in OURS for v in VARIANTS] + ["gluoncv/-", "torch/-"]
    head = ["model", "batch", "what"] + [c.replace("/-", "") for c in cols] + [
        "best ours", "÷ own base", "÷ gluoncv", "÷ torch", "p50/p90 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, batch, what), cells in rows.items():
        ours = [c for c in cols[:4] if c in cells and c.endswith("/fast")] or [c for c in cols[:4] if c in cells]
        best = max(ours, key=lambda c: cells[c]["img_s"]) if ours else None
        vals = [f"{cells[c]['img_s']:.2f}" if c in cells else "–" for c in cols]
        key = f"{model}|{batch}|{what}|{best}|"
        own = f"{best.split('/')[0]}/base" if best else ""
        rat = [f"{ratio[key + p]:.2f}" if key + p in ratio else "–" for p in (own, "gluoncv", "torch")]
        lat = f"{cells[best]['p50_ms']:.1f}/{cells[best]['p90_ms']:.1f}" if best else "–"
        lines.append("| " + " | ".join([model, str(batch), what] + vals + [best or "–"] + rat + [lat]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS),
                   help=f"model names (symbols.model_names(); default: the five v2 ones; the baselines' cells: "
                        f"{' '.join(FAMILY_MODELS)})")
    p.add_argument("--batches", nargs="+", type=int, default=None,
                   help="batch sizes (default: 128 for cifar, 1 8 32 for imagenet)")
    p.add_argument("--what", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per engine and cell (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per engine and cell")
    p.add_argument("--min-steps", type=int, default=3, help="at least this many rounds")
    p.add_argument("--max-steps", type=int, default=200, help="at most this many rounds")
    p.add_argument("--torch-python", default=None, help="python of a venv with torch (runs peer_torch.py's nets)")
    p.add_argument("--torch-nchw", action="store_true", help="PyTorch in NCHW instead of channels_last")
    p.add_argument("--threads", type=int, default=None,
                   help="the same OpenMP/intra-op thread count for every engine (default: each one's own: "
                        "MXNet engines resnet_toolkit.runtime's choice, PyTorch all cores)")
    p.add_argument("--json", type=Path, default=None, help="write every cell, step time and ratio here")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="after timing, profile 3 steps of each MXNet engine per op (MXNet profiler) into this "
                        "folder; switches bulk execution off for the whole run")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from resnet_toolkit.errors import UserError
    from symbols import parse_model_name

    args = parse_args(argv)
    if args.serve:
        return run_server(args)
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
    print(format_table(rows, ratio))
    from resnet_toolkit.capability import probe

    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "threads": args.threads,
              "onednn_isa": probe().isa_words(), "loadavg_end": os.getloadavg(),
              "cells": [{"model": m, "batch": b, "what": w, "engine": t, **c}
                        for (m, b, w), cells in rows.items() for t, c in cells.items()],
              "step_seconds": [{"model": m, "batch": b, "what": w, "engine": t, "times": [round(x, 5) for x in ts]}
                               for (m, b, w), cells in raw.items() for t, ts in cells.items()],
              "ratios": ratio}
    if args.json:
        from resnet_toolkit.fileio import atomic_write_text
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    else:
        print(json.dumps(ratio))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from resnet_toolkit.errors import run_cli
    run_cli(main)
