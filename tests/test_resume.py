"""Exact resume: N epochs in one run equal N-1 epochs, a stop, and ``--retrain`` for one more, bit for bit.

What makes it deterministic: :data:`helpers.DETERMINISTIC_ENV` (one OpenMP thread, MXNet's NaiveEngine),
``--preprocess-threads 1`` and ``--seed``: epoch k's iterator is seeded ``seed + k`` (shuffle and per-image
augmentation), so the resumed epoch sees the same batches; the optimizer's momentum is restored from ``.states``;
the update counter restarts at ``begin_epoch * epoch_size``, so the LR is the same at every update. Measured: two
runs under these settings give identical bytes, so the comparison is exact (tolerance 0).
"""
from __future__ import annotations

import json

import pytest
from helpers import assert_same_params, run_train

import resnet_toolkit  # noqa: F401

pytestmark = pytest.mark.data


def _json_stats(stdout: str) -> list[dict]:
    return [json.loads(line.split("json_stats:", 1)[1]) for line in stdout.splitlines() if "json_stats:" in line]


def test_module_resume_equals_uninterrupted(small_reference_run, tmp_path):
    """2 epochs, stop, --retrain (no --model-load-epoch: the newest, epoch 2) for the 3rd; the LR drop sits at the
    resume point (Epoch[2]), the subtle case of the original's begin_epoch shift."""
    import mxnet as mx

    prefix = tmp_path / "m"
    first = run_train([*small_reference_run.flags, "--end-epoch", "2", "--model-prefix", prefix])
    assert first.returncode == 0, first.stderr
    resumed = run_train([*small_reference_run.flags, "--end-epoch", "3", "--model-prefix", prefix, "--retrain"])
    assert resumed.returncode == 0, resumed.stderr
    assert "with optimizer state); continuing at Epoch[2], lr 0.01" in resumed.stdout
    assert_same_params(mx.nd.load(f"{prefix}-0003.params"), small_reference_run.params)
    assert_same_params(mx.nd.load(f"{prefix}-0003.states"), mx.nd.load(f"{small_reference_run.prefix}-0003.states"))
    # Every logged number of the resumed epoch (LR included) equals the uninterrupted run's, except wall time.
    drop = ("time", "speed")
    full = [{k: v for k, v in s.items() if k not in drop} for s in _json_stats(small_reference_run.stdout)]
    again = [{k: v for k, v in s.items() if k not in drop} for s in _json_stats(resumed.stdout)]
    assert again == full[2:]
    assert [s["lr"] for s in full] == [0.1, 0.1, 0.01]  # as written, not 0.010000000000000002


@pytest.mark.slow
def test_gluon_resume_equals_uninterrupted(small_reference_run, tmp_path):
    """The same through ``--api gluon`` (gluon.Trainer), with --model-load-epoch given explicitly."""
    import mxnet as mx

    flags = [*small_reference_run.flags, "--api", "gluon"]
    full, part = tmp_path / "full", tmp_path / "part"
    assert run_train([*flags, "--end-epoch", "3", "--model-prefix", full]).returncode == 0
    assert run_train([*flags, "--end-epoch", "2", "--model-prefix", part]).returncode == 0
    resumed = run_train([*flags, "--end-epoch", "3", "--model-prefix", part, "--retrain", "--model-load-epoch", "2"])
    assert resumed.returncode == 0, resumed.stderr
    assert_same_params(mx.nd.load(f"{part}-0003.params"), mx.nd.load(f"{full}-0003.params"))


def test_retrain_honours_new_lr_and_batch_size(small_reference_run, tmp_path):
    """--retrain from epoch 1 with --lr 0.05 --batch-size 16: 20 updates at 0.05 (the step at 2 is after the end).
    The checkpoint has no .states, as the original project's (mx.model.save_checkpoint: symbol + params only)."""
    import shutil

    prefix = tmp_path / "m"
    for suffix in ("-symbol.json", "-0001.params"):
        shutil.copyfile(f"{small_reference_run.prefix}{suffix}", f"{prefix}{suffix}")
    proc = run_train([*small_reference_run.flags, "--end-epoch", "2", "--model-prefix", prefix, "--retrain",
                      "--model-load-epoch", "1", "--lr", "0.05", "--batch-size", "16", "--wd", "0.001"])
    assert proc.returncode == 0, proc.stderr
    stats = _json_stats(proc.stdout)
    assert [s["epoch"] for s in stats] == [1] and stats[0]["lr"] == 0.05
    assert "(without optimizer state); continuing at Epoch[1], lr 0.05" in proc.stdout
    assert "wd=0.001" in proc.stdout and "Epoch[1] Batch [10-15]" in proc.stdout  # 20 batches of 16 (10 of 32)
