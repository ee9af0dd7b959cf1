"""``--backend onnxruntime|openvino``: the same predictions as MXNet's own graph, through score.py and predict.py,
and one clear line for what they cannot run."""
from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from helpers import ROOT, copy_records, load_tool, random_checkpoint

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.backends import BACKENDS
from resnet_toolkit.errors import UserError

LOSSLESS_MODEL = ROOT / "bench" / "results" / "cifar10-resnet20-cosine160-mixup-lossless-model" / "resnet-cifar10-20"
OTHERS = [b for b in BACKENDS if b != "mxnet"]


@pytest.mark.parametrize("backend", OTHERS)
@pytest.mark.parametrize("depth,net_type,num_classes,batch", [(20, "cifar10", 10, 7), (18, "imagenet", 1000, 2)])
def test_backend_probabilities_equal_mxnets(tmp_path, backend, depth, net_type, num_classes, batch):
    """Random weights (BN statistics calibrated, so the outputs are spread), random images, a short last batch."""
    from resnet_toolkit.predictor import load_model, with_backend

    prefix = random_checkpoint(tmp_path / f"resnet-{net_type}-{depth}-0", depth, net_type, num_classes)
    mxnet_model = load_model(prefix, 1, batch_size=batch)
    other = with_backend(load_model(prefix, 1, batch_size=batch, fused=False), backend)
    assert other.backend == backend and other.runner is not None
    size = mxnet_model.image_shape[1]
    images = np.random.RandomState(3).uniform(0, 255, (batch + batch - 1, 3, size, size)).astype(np.float32)
    wanted = []
    for chunk in (images[:batch], images[batch:]):
        want, got = mxnet_model.predict(chunk), other.predict(chunk)
        assert got.shape == want.shape == (len(chunk), num_classes)
        assert np.abs(got - want).max() < 1e-4
        assert (got.argmax(1) == want.argmax(1)).all()
        wanted.append(want)
    wanted = np.concatenate(wanted)
    assert wanted.max() < 0.95 and np.ptp(wanted, axis=0).max() > 1e-3  # outputs that could disagree
    assert not list(tmp_path.glob("*.onnx"))  # nothing written beside the checkpoint


@pytest.mark.data
@pytest.mark.parametrize("backend", OTHERS)
def test_score_top1_identical_on_real_cifar10_images(cifar_rec_dir, tmp_path, backend, capsys):
    """The committed ResNet-20 on 2,000 real CIFAR-10 test images: the same top-1/top-5 and the same misclassified
    images as MXNet."""
    score = load_tool("tools/score.py")
    rec = tmp_path / "val2000.rec"
    copy_records(cifar_rec_dir / "cifar10_val.rec", rec, 2000)
    results = {}
    for name in ("mxnet", backend):
        wrong = tmp_path / f"wrong-{name}.jsonl"
        assert score.main(["--prefix", str(LOSSLESS_MODEL), "--epoch", "160", "--rec", str(rec), "--backend", name,
                           "--misclassified", str(wrong), "--json", "--no-progress"]) == 0
        out = json.loads(capsys.readouterr().out)
        results[name] = (out["top1"], out["top5"], [json.loads(line)["record"] for line in wrong.open()])
    assert results[backend] == results["mxnet"]
    assert 0.85 < results["mxnet"][0] < 0.97 and len(results["mxnet"][2]) > 50


@pytest.mark.data
def test_predict_prints_the_same_classes_with_each_backend(photos_dir, tmp_path, capsys):
    predict = load_tool("predict/predict.py")
    prefix = random_checkpoint(tmp_path / "resnet-imagenet-18-0", 18, "imagenet", 1000)
    shown = {}
    for name in BACKENDS:
        assert predict.main(["--img", str(photos_dir), "--prefix", prefix, "--epoch", "1", "--backend", name,
                             "--json"]) == 0
        shown[name] = [[(t["class"], round(t["probability"], 4)) for t in r["top_k"]]
                       for r in json.loads(capsys.readouterr().out)]
    assert shown["onnxruntime"] == shown["mxnet"] == shown["openvino"]
    assert len(shown["mxnet"]) == 3


def test_what_a_backend_cannot_run_is_one_clear_line(tmp_path, monkeypatch):
    from resnet_toolkit import backends

    score = load_tool("tools/score.py")
    prefix = random_checkpoint(tmp_path / "resnet-cifar10-8-0", 8, "cifar10", 10, calibrate=False)
    with pytest.raises(SystemExit):  # argparse: not a choice
        score.parse_args(["--prefix", prefix, "--rec", "x.rec", "--backend", "tensorrt"])
    monkeypatch.setitem(sys.modules, "openvino", None)  # as if not installed: `import openvino` raises ImportError
    with pytest.raises(UserError, match=r"--backend openvino: the openvino package is not installed \(pip install"):
        backends.require("openvino")
    monkeypatch.undo()
    from resnet_toolkit.tool_args import load_model_from_flags

    args = score.parse_args(["--prefix", prefix, "--epoch", "1", "--rec", "x.rec", "--backend", "onnxruntime",
                             "--plain-graph"])
    with pytest.raises(UserError, match="--backend onnxruntime: --plain-graph runs with --backend mxnet only"):
        load_model_from_flags(args)


def test_auto_runs_openvino_from_500_images_and_mxnet_where_only_it_can(monkeypatch):
    from resnet_toolkit.backends import AUTO_MIN_IMAGES, choose_backend

    assert AUTO_MIN_IMAGES == 500
    assert choose_backend("auto", 499) == "mxnet"  # its start would cost more than it saves
    assert choose_backend("auto", None) == "mxnet"
    assert choose_backend("auto", 500) == "openvino"
    assert choose_backend("auto", 10_000, mxnet_only="INT8") == "mxnet"
    assert choose_backend("onnxruntime", 3) == "onnxruntime"  # asked for: kept
    assert choose_backend("mxnet", 10_000) == "mxnet"
    with pytest.raises(UserError, match="--backend openvino: a GPU runs with --backend mxnet only"):
        choose_backend("openvino", 10, mxnet_only="a GPU")
    monkeypatch.setitem(sys.modules, "openvino", None)
    assert choose_backend("auto", 10_000) == "mxnet"  # not installed: MXNet, no error


@pytest.mark.data
def test_score_says_which_backend_ran(cifar_rec_dir, tmp_path, capsys):
    score = load_tool("tools/score.py")
    for count, want in ((499, "mxnet"), (500, "openvino")):
        rec = tmp_path / f"val{count}.rec"
        copy_records(cifar_rec_dir / "cifar10_val.rec", rec, count)
        assert score.main(["--prefix", str(LOSSLESS_MODEL), "--epoch", "160", "--rec", str(rec), "--no-progress"]) == 0
        out = capsys.readouterr().out
        assert f"backend {want})" in out and f"{count} images" in out


@pytest.mark.data
def test_int8_top1_within_0_3_points_of_float32_on_the_cifar10_test_set(cifar_lossless_dir, tmp_path, capsys):
    """The committed ResNet-20 (93.13 %) quantized by tools/quantize.py (320 training images, naive ranges): on all
    10,000 lossless CIFAR-10 test images, MXNet's INT8 model and the .onnx run by ONNX Runtime and by OpenVINO each
    score within 0.3 points of float32 (measured 2026-12-07: -0.19, -0.18, -0.15 on AVX-512 VNNI; -0.27, -0.18, -0.15
    with DNNL_MAX_CPU_ISA=AVX2, where full 8-bit weights had cost OpenVINO -0.56: see quantize_onnx_file)."""
    import shutil

    for path in LOSSLESS_MODEL.parent.iterdir():
        shutil.copy(path, tmp_path / path.name)
    prefix = str(tmp_path / LOSSLESS_MODEL.name)
    quantize = load_tool("tools/quantize.py")
    assert quantize.main(["--prefix", prefix, "--epoch", "160", "--calib-rec",
                          str(cifar_lossless_dir / "cifar10_train.rec"), "--num-calib-batches", "10", "--json"]) == 0
    assert json.loads(capsys.readouterr().out.strip().splitlines()[-1])["onnx"].endswith("-int8-0160.onnx")
    score = load_tool("tools/score.py")
    top1 = {}
    for name, flags in (("float32", ["--backend", "mxnet"]), ("mxnet", ["--int8", "--backend", "mxnet"]),
                        ("onnxruntime", ["--int8", "--backend", "onnxruntime"]),
                        ("openvino", ["--int8", "--backend", "openvino"])):
        assert score.main(["--prefix", prefix, "--epoch", "160", "--rec", str(cifar_lossless_dir / "cifar10_val.rec"),
                           *flags, "--json", "--no-progress"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["images"] == 10_000 and out["backend"] == flags[-1]
        top1[name] = out["top1"]
    assert top1["float32"] == pytest.approx(0.9313, abs=1e-4)
    for name in ("mxnet", "onnxruntime", "openvino"):
        assert abs(top1[name] - top1["float32"]) <= 0.003, (name, top1)
