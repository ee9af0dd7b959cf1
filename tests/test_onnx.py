"""ONNX export: ONNX Runtime's output equals MXNet's for ResNet-50-v2, CIFAR ResNet-164, ResNet-50-v1b, ResNeXt-50
32x4d and ResNet-18-vd, any batch size.

Also home of :func:`random_checkpoint`, the random-weight checkpoints the prediction tests share.
"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]


def load_tool(relpath: str):
    """Import a script of this project (``tools/score.py``, ``log/plot_curve.py``...) as a module."""
    path = ROOT / relpath
    name = f"_tool_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


def random_checkpoint(prefix: Path, depth: int, net_type: str, num_classes: int, epoch: int = 1,
                      seed: int = 0, calibrate: bool = True, **network) -> str:
    """Save a checkpoint ``prefix``/``epoch`` of a random-weight ResNet-v2 (or the family ``network`` names:
    ``network='resnext', cardinality=32``, ...) as training would (Symbol ending in SoftmaxOutput,
    ``arg:``/``aux:`` params) and return the prefix.

    With ``calibrate`` the BN running statistics are those of one batch of random images (then perturbed), with
    random BN gammas and betas: nonzero, non-trivial statistics whose outputs are not saturated, so that
    comparing two engines' probabilities means something. Without, MXNet's default init (mean 0, var 1).
    """
    import mxnet as mx

    from symbols import get_symbol

    size = 112 if net_type == "imagenet" else 32  # statistics of half-size images: 4x cheaper, close enough
    rng = np.random.RandomState(seed)
    # bn_mom 0: the running statistics become exactly this batch's (MXNet updates them in backward).
    exe = get_symbol(num_classes, depth, net_type, bn_mom=0.0, **network).simple_bind(
        mx.cpu(), data=(2, 3, size, size), softmax_label=(2,), grad_req="write" if calibrate else "null")
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    mx.random.seed(seed)
    for name, arr in exe.arg_dict.items():
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_gamma"):
            arr[:] = rng.uniform(0.5, 1.5, arr.shape) if calibrate and name != "bn_data_gamma" else 1.0
        elif name.endswith(("_beta", "_bias")):
            arr[:] = rng.normal(0, 0.1, arr.shape) if calibrate else 0.0
        else:
            init(mx.init.InitDesc(name), arr)
    for name, arr in exe.aux_dict.items():
        arr[:] = 1.0 if name.endswith("_var") else 0.0
    if calibrate:
        exe.arg_dict["data"][:] = rng.uniform(0, 255, (2, 3, size, size))
        exe.forward(is_train=True)
        exe.backward()
        mx.nd.waitall()  # the running statistics are written in backward, outside the dependency tracking
    arg = {k: v.copy() for k, v in exe.arg_dict.items() if k not in ("data", "softmax_label")}
    aux = {}
    for name, arr in exe.aux_dict.items():
        v = arr.asnumpy()
        if calibrate:
            v = v * rng.uniform(0.8, 1.25, v.shape) if name.endswith("_var") else v + rng.normal(0, 0.05, v.shape)
        aux[name] = mx.nd.array(v)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(prefix), epoch, get_symbol(num_classes, depth, net_type, **network), arg, aux)
    return str(prefix)


@pytest.mark.parametrize("depth,net_type,num_classes,network", [
    (50, "imagenet", 1000, "resnet_v2"), (164, "cifar10", 10, "resnet_v2"),
    (50, "imagenet", 1000, "resnet_v1"),
    (50, "imagenet", 1000, "resnext"),  # grouped 3x3 convolutions (32 groups)
    (18, "imagenet", 1000, "resnet_vd"),  # deep stem, ceil-mode average pools without padding in the shortcut
])
def test_onnx_runtime_equals_mxnet(tmp_path, depth, net_type, num_classes, network):
    import onnx

    from resnet_toolkit.predictor import load_model

    export = load_tool("tools/export_onnx.py")
    prefix = random_checkpoint(tmp_path / f"resnet-{net_type}-{depth}-0", depth, net_type, num_classes,
                               network=network)
    out = tmp_path / "model.onnx"
    report = export.export_onnx(prefix, 1, out, check_batch=3)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4

    graph = onnx.load(str(out)).graph
    [inp] = graph.input  # only the image: weights are initializers, not inputs
    dims = inp.type.tensor_type.shape.dim
    size = 224 if net_type == "imagenet" else 32
    assert inp.name == "data" and not dims[0].HasField("dim_value")  # dynamic batch dimension
    assert [d.dim_value for d in dims[1:]] == [3, size, size]

    # Another batch size than the export's (1) and the check's (3), other images, compared again here.
    batch = export.random_images(5, (3, size, size), seed=7)
    got = export.onnx_outputs(out, batch)
    want = load_model(prefix, 1, batch_size=5).predict(batch)
    assert got.shape == (5, num_classes)
    assert np.abs(got - want).max() < 1e-4
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-7)  # the small probabilities agree too
    np.testing.assert_allclose(got.sum(axis=1), 1.0, atol=1e-5)
    # Neither saturated nor constant (else equal outputs would prove little): no class takes (nearly) everything,
    # and the probabilities move with the input by far more than the tolerance.
    assert want.max() < 0.95 and np.ptp(want, axis=0).max() > 1e-3


def test_export_refuses_a_mismatch_and_keeps_the_old_file(tmp_path):
    export = load_tool("tools/export_onnx.py")
    prefix = random_checkpoint(tmp_path / "resnet-cifar10-20-0", 20, "cifar10", 10, calibrate=False)
    out = tmp_path / "model.onnx"
    out.write_bytes(b"previous good export")
    with pytest.raises(UserError, match=r"differs from MXNet's by .*model\.onnx not written"):
        export.export_onnx(prefix, 1, out, check_batch=2, tolerance=-1.0)
    assert out.read_bytes() == b"previous good export"
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(
        ["model.onnx", "resnet-cifar10-20-0-symbol.json", "resnet-cifar10-20-0-0001.params"])


def test_onnx_average_pool_shortcut_at_an_odd_size(tmp_path):
    """ResNet-vd's shortcut pools in ceil mode without counting padding: at 240x240 stage 3 is 15x15, pooled to
    8x8 like the strided convolution beside it; ONNX Runtime must agree (a floor-mode pool would give 7x7)."""
    export = load_tool("tools/export_onnx.py")
    prefix = random_checkpoint(tmp_path / "resnet-imagenet-18-0", 18, "imagenet", 1000, network="resnet_vd")
    report = export.export_onnx(prefix, 1, tmp_path / "vd.onnx", image_shape=(3, 240, 240), check_batch=2)
    assert report.image_shape == (3, 240, 240)
    assert report.max_abs_diff is not None and report.max_abs_diff < 1e-4
