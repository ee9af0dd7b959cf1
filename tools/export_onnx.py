#!/usr/bin/env python
"""Export a checkpoint to ONNX with a dynamic batch dimension, and check ONNX Runtime against MXNet.

    python tools/export_onnx.py --prefix model/resnet-imagenet-50-0 --epoch 120 [--out resnet50.onnx]

The exported graph is the inference network: input ``data`` (N, 3, H, W) float32 raw RGB 0..255 (``bn_data``
normalises), output the class probabilities, ``softmax`` of ``fc1``'s output. The training head
``SoftmaxOutput`` (which takes a label input) is replaced by that softmax; its forward values are the same.
The file is written beside its final name and renamed into place only after ONNX Runtime's output on a batch
of random images matched MXNet's (max abs difference <= --tolerance).
"""
from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.backends import export_onnx_file
from resnet_toolkit.checkpoint import check_checkpoint, resolve_epoch
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.fileio import atomic_path
from resnet_toolkit.model_facts import parse_image_shape
from resnet_toolkit.predictor import Predictor, load_model
from resnet_toolkit.tool_args import add_checkpoint_args


@dataclass
class ExportReport:
    """Where the model went and how closely ONNX Runtime matched MXNet (probabilities, absolute)."""

    path: Path
    image_shape: tuple[int, int, int]
    num_classes: int
    check_batch: int
    max_abs_diff: float | None


def export_symbol(model: Predictor, path: str | os.PathLike) -> None:
    """Write ``model``'s inference network as ONNX to ``path``: batch dimension dynamic, opset of the installed
    onnx package (:func:`resnet_toolkit.backends.export_onnx_file`)."""
    export_onnx_file(model.symbol, model.arg_params, model.aux_params, model.image_shape, path)


def onnx_outputs(path: str | os.PathLike, batch: np.ndarray) -> np.ndarray:
    """ONNX Runtime's (CPU) output for ``batch`` (float32 NCHW) from the model at ``path``."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    [output] = session.run(None, {session.get_inputs()[0].name: batch})
    return output


def check_against_mxnet(path: str | os.PathLike, model: Predictor, batch: np.ndarray) -> float:
    """Max absolute difference between ONNX Runtime's and MXNet's outputs on ``batch``."""
    return float(np.abs(onnx_outputs(path, batch) - model.predict(batch)).max())


def random_images(n: int, image_shape: Sequence[int], seed: int = 0) -> np.ndarray:
    """``n`` random images, float32 NCHW with values 0..255 (the network's input range)."""
    return np.random.RandomState(seed).uniform(0, 255, (n,) + tuple(image_shape)).astype(np.float32)


def export_onnx(prefix: str, epoch: int, out: str | os.PathLike, image_shape: Sequence[int] | None = None,
                check_batch: int = 3, tolerance: float = 1e-4) -> ExportReport:
    """Export checkpoint ``prefix``/``epoch`` to ``out``; unless ``check_batch`` is 0, run ``check_batch`` random
    images through ONNX Runtime and MXNet first and refuse (UserError, ``out`` untouched) when they differ by more
    than ``tolerance``."""
    out = Path(out)
    if not out.parent.is_dir():
        what = "is not a directory" if out.parent.exists() else "does not exist"
        raise UserError(f"cannot write {out}: {out.parent} {what}")
    if out.is_dir():
        raise UserError(f"cannot write {out}: Is a directory")
    check_checkpoint(prefix, epoch)
    # the reference for the check is the checkpoint's own graph, as exported (not the folded inference graph)
    model = load_model(prefix, epoch, batch_size=max(check_batch, 1), image_shape=image_shape, fused=False)
    diff = None
    try:
        with atomic_path(out) as tmp:
            export_symbol(model, tmp)
            if check_batch:
                diff = check_against_mxnet(tmp, model, random_images(check_batch, model.image_shape))
                if not diff <= tolerance:
                    raise UserError(f"ONNX Runtime's output differs from MXNet's by {diff:.3g} (> {tolerance:g}); "
                                    f"{out} not written")
    except OSError as exc:
        raise UserError(f"cannot write {out}: {exc.strerror}") from None
    return ExportReport(out, tuple(model.image_shape), model.num_classes, check_batch, diff)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_checkpoint_args(parser, batch_size=None, devices=False, int8=False, plain_graph=False, num_classes=False)
    parser.add_argument("--out", help="ONNX file to write (default: {prefix}-{epoch:04d}.onnx)")
    parser.add_argument("--check-batch", type=int, default=3,
                        help="random images to compare ONNX Runtime with MXNet on (0: no check)")
    parser.add_argument("--tolerance", type=float, default=1e-4, help="largest accepted absolute difference")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" lines
    if args.check_batch < 0:
        raise UserError(f"--check-batch must be >= 0, got {args.check_batch}")
    epoch = resolve_epoch(args.prefix, args.epoch, need_symbol=True)
    out = args.out or f"{args.prefix}-{epoch:04d}.onnx"
    shape = parse_image_shape(args.image_shape) if args.image_shape else None
    report = export_onnx(args.prefix, epoch, out, shape, args.check_batch, args.tolerance)
    line = f"wrote {report.path}: input data (N, {', '.join(map(str, report.image_shape))}), " \
           f"output softmax (N, {report.num_classes})"
    if report.max_abs_diff is not None:
        line += f"; ONNX Runtime vs MXNet on {report.check_batch} images: max abs diff {report.max_abs_diff:.2e}"
    print(line, file=sys.stdout)
    return 0


if __name__ == "__main__":
    run_cli(main)
