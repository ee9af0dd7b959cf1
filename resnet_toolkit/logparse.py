"""Training logs -> one record per epoch. Pure functions over lines of text; no MXNet needed.

Reads every age of MXNet's log lines, with or without an ``INFO:root:`` or timestamp prefix:

- per batch, MXNet <= 1.0 (the original): ``Epoch[0] Batch [50]\\tSpeed: 707.55 samples/sec\\tTrain-accuracy=0.19``
- per batch, MXNet 1.9: ``Epoch[0] Batch [0-50]\\tSpeed: 707.55 samples/sec\\taccuracy=0.19``
- per epoch: ``Epoch[0] Train-accuracy=...``, ``Epoch[0] Time cost=...``, ``Epoch[0] Validation-accuracy=...``,
  ``Epoch[0] Validation-top_k_accuracy_5=...``
- this project's tagged line: ``json_stats: {"epoch": 0, "train-accuracy": ..., "val-accuracy": ..., ...}``

An epoch's train accuracy is its ``Epoch[k] Train-...`` line when there is one, else the last batch line of
the epoch. A training restarted and appended to the same log (an epoch number going back, or an epoch's lines
starting over) replaces what the earlier run logged for that epoch and every later one: the latest run wins.
"""
from __future__ import annotations

import csv
import io
import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

from resnet_toolkit.errors import UserError

# Metric names as MXNet writes them -> this module's names.
METRIC_ALIASES = {
    "accuracy": "top1",
    "acc": "top1",
    "top_k_accuracy_5": "top5",
    "top_k_acc_5": "top5",
    "cross-entropy": "cross_entropy",
    "ce": "cross_entropy",
}

_NUMBER = r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|nan|inf)"
_BATCH = re.compile(r"Epoch\[(\d+)\]\s+Batch\s*\[(?:\d+-)?(\d+)\]\s+Speed:\s*(" + _NUMBER + r")\s*samples/sec(.*)$")
_PAIR = re.compile(r"([A-Za-z][\w\-]*)=(" + _NUMBER + r")")
_TRAIN = re.compile(r"Epoch\[(\d+)\]\s+Train-([\w\-]+)=(" + _NUMBER + r")\s*$")
_VAL = re.compile(r"Epoch\[(\d+)\]\s+Validation-([\w\-]+)=(" + _NUMBER + r")\s*$")
_TIME = re.compile(r"Epoch\[(\d+)\]\s+Time cost=(" + _NUMBER + r")")
# The tagged line this project writes once per epoch (:func:`stats_line`) and reads back here.
STATS_TAG = "json_stats:"
_JSON = re.compile(re.escape(STATS_TAG) + r"\s*(\{.*\})\s*$")

# Order of an epoch's lines as MXNet writes them; a line of a lower stage for the same epoch means a restart.
_STAGE_BATCH, _STAGE_TRAIN, _STAGE_TIME, _STAGE_VAL = 0, 1, 2, 3


def stats_line(stats: dict) -> str:
    """The log line of one epoch's statistics, ``json_stats: {...}``, as this module reads it back."""
    return f"{STATS_TAG} {json.dumps(stats)}"


def metric_name(raw: str) -> str:
    """MXNet's metric name (``accuracy``, ``top_k_accuracy_5``, ``Train-accuracy``) -> ``top1``, ``top5``, ..."""
    for prefix in ("Train-", "Validation-", "train-", "val-"):
        if raw.startswith(prefix):
            raw = raw[len(prefix):]
    return METRIC_ALIASES.get(raw, raw)


@dataclass
class EpochRecord:
    """What one epoch logged. Accuracies are fractions in 0..1 keyed by metric (``top1``, ``top5``, ...).

    ``train``: the epoch's train metrics (from ``Epoch[k] Train-...`` or the JSON line); ``last_batch``: the
    epoch's last per-batch metrics (``batch`` is that batch's number); ``time_s``: the epoch's wall time in
    seconds; ``speed``: the last batch line's samples/sec; ``lr``: the learning rate (JSON line only).
    """

    epoch: int
    train: dict[str, float] = field(default_factory=dict)
    val: dict[str, float] = field(default_factory=dict)
    last_batch: dict[str, float] = field(default_factory=dict)
    batch: int | None = None
    time_s: float | None = None
    speed: float | None = None
    lr: float | None = None

    def train_acc(self, metric: str = "top1") -> float | None:
        """The epoch's train accuracy for ``metric``: the epoch-level value, else the last batch's."""
        if metric in self.train:
            return self.train[metric]
        return self.last_batch.get(metric)

    def val_acc(self, metric: str = "top1") -> float | None:
        """The epoch's validation accuracy for ``metric``, or None when the log has none."""
        return self.val.get(metric)


class _Parser:
    """Accumulates records line by line; keeps the stage of the last line to see restarts."""

    def __init__(self) -> None:
        self.records: dict[int, EpochRecord] = {}
        self.last_epoch = -1
        self.last_stage = -1
        self.last_batch = -1

    def _restart(self, epoch: int) -> None:
        for k in [k for k in self.records if k >= epoch]:
            del self.records[k]
        self.last_stage, self.last_batch = -1, -1

    def _at(self, epoch: int, stage: int | None, batch: int | None = None) -> EpochRecord:
        """The record for ``epoch``, first dropping an earlier run's records when this line starts a new run."""
        if epoch < self.last_epoch:
            self._restart(epoch)
        elif epoch == self.last_epoch and stage is not None:
            if stage < self.last_stage or (stage == _STAGE_BATCH == self.last_stage and batch is not None
                                           and batch < self.last_batch):
                self._restart(epoch)
        if epoch != self.last_epoch:
            self.last_stage, self.last_batch = -1, -1
        self.last_epoch = epoch
        if stage is not None:
            self.last_stage = max(self.last_stage, stage)
        if batch is not None:
            self.last_batch = batch
        return self.records.setdefault(epoch, EpochRecord(epoch))

    def feed(self, line: str) -> bool:
        """Parse one line; True when it carried something this module understands."""
        line = line.rstrip("\r\n")
        m = _JSON.search(line)
        if m:
            return self._json(m.group(1))
        m = _BATCH.search(line)
        if m:
            epoch, batch = int(m.group(1)), int(m.group(2))
            rec = self._at(epoch, _STAGE_BATCH, batch)
            rec.batch, rec.speed = batch, float(m.group(3))
            rec.last_batch = {metric_name(k): float(v) for k, v in _PAIR.findall(m.group(4))}
            return True
        m = _TRAIN.search(line)
        if m:
            self._at(int(m.group(1)), _STAGE_TRAIN).train[metric_name(m.group(2))] = float(m.group(3))
            return True
        m = _TIME.search(line)
        if m:
            self._at(int(m.group(1)), _STAGE_TIME).time_s = float(m.group(2))
            return True
        m = _VAL.search(line)
        if m:
            self._at(int(m.group(1)), _STAGE_VAL).val[metric_name(m.group(2))] = float(m.group(3))
            return True
        return False

    def _json(self, text: str) -> bool:
        try:
            stats = json.loads(text)
        except ValueError:
            return False
        if not isinstance(stats, dict) or not isinstance(stats.get("epoch"), int):
            return False
        # JSON lines take no part in the stage order (a writer may put them before or after Validation lines),
        # but an epoch number going back is still a restart.
        rec = self._at(stats["epoch"], None)
        for key, value in stats.items():
            if not isinstance(value, (int, float)) or isinstance(value, bool) or key == "epoch":
                continue
            if key.startswith(("train-", "train_")):
                rec.train[metric_name(key[6:])] = float(value)
            elif key.startswith(("val-", "val_")):
                rec.val[metric_name(key[4:])] = float(value)
            elif key == "lr":
                rec.lr = float(value)
            elif key in ("time", "time_s", "time-cost"):
                rec.time_s = float(value)
            elif key == "speed":
                rec.speed = float(value)
        return True


def parse_lines(lines: Iterable[str]) -> list[EpochRecord]:
    """Per-epoch records, sorted by epoch, from a log's lines (see the module docstring for the formats).

    Lines of any other shape are ignored. An empty list means the log held nothing this module understands.
    """
    parser = _Parser()
    for line in lines:
        parser.feed(line)
    return [parser.records[k] for k in sorted(parser.records)]


def parse_text(text: str) -> list[EpochRecord]:
    """:func:`parse_lines` over a whole log given as one string."""
    return parse_lines(text.splitlines())


def error_series(records: list[EpochRecord], metric: str = "top1", split: str = "val") -> tuple[list[int], list[float]]:
    """``(epochs, errors)``: 1 - accuracy for ``split`` ('train' or 'val') and ``metric``, epochs lacking it left out.

    Epochs are MXNet's 0-based ``Epoch[k]`` numbers; errors are fractions in 0..1.
    """
    if split not in ("train", "val"):
        raise ValueError(f"split must be 'train' or 'val', got {split!r}")
    epochs, errors = [], []
    for rec in records:
        acc = rec.train_acc(metric) if split == "train" else rec.val_acc(metric)
        if acc is not None and not math.isnan(acc):
            epochs.append(rec.epoch)
            errors.append(1.0 - acc)
    return epochs, errors


CSV_COLUMNS = ("log", "epoch", "train_top1_acc", "val_top1_acc", "train_top5_acc", "val_top5_acc", "time_s",
               "speed_samples_per_s", "lr")


def to_csv(runs: dict[str, list[EpochRecord]]) -> str:
    """The parsed tables of several logs (name -> records) as one CSV text with :data:`CSV_COLUMNS`.

    Accuracies are fractions in 0..1, ``time_s`` seconds, ``speed_samples_per_s`` the last batch line's speed;
    a cell is empty where the log has no value.
    """
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(CSV_COLUMNS)
    for name, records in runs.items():
        for rec in records:
            row = [rec.epoch, rec.train_acc("top1"), rec.val_acc("top1"), rec.train_acc("top5"),
                   rec.val_acc("top5"), rec.time_s, rec.speed, rec.lr]
            writer.writerow([name] + ["" if v is None else (repr(v) if isinstance(v, float) else v) for v in row])
    return out.getvalue()


def parse_file(path: str | Path) -> list[EpochRecord]:
    """:func:`parse_lines` over the log at ``path``; a :class:`UserError` naming the file when it cannot be read,
    is empty, or holds no line this module understands."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise UserError(f"{path}: no such log file") from None
    except IsADirectoryError:
        raise UserError(f"{path}: is a directory, not a log file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read log file ({exc.strerror})") from None
    if not data.strip():
        raise UserError(f"{path}: log file is empty")
    records = parse_text(data.decode("utf-8", errors="replace"))
    if not records:
        raise UserError(f"{path}: no MXNet training lines found (expected lines such as "
                        f"'Epoch[0] Validation-accuracy=0.50'); is it a training log?")
    return records
