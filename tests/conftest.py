"""Shared fixtures: the real data, packed record files and small training runs made once per session.

Plain helpers (paths, running scripts, random checkpoints, shared assertions) live in helpers.py."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

pytest.register_assert_rewrite("helpers")  # its assertions report like the tests' own; before the import below
from helpers import (  # noqa: E402
    CIFAR_PY,
    CIFAR_TAR,
    PHOTOS,
    ROOT,
    SMALL_TRAIN_FLAGS,
    TRAINED_CIFAR_FLAGS,
    copy_records,
    need,
    run_train,
)

# The `slow` marker: tests that train a network, pack a whole data set or start processes. Besides the tests that
# carry it themselves, every test using one of these session fixtures or living in one of these modules gets it,
# so that `pytest -m "not slow"` (make test-fast) runs the quick rest.
SLOW_FIXTURES = frozenset({"cifar_rec_dir", "cifar_lossless_dir", "trained_cifar", "cifar_small_dir",
                           "small_reference_run"})
SLOW_MODULES = frozenset({"test_train", "test_dist", "test_launch", "test_kill", "test_resume", "test_finetune",
                          "test_distill", "test_recipe", "test_score", "test_cifar10_python", "test_import_weights",
                          "test_own_images_flags", "test_own_images_data", "test_default_epoch"})


def pytest_collection_modifyitems(items):
    for item in items:
        module = getattr(item, "module", None)
        if (SLOW_FIXTURES & set(getattr(item, "fixturenames", ()))
                or (module is not None and module.__name__ in SLOW_MODULES)):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(autouse=True)
def no_failed_mxnet_operation_left_behind():
    """After each test: wait for MXNet's pending operations. One that failed and was never waited on would
    rethrow its error in a later, unrelated test (MXNet keeps it on shared resources); the test that left it fails
    here instead, by name."""
    import sys

    yield
    if "mxnet" in sys.modules:
        from resnet_toolkit.errors import clear_failed_ops

        left = clear_failed_ops()
        assert left is None, f"this test left a failed MXNet operation behind: {left}"


@pytest.fixture(scope="session", autouse=True)
def onednn_probe():
    """Ask oneDNN once per session what runs here (:func:`resnet_toolkit.capability.probe`, a few seconds): every
    process the tests start inherits the answer through the environment instead of probing again."""
    from resnet_toolkit.capability import probe

    return probe()


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
    from resnet_toolkit.datasets import pack_cifar10

    tar = need(CIFAR_TAR)
    out = tmp_path_factory.mktemp("cifar10_rec")
    pack_cifar10(tar, out, pass_through=True, seed=0, num_thread=2, progress=False)
    return out


@pytest.fixture(scope="session")
def cifar_lossless_dir(tmp_path_factory) -> Path:
    """The lossless CIFAR-10 (the official python batches) packed once per session as PNG records, seed 0:
    cifar10_train.rec/.idx, cifar10_val.rec/.idx and synset.txt. About 15 s on 2 cores."""
    from resnet_toolkit.datasets import pack_cifar10

    tar = need(CIFAR_PY)
    out = tmp_path_factory.mktemp("cifar10_lossless")
    pack_cifar10(tar, out, seed=0, num_thread=2, progress=False)
    return out


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


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's digits packed as the demo packs them (1,437 train / 360 held-out images, 32x32); needs no
    ../shared/data."""
    from resnet_toolkit.datasets import pack_digits

    out = tmp_path_factory.mktemp("digits")
    pack_digits(out, progress=False)
    return out


@pytest.fixture(scope="session")
def cifar_small_dir(cifar_rec_dir, tmp_path_factory) -> Path:
    """Real CIFAR-10 cut small for training tests that run many short processes: the first 320 training and 160
    validation records of ``cifar_rec_dir`` (the packer shuffles, so every class is there), plus synset.txt."""
    import shutil

    out = tmp_path_factory.mktemp("cifar10_small")
    copy_records(cifar_rec_dir / "cifar10_train.rec", out / "cifar10_train.rec", 320)
    copy_records(cifar_rec_dir / "cifar10_val.rec", out / "cifar10_val.rec", 160)
    shutil.copyfile(cifar_rec_dir / "synset.txt", out / "synset.txt")
    return out


@pytest.fixture(scope="session")
def small_reference_run(cifar_small_dir, tmp_path_factory):
    """Three uninterrupted epochs of ResNet-8 on ``cifar_small_dir`` (10 updates each, the LR drops x0.1 at
    Epoch[2]) under :data:`helpers.DETERMINISTIC_ENV`: the run every exact-resume and kill test compares against.
    Returns an object with ``prefix``, ``flags`` (to repeat it), ``stdout`` and ``params`` (epoch 3 as NDArrays)."""
    from types import SimpleNamespace

    import mxnet as mx

    prefix = tmp_path_factory.mktemp("small_reference") / "m"
    flags = [*SMALL_TRAIN_FLAGS, "--data-dir", cifar_small_dir]
    proc = run_train([*flags, "--end-epoch", "3", "--model-prefix", prefix])
    if proc.returncode != 0:
        raise RuntimeError(f"reference run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return SimpleNamespace(prefix=prefix, flags=flags, stdout=proc.stdout,
                           params=mx.nd.load(f"{prefix}-0003.params"))
