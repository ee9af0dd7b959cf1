"""One ``train_resnet.py`` run as a subprocess, read back as its per-epoch statistics: what the bench scripts that
compare short training runs (recipe_ablation, jpeg_quality, precision_accuracy, finetune) share.

A run's figures come from the ``json_stats:`` line the training logs once per epoch (its stdout), so a bench
measures exactly what a user's run would log.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from resnet_toolkit.logparse import STATS_TAG  # noqa: E402  (needs ROOT on the path)


def cifar_flags(data_dir: str | Path, *, epochs: int, num_examples: int, seed: int, prefix: str | Path,
                depth: int = 20, log_file: str | Path | None = None) -> list[str]:
    """The flags every short CIFAR-10 comparison here shares: ResNet-``depth``-v2, batch 128, lr 0.1, ``epochs``
    epochs of ``num_examples`` training images, validated on all of ``cifar10_val.rec`` after each, checkpoints
    under ``prefix``. The recipe (schedule, regularizers, precision) is the caller's to add."""
    flags = ["--data-type", "cifar10", "--data-dir", str(data_dir), "--depth", str(depth), "--batch-size", "128",
             "--lr", "0.1", "--end-epoch", str(epochs), "--num-examples", str(num_examples), "--seed", str(seed),
             "--frequent", "1000", "--model-prefix", str(prefix)]
    if log_file:
        flags += ["--log-file", str(log_file)]
    return flags


def train(flags: list[str], name: str = "run") -> tuple[list[dict], float]:
    """Run ``train_resnet.py`` with ``flags``; returns (each epoch's ``json_stats`` record, wall seconds).

    A failed run stops the bench (``SystemExit``) with ``name``, the exit status and the end of its stderr."""
    tic = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), *flags], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name}: train_resnet.py failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
    stats = [json.loads(line.split(STATS_TAG, 1)[1]) for line in proc.stdout.splitlines() if STATS_TAG in line]
    return stats, round(time.time() - tic, 1)
