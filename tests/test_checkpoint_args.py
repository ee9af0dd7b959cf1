"""The checkpoint flags are declared once (resnet_toolkit.predictor.add_checkpoint_args) and every tool keeps its
own set, names and defaults: predict.py and score.py all of them, export_onnx.py and quantize.py no device or INT8
flags."""
from __future__ import annotations

import argparse

import pytest
from helpers import load_tool

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.tool_args import add_checkpoint_args

ALL = {"prefix", "epoch", "batch_size", "image_shape", "num_classes", "gpu", "cpu", "plain_graph", "int8"}


def checkpoint_dests(parser_args) -> dict:
    """The checkpoint flags' values in a parsed Namespace (dest -> value)."""
    return {k: v for k, v in vars(parser_args).items() if k in ALL}


@pytest.mark.parametrize("tool, argv, expected", [
    ("predict/predict.py", ["--img", "a.png"],
     dict(prefix="p", epoch=None, batch_size=32, image_shape=None, num_classes=None, gpu=None, cpu=False,
          plain_graph=False, int8=False)),
    ("tools/score.py", ["--rec", "v.rec"],
     dict(prefix="p", epoch=None, batch_size=64, image_shape=None, num_classes=None, gpu=None, cpu=False,
          plain_graph=False, int8=False)),
    ("tools/export_onnx.py", [], dict(prefix="p", epoch=None, image_shape=None)),
    ("tools/quantize.py", ["--epoch", "3", "--calib-rec", "t.rec"],
     dict(prefix="p", epoch=3, batch_size=32, image_shape=None)),
])
def test_each_tool_keeps_its_flags_and_defaults(tool, argv, expected):
    args = load_tool(tool).parse_args(["--prefix", "p", *argv])
    assert checkpoint_dests(args) == expected


def test_every_flag_parses_to_what_load_model_from_flags_reads():
    parser = argparse.ArgumentParser()
    add_checkpoint_args(parser, batch_size=8)
    args = parser.parse_args(["--prefix", "m/x", "--epoch", "4", "--batch-size", "2", "--image-shape", "3,64,64",
                              "--num-classes", "10", "--gpu", "1", "--cpu", "--plain-graph", "--int8"])
    assert checkpoint_dests(args) == dict(prefix="m/x", epoch=4, batch_size=2, image_shape="3,64,64", num_classes=10,
                                          gpu=1, cpu=True, plain_graph=True, int8=True)


@pytest.mark.parametrize("tool, absent", [
    ("tools/export_onnx.py", ["--gpu", "0"]), ("tools/export_onnx.py", ["--int8"]),
    ("tools/quantize.py", ["--plain-graph"]), ("tools/quantize.py", ["--cpu"])])
def test_switched_off_flags_are_not_accepted(tool, absent, capsys):
    extra = ["--epoch", "3", "--calib-rec", "t.rec"] if tool.endswith("quantize.py") else []
    with pytest.raises(SystemExit) as exc:
        load_tool(tool).parse_args(["--prefix", "p", *extra, *absent])
    assert exc.value.code == 2 and f"unrecognized arguments: {absent[0]}" in capsys.readouterr().err


def test_quantize_still_requires_the_epoch(capsys):
    with pytest.raises(SystemExit):
        load_tool("tools/quantize.py").parse_args(["--prefix", "p", "--calib-rec", "t.rec"])
    assert "the following arguments are required: --epoch" in capsys.readouterr().err
