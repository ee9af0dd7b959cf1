#!/usr/bin/env python
"""Classify images with a trained checkpoint: top-k classes per image.

    python predict/predict.py --prefix model/resnet-imagenet-50-0 --epoch 120 --img cat.jpg [more.jpg | folder/]
    python predict/predict.py --prefix resnet-50 --img cat.jpg        # the newest epoch (the original's 0000)

Class names come from --synset, else ``synset.txt`` beside the checkpoint (training writes it), else, for a
1000-class network, the ImageNet names in ``predict/synset.txt``. An image that does not decode is reported on
stderr and skipped; the exit status is 0 when at least one image was classified, 2 when none was.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.predictor import class_names, find_images, format_prediction, predict_images, predictions_json
from resnet_toolkit.tool_args import add_checkpoint_args, load_model_from_flags

IMAGENET_SYNSET = Path(__file__).resolve().parent / "synset.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--img", nargs="+", required=True, help="image files and/or folders (searched recursively)")
    add_checkpoint_args(parser, batch_size=32, backend=True)
    parser.add_argument("--synset", help="class names, one per line (default: synset.txt beside the checkpoint)")
    parser.add_argument("--top-k", type=int, default=5, help="classes shown per image")
    parser.add_argument("--resize", type=int, help="shorter side before the center crop (default: 256 for 224, "
                                                   "else the input size)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of text lines")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" lines
    if args.top_k <= 0:
        raise UserError(f"--top-k must be positive, got {args.top_k}")
    images = find_images(args.img)
    model = load_model_from_flags(args, images=len(images))
    names, source = class_names(model.num_classes, args.synset, [Path(args.prefix).parent], IMAGENET_SYNSET)
    if source is None:
        print(f"predict.py: warning: no synset.txt beside {args.prefix}; showing class numbers", file=sys.stderr)
    results = []
    for pred in predict_images(model, images, names, args.top_k, args.resize):
        results.append(pred)
        if pred.error:
            print(f"predict.py: warning: {pred.image}: {pred.error} (skipped)", file=sys.stderr)
        elif not args.json:
            print(format_prediction(pred), flush=True)
    if args.json:
        print(predictions_json(results))
    ok = sum(1 for p in results if not p.error)
    if ok == 0:
        raise UserError(f"none of the {len(results)} image(s) could be classified")
    return 0


if __name__ == "__main__":
    run_cli(main)
