"""tools/im2rec_wrapper.py on real data: the whole CIFAR-10 tarball, CIFAR JPEGs re-encoded, the photos at
480/256 through `list` + `pack` and `imagenet`, and the digits demo set."""
from __future__ import annotations

import hashlib
import shutil
import tarfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import CIFAR_TAR, need
from helpers import run_wrapper as run_tool

from resnet_toolkit.data import LAYOUTS
from resnet_toolkit.datasets import CIFAR10_CLASSES
from resnet_toolkit.im2rec import read_lst
from resnet_toolkit.records import check_record_file, count_records, read_labels, read_records
from resnet_toolkit.synset import read_synset


def _payloads(rec: Path) -> Counter:
    """Counter of (label, sha256 of the stored image bytes) over every record."""
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(rec), "r")
    out: Counter = Counter()
    while (payload := reader.read()) is not None:
        header, data = mx.recordio.unpack(payload)
        out[(int(header.label), hashlib.sha256(data).hexdigest())] += 1
    reader.close()
    return out


@pytest.mark.data
def test_cifar10_whole_tarball_counts_labels_and_bytes(cifar_rec_dir, cifar_tar):
    """All 60,000 images: 50,000 + 10,000 records, 5,000 / 1,000 per class, and each record's image is the very
    JPEG file of the tarball (pass-through), under the label of its class folder."""
    assert read_synset(cifar_rec_dir / "synset.txt") == list(CIFAR10_CLASSES)
    train, val = cifar_rec_dir / "cifar10_train.rec", cifar_rec_dir / "cifar10_val.rec"
    assert count_records(train) == 50_000 and count_records(val) == 10_000
    assert Counter(int(lab) for _, lab in read_labels(train)) == {k: 5000 for k in range(10)}
    assert Counter(int(lab) for _, lab in read_labels(val)) == {k: 1000 for k in range(10)}

    expected = {"train": Counter(), "test": Counter()}
    index = {c: i for i, c in enumerate(CIFAR10_CLASSES)}
    with tarfile.open(cifar_tar, "r:*") as tar:
        for member in tar:
            if member.isfile():
                split, cls, _ = member.name.split("/")
                digest = hashlib.sha256(tar.extractfile(member).read()).hexdigest()
                expected[split][(index[cls], digest)] += 1
    assert _payloads(train) == expected["train"]
    assert _payloads(val) == expected["test"]
    ids = [rid for rid, _ in read_labels(val)]
    assert ids == list(range(10_000))  # record ids are 0..n-1, the .idx keys


@pytest.fixture(scope="module")
def cifar_small_tree(tmp_path_factory):
    """20 train + 4 test JPEGs per class, extracted from the real tarball into train/<class>/, test/<class>/."""
    tar_path = need(CIFAR_TAR)
    root = tmp_path_factory.mktemp("cifar_small")
    taken: Counter = Counter()
    with tarfile.open(tar_path, "r:*") as tar:
        for member in tar:
            if not member.isfile():
                continue
            split, cls, name = member.name.split("/")
            if taken[(split, cls)] < (20 if split == "train" else 4):
                taken[(split, cls)] += 1
                target = root / split / cls / name
                target.parent.mkdir(parents=True, exist_ok=True)
                target.write_bytes(tar.extractfile(member).read())
            if len(taken) == 20 and all(v == (20 if s == "train" else 4) for (s, _), v in taken.items()):
                break
    return root


@pytest.mark.data
def test_reencoded_cifar_within_jpeg_tolerance(cifar_small_tree, tmp_path, capsys):
    """`list --no-shuffle` + `pack --quality 95`: records keep the list order, labels and 32x32 size, and their
    pixels are within JPEG re-encoding tolerance of the source JPEGs."""
    code, out, _ = run_tool(["list", str(cifar_small_tree / "train"), "--out", str(tmp_path), "--name", "c",
                             "--no-shuffle"], capsys)
    assert code == 0 and "200 images in 10 classes" in out
    code, out, _ = run_tool(["pack", str(tmp_path / "c.lst"), "--root", str(cifar_small_tree / "train"),
                             "--out", str(tmp_path), "--quality", "95", "--quiet"], capsys)
    assert code == 0 and "packed 200 images (200 re-encoded), skipped 0" in out
    rec = tmp_path / "c_q95.rec"
    rows = read_lst(tmp_path / "c.lst")
    records = list(read_records(rec))
    assert len(records) == 200
    diffs = []
    for (rel, label), (_, rec_label, img) in zip(rows, records):
        src = cv2.imread(str(cifar_small_tree / "train" / rel), cv2.IMREAD_COLOR)
        assert rec_label == label and img.shape == src.shape == (32, 32, 3)
        diffs.append(np.abs(img.astype(int) - src.astype(int)))
    diffs = np.stack(diffs)
    assert diffs.mean() < 2.0 and np.percentile(diffs, 99) <= 12
    assert read_synset(tmp_path / "synset.txt") == list(CIFAR10_CLASSES)


@pytest.mark.data
def test_cifar10_reencode_from_image_tree(cifar_small_tree, tmp_path, capsys):
    """The `cifar10` command on a train/ + test/ folder with --reencode: 200 + 40 records, balanced labels."""
    code, out, _ = run_tool(["cifar10", str(cifar_small_tree), "--out", str(tmp_path), "--reencode", "--quiet"],
                            capsys)
    assert code == 0, out
    assert Counter(int(lab) for _, lab in read_labels(tmp_path / "cifar10_train.rec")) == {k: 20 for k in range(10)}
    assert Counter(int(lab) for _, lab in read_labels(tmp_path / "cifar10_val.rec")) == {k: 4 for k in range(10)}
    assert "packed 200 images (200 re-encoded)" in out and "packed 40 images (40 re-encoded)" in out


def _photo_tree(photos: Path, root: Path) -> Path:
    """Two classes: a/ (astronaut, coffee) and b/ (chelsea)."""
    for cls, names in (("a", ["astronaut.jpg", "coffee.jpg"]), ("b", ["chelsea.jpg"])):
        (root / cls).mkdir(parents=True)
        for name in names:
            shutil.copy(photos / name, root / cls / name)
    return root


@pytest.mark.data
def test_photos_packed_at_480_have_shorter_side_480(photos_dir, tmp_path, capsys):
    tree = _photo_tree(photos_dir, tmp_path / "photos")
    code, _, _ = run_tool(["list", str(tree), "--out", str(tmp_path), "--name", "train", "--no-shuffle"], capsys)
    assert code == 0
    code, out, _ = run_tool(["pack", str(tmp_path / "train.lst"), "--root", str(tree), "--out", str(tmp_path / "rec"),
                             "--resize", "480", "--quality", "90", "--num-thread", "2", "--quiet"], capsys)
    assert code == 0 and "packed 3 images" in out
    shapes = [img.shape for _, _, img in read_records(tmp_path / "rec" / "train_480_q90.rec")]
    # astronaut 512x512, coffee 600x400, chelsea 451x300 (sorted within class folders)
    assert shapes == [(480, 480, 3), (480, 720, 3), (480, 722, 3)]
    assert read_synset(tmp_path / "rec" / "synset.txt") == ["a", "b"]
    check_record_file(tmp_path / "rec" / "train_480_q90.rec")


@pytest.mark.data
def test_imagenet_command_writes_the_three_files(photos_dir, tmp_path, capsys):
    _photo_tree(photos_dir, tmp_path / "in" / "train")
    _photo_tree(photos_dir, tmp_path / "in" / "val")
    code, out, _ = run_tool(["imagenet", str(tmp_path / "in"), "--out", str(tmp_path / "data"), "--quiet"], capsys)
    assert code == 0, out
    data = tmp_path / "data"
    layout = LAYOUTS["imagenet"]
    short = {layout.train_path(data, 2): 480, layout.train_path(data, 1): 256, layout.val_path(data): 256}
    assert sorted(p.name for p in short) == ["train_256_q90.rec", "train_480_q90.rec", "val_256_q90.rec"]
    for rec, side in short.items():
        images = [img for _, _, img in read_records(rec)]
        assert len(images) == 3 and all(min(img.shape[:2]) == side for img in images)
    val_labels = [int(lab) for _, lab in read_labels(data / "val_256_q90.rec")]
    assert val_labels == [0, 0, 1]
    assert read_synset(data / "synset.txt") == ["a", "b"]


def test_digits_demo_files_split_and_determinism(tmp_path, capsys):
    """`digits --out DIR`: the names LAYOUTS['digits'] reads, classes '0'..'9', a stratified held-out split of
    scikit-learn's 1,797 digits, pixels equal to the scaled source, and the same bytes for the same seed."""
    from sklearn.datasets import load_digits

    code, out, _ = run_tool(["digits", "--out", str(tmp_path / "d1"), "--quiet"], capsys)
    assert code == 0, out
    layout = LAYOUTS["digits"]
    train, val = layout.train_path(tmp_path / "d1", 1), layout.val_path(tmp_path / "d1")
    assert (train.name, val.name) == ("digits_train.rec", "digits_val.rec")
    assert read_synset(tmp_path / "d1" / "synset.txt") == [str(d) for d in range(10)]
    counts = {p: Counter(int(lab) for _, lab in read_labels(p)) for p in (train, val)}
    total = Counter(load_digits().target.tolist())
    assert counts[train] + counts[val] == total and sum(counts[val].values()) == 360
    assert all(abs(counts[val][k] - total[k] * 0.2) <= 1 for k in total)  # stratified
    records = list(read_records(val))
    images = np.stack([img for _, _, img in records])
    assert images.shape == (360, 32, 32, 3) and (images[..., 0] == images[..., 2]).all()
    # each record shrunk back to 8x8 is nearest to a source digit of its own label (the right image, right label)
    digits = load_digits()
    small = np.stack([cv2.resize(img[:, :, 0], (8, 8), interpolation=cv2.INTER_AREA) for img in images])
    dist = ((small.reshape(360, 1, 64).astype(float) - digits.images.reshape(1, 1797, 64) * (255 / 16)) ** 2).sum(-1)
    assert (digits.target[dist.argmin(axis=1)] == [int(lab) for _, lab, _ in records]).mean() > 0.99

    code, _, _ = run_tool(["digits", "--out", str(tmp_path / "d2"), "--quiet"], capsys)
    assert code == 0
    for name in ("digits_train.rec", "digits_train.idx", "digits_val.rec", "digits_val.idx"):
        assert (tmp_path / "d1" / name).read_bytes() == (tmp_path / "d2" / name).read_bytes()
    code, _, _ = run_tool(["digits", "--out", str(tmp_path / "d3"), "--seed", "1", "--quiet"], capsys)
    assert (tmp_path / "d3" / "digits_val.rec").read_bytes() != (tmp_path / "d1" / "digits_val.rec").read_bytes()


def test_list_split_is_seeded_and_complete(tmp_path, capsys):
    """`list --train-ratio 0.75`: every image once across train/val, labels = sorted folder order, same seed ->
    same lists, another seed -> another order."""
    for cls in ("zebra", "ant", "mole"):
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(8):
            cv2.imwrite(str(tmp_path / "src" / cls / f"{i}.png"), np.full((9, 9, 3), i * 20, np.uint8))
    args = ["list", str(tmp_path / "src"), "--name", "s", "--train-ratio", "0.75"]
    for out, seed in (("o1", "0"), ("o2", "0"), ("o3", "5")):
        assert run_tool([*args, "--out", str(tmp_path / out), "--seed", seed], capsys)[0] == 0
    train, val = read_lst(tmp_path / "o1" / "s_train.lst"), read_lst(tmp_path / "o1" / "s_val.lst")
    assert len(train) == 18 and len(val) == 6
    assert sorted(train + val) == sorted((f"{c}/{i}.png", lab) for lab, c in enumerate(["ant", "mole", "zebra"])
                                         for i in range(8))
    assert read_synset(tmp_path / "o1" / "synset.txt") == ["ant", "mole", "zebra"]
    assert (tmp_path / "o2" / "s_train.lst").read_text() == (tmp_path / "o1" / "s_train.lst").read_text()
    assert (tmp_path / "o3" / "s_train.lst").read_text() != (tmp_path / "o1" / "s_train.lst").read_text()


def test_every_subcommand_has_help(capsys):
    for command in ("list", "pack", "cifar10", "imagenet", "digits", "extract", "check"):
        code, out, _ = run_tool([command, "--help"], capsys)
        assert code == 0 and out.startswith("usage: ")


def test_pass_through_keeps_file_bytes(tmp_path, capsys):
    """--pass-through stores an 8-bit RGB JPEG's own bytes; a grayscale one is converted (3 channels)."""
    (tmp_path / "src" / "x").mkdir(parents=True)
    (tmp_path / "src" / "y").mkdir(parents=True)
    rng = np.random.RandomState(0)
    color = cv2.imencode(".jpg", rng.randint(0, 255, (20, 24, 3), np.uint8))[1].tobytes()
    gray = cv2.imencode(".jpg", np.add.outer(np.arange(20) * 5, np.arange(24) * 4).astype(np.uint8))[1].tobytes()
    (tmp_path / "src" / "x" / "c.jpg").write_bytes(color)
    (tmp_path / "src" / "y" / "g.jpg").write_bytes(gray)
    run_tool(["list", str(tmp_path / "src"), "--out", str(tmp_path), "--name", "p", "--no-shuffle"], capsys)
    code, out, _ = run_tool(["pack", str(tmp_path / "p.lst"), "--root", str(tmp_path / "src"), "--out",
                             str(tmp_path), "--pass-through", "--quiet"], capsys)
    assert code == 0 and "packed 2 images (1 re-encoded)" in out
    import mxnet as mx

    reader = mx.recordio.MXIndexedRecordIO(str(tmp_path / "p.idx"), str(tmp_path / "p.rec"), "r")
    first = mx.recordio.unpack(reader.read_idx(0))[1]
    second = mx.recordio.unpack_img(reader.read_idx(1))[1]
    reader.close()
    assert first == color
    ref = cv2.imdecode(np.frombuffer(gray, np.uint8), cv2.IMREAD_GRAYSCALE)
    assert second.shape == (20, 24, 3) and np.abs(second[:, :, 1].astype(int) - ref).max() <= 6


def test_to_bgr8_every_layout():
    """to_bgr8 on every layout OpenCV decodes: gray, gray+alpha, BGR, BGRA, 16-bit."""
    from resnet_toolkit.images import to_bgr8

    gray = np.array([[0, 255], [100, 7]], np.uint8)
    assert (to_bgr8(gray) == gray[:, :, None].repeat(3, axis=2)).all()
    bgra = np.zeros((1, 2, 4), np.uint8)
    bgra[0, 0] = (10, 20, 30, 255)
    bgra[0, 1] = (10, 20, 30, 0)
    assert to_bgr8(bgra).tolist() == [[[10, 20, 30], [255, 255, 255]]]
    ga = np.array([[[0, 128]]], np.uint8)  # black at alpha 128/255 over white
    assert to_bgr8(ga).tolist() == [[[127, 127, 127]]]
    deep = np.array([[[0, 65535, 257 * 100]]], np.uint16)
    assert to_bgr8(deep).tolist() == [[[0, 255, 100]]]


@pytest.mark.data
def test_threads_do_not_change_the_output(cifar_small_tree, tmp_path, capsys):
    """--num-thread 1 and 3 write byte-identical .rec/.idx files (results are written in list order)."""
    run_tool(["list", str(cifar_small_tree / "test"), "--out", str(tmp_path), "--name", "t"], capsys)
    for threads in ("1", "3"):
        code, _, _ = run_tool(["pack", str(tmp_path / "t.lst"), "--root", str(cifar_small_tree / "test"), "--out",
                               str(tmp_path / threads), "--resize", "40", "--num-thread", threads, "--quiet"], capsys)
        assert code == 0
    for name in ("t_40_q90.rec", "t_40_q90.idx"):
        assert (tmp_path / "1" / name).read_bytes() == (tmp_path / "3" / name).read_bytes()


@pytest.mark.data
def test_jpeg_quality_bench_measures_size_and_loss(cifar_small_tree, tmp_path):
    """bench/jpeg_quality.py's packing and measures: a copy re-encoded at quality 30 has fewer entropy-coded bytes
    than the tarball's images and a finite PSNR against them, lower than a quality-95 copy's; the scan size leaves
    out the JPEG headers; PSNR follows its formula (an offset of 1 everywhere = 48.13 dB)."""
    from bench import jpeg_quality as bench

    sizes, images, scans = {}, {}, {}
    for name, quality in (("as-is", None), ("q95", 95), ("q30", 30)):
        sizes[name] = bench.pack(str(cifar_small_tree), tmp_path / name, quality)
        images[name], scans[name] = bench.test_images(tmp_path / name, 40)
    assert sizes["as-is"]["images"] == 200 and len(images["as-is"]) == 40
    assert scans["q30"] < scans["as-is"] < scans["q95"]
    assert 20 < bench.psnr(images["q30"], images["as-is"]) < bench.psnr(images["q95"], images["as-is"]) < 60

    # the tables and headers (~620 bytes an image here) are not counted; the scan is what quality changes
    assert 100 < scans["as-is"] < sizes["as-is"]["bytes_per_image"] - 500
    reference = [np.zeros((4, 4, 3)), np.full((2, 2, 3), 10.0)]
    assert bench.psnr([a + 1 for a in reference], reference) == pytest.approx(48.1308, abs=1e-3)


@pytest.mark.data
def test_jpeg_quality_bench_first_generation_on_photo_tiles(photos_dir):
    """bench/jpeg_quality.py --photos: 360 clean 32x32 tiles of the three photographs; each JPEG step loses
    (finite PSNR in a plausible range) and a lower quality writes fewer bytes and loses more."""
    from bench import jpeg_quality as bench

    assert len(bench.photo_tiles(photos_dir)) == 3 * 3 * 40
    first, q50, q30 = bench.first_generation(photos_dir, [50, 30])
    assert first["step"] == "clean -> q75" and q30["step"] == "q75 -> q30"
    assert first["scan_bytes"] > q50["scan_bytes"] > q30["scan_bytes"] > 50
    assert 20 < q30["psnr_db"] < q50["psnr_db"] < 40 and 20 < first["psnr_db"] < 40
