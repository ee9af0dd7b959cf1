"""Shared fixtures: where the real data lives, and a temporary working folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import resnetv2  # noqa: F401  (numpy compatibility before mxnet)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESNETV2_SHARED_DATA", ROOT.parent / "shared" / "data"))
CIFAR_TAR = SHARED_DATA / "cifar10-jpg.tar.gz"
PHOTOS = SHARED_DATA / "photos"


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the project)")
    return path


@pytest.fixture
def cifar_tar() -> Path:
    return need(CIFAR_TAR)


@pytest.fixture
def photos_dir() -> Path:
    return need(PHOTOS)


@pytest.fixture(scope="session")
def cifar_rec_dir(tmp_path_factory) -> Path:
    """A folder holding the whole CIFAR-10 tarball packed once per session (pass-through, seed 0):
    cifar10_train.rec/.idx (50,000), cifar10_val.rec/.idx (10,000) and synset.txt. About 15 s on 2 cores."""
    from resnetv2.im2rec import pack_cifar10

    tar = need(CIFAR_TAR)
    out = tmp_path_factory.mktemp("cifar10_rec")
    pack_cifar10(tar, out, pass_through=True, seed=0, num_thread=2, progress=False)
    return out


TRAINED_CIFAR_FLAGS = ["--data-type", "cifar10", "--depth", "20", "--batch-size", "64", "--num-examples", "10000",
                       "--end-epoch", "2", "--lr", "0.1", "--seed", "3", "--frequent", "40"]


@pytest.fixture(scope="session")
def trained_cifar(cifar_rec_dir, tmp_path_factory):
    """ResNet-20-v2 trained once per session by ``train_resnet.py`` on real CIFAR-10: 2 epochs of 10,000 images
    each (the first 10,000 of each epoch's shuffle), batch 64, NAG lr 0.1, seed 3 (about 1-2 minutes on 2 cores).

    Returns an object with ``prefix`` (checkpoint prefix), ``epoch`` (2, the newest checkpoint), ``data_dir``,
    ``log_file``, ``val_accuracy`` (the last ``json_stats`` line's) and ``stdout``.
    """
    import json
    import subprocess
    import sys
    from types import SimpleNamespace

    out = tmp_path_factory.mktemp("trained_cifar")
    prefix, log_file = out / "model" / "resnet-cifar10-20-0", out / "train.log"
    env = dict(os.environ, OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "2"))
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), *TRAINED_CIFAR_FLAGS,
                           "--data-dir", str(cifar_rec_dir), "--model-prefix", str(prefix),
                           "--log-file", str(log_file), "--preprocess-threads", "2"],
                          capture_output=True, text=True, env=env, cwd=out)
    if proc.returncode != 0:
        raise RuntimeError(f"train_resnet.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    stats = [json.loads(line.split("json_stats:", 1)[1]) for line in log_file.read_text().splitlines()
             if "json_stats:" in line]
    return SimpleNamespace(prefix=str(prefix), epoch=2, data_dir=Path(cifar_rec_dir), log_file=log_file,
                           val_accuracy=stats[-1]["val-accuracy"], stats=stats, stdout=proc.stdout)
