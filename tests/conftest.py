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
    pack_cifar10(tar, out, pass_through=True, seed=0, progress=False)
    return out
