"""ONNX export: ONNX Runtime's output equals MXNet's for ResNet-50-v2, CIFAR ResNet-164, ResNet-50-v1b, ResNeXt-50
32x4d and ResNet-18-vd, any batch size.
"""
from __future__ import annotations

import numpy as np
import pytest
from helpers import load_tool, random_checkpoint

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError


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
