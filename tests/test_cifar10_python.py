"""The CIFAR-10 importer on the real files of ../shared/data: the lossless python batches packed by
``tools/im2rec_wrapper.py cifar10`` give records whose decoded pixels equal the batch arrays bit for bit, with the
official labels and 5,000 / 1,000 images a class; the JPEG tarball still packs (its bytes passed through)."""
from __future__ import annotations

import collections
import hashlib
import tarfile

import numpy as np
import pytest
from helpers import CIFAR_PY, CIFAR_TAR, need, run_wrapper

from resnet_toolkit.untrusted import load_pickle_safely

pytestmark = [pytest.mark.data, pytest.mark.slow]
CLASSES = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"]


def _batches(tar_path) -> dict[str, tuple[np.ndarray, list[int]]]:
    """split -> (N x 32 x 32 x 3 RGB uint8, labels), read with the project's data-only unpickler."""
    out: dict[str, list] = {"train": [[], []], "test": [[], []]}
    with tarfile.open(tar_path) as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            if not (name.startswith("data_batch_") or name == "test_batch"):
                continue
            batch = load_pickle_safely(tar.extractfile(member).read(), name)
            split = "test" if name == "test_batch" else "train"
            out[split][0].append(batch[b"data"].reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
            out[split][1].extend(batch[b"labels"])
    return {k: (np.concatenate(v[0]), v[1]) for k, v in out.items()}


def _records(rec) -> list[tuple[int, bytes, bytes]]:
    """Every record of ``rec`` in file order: (label, the stored image bytes, decoded RGB pixels as bytes)."""
    import cv2
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(rec), "r")
    rows = []
    while (item := reader.read()) is not None:
        header, blob = mx.recordio.unpack(item)
        bgr = cv2.imdecode(np.frombuffer(blob, np.uint8), cv2.IMREAD_UNCHANGED)
        assert bgr.shape == (32, 32, 3) and bgr.dtype == np.uint8
        rows.append((int(header.label), blob, np.ascontiguousarray(bgr[:, :, ::-1]).tobytes()))
    reader.close()
    return rows


def _digest(pixels: bytes, label: int) -> str:
    return hashlib.sha1(bytes([label]) + pixels).hexdigest()


def test_python_batches_pack_bit_for_bit(tmp_path, capsys):
    need(CIFAR_PY)
    lossless_dir = tmp_path
    code, out, err = run_wrapper(["cifar10", CIFAR_PY, "--out", lossless_dir, "--quiet"], capsys)
    assert code == 0, err
    assert "cifar10_train.rec: packed 50000 images" in out and "cifar10_val.rec: packed 10000 images" in out
    assert (lossless_dir / "synset.txt").read_text().split() == CLASSES
    batches = _batches(CIFAR_PY)
    assert batches["train"][1][:5] == [6, 9, 9, 4, 1] and batches["test"][1][:5] == [3, 8, 8, 0, 6]  # README
    for split, rec, per_class in (("train", "cifar10_train.rec", 5000), ("test", "cifar10_val.rec", 1000)):
        rows = _records(lossless_dir / rec)
        assert all(blob.startswith(b"\x89PNG") for _, blob, _ in rows)  # lossless encoding
        counts = collections.Counter(label for label, _, _ in rows)
        assert counts == {c: per_class for c in range(10)}
        images, labels = batches[split]
        want = collections.Counter(_digest(img.tobytes(), lab) for img, lab in zip(images, labels))
        got = collections.Counter(_digest(pixels, lab) for lab, _, pixels in rows)
        assert got == want  # every image, pixel for pixel, with its own label
        assert [lab for lab, _, _ in rows] != list(labels)  # and shuffled (seeded), not in batch order


def test_jpeg_tarball_still_packs(tmp_path, capsys):
    """The JPEG tarball's files are stored unchanged (pass-through): the first records' bytes are JPEGs found
    in the tarball, 5,000 / 1,000 a class."""
    need(CIFAR_TAR)
    code, out, err = run_wrapper(["cifar10", CIFAR_TAR, "--out", tmp_path, "--quiet"], capsys)
    assert code == 0, err
    with tarfile.open(CIFAR_TAR) as tar:
        jpegs = {tar.extractfile(m).read() for m in tar.getmembers() if m.isfile() and m.name.startswith("test/")}
    rows = _records(tmp_path / "cifar10_val.rec")
    assert collections.Counter(label for label, _, _ in rows) == {c: 1000 for c in range(10)}
    assert all(blob.startswith(b"\xff\xd8") and blob in jpegs for _, blob, _ in rows)
