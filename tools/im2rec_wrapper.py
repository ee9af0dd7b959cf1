#!/usr/bin/env python
"""Make the RecordIO files the training reads: one tool instead of hand-run ``im2rec`` calls.

    python tools/im2rec_wrapper.py list ROOT --out DIR --name NAME [--train-ratio 0.9]
    python tools/im2rec_wrapper.py pack DIR/NAME_train.lst --root ROOT --out DIR --resize 480 --quality 90
    python tools/im2rec_wrapper.py cifar10 ../shared/data/cifar10-jpg.tar.gz --out data
    python tools/im2rec_wrapper.py imagenet IMAGENET_ROOT --out data [--names ROOT/classes.txt]
    python tools/im2rec_wrapper.py subset data --classes tench,church,parachute --out data-3
    python tools/im2rec_wrapper.py digits --out data
    python tools/im2rec_wrapper.py extract ARCHIVE DEST
    python tools/im2rec_wrapper.py check data/cifar10_train.rec [--decode]
"""
from __future__ import annotations

import argparse
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import resnet_toolkit  # noqa: E402,F401  (numpy compatibility before mxnet)
from resnet_toolkit import datasets, im2rec, images  # noqa: E402
from resnet_toolkit.errors import UserError, run_cli  # noqa: E402


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be >= 1, got {value}")
    return value


def _quality(text: str) -> int:
    value = int(text)
    if not 1 <= value <= 100:
        raise argparse.ArgumentTypeError(f"must be in 1..100, got {value}")
    return value


def _add_image_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--num-thread", type=_positive, default=1, help="decode/encode threads (default 1)")
    p.add_argument("--min-side", type=_positive, default=images.DEFAULT_MIN_SIDE,
                   help="skip images whose shorter side is below this, pixels (default %(default)s)")
    p.add_argument("--max-megapixels", type=float, default=images.DEFAULT_MAX_PIXELS / 1e6,
                   help="skip images larger than this (decompression-bomb guard, default %(default)g)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def _sizes(text: str) -> tuple[int, int]:
    try:
        large, small = (int(v) for v in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected LARGE,SMALL (two shorter sides in pixels), got {text!r}") from None
    if not 8 <= small <= large:
        raise argparse.ArgumentTypeError(f"expected 8 <= SMALL <= LARGE, got {text!r}")
    return large, small


def _add_names_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument("--names", default=None,
                   help="class names: one 'FOLDER NAME' line per class folder (default: ROOT/classes.txt when "
                        "there is one, else the folder names); synset.txt then reads 'FOLDER NAME'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="im2rec_wrapper.py", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list", help="image-folder tree (one folder per class) -> .lst files + synset.txt")
    p.add_argument("root", help="folder holding one sub-folder per class")
    p.add_argument("--out", required=True, help="folder for the .lst files and synset.txt")
    p.add_argument("--name", default=None, help="list name (default: the root folder's name)")
    p.add_argument("--train-ratio", type=float, default=1.0,
                   help="fraction of each class's images in NAME_train.lst; the rest in NAME_val.lst (default 1: "
                        "one NAME.lst)")
    p.add_argument("--seed", type=int, default=0, help="shuffle seed (default 0)")
    p.add_argument("--no-shuffle", action="store_true", help="keep the sorted folder order")
    p.add_argument("--no-stratify", action="store_true",
                   help="split the shuffled images as a whole, not class by class (validation counts per class "
                        "then vary)")
    _add_names_arg(p)

    p = sub.add_parser("pack", help=".lst -> .rec + .idx (+ synset.txt) with MXNet's packing")
    p.add_argument("lst", help="a .lst file written by `list` (index, label, path relative to --root)")
    p.add_argument("--root", required=True, help="folder the .lst paths are relative to")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--name", default=None, help="record name (default: the .lst file's stem)")
    p.add_argument("--resize", type=int, default=0, help="shorter side in pixels (default 0: keep the size)")
    p.add_argument("--quality", type=_quality, default=90, help="JPEG quality 1-100 (default 90)")
    p.add_argument("--center-crop", action="store_true", help="crop the centered square before resizing")
    p.add_argument("--pass-through", action="store_true",
                   help="store each file's own bytes when it already is 8-bit RGB JPEG/PNG (others re-encoded)")
    p.add_argument("--encoding", choices=(".jpg", ".png"), default=".jpg", help="encoding of re-encoded images")
    p.add_argument("--synset", default=None, help="class names file (default: synset.txt beside the .lst)")
    _add_image_args(p)

    p = sub.add_parser("cifar10", help="cifar10_train.rec / cifar10_val.rec (32x32) + synset.txt")
    p.add_argument("source", help="train/ + test/ image tree, a tar/zip of one, or cifar-10-batches-py (folder "
                                  "or archive)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--reencode", action="store_true", help="re-encode every JPEG instead of passing it through")
    p.add_argument("--quality", type=_quality, default=95, help="JPEG quality when re-encoding (default 95)")
    p.add_argument("--seed", type=int, default=0, help="record-order shuffle seed (default 0)")
    p.add_argument("--num-thread", type=_positive, default=1, help="decode/encode threads (default 1)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("imagenet", help="train_480_q90.rec, train_256_q90.rec, val_256_q90.rec + synset.txt "
                                        "(--sizes for others)")
    p.add_argument("root", help="folder with train/<class>/ and val/<class>/")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--quality", type=_quality, default=90, help="JPEG quality (default 90)")
    p.add_argument("--seed", type=int, default=0, help="record-order shuffle seed (default 0)")
    p.add_argument("--sizes", type=_sizes, default=(480, 256), metavar="LARGE,SMALL",
                   help="shorter sides of the training records (LARGE: aug levels 2-3, SMALL: level 1) and of the "
                        "validation records (SMALL) (default 480,256; for a 128 crop 274,146: train with "
                        "--data-type folder --train-rec/--val-rec --image-shape 3,128,128)")
    _add_names_arg(p)
    _add_image_args(p)

    p = sub.add_parser("subset", help="a packed folder's records of some classes only, relabelled, + synset.txt "
                                      "(a fine-tuning set)")
    p.add_argument("data_dir", help="packed folder (its .rec/.idx files and synset.txt)")
    p.add_argument("--classes", required=True,
                   help="comma-separated classes to keep: synset.txt lines, their folder names or their names")
    p.add_argument("--out", required=True, help="output folder (not data_dir)")

    p = sub.add_parser("digits", help="the demo set: digits_train.rec / digits_val.rec (32x32) + synset.txt")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--seed", type=int, default=0, help="split and shuffle seed (default 0)")
    p.add_argument("--val-fraction", type=float, default=0.2, help="held-out fraction (default 0.2)")
    p.add_argument("--quiet", action="store_true", help="no progress bar")

    p = sub.add_parser("extract", help="unpack a tar/zip safely (no links, no '..', no absolute names)")
    p.add_argument("archive")
    p.add_argument("dest")

    p = sub.add_parser("check", help="verify a .rec and its .idx; print record and label counts, decode a sample of "
                                     "the images (as training does at its start) and print their sizes")
    p.add_argument("rec")
    p.add_argument("--decode", action="store_true", help="decode every image, not a sample of 128")
    return parser


def _limits(args: argparse.Namespace) -> images.ImageLimits:
    if args.max_megapixels <= 0:
        raise UserError(f"--max-megapixels must be > 0, got {args.max_megapixels}")
    return images.ImageLimits(min_side=args.min_side, max_pixels=int(args.max_megapixels * 1e6))


def _report(summaries: list[im2rec.PackSummary]) -> None:
    for summary in summaries:
        print(summary.format())
    total = sum(s.packed for s in summaries)
    skipped = sum(len(s.skipped) for s in summaries)
    print(f"total: packed {total}, skipped {skipped}, {sum(s.bytes for s in summaries) / 1e6:.1f} MB, "
          f"{sum(s.seconds for s in summaries):.1f} s")


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    progress = False if getattr(args, "quiet", False) else None
    if args.command == "list":
        paths, scan = im2rec.make_lists(args.root, args.out, args.name or Path(args.root).resolve().name,
                                        args.train_ratio, args.seed, shuffle=not args.no_shuffle,
                                        stratify=not args.no_stratify, names_file=args.names)
        for path in paths:
            print(f"wrote {path}")
        print(f"{len(scan.items)} images in {len(scan.classes)} classes -> {Path(args.out) / 'synset.txt'}")
        for name in scan.empty_classes:
            print(f"  class folder without images: {name}")
        for name, reason in scan.ignored:
            print(f"  ignored {name}: {reason}")
    elif args.command == "pack":
        if args.pass_through and (args.resize or args.center_crop):
            raise UserError("--pass-through stores files unchanged; it cannot be combined with --resize or "
                            "--center-crop")
        if args.resize < 0:
            raise UserError(f"--resize must be >= 0, got {args.resize}")
        transform = images.Transform(resize=args.resize, center_crop=args.center_crop, quality=args.quality,
                                     encoding=args.encoding, pass_through=args.pass_through, limits=_limits(args))
        _report([im2rec.pack_lst(args.lst, args.root, args.out, transform, args.name, args.num_thread, args.synset,
                                 progress)])
    elif args.command == "cifar10":
        _report(datasets.pack_cifar10(args.source, args.out, pass_through=not args.reencode, seed=args.seed,
                                    num_thread=args.num_thread, quality=args.quality, progress=progress))
    elif args.command == "imagenet":
        _report(datasets.pack_imagenet(args.root, args.out, args.quality, args.num_thread, args.seed,
                                     sizes=args.sizes, limits=_limits(args), progress=progress,
                                     names_file=args.names))
    elif args.command == "subset":
        wanted = [c for c in args.classes.split(",") if c.strip()]
        for name, count in im2rec.subset_data_dir(args.data_dir, args.out, wanted):
            print(f"{Path(args.out) / name}: {count} records")
        print(f"classes kept -> {Path(args.out) / 'synset.txt'}")
    elif args.command == "digits":
        _report(datasets.pack_digits(args.out, args.seed, args.val_fraction, progress=progress))
    elif args.command == "extract":
        from resnet_toolkit.untrusted import safe_extract

        print(f"extracted {safe_extract(args.archive, args.dest)} files into {args.dest}")
    elif args.command == "check":
        from resnet_toolkit.records import check_decodable, check_record_file, decode_records, read_labels

        rec, _ = check_record_file(args.rec)
        labels = Counter(int(label) for _, label in read_labels(rec))
        print(f"{rec}: {sum(labels.values())} records, {len(labels)} labels: "
              + " ".join(f"{k}:{v}" for k, v in sorted(labels.items())))
        report = decode_records(rec, every=args.decode)
        print(report.summary())
        check_decodable(report)
    return 0


if __name__ == "__main__":
    run_cli(main)
