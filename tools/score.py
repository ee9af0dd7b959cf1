#!/usr/bin/env python
"""Top-1 and top-5 accuracy of a checkpoint over a RecordIO file, preprocessed as validation.

    python tools/score.py --prefix model/resnet-cifar10-164-0 --epoch 200 --rec data/cifar10_val.rec
    python tools/score.py --prefix model/resnet-cifar10-164-0 --epoch 200 --rec data/cifar10_val.rec --int8

Prints the accuracies, the number of images and the speed (img/s, decode included); --json for one JSON line.
"""
from __future__ import annotations

import argparse
import json
import os

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import run_cli
from resnet_toolkit.predictor import add_checkpoint_args, load_model_from_flags, resolve_checkpoint, score_record


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_checkpoint_args(parser, batch_size=64)
    parser.add_argument("--rec", required=True, help="RecordIO file to score (its .idx beside it)")
    parser.add_argument("--preprocess-threads", type=int, default=2, help="decode threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" lines
    from resnet_toolkit.data import check_record_file

    if not args.int8:
        args.epoch = resolve_checkpoint(args.prefix, args.epoch)  # before the record file: the usual mistake first
    check_record_file(args.rec)
    model = load_model_from_flags(args)
    score = score_record(model, args.rec, progress=not args.no_progress, preprocess_threads=args.preprocess_threads)
    if args.json:
        print(json.dumps({"rec": str(args.rec), "images": score.images, "top1": score.top1,
                          f"top{score.top_k}": score.top5, "seconds": score.seconds,
                          "images_per_second": score.images_per_second}))
    else:
        print(f"{args.rec}: {score.images} images")
        print(f"top-1 accuracy = {score.top1:.4f}")
        print(f"top-{score.top_k} accuracy = {score.top5:.4f}")
        print(f"speed = {score.images_per_second:.1f} img/s ({score.seconds:.1f} s, decode included)")
    return 0


if __name__ == "__main__":
    run_cli(main)
