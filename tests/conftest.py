"""Shared fixtures: where the real data lives, and a temporary working folder."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("RESNETV2_SHARED_DATA", ROOT.parent / "shared" / "data"))
CIFAR_TAR = SHARED_DATA / "cifar10-jpg.tar.gz"
PHOTOS = SHARED_DATA / "photos"


def run_wrapper(argv: list, capsys) -> tuple[int, str, str]:
    """Run ``tools/im2rec_wrapper.py`` in-process (argv items may be paths): (exit code, stdout, stderr)."""
    import importlib.util

    from resnet_toolkit.errors import run_cli

    spec = importlib.util.spec_from_file_location("im2rec_wrapper", ROOT / "tools" / "im2rec_wrapper.py")
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    with pytest.raises(SystemExit) as exc:
        run_cli(wrapper.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the project)")
    return path


@pytest.fixture(scope="session", autouse=True)
def onednn_probe():
    """Ask oneDNN once per session what runs here (:func:`resnet_toolkit.capability.probe`, a few seconds): every
    process the tests start inherits the answer through the environment instead of probing again."""
    from resnet_toolkit.capability import probe

    return probe()


def need_feature(name: str):
    """Skip the calling test, with oneDNN's reason, when ``name`` (a :data:`resnet_toolkit.capability.FEATURES`
    entry) does not run on this CPU (e.g. 'bfloat16' on an AVX2-only one); returns the capabilities otherwise."""
    from resnet_toolkit.capability import probe

    caps = probe()
    if not caps.supports(name):
        pytest.skip(f"{name} does not run here: oneDNN runs {caps.isa_words()} ({caps.errors.get(name, '')})")
    return caps


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
    from resnet_toolkit.im2rec import pack_cifar10

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


@pytest.fixture(scope="session")
def digits_dir(tmp_path_factory) -> Path:
    """scikit-learn's digits packed as the demo packs them (1,437 train / 360 held-out images, 32x32); needs no
    ../shared/data."""
    from resnet_toolkit.im2rec import pack_digits

    out = tmp_path_factory.mktemp("digits")
    pack_digits(out, progress=False)
    return out


def train_digits_model(digits_dir: Path, prefix: Path, epochs: int) -> str:
    """ResNet-8 trained by train_resnet.py on the digits (lr 0.1, x0.1 after epoch 3, seed 0, one thread) into
    ``prefix``; returns the prefix. Measured on the 360 held-out images: 77 % after 2 epochs, 96 % after 4."""
    import subprocess
    import sys

    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), "--data-type", "digits", "--data-dir",
                           str(digits_dir), "--depth", "8", "--batch-size", "32", "--end-epoch", str(epochs),
                           "--lr", "0.1", "--lr-steps", "3", "--preprocess-threads", "1", "--seed", "0",
                           "--frequent", "1000", "--model-prefix", str(prefix)],
                          capture_output=True, text=True, env=env, cwd=prefix.parent, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"train_resnet.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return str(prefix)


def copy_records(src_rec: Path, dst_rec: Path, count: int) -> None:
    """Write the first ``count`` records of ``src_rec`` (and an ``.idx``) to ``dst_rec``, unchanged."""
    import mxnet as mx

    reader = mx.recordio.MXIndexedRecordIO(str(src_rec.with_suffix(".idx")), str(src_rec), "r")
    writer = mx.recordio.MXIndexedRecordIO(str(dst_rec.with_suffix(".idx")), str(dst_rec), "w")
    for i, key in enumerate(reader.keys[:count]):
        writer.write_idx(i, reader.read_idx(key))
    writer.close()
    reader.close()


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


# Settings under which two training runs are bitwise identical (measured on MXNet 1.9.1 CPU + MKLDNN): one OpenMP
# thread (no reduction-order races in MKLDNN's convolution backward), the synchronous NaiveEngine, and
# --preprocess-threads 1 with a per-epoch --seed (the iterator's shuffle and per-image augmentation are seeded).
DETERMINISTIC_ENV = {"OMP_NUM_THREADS": "1", "MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_CPU_WORKER_NTHREADS": "1"}


def run_train(argv, cwd=None, env=None, timeout: float = 600):
    """Run ``train_resnet.py argv`` in a fresh process with :data:`DETERMINISTIC_ENV`; returns the
    ``subprocess.CompletedProcess`` (text stdout/stderr)."""
    import subprocess
    import sys

    full_env = dict(os.environ, **DETERMINISTIC_ENV, **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), *map(str, argv)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


SMALL_TRAIN_FLAGS = ["--data-type", "cifar10", "--depth", "8", "--batch-size", "32", "--lr-steps", "2",
                     "--preprocess-threads", "1", "--frequent", "5", "--seed", "1"]


@pytest.fixture(scope="session")
def small_reference_run(cifar_small_dir, tmp_path_factory):
    """Three uninterrupted epochs of ResNet-8 on ``cifar_small_dir`` (10 updates each, the LR drops x0.1 at
    Epoch[2]) under :data:`DETERMINISTIC_ENV`: the run every exact-resume and kill test compares against.
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
