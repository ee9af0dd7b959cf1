"""log/plot_curve.py on a real training log: the plotted values are the log's; the PNG and CSV are written."""
from __future__ import annotations

import csv
import re

import pytest
from helpers import CLASSIC_WITH_RESTART, load_tool

from resnet_toolkit.logparse import parse_file


def logged(log_text: str, pattern: str) -> list[float]:
    """Every number captured by ``pattern`` in the log, in order (a grep done independently of the parser)."""
    return [float(v) for v in re.findall(pattern, log_text)]


@pytest.mark.data
def test_real_training_log_parsed_and_plotted(trained_cifar, tmp_path, capsys):
    text = trained_cifar.log_file.read_text()
    val = logged(text, r"Epoch\[\d+\] Validation-accuracy=([\d.]+)")
    train = logged(text, r"Epoch\[\d+\] Train-accuracy=([\d.]+)")
    assert len(val) == len(train) == 2  # two epochs, no restart in this log
    records = parse_file(trained_cifar.log_file)
    assert [r.epoch for r in records] == [0, 1]
    assert [r.val_acc() for r in records] == val == [s["val-accuracy"] for s in trained_cifar.stats]
    assert [r.train_acc() for r in records] == train
    assert records[-1].val_acc() == trained_cifar.val_accuracy
    assert all(r.time_s > 0 and r.lr == 0.1 for r in records)

    plot = load_tool("log/plot_curve.py")
    fig = plot.make_figure({trained_cifar.log_file.name: records})
    [train_line, val_line] = fig.axes[0].lines
    assert (train_line.get_linestyle(), val_line.get_linestyle()) == ("--", "-")
    assert train_line.get_color() == val_line.get_color()
    assert list(val_line.get_xdata()) == [0, 1] and list(val_line.get_ydata()) == [1 - v for v in val]
    assert list(train_line.get_ydata()) == [1 - v for v in train]
    low, high = fig.axes[0].get_ylim()  # fitted to the data, not the original's fixed 0.1-0.7
    assert low <= min(1 - v for v in val + train) and high >= max(1 - v for v in val + train) and high - low < 0.5

    out, table = tmp_path / "curve.png", tmp_path / "table.csv"
    assert plot.main(["--logs", str(trained_cifar.log_file), "--out", str(out), "--csv", str(table)]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and out.stat().st_size > 10_000
    rows = list(csv.DictReader(table.open()))
    assert [float(r["val_top1_acc"]) for r in rows] == val and [float(r["train_top1_acc"]) for r in rows] == train
    assert sorted(p.name for p in tmp_path.iterdir()) == ["curve.png", "table.csv"]  # no partial files left


def test_two_logs_one_colour_each_and_top5(tmp_path):
    classic = tmp_path / "classic.log"
    classic.write_text(CLASSIC_WITH_RESTART)
    modern = tmp_path / "modern.log"
    modern.write_text("".join(
        f"Epoch[{k}] Train-accuracy={0.3 + k / 10}\nEpoch[{k}] Train-top_k_accuracy_5={0.6 + k / 10}\n"
        f"Epoch[{k}] Validation-accuracy={0.35 + k / 10}\nEpoch[{k}] Validation-top_k_accuracy_5={0.7 + k / 10}\n"
        for k in range(3)))
    plot = load_tool("log/plot_curve.py")
    runs = {"classic.log": parse_file(classic), "modern.log": parse_file(modern)}
    lines = plot.make_figure(runs).axes[0].lines
    assert [line.get_label() for line in lines] == ["classic.log train", "classic.log val", "modern.log train",
                                                    "modern.log val"]
    assert lines[0].get_color() == lines[1].get_color() != lines[2].get_color() == lines[3].get_color()
    assert list(lines[1].get_ydata()) == [1 - 0.40267, 1 - 0.51267, 1 - 0.60267]  # the restart's values

    [train5, val5] = plot.make_figure(runs, "top5").axes[0].lines  # only modern.log has top-5
    assert val5.get_label() == "modern.log val"
    assert list(val5.get_ydata()) == pytest.approx([0.3, 0.2, 0.1])
    out = tmp_path / "top5.png"
    assert plot.main(["--logs", f"{classic},{modern}", "--out", str(out), "--metric", "top5"]) == 0
    assert out.read_bytes()[:4] == b"\x89PNG"
