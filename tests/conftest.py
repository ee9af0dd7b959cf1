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
