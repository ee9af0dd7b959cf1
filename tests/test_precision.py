"""resnet_toolkit.precision: the low-precision graph keeps softmax and every weight in float32 (and BN too under the
'fp32-bn' policy), trains like float32 for a few steps under both policies, saves float32 checkpoints, and
--precision-policy reaches the graph each engine binds; float16 is refused cleanly where it cannot run; the loss
scaler is exact."""
from __future__ import annotations

import math

import numpy as np
import pytest
from helpers import ROOT, need_feature

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError

BATCH = 32


def _op_dtypes(sym, **input_types: str) -> dict[str, set[str]]:
    """Operator type -> the dtypes of its nodes' first outputs, from :func:`node_dtypes` and the graph."""
    import json

    from resnet_toolkit.precision import node_dtypes

    dtypes = node_dtypes(sym, **input_types)
    out: dict[str, set[str]] = {}
    for node in json.loads(sym.tojson(remove_amp_cast=False))["nodes"]:
        if node["op"] != "null":
            out.setdefault(node["op"], set()).add(dtypes[f"{node['name']}_output"])
    return out


@pytest.mark.parametrize("fast", [False, True], ids=["plain-graph", "training-graph"])
@pytest.mark.parametrize("dtype", ["bfloat16", "float16"])
def test_low_precision_graph_keeps_bn_softmax_and_weights_float32(dtype, fast):
    """Convolution and FullyConnected compute in the low type; BatchNorm (also fused with ReLU), ReLU, the sums,
    pooling and the softmax in float32; every parameter and auxiliary state is float32 (the master weights)."""
    from resnet_toolkit.fastpath import training_graph
    from resnet_toolkit.precision import mixed_precision_symbol, param_dtypes
    from symbols import get_symbol

    sym = get_symbol(10, 20, "cifar10")
    if fast:
        sym = training_graph(sym)[0]
    mixed = mixed_precision_symbol(sym, dtype)
    ops = _op_dtypes(mixed)
    assert ops["Convolution"] == {dtype} and ops["FullyConnected"] == {dtype}
    bn_ops = {"_contrib_BatchNormWithReLU", "BatchNorm"} if fast else {"BatchNorm", "Activation"}
    for op in bn_ops | {"elemwise_add", "SoftmaxOutput"}:
        assert ops[op] == {"float32"}, op
    assert set(param_dtypes(mixed).values()) == {"float32"}
    assert mixed.list_arguments() == sym.list_arguments()
    assert mixed.list_auxiliary_states() == sym.list_auxiliary_states()
    assert mixed_precision_symbol(sym, "float32") is sym


def test_mxnet_policy_runs_batchnorm_in_bfloat16():
    """The comparison policy (MXNet AMP's own lists) differs exactly there: BN reads and writes bfloat16."""
    from resnet_toolkit.precision import mixed_precision_symbol, param_dtypes
    from symbols import get_symbol

    sym = get_symbol(10, 20, "cifar10")
    ops = _op_dtypes(mixed_precision_symbol(sym, "bfloat16", policy="mxnet"))
    assert "bfloat16" in ops["BatchNorm"] and ops["SoftmaxOutput"] == {"float32"}
    assert set(param_dtypes(mixed_precision_symbol(sym, "bfloat16", policy="mxnet")).values()) == {"float32"}



def test_mxnet_policy_keeps_named_ops_in_float32():
    """``float32_ops`` (the BN-in-float32 diagnostic): those op types read and write float32, the rest as before."""
    from resnet_toolkit.fastpath import training_graph
    from resnet_toolkit.precision import mixed_precision_symbol
    from symbols import get_symbol

    fast = training_graph(get_symbol(10, 20, "cifar10"))[0]
    ops = _op_dtypes(mixed_precision_symbol(fast, "bfloat16", policy="mxnet",
                                            float32_ops=("_contrib_BatchNormWithReLU", "BatchNorm")))
    assert ops["_contrib_BatchNormWithReLU"] == {"float32"} and ops["BatchNorm"] == {"float32"}
    assert ops["Convolution"] == {"bfloat16"}
    ops = _op_dtypes(mixed_precision_symbol(fast, "bfloat16", policy="mxnet", float32_ops=("elemwise_add",)))
    assert ops["elemwise_add"] == {"float32"} and "bfloat16" in ops["_contrib_BatchNormWithReLU"]
    with pytest.raises(ValueError, match="policy 'mxnet' only"):
        mixed_precision_symbol(fast, "bfloat16", policy="fp32-bn", float32_ops=("elemwise_add",))

@pytest.fixture(scope="module")
def digit_batches(tmp_path_factory):
    """4 fixed batches of 32 scikit-learn digits (32x32 RGB, raw 0..255) with their labels."""
    import mxnet as mx

    from resnet_toolkit.datasets import digits_images

    (images, labels), _ = digits_images(seed=0)
    data = np.repeat(images[:4 * BATCH, None], 3, axis=1).astype(np.float32)  # gray -> RGB, NCHW
    return [(mx.nd.array(data[i:i + BATCH]), mx.nd.array(labels[i:i + BATCH])) for i in range(0, 4 * BATCH, BATCH)]


def _module_losses(sym, arg_params, aux_params, batches, steps: int):
    """Cross-entropy (nats) of each of ``steps`` NAG updates (train_resnet.py's settings) cycling over
    ``batches``, and the Module's parameters after them."""
    import mxnet as mx

    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", (BATCH, 3, 32, 32))], label_shapes=[("softmax_label", (BATCH,))])
    mod.init_params(arg_params={k: v.copy() for k, v in arg_params.items()},
                    aux_params={k: v.copy() for k, v in aux_params.items()})
    mod.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4,
                                                          "rescale_grad": 1.0 / BATCH})
    losses = []
    for step in range(steps):
        data, label = batches[step % len(batches)]
        mod.forward_backward(mx.io.DataBatch([data], [label]))
        probs = mod.get_outputs()[0].asnumpy()
        losses.append(float(-np.log(probs[np.arange(BATCH), label.asnumpy().astype(int)]).mean()))
        mod.update()
    mx.nd.waitall()
    return losses, mod.get_params()


# The bound for 16 steps (measured on this CPU: max |bf16 - fp32| 0.056 nats over the 16 losses, 0.0003 at the
# first step, which is a forward pass with equal weights). bfloat16 keeps 8 significant bits (relative rounding
# 2**-9 per conv input), so the first loss agrees to ~1e-3; after that the two runs follow different rounding and
# drift apart like two float32 runs with different seeds would, never by whole nats.
FIRST_STEP_TOL = 0.01
RUN_TOL = 0.2


@pytest.mark.parametrize("policy", ["fp32-bn", "mxnet"])
def test_bfloat16_training_moves_the_loss_like_float32(digit_batches, policy):
    """16 Module updates of ResNet-8 on real digits from the same weights, under each policy: the same first
    loss within 0.01 nats, every loss within 0.2 nats of float32's, both fall by more than a fifth, and the
    parameters come back float32 (a checkpoint of a bfloat16 run is a float32 checkpoint)."""
    need_feature("bfloat16")
    from resnet_toolkit.fastpath import training_graph
    from resnet_toolkit.precision import float32_params, mixed_precision_symbol
    from resnet_toolkit.weights import init_params
    from symbols import get_symbol

    sym = training_graph(get_symbol(10, 8, "cifar10"))[0]
    arg_params, aux_params = init_params(sym, (BATCH, 3, 32, 32), seed=0)
    fp32, _ = _module_losses(sym, arg_params, aux_params, digit_batches, 16)
    bf16, (args16, aux16) = _module_losses(mixed_precision_symbol(sym, "bfloat16", policy=policy), arg_params,
                                           aux_params, digit_batches, 16)
    assert abs(bf16[0] - fp32[0]) < FIRST_STEP_TOL
    assert max(abs(a - b) for a, b in zip(fp32, bf16)) < RUN_TOL
    for losses in (fp32, bf16):
        assert np.mean(losses[-4:]) < 0.8 * np.mean(losses[:4]), losses  # measured 0.71 (fp32), 0.69 (bf16)
    assert {np.dtype(v.dtype) for v in {**args16, **aux16}.values()} == {np.dtype("float32")}
    assert float32_params(args16)["conv0_weight"] is args16["conv0_weight"]  # already float32: untouched
    assert not np.array_equal(args16["conv0_weight"].asnumpy(), arg_params["conv0_weight"].asnumpy())


def test_bfloat16_gluon_block_equals_module(digit_batches):
    """The Gluon engine's bfloat16 block (shared float32 Parameters, float32 logits) gives the Module path's first
    loss, and a Trainer step through it changes the net's own float32 weights."""
    need_feature("bfloat16")
    import mxnet as mx
    from mxnet import autograd, gluon

    from resnet_toolkit.fastpath import training_graph
    from resnet_toolkit.precision import mixed_precision_block, mixed_precision_symbol
    from resnet_toolkit.weights import init_params
    from symbols import get_net, get_symbol
    from symbols.gluon_resnet_v2 import load_symbol_params

    sym = get_symbol(10, 8, "cifar10")
    arg_params, aux_params = init_params(sym, (BATCH, 3, 32, 32), seed=0)
    module_loss, _ = _module_losses(mixed_precision_symbol(training_graph(sym)[0], "bfloat16"), arg_params,
                                    aux_params, digit_batches, 1)
    net = get_net(10, 8, "cifar10")
    load_symbol_params(net, arg_params, aux_params)
    block = mixed_precision_block(net, (BATCH, 3, 32, 32), "bfloat16")
    trainer = gluon.Trainer(net.collect_params(), "nag", {"learning_rate": 0.1, "momentum": 0.9})
    data, label = digit_batches[0]
    with autograd.record():
        logits = block(data)
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(logits, label)
    loss.backward()
    trainer.step(BATCH)
    assert logits.dtype == np.float32
    assert float(loss.mean().asscalar()) == pytest.approx(module_loss[0], abs=1e-4)
    weight = net.collect_params()["conv0_weight"].data()
    assert weight.dtype == np.float32
    assert not np.array_equal(weight.asnumpy(), arg_params["conv0_weight"].asnumpy())
    mx.nd.waitall()


def test_float32_params_casts_bfloat16_back():
    import mxnet as mx
    from mxnet.contrib.amp.amp import bfloat16

    from resnet_toolkit.precision import float32_params

    x = mx.nd.array([[1.0, -2.5, 3.140625]])
    low = {"a": mx.nd.amp_cast(x, dtype=bfloat16), "b": x.astype("float16"), "c": x}
    out = float32_params(low)
    assert all(v.dtype == np.float32 for v in out.values())
    np.testing.assert_array_equal(out["a"].asnumpy(), x.asnumpy())  # all three are exact in bfloat16
    assert out["c"] is x


# ------------------------------------------------------------------------------------------- refusals
@pytest.mark.parametrize("dtype, gpus, api, kv, message", [
    ("float16", 0, "gluon", "local", "--dtype float16 needs a GPU (--gpus 0[,1,...]): MXNet 1.9.1 has float16 "
                                     "convolutions only with CUDA; on a CPU use --dtype bfloat16"),
    ("float16", 1, "module", "local", "--dtype float16 trains with --api gluon only"),
    ("float16", 2, "gluon", "dist_sync", "--dtype float16 cannot train with --kv-store dist_sync"),
    ("bfloat16", 1, "module", "device", "--dtype bfloat16 trains on CPUs only"),
    ("int8", 0, "module", "local", "--dtype must be one of float32, bfloat16, float16, got 'int8'"),
])
def test_check_dtype_refuses_with_one_line(dtype, gpus, api, kv, message):
    from resnet_toolkit.precision import check_dtype

    with pytest.raises(UserError) as exc:
        check_dtype(dtype, gpus, api, kv)
    assert str(exc.value).startswith(message) and "\n" not in str(exc.value)


def test_check_dtype_accepts_what_runs():
    from resnet_toolkit.precision import check_dtype

    check_dtype("float32", 0)
    check_dtype("float16", 2, "gluon", "device", mkldnn=False)
    with pytest.raises(UserError, match="needs MXNet built with oneDNN"):
        check_dtype("bfloat16", 0, mkldnn=False)
    need_feature("bfloat16")
    check_dtype("bfloat16", 0, "gluon", "local")  # this CPU's oneDNN has bfloat16 kernels


def test_bfloat16_refused_in_one_line_where_onednn_has_no_kernels(tmp_path):
    """On an AVX2 CPU oneDNN 2.4 has no bfloat16 convolution (run here with DNNL_MAX_CPU_ISA=AVX2, which makes an
    AVX-512 machine run an AVX2 one's kernels, and is a no-op on an AVX2 machine): train_resnet.py --dtype bfloat16
    says so in one line naming the ISA, exits 2 and writes nothing."""
    import os
    import subprocess
    import sys

    from resnet_toolkit.capability import CACHE_ENV

    env = {k: v for k, v in os.environ.items() if k != CACHE_ENV}
    env["DNNL_MAX_CPU_ISA"] = "AVX2"
    out = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), "--data-type", "digits", "--data-dir",
                          str(tmp_path / "data"), "--dtype", "bfloat16", "--model-prefix", str(tmp_path / "m" / "r"),
                          "--log-file", str(tmp_path / "m" / "train.log")],
                         capture_output=True, text=True, timeout=300, env=env, cwd=tmp_path)
    assert out.returncode == 2, out.stderr
    assert out.stderr.strip() == (
        "train_resnet.py: error: --dtype bfloat16 is not available on this CPU: oneDNN runs Intel AVX2 (capped by "
        "DNNL_MAX_CPU_ISA=AVX2), and --dtype bfloat16 needs oneDNN's bfloat16 kernels, which need AVX-512 (fast "
        "only with AVX512-BF16 or AMX) (python -m resnet_toolkit.sysinfo shows what this machine can do)")
    assert list(tmp_path.iterdir()) == []


def test_float16_on_this_cpu_is_what_the_refusal_says():
    """The reason for the refusal, checked: MXNet 1.9.1's CPU build cannot run a float16 convolution."""
    import mxnet as mx

    x = mx.nd.ones((1, 3, 8, 8), dtype="float16")
    w = mx.nd.ones((4, 3, 3, 3), dtype="float16")
    with pytest.raises(mx.base.MXNetError):
        mx.nd.Convolution(x, w, kernel=(3, 3), num_filter=4, no_bias=True).wait_to_read()


def test_default_policy_is_mxnet_lists_for_bfloat16_only():
    """bfloat16 defaults to MXNet's lists (BN in bfloat16: 1.5-1.7x float32 with AVX512-BF16, where float32 BN is
    0.5x); float16 keeps BN in float32; an explicit --precision-policy wins; an unknown one is one clear line."""
    from resnet_toolkit.precision import default_policy

    assert default_policy("bfloat16") == "mxnet"
    assert default_policy("float16") == default_policy("float32") == "fp32-bn"
    assert default_policy("bfloat16", "fp32-bn") == "fp32-bn" and default_policy("float16", "mxnet") == "mxnet"
    with pytest.raises(UserError, match="--precision-policy must be one of fp32-bn, mxnet"):
        default_policy("bfloat16", "fp16-bn")


@pytest.mark.parametrize("flags, bn_dtype", [([], "bfloat16"), (["--precision-policy", "fp32-bn"], "float32")],
                         ids=["default", "fp32-bn"])
@pytest.mark.parametrize("api", ["module", "gluon"])
def test_precision_policy_flag_reaches_the_bound_graph(flags, bn_dtype, api):
    """train_resnet.py's flags -> train_setup -> the graph each engine binds: the fused BN+ReLU of the training
    graph reads and writes ``bn_dtype``; the convolutions are bfloat16 and the weights float32 either way."""
    need_feature("bfloat16")
    import mxnet as mx

    from resnet_toolkit.cluster import Cluster
    from resnet_toolkit.engines import GluonEngine, ModuleEngine
    from resnet_toolkit.fit import train_setup, training_symbol
    from resnet_toolkit.precision import param_dtypes
    from resnet_toolkit.runplan import network_spec, target_recipe
    from resnet_toolkit.train_args import build_parser, resolve_args
    from resnet_toolkit.weights import init_params
    from symbols import get_net

    cfg = resolve_args(build_parser().parse_args(["--data-type", "cifar10", "--depth", "8", "--batch-size", "8",
                                                  "--dtype", "bfloat16", "--api", api, *flags]))
    shape = (8, 3, 32, 32)
    sym = training_symbol(cfg, network_spec(cfg), 8)
    arg_params, aux_params = init_params(sym, shape, 0)
    setup = train_setup(cfg, target_recipe(cfg), sym.list_arguments())
    engine_args = ([mx.cpu()], Cluster(None), shape, arg_params, aux_params, "nag", {"learning_rate": 0.1})
    if api == "gluon":
        engine = GluonEngine(get_net(10, 8, "cifar10"), *engine_args, training_graph=True, recipe=setup)
        engine.forward_backward(mx.nd.zeros(shape), mx.nd.zeros(8))
        bound = engine.block._cached_graph[1]
        inputs = {bound.list_inputs()[0]: "float32"}  # the traced block's data variable
    else:
        engine = ModuleEngine(sym, *engine_args, training_graph=True, recipe=setup)
        bound = engine.mod.symbol
        inputs = {"data": "float32", "softmax_label": "float32"}
    ops = _op_dtypes(bound, **inputs)
    assert ops["_contrib_BatchNormWithReLU"] == {bn_dtype}
    assert ops["Convolution"] == {"bfloat16"}
    assert set(param_dtypes(bound, **inputs).values()) == {"float32"}


def test_describe_names_the_emulation():
    from resnet_toolkit.precision import describe, native_bf16

    assert describe("float32") == "precision: float32"
    assert "emulates bfloat16" in describe("bfloat16", flags={"avx512f", "avx512_vnni"})
    assert "emulates" not in describe("bfloat16", flags={"avx512f", "avx512_bf16"})
    assert native_bf16({"amx_bf16"}) and not native_bf16(set())
    assert describe("float16").endswith("dynamic loss scaling")
    assert "BatchNorm, ReLU and sums (MXNet AMP's lists" in describe("bfloat16", flags={"avx512_bf16"})
    assert "(--precision-policy fp32-bn); BatchNorm" in describe("bfloat16", {"avx512_bf16"}, policy="fp32-bn")
    assert "biases the gradient" in describe("bfloat16", {"avx512_bf16"})  # the measured long-run cost, logged
    assert "biases" not in describe("bfloat16", {"avx512_bf16"}, policy="fp32-bn")


# ------------------------------------------------------------------------------------------- loss scaling
def _gluon_grads(scaler):
    """Gradients of ResNet-8 (float32) for one batch, back-propagated through ``scaler`` (or plainly)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from resnet_toolkit.lossscale import backward, gradients, ready_to_update
    from symbols import get_net

    mx.random.seed(4)
    net = get_net(10, 8, "cifar10")
    net.initialize(mx.init.Xavier())
    net.hybridize()
    data = mx.nd.random.uniform(0, 255, (8, 3, 32, 32))
    label = mx.nd.array(np.arange(8) % 10)
    with autograd.record():
        loss = gluon.loss.SoftmaxCrossEntropyLoss()(net(data), label)
    backward([loss], scaler)
    ok = ready_to_update(scaler, net.collect_params())
    return ok, [g.asnumpy() for g in gradients(net.collect_params())]


def test_loss_scaling_by_a_power_of_two_gives_the_same_gradients():
    """Scaling the loss's gradient by 2**16 and the gradients back by 2**-16 is exact in binary floating point:
    the update sees bit-identical gradients (float32 here; on a GPU the float16 activations are what it saves)."""
    from resnet_toolkit.lossscale import DynamicLossScaler

    plain_ok, plain = _gluon_grads(None)
    scaler = DynamicLossScaler()
    scaled_ok, scaled = _gluon_grads(scaler)
    assert plain_ok and scaled_ok and scaler.scale == 2.0 ** 16 and scaler.clean_steps == 1
    for a, b in zip(plain, scaled):
        np.testing.assert_array_equal(a, b)
    assert any(np.abs(g).max() > 0 for g in plain)


def test_loss_scaler_skips_an_overflowing_step_and_halves():
    """A scale beyond float32's range (2**140): the gradients overflow, the step is skipped, the scale halves, the
    gradients are left as they are (not unscaled)."""
    from resnet_toolkit.lossscale import DynamicLossScaler

    scaler = DynamicLossScaler(init_scale=2.0 ** 140)
    ok, grads = _gluon_grads(scaler)
    assert not ok and scaler.scale == 2.0 ** 139 and scaler.skipped == 1
    assert any(not np.isfinite(g).all() for g in grads)


def test_loss_scaler_schedule():
    from resnet_toolkit.lossscale import DynamicLossScaler, make_loss_scaler

    scaler = DynamicLossScaler(init_scale=8.0, growth_interval=3, max_scale=32.0)
    for overflow, expected in [(False, 8), (False, 8), (False, 16), (True, 8), (False, 8), (False, 8),
                               (False, 16), (False, 16), (False, 16), (False, 32), (False, 32), (False, 32),
                               (False, 32)]:
        scaler.update(overflow)
        assert scaler.scale == expected
    scaler = DynamicLossScaler(init_scale=2.0, min_scale=1.0)
    for _ in range(3):
        scaler.update(True)
    assert scaler.scale == 1.0 and scaler.skipped == 3
    assert make_loss_scaler("float16").scale == 2.0 ** 16
    assert make_loss_scaler("bfloat16") is None and make_loss_scaler("float32") is None
    assert math.log2(DynamicLossScaler().max_scale) == 24


# ------------------------------------------------------------------------------------------- benchmark arithmetic
def test_precision_benchmark_ratios(monkeypatch):
    """bench/throughput.py --precision: each low-precision engine against ours fp32 and the peers, as medians of
    per-round ratios (round 2 disturbed); torch's low precision only against torch fp32."""
    from bench import throughput as bench

    times = {"ours/fp32": [1.0, 5.0, 1.0], "ours/int8": [0.4, 4.0, 0.5], "gluoncv/fp32": [1.2, 6.0, 1.2],
             "torch/fp32": [2.0, 2.0, 2.0], "torch/int8": [1.0, 1.0, 1.0]}
    r = bench.precision_ratios(times, "infer")
    assert r["ours/int8|ours/fp32"] == 2.0
    assert r["ours/int8|gluoncv/fp32"] == 2.4
    assert r["ours/int8|torch/fp32"] == 4.0 and r["ours/int8|torch/int8"] == 2.0
    assert r["torch/int8|torch/fp32"] == 2.0 and "torch/int8|ours/fp32" not in r
    from resnet_toolkit import capability

    class Caps:  # the cells follow what oneDNN runs: bfloat16 cells only where it has bfloat16 kernels
        def __init__(self, bf16):
            self.bf16 = bf16

        def supports(self, what):
            return what == "int8" or self.bf16

    monkeypatch.setattr(capability, "probe", lambda: Caps(True))
    assert bench.precision_mx_keys("train", ["ours"]) == ["ours/fp32", "ours/bf16", "ours/bf16-mxbn"]
    monkeypatch.setattr(capability, "probe", lambda: Caps(False))  # an AVX2-only CPU
    assert bench.precision_mx_keys("train", ["ours"]) == ["ours/fp32"]
    assert bench.precision_mx_keys("infer", ["ours"]) == ["ours/fp32", "ours/int8"]
    monkeypatch.undo()
    assert bench.precision_torch_keys("infer") == ["torch/fp32", "torch/int8", "torch/compile"]
    assert bench.precision_torch_keys("infer", torchao=True)[-1] == "torch/int8-compile"
    # PyTorch's compiled INT8: against its own float32 (eager and compiled), and ours against it
    times.update({"torch/compile": [1.0, 1.0, 1.0], "torch/int8-compile": [0.5, 0.25, 0.5]})
    r = bench.precision_ratios(times, "infer")
    assert r["torch/int8-compile|torch/compile"] == 2.0 and r["torch/int8-compile|torch/fp32"] == 4.0
    assert r["ours/int8|torch/int8-compile"] == 1.0 and "torch/int8-compile|ours/fp32" not in r
    # the ONNX engines' INT8 (tools/quantize.py's .onnx file): against the references, and ours against them
    times.update({"openvino/int8": [0.2, 0.2, 0.25], "openvino/fp32": [0.8, 0.8, 0.8]})
    r = bench.precision_ratios(times, "infer")
    assert r["openvino/int8|ours/fp32"] == 5.0 and r["ours/int8|openvino/int8"] == 0.5
    assert "openvino/fp32|ours/fp32" not in r and "openvino/int8|openvino/int8" not in r
    assert "openvino/int8" not in bench.precision_mx_keys("train", ["ours", "openvino"])
    table = bench.format_precision_table({("m", 1, "infer"): {k: bench.summarize(v, 1) for k, v in times.items()}},
                                         {("m", 1, "infer"): r})
    head, _, *rows = table.splitlines()[2:]
    cols = [c.strip() for c in head.strip("|").split("|")]
    ours = dict(zip(cols, [c.strip() for c in rows[1].strip("|").split("|")]))
    assert ours["engine"] == "ours/int8" and ours["÷ openvino int8"] == "0.50" and ours["÷ ours fp32"] == "2.00"


def test_kernel_tally_reads_onednn_verbose_lines():
    from bench import throughput as bench

    lines = [  # as oneDNN 2.4 prints them (MXNet 1.9.1, DNNL_VERBOSE=1)
        "dnnl_verbose,info,cpu,isa:Intel AVX-512 with Intel DL Boost",
        "dnnl_verbose,exec,cpu,convolution,jit_bf16:avx512_core,forward_training,src_bf16::blocked:aBcd16b:f0 "
        "wei_bf16::blocked:ABcd16b16a:f0 dst_bf16::blocked:aBcd16b:f0,,alg:convolution_direct,mb16_ic16oc16,1.5",
        "dnnl_verbose,exec,cpu,convolution,jit_bf16:avx512_core,forward_training,src_bf16::blocked:aBcd16b:f0 "
        "wei_bf16::blocked:ABcd16b16a:f0 dst_bf16::blocked:aBcd16b:f0,,alg:convolution_direct,mb16_ic16oc16,0.5",
        "dnnl_verbose,exec,cpu,convolution,brgconv:avx512_core_vnni,forward_inference,src_u8::blocked:acdb:f0 "
        "wei_s8:p:blocked:AcdB16b64a4b:f0 dst_s8::blocked:acdb:f0,,,mb1_ic16oc16,0.25",
    ]
    tally = bench.kernel_tally(lines)
    assert tally == {("convolution", "jit_bf16:avx512_core", "forward_training", "bf16"): [2, 2.0],
                     ("convolution", "brgconv:avx512_core_vnni", "forward_inference", "u8"): [1, 0.25]}


def test_adjacent_low_precision_ops_share_one_cast():
    """conv -> conv (and conv -> FC) with nothing between: the second reads the first's bfloat16 output directly,
    no float32 round trip; only the final output is cast back."""
    import mxnet as mx

    from resnet_toolkit.precision import mixed_precision_symbol, node_dtypes

    data = mx.sym.var("data")
    c1 = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), name="c1")
    c2 = mx.sym.Convolution(c1, num_filter=4, kernel=(3, 3), pad=(1, 1), name="c2")
    both = mx.sym.Group([mx.sym.FullyConnected(c2, num_hidden=3, name="fc"), mx.sym.relu(c1, name="r")])
    mixed = mixed_precision_symbol(both, "bfloat16", data_names=("data",))
    casts = [n for n in mixed.get_internals().list_outputs() if "amp_cast" in n]
    assert sorted(casts) == sorted([
        "data_amp_cast_bfloat16_output", "c1_weight_amp_cast_bfloat16_output", "c1_bias_amp_cast_bfloat16_output",
        "c2_weight_amp_cast_bfloat16_output", "c2_bias_amp_cast_bfloat16_output", "fc_weight_amp_cast_bfloat16_output",
        "fc_bias_amp_cast_bfloat16_output", "c1_output_amp_cast_float32_output", "fc_output_amp_cast_float32_output"])
    dtypes = node_dtypes(mixed, data="float32")
    assert dtypes["r_output"] == "float32" and dtypes["c2_output"] == "bfloat16"
    from resnet_toolkit.capability import probe

    if probe().supports("bfloat16"):  # running it needs oneDNN's bfloat16 kernels (AVX-512)
        out = mixed.bind(mx.cpu(), {n: mx.nd.ones(s) for n, s in zip(mixed.list_arguments(), mixed.infer_shape(
            data=(1, 2, 5, 5))[0])}).forward()
        assert [o.dtype for o in out] == [np.float32, np.float32]
        assert all(np.isfinite(o.asnumpy()).all() for o in out)  # read: a failed kernel raises here, not later
