"""tools/quantize.py and --int8: a ResNet-8 trained on the digits here, quantized to INT8 (oneDNN), classifies
nearly every held-out image as float32 does; score.py and predict.py run it; bad input is one line and writes
nothing; a failed write leaves the previous INT8 files as they were."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool, random_checkpoint, snapshot, train_digits_model

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def trained_digits(digits_dir, tmp_path_factory):
    """ResNet-8 trained by train_resnet.py for 4 epochs on the digits (about 30 s on 2 busy cores; measured 96 %
    on the 360 held-out images)."""
    prefix = train_digits_model(digits_dir, tmp_path_factory.mktemp("trained_digits") / "resnet-digits-8-0", epochs=4)
    return prefix, 4


def _val_images(digits_dir: Path) -> tuple[np.ndarray, np.ndarray]:
    """The 360 held-out digits as float32 NCHW 0..255 and their labels, read as validation reads them."""
    from resnet_toolkit.data import get_layout, make_val_iter

    it = make_val_iter(digits_dir / "digits_val.rec", get_layout("digits"), 40, preprocess_threads=1)
    data, labels = [], []
    for batch in it:
        n = 40 - batch.pad
        data.append(batch.data[0].asnumpy()[:n])
        labels.append(batch.label[0].asnumpy()[:n].astype(int))
    return np.concatenate(data), np.concatenate(labels)


def _top1(model, images: np.ndarray) -> np.ndarray:
    step = model.batch_size
    return np.concatenate([model.predict(images[i:i + step]).argmax(1) for i in range(0, len(images), step)])


@pytest.mark.parametrize("mode", ["naive", "entropy"])
def test_int8_classifies_like_float32(trained_digits, digits_dir, mode):
    """Calibrated on 128 training images: the INT8 model's top-1 equals float32's on at least 97 % of the 360
    held-out images (measured 99.4 % naive, 98.9 % entropy), its accuracy within 2 points (7 images), and it is
    really quantized (INT8 convolutions, an int8 classifier weight)."""
    import mxnet as mx

    from resnet_toolkit.predictor import load_int8_model, load_model
    from resnet_toolkit.quantize import int8_prefix, quantize_checkpoint

    prefix, epoch = trained_digits
    result = quantize_checkpoint(prefix, epoch, digits_dir / "digits_train.rec", 4, 32, mode)
    assert result.calib_images == 128 and result.calib_mode == mode
    assert result.symbol_file.name == "resnet-digits-8-0-int8-symbol.json"
    assert result.params_file.name == "resnet-digits-8-0-int8-0004.params"
    assert result.op_counts["_contrib_quantize_v2"] == 1 and result.op_counts["_sg_mkldnn_conv"] >= 8
    params = mx.nd.load(str(result.params_file))
    assert params["arg:fc1_weight_quantize"].dtype == np.int8

    images, labels = _val_images(digits_dir)
    fp32 = _top1(load_model(prefix, epoch, batch_size=32), images)
    int8 = _top1(load_int8_model(int8_prefix(prefix), epoch, batch_size=32), images)
    fp32_acc, int8_acc = (fp32 == labels).mean(), (int8 == labels).mean()
    assert fp32_acc > 0.9  # the network learned: agreement below means something
    assert (fp32 == int8).mean() >= 0.97
    assert abs(fp32_acc - int8_acc) <= 0.02


def test_score_and_predict_run_the_int8_model(trained_digits, digits_dir, tmp_path, capsys):
    """score.py --int8 reports the accuracy of the INT8 model's own predictions; a --prefix naming the INT8
    files is detected without the flag; predict.py --int8 gives the same classes."""
    import cv2

    from resnet_toolkit.predictor import load_int8_model
    from resnet_toolkit.quantize import has_int8, int8_prefix, quantize_checkpoint

    prefix, epoch = trained_digits
    if not has_int8(prefix, epoch):
        quantize_checkpoint(prefix, epoch, digits_dir / "digits_train.rec", 4, 32, "naive")
    images, labels = _val_images(digits_dir)
    expected = _top1(load_int8_model(int8_prefix(prefix), epoch, batch_size=64), images)

    score = load_tool("tools/score.py")
    rec = str(digits_dir / "digits_val.rec")
    results = []
    for flags in (["--prefix", prefix, "--int8"], ["--prefix", int8_prefix(prefix)]):
        assert score.main([*flags, "--epoch", str(epoch), "--rec", rec, "--json", "--no-progress"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    for result in results:
        assert result["images"] == 360
        assert result["top1"] == pytest.approx((expected == labels).mean(), abs=1e-9)

    folder = tmp_path / "images"
    folder.mkdir()
    for i in range(8):
        cv2.imwrite(str(folder / f"{i}.png"), images[i].transpose(1, 2, 0)[:, :, ::-1].astype(np.uint8))
    predict = load_tool("predict/predict.py")
    assert predict.main(["--img", str(folder), "--prefix", prefix, "--epoch", str(epoch), "--int8",
                         "--json", "--top-k", "1", "--synset", str(digits_dir / "synset.txt")]) == 0
    classes = [r["top_k"][0]["class"] for r in json.loads(capsys.readouterr().out)]
    assert classes == expected[:8].tolist()


# ------------------------------------------------------------------------------------------- bad input
def _run(tool: str, argv: list, capsys, monkeypatch) -> tuple[int, str]:
    """Run ``tool``'s ``main`` in-process as its command line would: (exit status, stderr)."""
    from resnet_toolkit.errors import run_cli

    module = load_tool(tool)
    monkeypatch.setattr(sys, "argv", [Path(tool).name])
    with pytest.raises(SystemExit) as exc:
        run_cli(module.main, [str(a) for a in argv])
    return exc.value.code, capsys.readouterr().err


@pytest.fixture(scope="module")
def random_model(tmp_path_factory, digits_dir):
    folder = tmp_path_factory.mktemp("quantize_bad_input")
    prefix = random_checkpoint(folder / "m", 8, "cifar10", 10, epoch=3, calibrate=False)
    return folder, prefix


@pytest.mark.parametrize("case", ["no symbol file", "no such epoch", "no calib rec", "zero batches",
                                  "bad batch size", "unknown layer", "already int8", "bad mode"])
def test_quantize_bad_input_is_one_line_and_writes_nothing(random_model, digits_dir, capsys, monkeypatch, case):
    folder, prefix = random_model
    rec = digits_dir / "digits_train.rec"
    base = ["--prefix", prefix, "--epoch", "3", "--calib-rec", rec, "--num-calib-batches", "1"]
    argv, message = {
        "no symbol file": (["--prefix", folder / "nope", "--epoch", "3", "--calib-rec", rec],
                           f"{folder / 'nope'}-symbol.json: no such checkpoint symbol file"),
        "no such epoch": (["--prefix", prefix, "--epoch", "7", "--calib-rec", rec],
                          f"no checkpoint {prefix}-0007.params (saved epochs: 3)"),
        "no calib rec": (["--prefix", prefix, "--epoch", "3", "--calib-rec", folder / "val.rec"],
                         f"{folder / 'val.rec'}: no such file"),
        "zero batches": ([*base[:-1], "0"], "--num-calib-batches must be at least 1, got 0"),
        "bad batch size": ([*base, "--batch-size", "0"], "--batch-size must be positive, got 0"),
        "unknown layer": ([*base, "--exclude", "conv9"], "--exclude conv9: no such layer in the network"),
        "already int8": (["--prefix", f"{prefix}-int8", "--epoch", "3", "--calib-rec", rec],
                         f"--prefix {prefix}-int8 is already an INT8 model; give the float32 checkpoint's prefix"),
        "bad mode": ([*base, "--calib-mode", "kl"], "argument --calib-mode: invalid choice: 'kl'"),
    }[case]
    before = snapshot(folder)
    code, err = _run("tools/quantize.py", argv, capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2
    assert "Traceback" not in err and message in lines[-1], err
    if case != "bad mode":  # argparse prints its usage line first, as every tool's argparse does
        assert len(lines) == 1 and lines[0].startswith("quantize.py: error: ")
    assert snapshot(folder) == before


def test_int8_flag_without_int8_files_says_how_to_make_them(random_model, digits_dir, capsys, monkeypatch):
    folder, prefix = random_model
    code, err = _run("tools/score.py", ["--prefix", prefix, "--epoch", "3", "--rec", digits_dir / "digits_val.rec",
                                        "--int8"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert f"{prefix}-int8-symbol.json: no INT8 model for epoch 3; make it with: python tools/quantize.py" in err


def test_a_failed_write_keeps_the_previous_int8_files(random_model, digits_dir, monkeypatch):
    """The parameter file fails half-way: neither INT8 file changes, no partial file is left."""
    import mxnet as mx

    from resnet_toolkit.quantize import quantize_checkpoint

    folder, prefix = random_model
    rec = digits_dir / "digits_train.rec"
    quantize_checkpoint(prefix, 3, rec, 1, 16, "naive")
    before = snapshot(folder)

    def broken_save(path, data):
        Path(path).write_bytes(b"half a file")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(mx.nd, "save", broken_save)
    from resnet_toolkit.errors import UserError

    with pytest.raises(UserError, match=f"cannot write {prefix}-int8-0003.params: No space left on device"):
        quantize_checkpoint(prefix, 3, rec, 2, 16, "naive")
    assert snapshot(folder) == before


# ------------------------------------------------------------------------------------------- INT8 through ONNX
def test_quantize_writes_an_onnx_int8_model_that_onnxruntime_and_openvino_run(trained_digits, digits_dir, capsys):
    """tools/quantize.py also writes PREFIX-int8-EPOCH.onnx (ONNX Runtime static quantization, QDQ, int8 weights);
    score.py --int8 --backend onnxruntime|openvino runs it: top-1 within 2 points of float32's and the same class as
    float32 for at least 97 % of the 360 held-out digits, as MXNet's INT8 model must."""
    import onnx

    from resnet_toolkit.predictor import load_model
    from resnet_toolkit.quantize import int8_onnx_file, quantize_checkpoint
    from resnet_toolkit.tool_args import load_model_from_flags

    prefix, epoch = trained_digits
    result = quantize_checkpoint(prefix, epoch, digits_dir / "digits_train.rec", 4, 32, "naive")
    assert result.onnx_file == int8_onnx_file(prefix, epoch) and result.onnx_note == ""
    assert result.onnx_file.name == "resnet-digits-8-0-int8-0004.onnx"
    graph = onnx.load(str(result.onnx_file)).graph
    ops = [node.op_type for node in graph.node]
    assert ops.count("Conv") >= 8 and ops.count("QuantizeLinear") >= 8 and "DequantizeLinear" in ops
    assert any(init.data_type == onnx.TensorProto.INT8 for init in graph.initializer)  # weights stored as int8

    images, labels = _val_images(digits_dir)
    fp32 = _top1(load_model(prefix, epoch, batch_size=32), images)
    score = load_tool("tools/score.py")
    for backend in ("onnxruntime", "openvino"):
        args = score.parse_args(["--prefix", prefix, "--epoch", str(epoch), "--rec", "x.rec", "--int8",
                                 "--backend", backend, "--batch-size", "32"])
        model = load_model_from_flags(args, images=len(images))
        assert model.backend == backend and model.num_classes == 10
        int8 = _top1(model, images)
        assert (int8 == fp32).mean() >= 0.97, backend
        assert abs((int8 == labels).mean() - (fp32 == labels).mean()) <= 0.02, backend
        assert score.main(["--prefix", prefix, "--epoch", str(epoch), "--rec", str(digits_dir / "digits_val.rec"),
                           "--int8", "--backend", backend, "--json", "--no-progress"]) == 0
        out = json.loads(capsys.readouterr().out)
        assert out["backend"] == backend and out["top1"] == pytest.approx((int8 == labels).mean(), abs=1e-9)


def test_int8_without_onnx_runtime_is_mxnet_only(random_model, digits_dir, capsys, monkeypatch):
    """Quantizing without ONNX Runtime writes MXNet's INT8 files only and removes an older .onnx (calibrated apart
    from them); then --int8 --backend openvino is one clear line and auto runs MXNet."""
    from resnet_toolkit.backends import AUTO_MIN_IMAGES
    from resnet_toolkit.quantize import int8_onnx_file, quantize_checkpoint
    from resnet_toolkit.tool_args import load_model_from_flags

    folder, prefix = random_model
    rec = digits_dir / "digits_train.rec"
    quantize_checkpoint(prefix, 3, rec, 1, 16, "naive")
    assert int8_onnx_file(prefix, 3).is_file()
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # as if not installed
    result = quantize_checkpoint(prefix, 3, rec, 1, 16, "naive")
    monkeypatch.undo()
    assert result.onnx_file is None and result.symbol_file.is_file() and result.params_file.is_file()
    assert result.onnx_note == (f"ONNX Runtime is not installed (pip install onnxruntime); removed the older "
                                f"{int8_onnx_file(prefix, 3).name}: MXNet INT8 only")
    assert not int8_onnx_file(prefix, 3).exists()
    code, err = _run("tools/score.py", ["--prefix", prefix, "--epoch", "3", "--rec", digits_dir / "digits_val.rec",
                                        "--int8", "--backend", "openvino"], capsys, monkeypatch)
    assert code == 2 and len(err.strip().splitlines()) == 1
    assert (f"--backend openvino: an INT8 model without {Path(prefix).name}-int8-0003.onnx (tools/quantize.py "
            f"writes it where ONNX Runtime is installed) runs with --backend mxnet only") in err
    score = load_tool("tools/score.py")
    args = score.parse_args(["--prefix", prefix, "--epoch", "3", "--rec", "x.rec", "--int8"])
    assert load_model_from_flags(args, images=AUTO_MIN_IMAGES * 4).backend == "mxnet"


def test_an_imagenet_size_int8_model_takes_224_images_by_default():
    """The INT8 graph renames the stem's pool0 to quantized_pool0: the input size read from the graph must still be
    ImageNet's 224 (it was CIFAR's 32 until 2026-12-07, so --int8 on an ImageNet model failed without
    --image-shape)."""
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_model_mkldnn

    from resnet_toolkit.model_facts import default_image_shape, inference_symbol
    from symbols import get_model

    sym = get_model("resnet18_v2", 10, api="symbol")
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1, 3, 224, 224))], label_shapes=[("softmax_label", (1,))])
    mod.init_params(mx.init.Xavier())
    qsym, _, _ = quantize_model_mkldnn(
        inference_symbol(sym), *mod.get_params(), data_names=("data",), label_names=(), ctx=mx.cpu(),
        calib_mode="naive", calib_data=mx.io.NDArrayIter(mx.nd.random.uniform(0, 255, (2, 3, 224, 224)), batch_size=1),
        num_calib_examples=2, quantized_dtype="auto", quantize_mode="smart")
    assert "pool0_output" not in qsym.get_internals().list_outputs()
    assert default_image_shape(qsym) == default_image_shape(sym) == (3, 224, 224)
    assert default_image_shape(get_model("cifar_resnet20_v2", 10, api="symbol")) == (3, 32, 32)
