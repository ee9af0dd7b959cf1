"""Bad input to train_resnet.py: one ``error:`` line on stderr, exit status 2, no traceback, good files untouched.

Most cases run ``run_cli(main, argv)`` in-process (the same code path as the command, without paying MXNet's
start-up per case); ``test_cli_*`` run the real command once to hold the process-level contract.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import ROOT, SMALL_TRAIN_FLAGS, run_train, train_fails

import resnet_toolkit  # noqa: F401

pytestmark = pytest.mark.data


@pytest.fixture
def good(small_reference_run, cifar_small_dir, tmp_path):
    """A folder with a good checkpoint (epochs 1-3 of the reference run), a synset and a log; its digest."""
    folder = tmp_path / "model"
    folder.mkdir()
    prefix = folder / "m"
    for suffix in ("-symbol.json", *(f"-{e:04d}.{x}" for e in (1, 2, 3) for x in ("params", "states"))):
        shutil.copyfile(f"{small_reference_run.prefix}{suffix}", f"{prefix}{suffix}")
    shutil.copyfile(cifar_small_dir / "synset.txt", folder / "synset.txt")
    (folder / "train.log").write_text("2026-11-27 09:00:00,000 Node[0] Epoch[0] Validation-accuracy=0.5\n")

    class Good:
        pass

    g = Good()
    g.folder, g.prefix, g.data_dir = folder, prefix, cifar_small_dir
    g.flags = [*SMALL_TRAIN_FLAGS, "--data-dir", str(cifar_small_dir), "--model-prefix", str(prefix),
               "--log-file", str(folder / "train.log")]
    g.digest = lambda: {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}
    return g


@pytest.mark.parametrize("extra, message", [
    (["--depth", "21"], "no cifar10 ResNet-v2 of depth 21; valid depths: (depth-2)%6==0"),
    (["--depth", "0"], "no cifar10 ResNet-v2 of depth 0; valid depths"),
    (["--data-type", "mnist"], "argument --data-type: invalid choice: 'mnist' (choose from 'cifar10', 'imagenet', "
                               "'digits', 'folder')"),
    (["--data-type", "imagenet", "--depth", "20"], "no imagenet ResNet-v2 of depth 20; valid depths: 18, 34, 50"),
    (["--batch-size", "0"], "--batch-size must be positive, got 0"),
    (["--batch-size", "-32"], "--batch-size must be positive, got -32"),
    (["--batch-size", "33", "--cpus", "2"], "--batch-size 33 is not divisible by the 2 contexts"),
    (["--lr", "-0.1"], "--lr must be a finite number >= 0, got -0.1"),
    (["--lr", "nan"], "--lr must be a finite number >= 0, got nan"),
    (["--lr", "inf"], "--lr must be a finite number >= 0, got inf"),
    (["--lr", "0"], "--lr must be positive, got 0"),
    (["--wd=-1e-4"], "--wd must be a finite number >= 0"),
    (["--wd", "-1e-4"], "argument --wd: expected one argument (see --help)"),
    (["--depth", "twenty"], "argument --depth: invalid int value: 'twenty' (see --help)"),
    (["--gpus", "0"], "--gpus 0: no GPU 0 on this machine; MXNet sees no GPU"),
    (["--gpus", "0,x"], "--gpus must be comma-separated GPU ids"),
    (["--lr-steps", "160,120"], "--lr-steps must be increasing positive epochs"),
    (["--memonger", "--api", "gluon"], "--memonger plans a Symbol graph: it works with --api module only"),
    (["--retrain", "--model-load-epoch", "7"], "--retrain: no checkpoint {prefix}-0007.params (saved epochs: "
                                               "1, 2, 3)"),
    (["--retrain", "--model-load-epoch", "two"], "--model-load-epoch must be an epoch number, -1 or 'latest'"),
    (["--retrain", "--num-classes", "100"], "--num-classes 100 does not match checkpoint {prefix}-0003.params, "
                                            "which has 10 classes"),
    (["--retrain", "--depth", "14"], "checkpoint {prefix}-0003.params has no parameter 'stage1_unit2_bn1_gamma'"),
    (["--end-epoch", "5"], "{prefix} already has checkpoints (epochs 1, 2, 3); add --retrain"),
    (["--retrain", "--end-epoch", "3"], "checkpoint epoch 3 is already at --end-epoch 3: nothing to do"),
    (["--num-examples", "321"], "--num-examples 321 exceeds the 320 records in"),
    (["--retrain", "--end-epoch", "5", "--batch-size", "200"],
     "{data_dir}/cifar10_val.rec: 160 images is fewer than one batch of 200; use a smaller"),
    (["--data-type", "folder", "--image-shape", "3,32,32"], "--data-type folder needs --train-rec, --val-rec"),
    (["--data-type", "folder", "--train-rec", "a.rec", "--val-rec", "b.rec", "--image-shape", "32,32"],
     "--image-shape must be '3,H,W' with H, W >= 8, got '32,32'"),
    (["--image-shape", "3,32,32"], "--train-rec, --val-rec and --image-shape go with --data-type folder only"),
    (["--data-type", "folder", "--train-rec", "nope.rec", "--val-rec", "cifar10_val.rec", "--image-shape",
      "3,32,32"], "{data_dir}/nope.rec: no such file (make it with: python tools/im2rec_wrapper.py list"),
])
def test_bad_flag(good, capsys, extra, message):
    before = good.digest()
    assert train_fails([*good.flags, *extra], capsys).startswith(message.format(prefix=good.prefix,
                                                                      data_dir=good.data_dir))
    assert good.digest() == before


def test_retrain_without_any_checkpoint(good, tmp_path, capsys):
    message = train_fails([*good.flags, "--retrain", "--model-prefix", tmp_path / "empty" / "m"], capsys)
    assert message == f"--retrain: no checkpoint m-NNNN.params (looked for m-*.params in {tmp_path / 'empty'})"


def test_missing_data_dir(good, tmp_path, capsys):
    before = good.digest()
    message = train_fails([*good.flags, "--data-dir", tmp_path / "nowhere"], capsys)
    assert message.startswith(f"--data-dir {tmp_path / 'nowhere'}: no such folder (make it with: python tools/")
    assert good.digest() == before


def test_model_prefix_folder_not_writable(good, tmp_path, capsys):
    """A prefix whose folder cannot exist (a file stands where the folder should be)."""
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    message = train_fails([*good.flags, "--model-prefix", blocker / "sub" / "m"], capsys)
    assert message.startswith(f"cannot create checkpoint (--model-prefix) folder {blocker / 'sub'}:")
    assert blocker.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write into a read-only folder")
def test_model_prefix_folder_read_only(good, tmp_path, capsys):
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        message = train_fails([*good.flags, "--model-prefix", folder / "m"], capsys)
    finally:
        folder.chmod(0o700)
    assert message == f"checkpoint (--model-prefix) folder {folder} is not writable"


def test_log_file_folder_not_writable(good, tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    before = good.digest()
    message = train_fails([*good.flags, "--retrain", "--end-epoch", "4", "--log-file", blocker / "train.log"], capsys)
    assert message.startswith(f"cannot create --log-file folder {blocker}:")
    assert good.digest() == before


def test_cli_gpu_absent_is_one_line():
    """The real command, no data needed: --gpus 0 on a machine without a GPU."""
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), "--gpus", "0", "--data-type", "cifar10",
                           "--depth", "20"], capture_output=True, text=True,
                          env=dict(os.environ, OMP_NUM_THREADS="1"))
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "train_resnet.py: error: --gpus 0: no GPU 0 on this machine; MXNet sees no GPU (CPU build or no CUDA "
        "device); omit --gpus to train on CPU"]


@pytest.mark.slow
def test_nan_loss_stops_with_epoch_and_batch_and_keeps_checkpoint(good):
    """--retrain from epoch 3 with an absurd --lr: the loss turns NaN/inf; the run stops naming epoch and batch,
    before that update, and the good checkpoint files are unchanged (no 0004 file appears)."""
    before = good.digest()
    proc = run_train([*good.flags, "--retrain", "--end-epoch", "6", "--lr", "1e12", "--mom", "0"])
    assert proc.returncode == 2
    err = [line for line in proc.stderr.strip().splitlines() if ": error: " in line]
    assert len(err) == 1 and "Traceback" not in proc.stderr
    assert "training diverged: loss is" in err[0] and "at Epoch[3] Batch [" in err[0]
    assert f"newest checkpoint kept: {good.prefix}-0003.params" in err[0]
    after = good.digest()
    assert {k: v for k, v in after.items() if k != "train.log"} == {k: v for k, v in before.items()
                                                                      if k != "train.log"}
    assert not Path(f"{good.prefix}-0004.params").exists()
