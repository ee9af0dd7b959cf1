#!/usr/bin/env python
"""Top-1 and top-5 accuracy of a checkpoint over a RecordIO file, preprocessed as validation; per-class accuracy,
the confusion matrix and the misclassified images.

    python tools/score.py --prefix model/resnet-cifar10-164-0 --epoch 200 --rec data/cifar10_val.rec
    python tools/score.py --prefix model/resnet-cifar10-164-0 --epoch 200 --rec data/cifar10_val.rec --int8
    python tools/score.py --prefix model/resnet-imagenet-50-0 --rec data/imagenet/train_480_q90.rec --resize 256 \\
        --confusion-csv confusion.csv --confusion-png confusion.png --misclassified wrong.jsonl

Prints the accuracies, the number of images, the speed (img/s, decode included) and the per-class accuracy;
--json for one JSON line. Class names come from --synset, else synset.txt beside the checkpoint, else beside the
.rec, else (1000 classes) predict/synset.txt, else class numbers. Every output file is checked before scoring
and written complete or not at all.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit import evaluation
from resnet_toolkit.checkpoint import resolve_epoch
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.fileio import check_writable_file
from resnet_toolkit.predictor import class_names
from resnet_toolkit.tool_args import add_checkpoint_args, load_model_from_flags

IMAGENET_SYNSET = Path(__file__).resolve().parents[1] / "predict" / "synset.txt"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    add_checkpoint_args(parser, batch_size=64, backend=True)
    parser.add_argument("--rec", required=True, help="RecordIO file to score (its .idx beside it)")
    parser.add_argument("--synset", help="class names, one per line (default: synset.txt beside the checkpoint, "
                                         "else beside the .rec)")
    parser.add_argument("--resize", type=int, metavar="N",
                        help="resize the shorter side of every image to N pixels (bilinear) before the center crop "
                             "to the input (default: the images as packed); ImageNet evaluation of a 224 input "
                             "from larger records: --resize 256")
    parser.add_argument("--crop", action="store_true",
                        help="center crop at validation's scale: without --resize, the shorter side first goes "
                             "to 256 for a 224 input (the input size for CIFAR-size inputs), as predict.py does")
    parser.add_argument("--flip", action="store_true",
                        help="test-time augmentation: average the class probabilities of each image and its "
                             "left-right mirror (twice the forward passes; CIFAR-10 ResNet-20: +1.2 points, "
                             "bench/RESULTS.md \"Recipe\")")
    parser.add_argument("--confusion-csv", metavar="FILE", help="write the confusion matrix (rows: true class, "
                                                                "columns: top-1 prediction; counts) as CSV")
    parser.add_argument("--confusion-png", metavar="FILE.png",
                        help="draw the confusion matrix (colours: each row normalised; counts in the cells up to "
                             f"{evaluation.ANNOTATED_CLASSES} classes)")
    parser.add_argument("--misclassified", metavar="FILE",
                        help="list every misclassified image with its top-5: .csv, or .jsonl/.json/.ndjson for "
                             "JSON lines (record, id from the .idx, path from the .lst, label, top-5)")
    parser.add_argument("--lst", help="the .lst the records were packed from, for the paths in --misclassified "
                                      "(default: REC's name with .lst, when it exists)")
    parser.add_argument("--preprocess-threads", type=int, default=2, help="decode threads")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument("--json", action="store_true", help="print one JSON line instead of text")
    return parser.parse_args(argv)


def check_outputs(args: argparse.Namespace) -> None:
    """Every output file writable, none named twice, known formats: before any scoring."""
    flags = {"--confusion-csv": args.confusion_csv, "--confusion-png": args.confusion_png,
             "--misclassified": args.misclassified}
    outputs = {flag: path for flag, path in flags.items() if path}
    for flag, path in outputs.items():
        check_writable_file(path, flag)
    resolved = [os.path.realpath(p) for p in outputs.values()]
    if len(set(resolved)) < len(resolved):
        raise UserError(f"{' and '.join(outputs)} name the same file; give each its own")
    if args.confusion_png and Path(args.confusion_png).suffix.lower() != ".png":
        raise UserError(f"--confusion-png {args.confusion_png}: the name must end in .png")
    if args.misclassified:
        evaluation.misclassified_format(args.misclassified)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")  # no "Subgraph backend MKLDNN is activated" lines
    from resnet_toolkit.records import check_record_file, count_records

    if args.resize is not None and args.resize <= 0:
        raise UserError(f"--resize must be a positive number of pixels, got {args.resize}")
    if not args.int8:  # before the record file: the usual mistake first
        args.epoch = resolve_epoch(args.prefix, args.epoch, need_symbol=True)
    check_record_file(args.rec)
    # A file smaller than one batch is scored in one batch of its size (the scores do not depend on the batch).
    records = count_records(args.rec)
    args.batch_size = min(args.batch_size, records)
    check_outputs(args)
    lst_file, lst = None, None
    if args.misclassified:  # image paths: the .lst given, else the one named like the .rec (MXNet's im2rec.py)
        beside = Path(args.rec).with_suffix(".lst")
        lst_file = args.lst or (beside if beside.is_file() else None)
        lst = evaluation.read_lst_index(lst_file) if lst_file else None
    model = load_model_from_flags(args, images=records)
    names, _ = class_names(model.num_classes, args.synset, [Path(args.prefix).parent, Path(args.rec).parent],
                           IMAGENET_SYNSET)
    resize = evaluation.eval_resize(args.resize, args.crop, model.image_shape)
    result = evaluation.evaluate_record(model, args.rec, progress=not args.no_progress,
                                        preprocess_threads=args.preprocess_threads, resize=resize,
                                        misclassified=bool(args.misclassified), flip=args.flip)
    score = result.score()

    if args.confusion_csv:
        evaluation.write_text(args.confusion_csv, evaluation.confusion_csv(result.confusion, names))
    if args.confusion_png:
        evaluation.write_figure(args.confusion_png, evaluation.confusion_figure(result, names, Path(args.rec).name))
    if args.misclassified:
        if lst and evaluation.lst_disagreements(result.misclassified, lst):
            print(f"score.py: warning: {lst_file} does not match {args.rec} (ids missing or other labels); "
                  f"paths left out of {args.misclassified}", file=sys.stderr)
            lst = None
        evaluation.write_text(args.misclassified, evaluation.misclassified_text(
            result.misclassified, names, evaluation.misclassified_format(args.misclassified), result.k, lst))

    if args.json:
        print(json.dumps({"rec": str(args.rec), "images": score.images, "top1": score.top1,
                          f"top{score.top_k}": score.top5, "seconds": score.seconds,
                          "images_per_second": score.images_per_second, "backend": model.backend, "resize": resize,
                          "flip": args.flip,
                          "mean_class_top1": result.mean_class_top1(),
                          "misclassified": score.images - result.correct,
                          "per_class": evaluation.per_class_json(result, names)}))
    else:
        print(f"{args.rec}: {score.images} images")
        print(f"top-1 accuracy = {score.top1:.4f}" + (" (image and mirror averaged: --flip)" if args.flip else ""))
        print(f"top-{score.top_k} accuracy = {score.top5:.4f}")
        print(f"speed = {score.images_per_second:.1f} img/s ({score.seconds:.1f} s, decode included; "
              f"backend {model.backend})")
        print(f"mean per-class top-1 accuracy = {result.mean_class_top1():.4f}")
        print("\n".join(evaluation.per_class_lines(result, names)))
        for what, path in (("confusion matrix", args.confusion_csv), ("confusion matrix", args.confusion_png),
                           (f"{score.images - result.correct} misclassified images", args.misclassified)):
            if path:
                print(f"wrote {path} ({what})")
    return 0


if __name__ == "__main__":
    run_cli(main)
