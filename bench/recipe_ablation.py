#!/usr/bin/env python
"""What each recipe option buys: the same short budget of CIFAR-10 ResNet-20-v2 training with the original recipe
and with each option of ``train_resnet.py`` turned on by itself, then all of the recommended ones together.

    python bench/recipe_ablation.py --data-dir data/cifar10 --epochs 15 --num-examples 10000 \\
        --json bench/results/recipe-ablation.json --log-dir bench/results/recipe-ablation

The original recipe: NAG, lr 0.1, x0.1 at 60 % and 80 % of the epochs (the original's 120/160 of 200, scaled),
wd 1e-4 on weights and BN gamma, pad-4 crop + mirror, hard labels. Each run validates on all 10,000 test images
after every epoch; the table gives the last epoch's and the best epoch's top-1. One seed per cell: differences
below ~0.5 points are within seed-to-seed noise at this budget.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.trainrun import cifar_flags, train  # noqa: E402


def configs(epochs: int) -> dict[str, list[str]]:
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


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True, help="folder with cifar10_train.rec / cifar10_val.rec")
    parser.add_argument("--epochs", type=int, default=15)
    parser.add_argument("--num-examples", type=int, default=10000, help="training images per epoch")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", nargs="*", help="run only the configurations whose name starts with these")
    parser.add_argument("--json", help="write the results here (updated after every run)")
    parser.add_argument("--log-dir", help="keep each run's training log here")
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be at least 2 (the original's two rate drops need two epochs)")

    work = Path(tempfile.mkdtemp(prefix="recipe-ablation-"))
    log_dir = Path(args.log_dir) if args.log_dir else work
    log_dir.mkdir(parents=True, exist_ok=True)
    results = []
    for i, (name, extra) in enumerate(configs(args.epochs).items()):
        if args.only and not any(name.startswith(o) for o in args.only):
            continue
        stats, wall_s = train([*cifar_flags(args.data_dir, epochs=args.epochs, num_examples=args.num_examples,
                                            seed=args.seed, depth=args.depth, prefix=work / f"run{i}" / "m",
                                            log_file=log_dir / f"run{i}.log"), *extra], name)
        accs = [s["val-accuracy"] for s in stats]
        results.append({"config": name, "flags": extra, "last": accs[-1], "best": max(accs), "val-accuracy": accs,
                        "wall_s": wall_s, "log": str(log_dir / f"run{i}.log")})
        print(f"| {name} | `{' '.join(extra)}` | {accs[-1]:.4f} | {max(accs):.4f} |", flush=True)
        if args.json:
            Path(args.json).write_text(json.dumps({"epochs": args.epochs, "num_examples": args.num_examples,
                                                   "depth": args.depth, "seed": args.seed, "runs": results},
                                                  indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
