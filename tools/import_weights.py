#!/usr/bin/env python
"""Convert GluonCV's resnet{50,101,152}_v2 weights to a checkpoint: PREFIX-symbol.json + PREFIX-0000.params.

    python tools/import_weights.py --model resnet50_v2 --params resnet50_v2-ecdde353.params --out model/resnet-50
    python predict/predict.py --prefix model/resnet-50 --img cat.jpg

The checkpoint takes raw RGB 0..255 like every network of this project: GluonCV's mean/std normalisation is folded
into bn_data (see resnet_toolkit/gluoncv_names.py). resnet18_v2, resnet34_v2 and GluonCV's CIFAR v2 networks are
refused: they cannot be mapped exactly (their first unit has no projection shortcut). Before anything is written,
GluonCV's network and the converted one run --check-batch random images and must agree within --tolerance.
"""
from __future__ import annotations

import argparse
import os

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.gluoncv_names import IMAGENET_MEAN, IMAGENET_STD, MAPPABLE
from resnet_toolkit.importer import import_gluoncv


def parse_triple(text: str, flag: str) -> tuple[float, float, float]:
    """``'0.485,0.456,0.406'`` -> three finite floats (R, G, B; positive for ``--std``); a clear error otherwise."""
    try:
        values = tuple(float(v) for v in text.split(","))
    except ValueError:
        values = ()
    low = float("-inf") if flag == "--mean" else 0.0  # a std must be positive
    if len(values) != 3 or not all(low < v < float("inf") for v in values):
        raise UserError(f"{flag} must be three numbers R,G,B on the 0..1 scale (e.g. "
                        f"{','.join(map(str, IMAGENET_MEAN if flag == '--mean' else IMAGENET_STD))}), got {text!r}")
    return values  # type: ignore[return-value]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", required=True, help=f"GluonCV model name: {', '.join(MAPPABLE)}")
    parser.add_argument("--params", required=True, help="GluonCV parameter file (net.save_parameters)")
    parser.add_argument("--out", required=True, help="checkpoint prefix to write, e.g. model/resnet-50")
    parser.add_argument("--num-classes", type=int, help="check that the file's classifier has this many outputs")
    parser.add_argument("--force", action="store_true", help="replace an existing PREFIX-symbol.json/-0000.params")
    parser.add_argument("--mean", default=",".join(map(str, IMAGENET_MEAN)),
                        help="per-channel mean GluonCV's network expects, 0..1 scale (default: %(default)s)")
    parser.add_argument("--std", default=",".join(map(str, IMAGENET_STD)),
                        help="per-channel std GluonCV's network expects, 0..1 scale (default: %(default)s)")
    parser.add_argument("--check-batch", type=int, default=2,
                        help="random 224x224 images to compare GluonCV's and the converted network on (0: no check)")
    parser.add_argument("--tolerance", type=float, default=1e-4,
                        help="largest accepted difference of the logits (relative to the largest logit when > 1)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.check_batch < 0:
        raise UserError(f"--check-batch must be >= 0, got {args.check_batch}")
    os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    report = import_gluoncv(args.model, args.out, params_file=args.params, force=args.force,
                            num_classes=args.num_classes, rgb_mean=parse_triple(args.mean, "--mean"),
                            rgb_std=parse_triple(args.std, "--std"), check_batch=args.check_batch,
                            tolerance=args.tolerance)
    line = (f"wrote {report.symbol_file} and {report.params_file}: GluonCV {report.model}, {report.num_classes} "
            f"classes; input raw RGB 0..255 (GluonCV's normalisation folded into bn_data)")
    if report.max_abs_diff is not None:
        line += f"; against GluonCV on {report.check_batch} random images: max abs logit diff {report.max_abs_diff:.2e}"
    print(line)
    return 0


if __name__ == "__main__":
    run_cli(main)
