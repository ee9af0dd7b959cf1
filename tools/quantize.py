#!/usr/bin/env python
"""INT8 post-training quantization of a checkpoint (MXNet's oneDNN backend), calibrated on a record file.

    python tools/quantize.py --prefix model/resnet-cifar10-20-0 --epoch 200 \\
        --calib-rec data/cifar10/cifar10_train.rec --num-calib-batches 10 --calib-mode entropy

Writes PREFIX-int8-symbol.json and PREFIX-int8-EPOCH.params beside the checkpoint (both complete before either is
renamed into place) for MXNet, and PREFIX-int8-EPOCH.onnx (the same calibration, by ONNX Runtime's static
quantization) for ONNX Runtime and OpenVINO; score or predict with them by adding --int8 to tools/score.py or
predict/predict.py (--backend picks the engine; auto: the fastest measured). The
calibration images are the first --num-calib-batches x --batch-size of --calib-rec, preprocessed as validation;
calibrate on images you will not score (a slice of the training file) to keep the test accuracy honest.
"""
from __future__ import annotations

import argparse
import json
import os

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import run_cli
from resnet_toolkit.quantize import CALIB_MODES, quantize_checkpoint
from resnet_toolkit.tool_args import add_checkpoint_args


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_checkpoint_args(parser, batch_size=32, batch_help="images per calibration batch", devices=False, int8=False,
                        plain_graph=False, num_classes=False, epoch_required=True,
                        description="the float32 checkpoint to quantize")
    parser.add_argument("--calib-rec", required=True, help="RecordIO file of calibration images (.idx beside it)")
    parser.add_argument("--num-calib-batches", type=int, default=10, help="batches of calibration images")
    parser.add_argument("--calib-mode", choices=CALIB_MODES, default="naive",
                        help="naive: observed min/max per layer; entropy: KL-optimal thresholds (slower)")
    parser.add_argument("--exclude", nargs="+", default=[], metavar="LAYER",
                        help="layers to keep in float32, e.g. conv0 fc1")
    parser.add_argument("--preprocess-threads", type=int, default=2, help="decode threads")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" lines
    from resnet_toolkit.model_facts import parse_image_shape

    shape = parse_image_shape(args.image_shape) if args.image_shape else None
    result = quantize_checkpoint(args.prefix, args.epoch, args.calib_rec, args.num_calib_batches, args.batch_size,
                                 args.calib_mode, shape, args.exclude, args.preprocess_threads)
    if args.json:
        print(json.dumps({"symbol": str(result.symbol_file), "params": str(result.params_file),
                          "calib_images": result.calib_images, "calib_mode": result.calib_mode,
                          "ops": result.op_counts, "seconds": round(result.seconds, 3),
                          "onnx": str(result.onnx_file) if result.onnx_file else None,
                          "onnx_note": result.onnx_note or None}))
    else:
        print(f"calibrated on {result.calib_images} images of {args.calib_rec} ({result.calib_mode})")
        print(f"wrote {result.symbol_file}")
        print(f"wrote {result.params_file}")
        print(f"wrote {result.onnx_file}" if result.onnx_file else f"no ONNX INT8 model: {result.onnx_note}")
        print(f"done in {result.seconds:.1f} s")
    return 0


if __name__ == "__main__":
    run_cli(main)
