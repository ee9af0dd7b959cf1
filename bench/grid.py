"""The grid runner: what the benches that train N short runs and tabulate them share (``bench.finetune``,
``bench.jpeg_quality``, ``bench.precision_accuracy``, ``bench.recipe_ablation``; each defines only its grid).

A cell is one ``train_resnet.py`` process, started as a user would start it; its figures come from the
``json_stats:`` line the training logs once per epoch (its stdout), so a bench measures exactly what a user's run
would log. :class:`Table` prints the grid as a Markdown table while it runs and rewrites its JSON file after every
cell, so a grid stopped half-way keeps what it measured.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from resnet_toolkit.fileio import atomic_write_text
from resnet_toolkit.logparse import STATS_TAG

ROOT = Path(__file__).resolve().parents[1]


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


@dataclass(frozen=True)
class Run:
    """One finished cell: each epoch's ``json_stats`` record, in order, and the process's wall time (s)."""

    stats: list[dict]
    wall_s: float

    @property
    def val_accuracy(self) -> list[float]:
        """Top-1 on the validation file after each epoch (fraction)."""
        return [s["val-accuracy"] for s in self.stats]

    @property
    def last(self) -> float:
        """The last epoch's validation top-1: the cell's figure."""
        return self.val_accuracy[-1]

    @property
    def best(self) -> float:
        """The best epoch's validation top-1 (picked on the validation set itself: not the cell's figure)."""
        return max(self.val_accuracy)

    @property
    def train_accuracy(self) -> list[float]:
        """Training accuracy of each epoch (fraction, on the augmented images)."""
        return [s["train-accuracy"] for s in self.stats]

    @property
    def img_s(self) -> float:
        """Median over epochs of the training speed, images/s (decode and augmentation included)."""
        return round(statistics.median(s["speed"] for s in self.stats), 1)

    def figures(self) -> dict:
        """The figures every grid's JSON row carries: ``last``, ``best``, ``val-accuracy``, ``wall_s``."""
        return {"last": self.last, "best": self.best, "val-accuracy": self.val_accuracy, "wall_s": self.wall_s}


def train(flags: list[str], name: str = "run") -> Run:
    """Run ``train_resnet.py`` with ``flags`` in a fresh process and read its per-epoch figures back.

    A failed run stops the bench (``SystemExit``) with ``name``, the exit status and the end of its stderr."""
    tic = time.time()
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), *flags], capture_output=True, text=True)
    if proc.returncode:
        raise SystemExit(f"{name}: train_resnet.py failed (exit {proc.returncode})\n{proc.stderr[-2000:]}")
    stats = [json.loads(line.split(STATS_TAG, 1)[1]) for line in proc.stdout.splitlines() if STATS_TAG in line]
    return Run(stats, round(time.time() - tic, 1))


class Table:
    """A grid's results as they come: each cell a Markdown row on stdout and a record in ``json_path`` (None: no
    file), which is rewritten after every row as ``{**header, key: [records...]}``."""

    def __init__(self, json_path: str | Path | None, header: dict, columns: list[str], key: str = "runs"):
        self.path = Path(json_path) if json_path else None
        self.header, self.key, self.records = dict(header), key, []
        print("| " + " | ".join(columns) + " |")
        print("|" + "---|" * len(columns), flush=True)

    def add(self, record: dict, cells: list) -> None:
        """Keep ``record`` (saved at once) and print ``cells`` as the table's next row."""
        self.records.append(record)
        print("| " + " | ".join(str(c) for c in cells) + " |", flush=True)
        self.save()

    def save(self, **extra) -> None:
        """Rewrite the JSON file: the header, the records so far, and ``extra`` (e.g. a summary at the end)."""
        if self.path:
            atomic_write_text(self.path, json.dumps({**self.header, self.key: self.records, **extra}, indent=1)
                              + "\n")


def folders(work: str | Path | None, log_dir: str | Path | None, prefix: str) -> tuple[Path, Path]:
    """(work folder, log folder): ``work`` or a fresh temporary folder named ``prefix...``; ``log_dir`` or the work
    folder, created."""
    work = Path(work) if work else Path(tempfile.mkdtemp(prefix=prefix))
    logs = Path(log_dir) if log_dir else work
    logs.mkdir(parents=True, exist_ok=True)
    return work, logs


def cifar_parser(doc: str, *, epochs: int, num_examples: int, data_dir: bool = True, seed: bool = True,
                 logs: bool = True) -> argparse.ArgumentParser:
    """A parser with the flags of a grid of short CIFAR-10 runs: ``--data-dir`` (with ``data_dir``), ``--epochs``,
    ``--num-examples``, ``--depth``, ``--seed`` (with ``seed``), ``--json``, ``--log-dir`` (with ``logs``); its
    description is the first paragraph of ``doc``."""
    parser = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    if data_dir:
        parser.add_argument("--data-dir", required=True, help="folder with cifar10_train.rec / cifar10_val.rec")
    parser.add_argument("--epochs", type=int, default=epochs)
    parser.add_argument("--num-examples", type=int, default=num_examples, help="training images an epoch")
    parser.add_argument("--depth", type=int, default=20)
    if seed:
        parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", help="write the results here (rewritten after every run)")
    if logs:
        parser.add_argument("--log-dir", help="keep each run's training log here")
    return parser
