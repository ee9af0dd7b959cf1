"""Kill -9 at random moments and inside checkpoint writes: nothing truncated under a final name, ``--retrain``
picks the newest complete checkpoint, and the resumed run ends bit-identical to an uninterrupted one.

Real data: ResNet-8 on a 320-image cut of CIFAR-10 (``cifar_small_dir``), compared against
``small_reference_run`` (same flags, 3 epochs uninterrupted) under the deterministic settings of
``test_resume.py`` (helpers.DETERMINISTIC_ENV).

To kill *inside* a write deterministically, a small driver runs ``train_resnet.main`` with
``resnet_toolkit.checkpoint.atomic_path`` wrapped so that, for one chosen file, it signals and sleeps after the data is
written beside the target and before the rename: SIGKILL then lands exactly mid-write.
"""
from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from helpers import DETERMINISTIC_ENV, ROOT, assert_same_params, run_train

import resnet_toolkit  # noqa: F401
from resnet_toolkit.checkpoint import latest_epoch, list_epochs

pytestmark = [pytest.mark.data, pytest.mark.slow]

DRIVER = """
import contextlib, sys, time
from pathlib import Path
sys.path.insert(0, sys.argv[1])
import resnet_toolkit.checkpoint as checkpoint
pause_suffix, flag = sys.argv[2], sys.argv[3]
original = checkpoint.atomic_path

@contextlib.contextmanager
def pausing(target):
    with original(target) as tmp:
        yield tmp
        if pause_suffix and str(target).endswith(pause_suffix):
            Path(flag).write_text(str(tmp))
            time.sleep(600)

checkpoint.atomic_path = pausing
from resnet_toolkit.errors import run_cli
from train_resnet import main
sys.argv = ["train_resnet.py", *sys.argv[4:]]
run_cli(main)
"""
LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} Node\[0\] \S")


def _start(argv, out: Path, pause_suffix: str = "", flag: Path | None = None) -> subprocess.Popen:
    env = dict(os.environ, **DETERMINISTIC_ENV)
    with open(out, "w") as fh:
        return subprocess.Popen([sys.executable, "-c", DRIVER, str(ROOT), pause_suffix, str(flag or ""),
                                 *map(str, argv)], stdout=fh, stderr=subprocess.STDOUT, env=env)


def _wait_for(predicate, proc: subprocess.Popen, what: str, timeout: float = 120) -> bool:
    """Wait until ``predicate()``; False if the process ended first."""
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return True
        if proc.poll() is not None:
            return predicate()
        time.sleep(0.01)
    proc.kill()
    raise AssertionError(f"timed out waiting for {what}")


def _kill(proc: subprocess.Popen) -> None:
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def assert_nothing_truncated(folder: Path, reference_keys: set, synset: str) -> None:
    """Every file under a final name is complete: checkpoints load with every key, JSON parses, the log has no
    torn line, synset.txt is whole."""
    import mxnet as mx

    for path in folder.iterdir():
        if path.name.startswith("."):
            continue  # a hidden partial file: expected after a kill mid-write, never read
        if path.suffix == ".params":
            assert set(mx.nd.load(str(path))) == reference_keys, path
        elif path.suffix == ".states":
            keys = set(mx.nd.load(str(path)))
            assert {"meta:num_update", "meta:next_lr"} <= keys and len(keys) > 2, path
        elif path.name.endswith("-symbol.json"):
            assert json.loads(path.read_text())["nodes"], path
        elif path.name == "synset.txt":
            assert path.read_text() == synset
        elif path.suffix == ".log":
            text = path.read_text()
            assert text.endswith("\n") and all(LINE.match(line) for line in text.splitlines()), path


def test_sigkill_anywhere_then_retrain_matches_uninterrupted(small_reference_run, cifar_small_dir, tmp_path):
    import shutil

    rng = random.Random(20261127)
    flags = [*small_reference_run.flags, "--end-epoch", "3"]
    keys = set(small_reference_run.params)
    synset = (cifar_small_dir / "synset.txt").read_text()
    ref = small_reference_run.prefix

    # 1) Inside checkpoint writes: the .states of epoch 2 (after epoch 1's files) and the .params of epoch 3
    #    (after its .states is in place), each starting from the reference run's files.
    for start_epoch, pause in ((1, "-0002.states"), (2, "-0003.params")):
        folder = tmp_path / f"in-write-{pause.strip('-.')}"
        folder.mkdir()
        prefix = folder / "m"
        shutil.copyfile(f"{ref}-symbol.json", f"{prefix}-symbol.json")
        for epoch in range(1, start_epoch + 1):
            for ext in ("params", "states"):
                shutil.copyfile(f"{ref}-{epoch:04d}.{ext}", f"{prefix}-{epoch:04d}.{ext}")
        flag = folder / "paused"
        proc = _start([*flags, "--model-prefix", prefix, "--retrain"], folder / "out.txt", pause, flag)
        assert _wait_for(flag.exists, proc, f"the write of {pause}"), (folder / "out.txt").read_text()
        partial = Path(flag.read_text())
        assert partial.stat().st_size > 0 and partial.name.startswith(".")
        _kill(proc)
        assert partial.exists() and not Path(f"{prefix}{pause}").exists()
        assert latest_epoch(prefix) == start_epoch
        assert_nothing_truncated(folder, keys, synset)
        done = run_train([*flags, "--model-prefix", prefix, "--retrain"])
        assert done.returncode == 0, done.stderr
        assert f"continuing at Epoch[{start_epoch}]" in done.stdout
        assert not partial.exists()  # the stale partial of the killed process is cleaned up
        assert_same_params(mx_load(f"{prefix}-0003.params"), small_reference_run.params)

    # 2) At random moments of whole runs (start-up, batches, checkpointing, validation): each run is killed at a
    #    random delay after it has started training (a retrain: after it has loaded the newest checkpoint).
    # One epoch's wall time in this machine's current state (the reference run's longest), plus slack for
    # checkpointing and validation: kill delays spread over it, so the moments cover every phase of an epoch.
    epoch_s = max(json.loads(line.split("json_stats:", 1)[1])["time"]
                  for line in small_reference_run.stdout.splitlines() if "json_stats:" in line) + 0.5
    kills, chain = 0, 0
    while kills < 5:
        folder = tmp_path / f"random-{chain}"
        folder.mkdir()
        prefix, log = folder / "m", folder / "train.log"
        chain += 1
        while kills < 5 and latest_epoch(prefix) != 3:
            retrain = latest_epoch(prefix) is not None
            out = folder / f"out-{kills}.txt"
            marker = "continuing at Epoch[" if retrain else "start with arguments"
            proc = _start([*flags, "--model-prefix", prefix, "--log-file", log, *(["--retrain"] if retrain else [])],
                          out)
            _wait_for(lambda out=out, marker=marker: marker in out.read_text(), proc, marker)
            assert marker in out.read_text(), out.read_text()
            time.sleep(rng.uniform(0.0, 1.3 * epoch_s))
            if proc.poll() is None:
                _kill(proc)
                kills += 1
                assert_nothing_truncated(folder, keys, synset)
        if latest_epoch(prefix) != 3:
            retrain = ["--retrain"] if latest_epoch(prefix) is not None else []
            done = run_train([*flags, "--model-prefix", prefix, "--log-file", log, *retrain])
            assert done.returncode == 0, done.stderr
        assert list_epochs(prefix) == [1, 2, 3]
        assert_same_params(mx_load(f"{prefix}-0003.params"), small_reference_run.params)
        assert_nothing_truncated(folder, keys, synset)


def mx_load(path: str) -> dict:
    import mxnet as mx

    return mx.nd.load(path)
