"""Does bfloat16 training cost accuracy? The same short CIFAR-10 run with ``--dtype float32`` and ``--dtype
bfloat16``, same seeds (same initial weights, same batches), paired per seed.

    python -m bench.precision_accuracy --data-dir data/cifar10 --seeds 0 1 2 --epochs 3 --num-examples 10000 \\
        --json bench/results/bf16-accuracy.json
    python -m bench.precision_accuracy --data-dir data/cifar10 --dtypes float32 bfloat16:mxnet bfloat16:fp32-bn

A ``--dtypes`` entry is ``DTYPE`` or ``DTYPE:POLICY`` (``--precision-policy``); the first is the reference the
others are paired against.

Each run: ResNet-20-v2, batch 128, lr 0.1 cosine over ``--epochs`` epochs of ``--num-examples`` images, validated
on all 10,000 test images; the figure is the last epoch's top-1.
"""
from __future__ import annotations

import json
import statistics
import sys
import tempfile
from pathlib import Path

from bench import grid


def main(argv: list[str] | None = None) -> int:
    parser = grid.cifar_parser(__doc__, epochs=3, num_examples=10000, seed=False, logs=False)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--dtypes", nargs="+", default=["float32", "bfloat16"],
                        help="DTYPE or DTYPE:POLICY each; the first is the reference")
    args = parser.parse_args(argv)

    work = Path(tempfile.mkdtemp(prefix="precision-accuracy-"))
    table = grid.Table(args.json, {"epochs": args.epochs, "num_examples": args.num_examples},
                       ["seed", *(f"{spec} top-1" for spec in args.dtypes)])
    for seed in args.seeds:  # the grid: seeds x dtypes, one row (a pair) per seed
        row = {"seed": seed}
        for spec in args.dtypes:
            dtype, _, policy = spec.partition(":")
            flags = [*grid.cifar_flags(args.data_dir, epochs=args.epochs, num_examples=args.num_examples, seed=seed,
                                       depth=args.depth, prefix=work / f"{dtype}-{policy}-{seed}" / "m"),
                     "--lr-mode", "cosine", "--dtype", dtype]
            if policy:
                flags += ["--precision-policy", policy]
            run = grid.train(flags, f"seed {seed}, {spec}")
            row[spec] = run.last
            row[f"{spec}-train-img/s"] = run.img_s
            row[f"{spec}-wall_s"] = run.wall_s
        table.add(row, [seed, *(f"{row[spec]:.4f}" for spec in args.dtypes)])
    first = args.dtypes[0]
    summary = {f"mean {spec}": statistics.mean(r[spec] for r in table.records) for spec in args.dtypes}
    for other in args.dtypes[1:]:
        diffs = [r[other] - r[first] for r in table.records]
        summary[f"{other} - {first}"] = {"mean paired difference": statistics.mean(diffs),
                                         "paired differences": diffs}
    print(json.dumps(summary))
    table.save(summary=summary)
    return 0


if __name__ == "__main__":
    sys.exit(main())
