"""What each recipe option buys: the same short budget of CIFAR-10 ResNet-20-v2 training with the original recipe
and with each option of ``train_resnet.py`` turned on by itself, then all of the recommended ones together.

    python -m bench.recipe_ablation --data-dir data/cifar10 --epochs 15 --num-examples 10000 \\
        --json bench/results/recipe-ablation.json --log-dir bench/results/recipe-ablation

The original recipe: NAG, lr 0.1, x0.1 at 60 % and 80 % of the epochs (the original's 120/160 of 200, scaled),
wd 1e-4 on weights and BN gamma, pad-4 crop + mirror, hard labels. Each run validates on all 10,000 test images
after every epoch; the table gives the last epoch's and the best epoch's top-1. One seed per cell: differences
below ~0.5 points are within seed-to-seed noise at this budget.
"""
from __future__ import annotations

import sys

from bench import grid


def configs(epochs: int) -> dict[str, list[str]]:
    """The grid: configuration name -> the flags it adds to :func:`bench.grid.cifar_flags`."""
    steps = f"{round(epochs * 0.6)},{round(epochs * 0.8)}"
    original = ["--lr-mode", "step", "--lr-steps", steps]
    cosine = ["--lr-mode", "cosine"]
    return {
        "original (step)": original,
        "+ cosine": cosine,
        "+ warm-up 1 epoch": [*original, "--warmup-epochs", "1", "--warmup-lr", "0.01"],
        "+ label smoothing 0.1": [*original, "--label-smoothing", "0.1"],
        "+ mixup 0.2 (off last epoch)": [*original, "--mixup", "0.2", "--mixup-off-epoch", "1"],
        "+ no-wd": [*original, "--no-wd"],
        "+ last-gamma": [*original, "--last-gamma"],
        "+ wd 5e-4": [*original, "--wd", "0.0005"],
        "recommended: cosine, warm-up, smoothing, no-wd, wd 5e-4": [
            *cosine, "--warmup-epochs", "1", "--warmup-lr", "0.01", "--label-smoothing", "0.1", "--no-wd",
            "--wd", "0.0005"],
        # appended after the table's first 9 rows so that their log numbers (run0..run8) stay as committed
        "+ random erasing 0.5": [*original, "--random-erasing", "0.5"],
        "+ random erasing 0.5, mean fill": [*original, "--random-erasing", "0.5", "--random-erasing-fill", "mean"],
    }


def main(argv: list[str] | None = None) -> int:
    parser = grid.cifar_parser(__doc__, epochs=15, num_examples=10000)
    parser.add_argument("--only", nargs="*", help="run only the configurations whose name starts with these")
    args = parser.parse_args(argv)
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the original's two rate drops need two epochs)")

    work, log_dir = grid.folders(None, args.log_dir, "recipe-ablation-")
    table = grid.Table(args.json, {"epochs": args.epochs, "num_examples": args.num_examples, "depth": args.depth,
                                   "seed": args.seed},
                       ["configuration", "flags added", "top-1, last epoch", "best epoch's top-1"])
    for i, (name, extra) in enumerate(configs(args.epochs).items()):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        log = log_dir / f"run{i}.log"
        run = grid.train([*grid.cifar_flags(args.data_dir, epochs=args.epochs, num_examples=args.num_examples,
                                            seed=args.seed, depth=args.depth, prefix=work / f"run{i}" / "m",
                                            log_file=log), *extra], name)
        table.add({"config": name, "flags": extra, **run.figures(), "log": str(log)},
                  [name, f"`{' '.join(extra)}`", f"{run.last:.4f}", f"{run.best:.4f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
