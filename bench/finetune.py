"""Fine-tuning vs training from scratch, same number of updates: a ResNet-8 trained on the handwritten digits 0-4
(scikit-learn's, packed by ``tools/im2rec_wrapper.py digits``) is fine-tuned on the digits 5-9 (five classes it
never saw, relabelled 0-4, a ``--data-type folder`` set), against the same network from scratch.

    python -m bench.finetune --epochs 1 2 3 --json bench/results/finetune-digits.json

Each cell is one ``train_resnet.py`` process with a cosine schedule (``--lr 0.1``) over that many epochs (22
updates of batch 32 each); the figure is its final validation accuracy on the 180 held-out images of the digits
5-9.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from bench import grid

COMMON = ["--data-type", "folder", "--image-shape", "3,32,32", "--num-classes", "5", "--depth", "8",
          "--batch-size", "32", "--preprocess-threads", "1", "--frequent", "1000", "--seed", "2", "--lr", "0.1"]
CONFIGS = {
    "scratch": [],
    "finetune": ["--finetune", "{pretrained}"],
    "finetune --lr-mult-body 0.1": ["--finetune", "{pretrained}", "--lr-mult-body", "0.1"],
    "finetune --freeze-stages 2": ["--finetune", "{pretrained}", "--freeze-stages", "2"],
}


def digits_run(folder: Path, half: str, prefix: Path, extra: list[str]) -> grid.Run:
    """Train on ``{half}_train.rec``, validate on ``{half}_val.rec`` (``half``: 'low' = digits 0-4, 'high' = 5-9)."""
    return grid.train([*COMMON, "--data-dir", str(folder), "--train-rec", f"{half}_train.rec",
                       "--val-rec", f"{half}_val.rec", "--model-prefix", str(prefix), *extra], f"{half} {prefix.name}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--epochs", type=int, nargs="+", default=[1, 2, 3], help="fine-tuning budgets to report")
    parser.add_argument("--apis", nargs="+", default=["module", "gluon"], choices=["module", "gluon"])
    parser.add_argument("--json", help="also write the results here")
    args = parser.parse_args(argv)

    from resnet_toolkit.datasets import pack_digits
    from resnet_toolkit.im2rec import subset_records

    work = Path(tempfile.mkdtemp(prefix="finetune-bench-"))
    pack_digits(work / "digits", progress=False)
    for part in ("train", "val"):
        src = work / "digits" / f"digits_{part}.rec"
        subset_records(src, work / f"low_{part}.rec", {d: d for d in range(5)})
        subset_records(src, work / f"high_{part}.rec", {d: d - 5 for d in range(5, 10)})
    pretrained = work / "low"
    pre = digits_run(work, "low", pretrained, ["--end-epoch", "8", "--lr-mode", "cosine"]).last
    print(f"pretrained on the digits 0-4: {pre:.4f} after 8 epochs\n")
    table = grid.Table(args.json, {"pretrained-val-accuracy": pre},
                       ["api", "start", *(f"{e} epoch(s)" for e in args.epochs)], key="cells")
    for api in args.apis:  # the grid: api x start x budget, one row per (api, start)
        for name, extra in CONFIGS.items():
            flags = [f.format(pretrained=pretrained) for f in extra]
            row = {}
            for e in args.epochs:  # a cosine schedule over each budget: every cell ends at a rate near 0
                row[e] = digits_run(work, "high", work / f"{api}-{len(table.records)}-{e}",
                                    ["--api", api, "--end-epoch", str(e), "--lr-mode", "cosine", *flags]).last
            table.add({"api": api, "start": name, "val-accuracy": row},
                      [api, name, *(f"{row[e]:.4f}" for e in args.epochs)])
    return 0


if __name__ == "__main__":
    sys.exit(main())
