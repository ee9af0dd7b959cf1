#!/usr/bin/env python
"""Does bfloat16 training cost accuracy? The same short CIFAR-10 run with ``--dtype float32`` and ``--dtype
bfloat16``, same seeds (same initial weights, same batches), paired per seed.

    python bench/precision_accuracy.py --data-dir data/cifar10 --seeds 0 1 2 --epochs 3 --num-examples 10000 \\
        --json bench/results/bf16-accuracy.json
    python bench/precision_accuracy.py --data-dir data/cifar10 --dtypes float32 bfloat16:mxnet bfloat16:fp32-bn

A ``--dtypes`` entry is ``DTYPE`` or ``DTYPE:POLICY`` (``--precision-policy``); the first is the reference the
others are paired against.

Each run: ResNet-20-v2, batch 128, lr 0.1 cosine over ``--epochs`` epochs of ``--num-examples`` images, validated
on all 10,000 test images; the figure is the last epoch's top-1.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.trainrun import cifar_flags, train  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--num-examples", type=int, default=10000)
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        help="DTYPE or DTYPE:POLICY each; the first is the reference")
    parser.add_argument("--json")
    args = parser.parse_args()

    work = Path(tempfile.mkdtemp(prefix="precision-accuracy-"))
    runs = []
    for seed in args.seeds:
        row = {"seed": seed}
        for spec in args.dtypes:
            dtype, _, policy = spec.partition(":")
            flags = [*cifar_flags(args.data_dir, epochs=args.epochs, num_examples=args.num_examples, seed=seed,
                                  prefix=work / f"{dtype}-{policy}-{seed}" / "m"),
                     "--lr-mode", "cosine", "--dtype", dtype]
            if policy:
                flags += ["--precision-policy", policy]
            stats, wall_s = train(flags, f"seed {seed}, {spec}")
            row[spec] = stats[-1]["val-accuracy"]
            row[f"{spec}-train-img/s"] = round(statistics.median(s["speed"] for s in stats), 1)
            row[f"{spec}-wall_s"] = wall_s
        runs.append(row)
        print(json.dumps(row), flush=True)
    first = args.dtypes[0]
    summary = {f"mean {spec}": statistics.mean(r[spec] for r in runs) for spec in args.dtypes}
    for other in args.dtypes[1:]:
        diffs = [r[other] - r[first] for r in runs]
        summary[f"{other} - {first}"] = {"mean paired difference": statistics.mean(diffs),
                                         "paired differences": diffs}
    print(json.dumps(summary))
    if args.json:
        Path(args.json).write_text(json.dumps({"epochs": args.epochs, "num_examples": args.num_examples,
                                               "runs": runs, "summary": summary}, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
