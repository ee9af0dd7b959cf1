"""Log parsing: every age of MXNet's lines, restarts, JSON lines; pure functions, no MXNet."""
from __future__ import annotations

import json

import pytest
from helpers import CLASSIC_WITH_RESTART

from resnet_toolkit.errors import UserError
from resnet_toolkit.logparse import error_series, metric_name, parse_file, parse_text, to_csv


def test_classic_log_with_restart_keeps_the_latest_run():
    records = parse_text(CLASSIC_WITH_RESTART)
    assert [r.epoch for r in records] == [0, 1, 2]
    assert [r.train_acc() for r in records] == [0.28125, 0.46125, 0.57125]
    assert [r.val_acc() for r in records] == [0.40267, 0.51267, 0.60267]
    assert [r.time_s for r in records] == [70.421, 80.0, 81.0]
    assert [r.speed for r in records] == [710.01, 601.0, 603.0]
    assert error_series(records, "top1", "val") == ([0, 1, 2], [1 - 0.40267, 1 - 0.51267, 1 - 0.60267])


def test_restart_at_the_same_epoch_drops_the_earlier_runs_values():
    # Run 1 finishes epoch 3 (validation logged); run 2 restarts at epoch 3 and is killed after one batch line.
    log = ("Epoch[3] Batch [0-50]\tSpeed: 1.0 samples/sec\taccuracy=0.1\n"
           "Epoch[3] Train-accuracy=0.2\nEpoch[3] Time cost=5.0\nEpoch[3] Validation-accuracy=0.3\n"
           "Epoch[3] Batch [0-50]\tSpeed: 2.0 samples/sec\taccuracy=0.7\n")
    [rec] = parse_text(log)
    assert (rec.train_acc(), rec.val_acc(), rec.time_s, rec.speed) == (0.7, None, None, 2.0)
    # Killed mid-epoch at batch 300, restarted at the same epoch: batch numbers go back, the latest wins.
    log = ("Epoch[3] Batch [250-300]\tSpeed: 1.0 samples/sec\taccuracy=0.1\n"
           "Epoch[3] Batch [0-50]\tSpeed: 2.0 samples/sec\taccuracy=0.6\n")
    assert parse_text(log)[0].train_acc() == 0.6


def test_mxnet19_lines_with_timestamp_and_top5():
    log = """\
2026-11-27 10:00:01,123 Epoch[0] Batch [0-50]\tSpeed: 512.31 samples/sec\taccuracy=0.125000\ttop_k_accuracy_5=0.5
2026-11-27 10:00:02,456 Epoch[0] Batch [50-100]\tSpeed: 520.00 samples/sec\taccuracy=0.250000\ttop_k_accuracy_5=0.6
2026-11-27 10:00:03,000 Epoch[0] Time cost=3.210
2026-11-27 10:00:04,000 Epoch[0] Validation-accuracy=0.300000
2026-11-27 10:00:04,000 Epoch[0] Validation-top_k_accuracy_5=0.800000
Epoch[1] Train-accuracy=0.400000
Epoch[1] Train-top_k_accuracy_5=0.700000
Epoch[1] Batch [0-50]\tSpeed: 1.0 samples/sec\taccuracy=0.9
"""
    r0, r1 = parse_text(log)
    assert (r0.train_acc(), r0.train_acc("top5"), r0.batch) == (0.25, 0.6, 100)
    assert (r0.val_acc(), r0.val_acc("top5"), r0.time_s) == (0.3, 0.8, 3.21)
    # An epoch-level Train- line wins over batch lines; a batch line after it means a restart of epoch 1.
    assert (r1.train_acc(), r1.train_acc("top5")) == (0.9, None)


def test_epoch_level_train_line_wins_over_the_last_batch():
    log = "Epoch[0] Batch [0-50]\tSpeed: 1.0 samples/sec\taccuracy=0.5\nEpoch[0] Train-accuracy=0.45\n"
    assert parse_text(log)[0].train_acc() == 0.45


def test_json_stats_lines_and_a_restart_in_them():
    lines = [f"INFO:root:json_stats: {json.dumps(d)}" for d in (
        {"epoch": 0, "train-accuracy": 0.3, "val-accuracy": 0.35, "lr": 0.1, "time": 10.5},
        {"epoch": 1, "train-accuracy": 0.5, "val-accuracy": 0.55, "val-top_k_accuracy_5": 0.9, "lr": 0.1},
        {"epoch": 0, "train-accuracy": 0.31, "val-accuracy": 0.36, "lr": 0.01, "time": 11.0},
    )]
    [rec] = parse_text("\n".join(lines))
    assert (rec.epoch, rec.train_acc(), rec.val_acc(), rec.lr, rec.time_s) == (0, 0.31, 0.36, 0.01, 11.0)
    # Beside MXNet's own lines for the same epoch, in either order, a JSON line does not count as a restart.
    log = ("Epoch[0] Train-accuracy=0.3\nEpoch[0] Time cost=1.0\njson_stats: {\"epoch\": 0, \"lr\": 0.05}\n"
           "Epoch[0] Validation-accuracy=0.4\n")
    [rec] = parse_text(log)
    assert (rec.train_acc(), rec.val_acc(), rec.lr, rec.time_s) == (0.3, 0.4, 0.05, 1.0)


def test_unrelated_and_malformed_lines_are_ignored():
    log = ("hello\njson_stats: {not json\njson_stats: [1, 2]\nEpoch[x] Validation-accuracy=0.3\n"
           "Epoch[2] Validation-accuracy=0.25\n")
    [rec] = parse_text(log)
    assert (rec.epoch, rec.val_acc()) == (2, 0.25)
    assert parse_text("") == []


def test_metric_names():
    assert [metric_name(n) for n in ("accuracy", "Train-accuracy", "top_k_accuracy_5", "val-top_k_accuracy_5",
                                     "cross-entropy")] == ["top1", "top1", "top5", "top5", "cross_entropy"]


def test_csv_table():
    text = to_csv({"a.log": parse_text(CLASSIC_WITH_RESTART)})
    lines = text.splitlines()
    assert lines[0] == "log,epoch,train_top1_acc,val_top1_acc,train_top5_acc,val_top5_acc,time_s,speed_samples_per_s,lr"
    assert lines[2] == "a.log,1,0.46125,0.51267,,,80.0,601.0,"
    assert len(lines) == 4


def test_parse_file_errors_name_the_file(tmp_path):
    with pytest.raises(UserError, match=r"missing\.log: no such log file"):
        parse_file(tmp_path / "missing.log")
    (tmp_path / "empty.log").write_text("\n  \n")
    with pytest.raises(UserError, match=r"empty\.log: log file is empty"):
        parse_file(tmp_path / "empty.log")
    (tmp_path / "other.log").write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00 not a log")
    with pytest.raises(UserError, match=r"other\.log: no MXNet training lines found"):
        parse_file(tmp_path / "other.log")
    with pytest.raises(UserError, match="is a directory"):
        parse_file(tmp_path)
