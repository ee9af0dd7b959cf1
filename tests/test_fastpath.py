"""Every speed-up in resnet_toolkit/fastpath.py and resnet_toolkit/runtime.py leaves results unchanged.

Inference rewrites (BN folding, MKLDNN fusion, the fused Gluon block) are compared with the plain graph on real
images (CIFAR-10 JPEGs from the tarball, the photos) with BN statistics and gammas that are not the identity, so a
wrong fold cannot pass. Training rewrites (mean pooling, BN+ReLU) are compared after a real NAG step: outputs,
every gradient, the updated weights and the updated running statistics. Tolerances: 1e-4 relative to the largest
magnitude (float32 reassociation inside fused kernels); the BN+ReLU op alone is bit-exact.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest
from helpers import assert_gluon_training_block_same_step, close

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit import fastpath, runtime

mx = pytest.importorskip("mxnet")


def cifar_images(tar_path, n: int) -> np.ndarray:
    """The first ``n`` JPEGs of the CIFAR-10 tarball as float32 NCHW RGB 0..255."""
    out = []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith((".jpg", ".png")):
                data = tar.extractfile(member).read()
                img = mx.image.imdecode(data, to_rgb=True).asnumpy()
                out.append(img.transpose(2, 0, 1).astype(np.float32))
                if len(out) == n:
                    break
    return np.stack(out)


def photo_batch(photos_dir, size: int) -> np.ndarray:
    """Every photo, shorter side to ``size`` and center-cropped, as float32 NCHW RGB 0..255."""
    out = []
    for path in sorted(photos_dir.iterdir()):
        img = mx.image.imdecode(path.read_bytes(), to_rgb=True)
        img, _ = mx.image.center_crop(mx.image.resize_short(img, size), (size, size))
        out.append(img.asnumpy().transpose(2, 0, 1).astype(np.float32))
    return np.stack(out)


def random_params(sym, data_shape: tuple, seed: int) -> tuple[dict, dict]:
    """He-normal weights, and BN gammas/betas/means/variances far from the identity, fixed by ``seed``."""
    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape)
    args, aux = {}, {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            value = rng.normal(0, np.sqrt(2.0 / fan_in), shape)
        elif name.endswith("_gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        else:
            value = rng.normal(0, 0.2, shape)
        args[name] = mx.nd.array(value.astype(np.float32))
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        value = rng.uniform(0.5, 2.0, shape) if name.endswith("_var") else rng.normal(0, 0.3, shape)
        aux[name] = mx.nd.array(value.astype(np.float32))
    # bn_data sees raw 0..255 pixels: give it statistics of that scale so activations stay in range
    aux["bn_data_moving_mean"][:] = 120.0
    aux["bn_data_moving_var"][:] = 4000.0
    return args, aux


def logits_symbol(sym):
    return sym.get_internals()["fc1_output"]


def plain_forward(sym, args: dict, aux: dict, data: np.ndarray) -> np.ndarray:
    """The reference: the graph as written, executed op by op (no subgraph backend)."""
    exe = sym.bind(mx.cpu(), args={**args, "data": mx.nd.array(data)}, aux_states=dict(aux), grad_req="null")
    return exe.forward(is_train=False)[0].asnumpy()


@pytest.fixture(autouse=True)
def _no_subgraph_backend(monkeypatch):
    # the reference path must be the unfused graph; fastpath applies MKLDNN fusion explicitly
    monkeypatch.setenv("MXNET_SUBGRAPH_BACKEND", "NONE")


# ------------------------------------------------------------------------------------------- inference

def test_fold_conv_bn_cifar_basic_units_on_real_images(cifar_tar):
    from symbols import get_symbol

    data = cifar_images(cifar_tar, 16)
    sym = logits_symbol(get_symbol(10, 20, "cifar10"))
    args, aux = random_params(sym, data.shape, seed=1)
    folded_sym, fargs, faux, folded = fastpath.fold_conv_bn(sym, args, aux)
    # basic unit: bn2 follows conv1; bn1 follows a sum, bn_data the input: neither folds. The one exception:
    # conv0 feeds only stage1_unit1_bn1 (that unit's projection shortcut reads act1, not conv0's output)
    expected = ["stage1_unit1_bn1"] + [f"stage{s}_unit{u}_bn2" for s in (1, 2, 3) for u in (1, 2, 3)]
    assert sorted(folded) == sorted(expected)
    assert not any(op["op"] == "BatchNorm" and op["name"] in folded for op in json.loads(folded_sym.tojson())["nodes"])
    assert "stage2_unit3_conv1_bias" in fargs and "stage2_unit3_bn2_gamma" not in fargs
    assert "stage2_unit3_bn2_moving_var" not in faux and "stage2_unit3_bn1_moving_var" in faux
    assert args["stage1_unit1_conv1_weight"].shape == fargs["stage1_unit1_conv1_weight"].shape
    ref = plain_forward(sym, args, aux, data)
    out = plain_forward(folded_sym, fargs, faux, data)
    assert np.abs(ref).max() > 1.0  # a real signal, not saturated or vanished
    assert close(out, ref)
    assert (out.argmax(1) == ref.argmax(1)).all()


def test_fold_conv_bn_imagenet_bottleneck_folds_bn0_bn2_bn3(photos_dir):
    from symbols import get_symbol

    data = photo_batch(photos_dir, 64)  # 64x64 keeps ResNet-50 fast; global pooling takes any size
    sym = logits_symbol(get_symbol(1000, 50, "imagenet"))
    args, aux = random_params(sym, data.shape, seed=2)
    _, fargs, faux, folded = fastpath.fold_conv_bn(sym, args, aux)
    units = [(1, 3), (2, 4), (3, 6), (4, 3)]
    expected = ["bn0"] + [f"stage{s}_unit{u}_bn{k}" for s, n in units for u in range(1, n + 1) for k in (2, 3)]
    assert sorted(folded) == sorted(expected)
    assert close(plain_forward(*fastpath.fold_conv_bn(sym, args, aux)[:3], data), plain_forward(sym, args, aux, data))
    # inputs are not modified
    assert "bn0_gamma" in args and "bn0_moving_mean" in aux


def test_fold_uses_fixed_gamma_as_one():
    # a BN with fix_gamma=True ignores its gamma: the fold must too
    data = mx.sym.var("data")
    conv = mx.sym.Convolution(data, num_filter=4, kernel=(3, 3), pad=(1, 1), no_bias=True, name="c")
    bn = mx.sym.BatchNorm(conv, fix_gamma=True, eps=1e-3, name="b")
    rng = np.random.RandomState(0)
    args = {"c_weight": mx.nd.array(rng.normal(size=(4, 2, 3, 3))), "b_gamma": mx.nd.array([5.0, 6, 7, 8]),
            "b_beta": mx.nd.array(rng.normal(size=4))}
    aux = {"b_moving_mean": mx.nd.array(rng.normal(size=4)), "b_moving_var": mx.nd.array(rng.uniform(1, 2, 4))}
    x = rng.normal(size=(2, 2, 5, 5)).astype(np.float32)
    fsym, fargs, faux, folded = fastpath.fold_conv_bn(bn, args, aux)
    assert folded == ["b"] and fsym.list_arguments() == ["data", "c_weight", "c_bias"] and faux == {}
    assert close(plain_forward(fsym, fargs, faux, x), plain_forward(bn, args, aux, x), 1e-5)


def test_inference_model_equals_checkpoint_forward(cifar_tar):
    from symbols import get_symbol

    data = cifar_images(cifar_tar, 8)
    sym = get_symbol(10, 20, "cifar10")  # the checkpoint's symbol, SoftmaxOutput head
    args, aux = random_params(sym, data.shape, seed=3)
    ref = plain_forward(fastpath.strip_softmax(sym), args, aux, data)
    for kwargs in ({}, {"fold_bn": False}, {"fuse": False}, {"bn_relu": False}):
        model = fastpath.FusedExecutor(sym, args, aux, data.shape, **kwargs)
        out = model.forward(mx.nd.array(data)).asnumpy()
        assert close(out, ref), kwargs
        assert np.allclose(out.sum(1), 1.0, atol=1e-5)  # probabilities, like the checkpoint's softmax
    with pytest.raises(ValueError, match="bound shape"):
        model.forward(mx.nd.zeros((3,) + data.shape[1:]))


def test_gluon_inference_block_equals_net(photos_dir):
    from symbols import get_net, get_symbol
    from symbols.gluon_resnet_v2 import load_symbol_params

    data = mx.nd.array(photo_batch(photos_dir, 64))
    args, aux = random_params(logits_symbol(get_symbol(1000, 18, "imagenet")), data.shape, seed=4)
    net = get_net(1000, 18, "imagenet")
    load_symbol_params(net, args, aux)
    ref = net(data).asnumpy()  # not hybridized: plain imperative ops
    block = fastpath.gluon_inference_block(net, data.shape)
    assert close(block(data).asnumpy(), ref)
    assert close(net(data).asnumpy(), ref)  # the original net is untouched and still works


# ------------------------------------------------------------------------------------------- training

def test_bn_relu_op_is_bit_exact():
    rng = np.random.RandomState(5)
    x, w = mx.nd.array(rng.normal(size=(4, 8, 5, 5))), mx.nd.array(rng.normal(size=(4, 8, 5, 5)))
    gamma0, beta0 = mx.nd.array(rng.uniform(0.5, 1.5, 8)), mx.nd.array(rng.normal(size=8))
    results = []
    for fused in (False, True):
        xs, gamma, beta = x.copy(), gamma0.copy(), beta0.copy()
        for a in (xs, gamma, beta):
            a.attach_grad()
        mean, var = mx.nd.zeros(8), mx.nd.ones(8)
        with mx.autograd.record():
            if fused:
                y = mx.nd.contrib.BatchNormWithReLU(xs, gamma, beta, mean, var, eps=2e-5, fix_gamma=False)
            else:
                y = mx.nd.relu(mx.nd.BatchNorm(xs, gamma, beta, mean, var, eps=2e-5, fix_gamma=False))
            loss = (y * w).sum()
        loss.backward()
        results.append([a.asnumpy() for a in (y, xs.grad, gamma.grad, beta.grad, mean, var)])
    for plain, fused in zip(*results):
        assert np.array_equal(plain, fused)


def _module_step(sym, args: dict, aux: dict, data: np.ndarray, label: np.ndarray):
    """One training step as train_resnet.py's Module path: forward, backward, NAG update. Returns
    (outputs, gradients, updated args, updated aux) as numpy."""
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    mod.init_params(arg_params={k: v.copy() for k, v in args.items()},
                    aux_params={k: v.copy() for k, v in aux.items()})
    mod.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4,
                                                          "rescale_grad": 1.0 / len(label)})
    mod.forward_backward(mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array(label)]))
    out = mod.get_outputs()[0].asnumpy()
    exe = mod._exec_group.execs[0]
    grads = {k: v.asnumpy() for k, v in exe.grad_dict.items() if v is not None and k in args}
    mod.update()
    mx.nd.waitall()  # Module.get_params can read stale aux states while updates are in flight
    new_args, new_aux = mod.get_params()
    return out, grads, {k: v.asnumpy() for k, v in new_args.items()}, {k: v.asnumpy() for k, v in new_aux.items()}


@pytest.mark.parametrize("net_type,depth,size,counts", [
    ("cifar10", 20, 32, {"bn_relu": 19, "mean_pool": 1}),
    ("imagenet", 18, 64, {"bn_relu": 17, "mean_pool": 1}),  # 8 units x 2 + bn1; bn0+relu0 feeds pool0: unfused
])
def test_training_graph_same_step(net_type, depth, size, counts, cifar_tar, photos_dir):
    from symbols import get_symbol

    classes = 10 if net_type == "cifar10" else 1000
    data = cifar_images(cifar_tar, 16) if net_type == "cifar10" else photo_batch(photos_dir, size)
    label = np.arange(len(data)) % classes
    sym = get_symbol(classes, depth, net_type)
    fast, made = fastpath.training_graph(sym)
    assert made == counts
    assert fast.list_arguments() == sym.list_arguments()
    assert fast.list_auxiliary_states() == sym.list_auxiliary_states()
    args, aux = random_params(sym, data.shape, seed=7)
    ref = _module_step(sym, args, aux, data, label)
    got = _module_step(fast, args, aux, data, label)
    assert close(got[0], ref[0])
    assert ref[1].keys() == got[1].keys() and len(ref[1]) == len(args)
    for name in ref[1]:
        assert close(got[1][name], ref[1][name]), name
    for name in args:
        assert close(got[2][name], ref[2][name]), name
        assert not np.array_equal(ref[2][name], args[name].asnumpy()) or name == "bn_data_gamma"  # it moved
    for name in aux:
        assert close(got[3][name], ref[3][name]), name


def test_training_graph_flags_select_rewrites():
    from symbols import get_symbol

    sym = get_symbol(10, 20, "cifar10")
    assert fastpath.training_graph(sym, bn_relu=False)[1] == {"bn_relu": 0, "mean_pool": 1}
    # without the mean rewrite the final bn1+relu1 feeds a Pooling: MXNet 1.9.1 cannot run its backward fused
    assert fastpath.training_graph(sym, mean_pool=False)[1] == {"bn_relu": 18, "mean_pool": 0}


def test_gluon_training_block_same_step(cifar_tar):
    from symbols import get_net

    data, label = mx.nd.array(cifar_images(cifar_tar, 8)), mx.nd.array(np.arange(8) % 10)
    assert_gluon_training_block_same_step(lambda: get_net(10, 20, "cifar10"), data, label)


# ------------------------------------------------------------------------------------------- runtime

def test_configure_keeps_user_settings_and_load_time_ones_after_import(monkeypatch):
    settings = runtime.recommended_settings()
    for key in settings:
        monkeypatch.delenv(key, raising=False)
    monkeypatch.setenv("MXNET_SUBGRAPH_VERBOSE", "1")  # the user's choice wins
    applied = runtime.configure()
    assert os.environ["MXNET_SUBGRAPH_VERBOSE"] == "1" and "MXNET_SUBGRAPH_VERBOSE" not in applied
    # mxnet is already loaded in this process: thread counts would have no effect, so they are left unset
    assert set(applied) == set(settings) - {"MXNET_SUBGRAPH_VERBOSE"} - set(runtime.LOAD_TIME)
    assert all(os.environ[k] == v for k, v in applied.items())
    assert not any(k in os.environ for k in runtime.LOAD_TIME)


def test_omp_threads_all_cores():
    assert runtime.omp_threads(2) == 2
    assert runtime.omp_threads(16) == 16
    assert runtime.omp_threads(0) == 1


STEP_SCRIPT = r"""
import sys, numpy as np
import resnet_toolkit
if sys.argv[1] == "configure":
    from resnet_toolkit import runtime
    applied = runtime.configure({"OMP_NUM_THREADS": str(max(2, runtime.physical_cores()))})  # multi-thread case
    assert "OMP_NUM_THREADS" in applied, applied
import mxnet as mx
from symbols import get_symbol
mx.random.seed(3); np.random.seed(3)
sym = get_symbol(10, 8, "cifar10")
mod = mx.mod.Module(sym, context=mx.cpu())
mod.bind(data_shapes=[("data", (16, 3, 32, 32))], label_shapes=[("softmax_label", (16,))])
mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
mod.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4})
rng = np.random.RandomState(0)
for _ in range(2):
    batch = mx.io.DataBatch([mx.nd.array(rng.uniform(0, 255, (16, 3, 32, 32)))], [mx.nd.array(rng.randint(0, 10, 16))])
    mod.forward_backward(batch); mod.update()
mx.nd.waitall()  # Module.get_params can read stale aux states while updates are in flight
args, aux = mod.get_params()
np.savez(sys.argv[2], **{k: v.asnumpy() for k, v in {**args, **aux}.items()})
"""


def test_runtime_settings_do_not_change_training(tmp_path):
    """Two NAG steps in a fresh process with and without :func:`runtime.configure`: the same parameters."""
    settings = runtime.recommended_settings()
    env = {k: v for k, v in os.environ.items() if k not in settings and k != "MXNET_SUBGRAPH_BACKEND"}
    results = []
    for mode in ("plain", "configure"):
        out = tmp_path / f"{mode}.npz"
        subprocess.run([sys.executable, "-c", STEP_SCRIPT, mode, str(out)], check=True, env=env, timeout=120)
        results.append(np.load(out))
    plain, configured = results
    assert sorted(plain.files) == sorted(configured.files) and len(plain.files) > 20
    for name in plain.files:
        assert close(configured[name], plain[name]), name


def test_photo_batch_reads_real_photos(photos_dir):
    # guards the helper the tests above rely on: real, distinct images, RGB 0..255
    batch = photo_batch(photos_dir, 64)
    assert batch.shape == (3, 3, 64, 64) and 100 < batch.max() <= 255 and batch.min() >= 0
    assert not np.array_equal(batch[0], batch[1])


# ------------------------------------------------------------------------------------------- predictor option

def test_predictor_fast_path_matches_module(tmp_path, photos_dir):
    from resnet_toolkit.predictor import load_model
    from symbols import get_symbol

    sym = get_symbol(1000, 18, "imagenet")
    data = photo_batch(photos_dir, 64)
    args, aux = random_params(sym, data.shape, seed=8)
    mx.model.save_checkpoint(str(tmp_path / "r18"), 1, sym, args, aux)
    fast = load_model(tmp_path / "r18", 1, batch_size=4, image_shape=(3, 64, 64), fused=True)
    plain = load_model(tmp_path / "r18", 1, batch_size=4, image_shape=(3, 64, 64), fused=False)
    assert load_model(tmp_path / "r18", 1, batch_size=4, image_shape=(3, 64, 64)).fused is not None  # the default
    assert fast.fused is not None and plain.fused is None
    got, want = fast.predict(data), plain.predict(data)  # 3 photos in a batch bound for 4: padded
    assert got.shape == (3, 1000) and close(got, want)
    assert (got.argmax(1) == want.argmax(1)).all() and np.allclose(got.sum(1), 1.0, atol=1e-5)


# ------------------------------------------------------------------------------------------- benchmark arithmetic

def _throughput_module():
    from bench import throughput

    return throughput


def test_benchmark_ratios_are_medians_of_per_round_ratios():
    tp = _throughput_module()
    # round 2 was disturbed (load): the median of per-round ratios is 2.0, the ratio of total times 1.5
    raw = {("cifar_resnet20_v2", 128, "train"): {
        "module/fast": [1.0, 4.0, 1.0], "module/base": [1.5, 6.0, 1.2], "gluoncv/-": [2.0, 5.0, 2.0],
        "torch/eager": [0.5, 2.0, 0.5], "torch/compile": [0.8, 1.0, 0.4]}}
    r = tp.ratios(raw)
    assert r["cifar_resnet20_v2|128|train|module/fast|gluoncv"] == 2.0
    assert r["cifar_resnet20_v2|128|train|module/fast|torch/eager"] == 0.5
    assert r["cifar_resnet20_v2|128|train|module/fast|torch/compile"] == 0.4
    # the fastest PyTorch configuration of each round (0.5, 1.0, 0.4), not the faster one on the whole
    assert r["cifar_resnet20_v2|128|train|module/fast|torch"] == 0.4
    assert r["cifar_resnet20_v2|128|train|module/fast|fastest peer"] == 0.4
    assert r["cifar_resnet20_v2|128|train|module/fast|module/base"] == 1.5
    assert r["cifar_resnet20_v2|128|train|module/base|gluoncv"] == pytest.approx(1.333, abs=1e-3)
    assert "cifar_resnet20_v2|128|train|module/base|module/base" not in r
    s = tp.summarize([0.1, 0.2, 0.3, 0.4, 1.0], batch=8)
    assert s["img_s"] == pytest.approx(40 / 2.0) and s["p50_ms"] == 300.0 and s["p90_ms"] == 1000.0
    table = tp.format_table({key: {k: tp.summarize(v, 128) for k, v in cells.items()} for key, cells in raw.items()},
                            r)
    head, _, line = (row.strip("| ").split(" | ") for row in table.splitlines())
    row = dict(zip(head, line))
    assert row["best ours"] == "module/fast"
    assert [row["÷ own base"], row["÷ gluoncv"], row["÷ torch"], row["÷ fastest peer"]] == [
        "1.50", "2.00", "0.40", "0.40"]
    assert row["torch/jit"] == "–"
    assert row["÷ onnxruntime"] == row["÷ openvino"] == "–"


def test_benchmark_versus_fastest_is_per_round_and_per_precision():
    tp = _throughput_module()
    # round 2: openvino was disturbed; float32 and INT8 cells are ranked apart
    cells = {"ours/fp32": [1.0, 1.0, 1.0], "openvino/fp32": [0.5, 4.0, 0.5], "torch/compile": [2.0, 2.0, 2.0],
             "ours/int8": [0.4, 0.4, 0.4], "openvino/int8": [0.2, 0.2, 0.8]}
    v = tp.versus_fastest(cells)
    assert v["openvino/fp32"] == 1.0 and v["ours/fp32"] == 0.5 and v["torch/compile"] == 0.25
    assert v["openvino/int8"] == 1.0 and v["ours/int8"] == 0.5
    assert tp.format_versus_fastest({("m", 1, "infer"): cells}).splitlines()[1].startswith(
        "- m bs1 infer: openvino/fp32 1.00, openvino/int8 1.00")
