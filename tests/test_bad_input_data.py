"""Bad and hostile input to the data tools: one case per item, each asserting the message, the exit code and that
good files already there are unchanged (hashed before and after).

Covers, for the data side of the reliability issue: missing data dir / .rec / .idx, a truncated or non-RecordIO
.rec, an .idx not matching its .rec, an empty image folder, one class only, an unwritable output folder; code in a
pickle, archives escaping their folder (links, '..', absolute names, devices), and images with alpha, grayscale,
CMYK, 16 bits, 1x1, very large sizes, corrupt bytes, spaces and non-ASCII names.
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import os
import pickle
import stat
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import CIFAR_TAR, need
from helpers import run_wrapper as run_tool

from resnet_toolkit.data import get_layout, make_train_iter
from resnet_toolkit.errors import UserError
from resnet_toolkit.im2rec import make_lists, pack_lst, read_lst
from resnet_toolkit.images import Transform
from resnet_toolkit.records import read_labels, read_records

ROOT = Path(__file__).resolve().parents[1]
TOOL = ROOT / "tools" / "im2rec_wrapper.py"




def snapshot(*roots: Path) -> dict[str, str]:
    """sha256 of every file under ``roots`` (and the sorted list of names, so additions show too)."""
    out = {}
    for root in roots:
        for path in sorted(Path(root).rglob("*")):
            if path.is_file() and not path.is_symlink():
                out[str(path)] = hashlib.sha256(path.read_bytes()).hexdigest()
            else:
                out[str(path)] = "dir-or-link"
    return out


def expect_error(argv, capsys, message: str, *guarded: Path) -> str:
    """Run the tool; assert exit 2, one stderr line containing ``error: ...message...``, and ``guarded`` intact."""
    before = snapshot(*guarded)
    code, _, err = run_tool(argv, capsys)
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert ": error: " in err and message in err, err
    assert snapshot(*guarded) == before
    return err


def _png(path: Path, img: np.ndarray) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    assert cv2.imwrite(str(path), img)
    return path


def _gradient(h: int = 16, w: int = 20, shift: int = 0) -> np.ndarray:
    y, x = np.mgrid[0:h, 0:w]
    return np.stack([(x * 9 + shift) % 256, (y * 11) % 256, (x + y + shift) % 256], axis=2).astype(np.uint8)


@pytest.fixture
def good(tmp_path):
    """A good image tree (classes a, b) and its packed output: good/src, good/out/{g.lst, g_q90.rec, ...}."""
    src, out = tmp_path / "good" / "src", tmp_path / "good" / "out"
    for cls in ("a", "b"):
        for i in range(3):
            _png(src / cls / f"{i}.png", _gradient(shift=i * 30 + (cls == "b") * 100))
    make_lists(src, out, "g", shuffle=False)
    pack_lst(out / "g.lst", src, out, Transform(quality=90), progress=False)
    assert sorted(p.name for p in out.iterdir()) == ["g.lst", "g_q90.idx", "g_q90.rec", "synset.txt"]
    return tmp_path / "good"


def _copy_rec(good: Path, dest: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for suffix in (".rec", ".idx"):
        (dest / f"g_q90{suffix}").write_bytes((good / "out" / f"g_q90{suffix}").read_bytes())
    return dest / "g_q90.rec"


# ---------------------------------------------------------------------------------------------------------------
# Missing, damaged and mismatched record files
# ---------------------------------------------------------------------------------------------------------------

def test_missing_data_dir(good, tmp_path, capsys):
    missing = tmp_path / "no-such-dir" / "cifar10_train.rec"
    expect_error(["check", missing], capsys, f"{missing.parent}: no such data folder", good)


def test_missing_rec(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    rec.unlink()
    expect_error(["check", rec], capsys, f"{rec}: no such file", good, tmp_path / "d")


def test_missing_idx(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    rec.with_suffix(".idx").unlink()
    expect_error(["check", rec], capsys, f"{rec.with_suffix('.idx')}: no such file", good, tmp_path / "d")


def test_truncated_rec(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    with open(rec, "r+b") as fh:
        fh.truncate(rec.stat().st_size - 100)
    expect_error(["check", rec], capsys, f"{rec}: truncated", good, tmp_path / "d")


def test_truncated_rec_stops_the_training_iterator(good, tmp_path):
    """The data API training uses refuses it too, before MXNet reads a byte."""
    rec = _copy_rec(good, tmp_path / "d")
    with open(rec, "r+b") as fh:
        fh.truncate(rec.stat().st_size // 2)
    with pytest.raises(UserError, match="truncated"):
        make_train_iter(rec, get_layout("digits"), 2)


def test_rec_that_is_not_recordio(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    rec.write_bytes((good / "src" / "a" / "0.png").read_bytes())
    expect_error(["check", rec], capsys, f"{rec}: not a RecordIO file (it starts with b'\\x89PNG", good,
                 tmp_path / "d")


def test_idx_not_matching_rec(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    idx = rec.with_suffix(".idx")
    lines = [line.split("\t") for line in idx.read_text().splitlines()]
    idx.write_text("".join(f"{k}\t{int(off) + 4}\n" for k, off in lines))
    expect_error(["check", rec], capsys, f"{idx} does not match {rec}: entry 0 points at byte 4", good,
                 tmp_path / "d")


def test_idx_of_an_older_shorter_file(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    idx = rec.with_suffix(".idx")
    idx.write_text("".join(idx.read_text().splitlines(keepends=True)[:-1]))
    expect_error(["check", rec], capsys, "bytes after the last indexed record", good, tmp_path / "d")


def test_idx_that_is_not_an_index(good, tmp_path, capsys):
    rec = _copy_rec(good, tmp_path / "d")
    rec.with_suffix(".idx").write_text("hello world\n")
    expect_error(["check", rec], capsys, "line 1 is not 'key<TAB>offset'", good, tmp_path / "d")


# ---------------------------------------------------------------------------------------------------------------
# Image folders, lists and output folders
# ---------------------------------------------------------------------------------------------------------------

def test_image_folder_without_class_folders(good, tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    expect_error(["list", tmp_path / "empty", "--out", good / "out"], capsys, "no class folders", good)


def test_image_folder_with_empty_class_folders(good, tmp_path, capsys):
    for cls in ("a", "b"):
        (tmp_path / "src" / cls).mkdir(parents=True)
    (tmp_path / "src" / "a" / "notes.txt").write_text("not an image")
    expect_error(["list", tmp_path / "src", "--out", good / "out", "--name", "g"], capsys,
                 "no images found in 2 class folder(s)", good)


def test_image_folder_with_one_class(good, tmp_path, capsys):
    _png(tmp_path / "src" / "cat" / "1.png", _gradient())
    (tmp_path / "src" / "dog").mkdir()
    expect_error(["list", tmp_path / "src", "--out", good / "out", "--name", "g"], capsys,
                 "images of only 1 class (cat); a classifier needs at least 2", good)


def test_cifar_tree_with_one_class(good, tmp_path, capsys):
    _png(tmp_path / "c" / "train" / "cat" / "1.png", _gradient(32, 32))
    _png(tmp_path / "c" / "test" / "cat" / "1.png", _gradient(32, 32))
    expect_error(["cifar10", tmp_path / "c", "--out", good / "out"], capsys, "images of only 1 class", good)


def test_missing_image_folder(good, tmp_path, capsys):
    expect_error(["list", tmp_path / "nope", "--out", good / "out"], capsys, f"{tmp_path / 'nope'}: no such image "
                 "folder", good)


def test_malformed_lst(good, tmp_path, capsys):
    lst = tmp_path / "bad.lst"
    lst.write_text("0\t0.000000\ta/0.png\nthis is not a list line\n")
    expect_error(["pack", lst, "--root", good / "src", "--out", good / "out"], capsys,
                 f"{lst}:2: expected 'index<TAB>label<TAB>path'", good)


def test_pass_through_with_resize_is_refused(good, capsys):
    expect_error(["pack", good / "out" / "g.lst", "--root", good / "src", "--out", good / "out", "--pass-through",
                  "--resize", "32"], capsys, "--pass-through stores files unchanged", good)


@contextlib.contextmanager
def _unwritable(folder: Path):
    """Make ``folder`` unwritable even for root (chattr +i), or by mode bits for a normal user."""
    if os.geteuid() == 0:
        if subprocess.run(["chattr", "+i", str(folder)], capture_output=True).returncode != 0:
            pytest.skip("running as root where chattr +i is unavailable: no way to make a folder unwritable")
        try:
            yield folder
        finally:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
    else:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)


@pytest.mark.parametrize("command", ["list", "pack", "digits", "out-subfolder"])
def test_output_folder_not_writable(good, capsys, command):
    out = good / "out"
    with _unwritable(out):
        target = out / "new" if command == "out-subfolder" else out
        argv = {"list": ["list", good / "src", "--out", target, "--name", "g"],
                "pack": ["pack", out / "g.lst", "--root", good / "src", "--out", target],
                "digits": ["digits", "--out", target],
                "out-subfolder": ["list", good / "src", "--out", target, "--name", "g"]}[command]
        expect_error(argv, capsys, f"output folder {target} is not writable", good)


def test_output_folder_is_a_file(good, capsys):
    target = good / "out" / "g_q90.rec"
    expect_error(["digits", "--out", target], capsys, f"output folder {target} exists and is not a folder", good)


def test_all_images_bad_keeps_the_old_rec(good, tmp_path, capsys):
    """Nothing packable: a clear error, and the good g_q90.rec of the same name is not replaced."""
    src = tmp_path / "bad"
    for cls in ("a", "b"):
        (src / cls).mkdir(parents=True)
        (src / cls / "x.jpg").write_bytes(b"definitely not a jpeg")
    make_lists(src, tmp_path / "lst", "g", shuffle=False)
    expect_error(["pack", tmp_path / "lst" / "g.lst", "--root", src, "--out", good / "out"], capsys,
                 "g_q90.rec: no image could be packed (2 skipped: a/x.jpg: not a decodable image", good)
    assert not [p for p in (good / "out").iterdir() if p.name.startswith(".")]  # no partial files left


def test_interrupted_pack_keeps_the_old_rec(good, capsys, monkeypatch):
    """Ctrl-C in the middle of a pack: exit 130, the old .rec/.idx untouched, no partial file left."""
    from resnet_toolkit import images

    calls = {"n": 0}
    original = images.Transform.record

    def interrupt_on_third(self, label, data):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return original(self, label, data)

    monkeypatch.setattr(images.Transform, "record", interrupt_on_third)
    before = snapshot(good)
    code, _, err = run_tool(["pack", good / "out" / "g.lst", "--root", good / "src", "--out", good / "out",
                             "--quiet"], capsys)
    assert code == 130 and "interrupted" in err
    assert snapshot(good) == before


# ---------------------------------------------------------------------------------------------------------------
# Pickles that would run code
# ---------------------------------------------------------------------------------------------------------------

def _batch(n: int, seed: int, labels=None) -> dict:
    rng = np.random.RandomState(seed)
    return {b"batch_label": b"test batch", b"labels": list(labels if labels is not None else rng.randint(0, 10, n)),
            b"data": rng.randint(0, 256, (n, 3072)).astype(np.uint8),
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def _write_batches(folder: Path, n: int = 6, poison: tuple[str, bytes] | None = None) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    batches = {f"data_batch_{i}": _batch(n, i, [int(v) for v in np.arange(n) % 10]) for i in range(1, 6)}
    batches["test_batch"] = _batch(n, 9, [int(v) for v in (np.arange(n) + 3) % 10])
    for name, batch in batches.items():
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
    (folder / "batches.meta").write_bytes(pickle.dumps(
        {b"label_names": [c.encode() for c in ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog",
                                               "horse", "ship", "truck")], b"num_vis": 3072}, protocol=2))
    if poison:
        (folder / poison[0]).write_bytes(poison[1])
    return batches


def test_cifar_python_batches_pack_exactly(good, tmp_path, capsys):
    """The official format read safely: records are the arrays' pixels exactly (lossless), labels kept."""
    batches = _write_batches(tmp_path / "cifar-10-batches-py")
    before = snapshot(good)
    code, out, _ = run_tool(["cifar10", tmp_path / "cifar-10-batches-py", "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 0 and "packed 30 images" in out and "packed 6 images" in out
    expected = {}
    for batch in (batches["test_batch"],):
        for row, label in zip(batch[b"data"], batch[b"labels"]):
            expected[row.reshape(3, 32, 32).transpose(1, 2, 0)[:, :, ::-1].tobytes()] = label
    got = {img.tobytes(): int(lab) for _, lab, img in read_records(tmp_path / "o" / "cifar10_val.rec")}
    assert got == expected
    assert snapshot(good) == before


class _RunsCode:
    def __init__(self, func, *args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("payload", ["os.system", "builtins.eval", "subprocess.Popen"])
def test_pickle_that_would_run_code_is_refused(good, tmp_path, capsys, payload):
    marker = tmp_path / "pwned"
    command = f"touch {marker}"
    func = {"os.system": os.system, "builtins.eval": eval, "subprocess.Popen": subprocess.Popen}[payload]
    arg = f"open({str(marker)!r}, 'w').close()" if payload == "builtins.eval" else (
        command if payload == "os.system" else ["touch", str(marker)])
    evil = pickle.dumps({b"data": _RunsCode(func, arg), b"labels": []}, protocol=4)
    _write_batches(tmp_path / "b", poison=("data_batch_3", evil))
    module = {"os.system": "posix.system", "builtins.eval": "builtins.eval",
              "subprocess.Popen": "subprocess.Popen"}[payload]
    expect_error(["cifar10", tmp_path / "b", "--out", good / "out"], capsys,
                 f"data_batch_3: unsafe or invalid pickle: refusing to load global {module}", good, tmp_path / "b")
    assert not marker.exists()


def test_pickle_with_object_array_is_refused(good, tmp_path, capsys):
    batch = _batch(2, 0, labels=[0, 1])
    batch[b"data"] = np.array([1, "x"], dtype=object)
    _write_batches(tmp_path / "b", poison=("test_batch", pickle.dumps(batch, protocol=2)))
    expect_error(["cifar10", tmp_path / "b", "--out", good / "out"], capsys, "object arrays are not allowed", good)


def test_python_batches_inside_a_tarball(good, tmp_path, capsys):
    _write_batches(tmp_path / "cifar-10-batches-py")
    archive = tmp_path / "cifar-10-python.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "cifar-10-batches-py", arcname="cifar-10-batches-py")
    code, out, _ = run_tool(["cifar10", archive, "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 0 and "total: packed 36, skipped 0" in out
    assert sorted(int(lab) for _, lab in read_labels(tmp_path / "o" / "cifar10_val.rec")) == sorted(
        (np.arange(6) + 3) % 10)


# ---------------------------------------------------------------------------------------------------------------
# Archives that try to write outside their folder
# ---------------------------------------------------------------------------------------------------------------

def _tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    with tarfile.open(path, "w:gz") as tar:
        for info, data in members:
            if data is not None:
                info.size = len(data)
            tar.addfile(info, io.BytesIO(data) if data is not None else None)
    return path


def _info(name: str, kind: bytes = tarfile.REGTYPE, linkname: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname, info.mode = kind, linkname, 0o644
    return info


PNG_BYTES = cv2.imencode(".png", _gradient(32, 32))[1].tobytes()


def _hostile(name: str, tmp_path: Path) -> tuple[Path, str]:
    """A CIFAR-like archive with one hostile member; returns (archive, the expected message)."""
    ok = [(_info(f"train/{c}/1.png"), PNG_BYTES) for c in ("cat", "dog")] + \
         [(_info(f"test/{c}/1.png"), PNG_BYTES) for c in ("cat", "dog")]
    outside = str(tmp_path / "evil.png")
    cases = {
        "dotdot": ([(_info("train/cat/../../../evil.png"), PNG_BYTES)], "points outside the target folder ('..')"),
        "absolute": ([(_info(outside), PNG_BYTES)], "has an absolute name"),
        "symlink": ([(_info("train/cat/link.png", tarfile.SYMTYPE, "/etc/passwd"), None)], "is a link"),
        "hardlink": ([(_info("train/cat/hard.png", tarfile.LNKTYPE, "/etc/passwd"), None)], "is a link"),
        "fifo": ([(_info("train/cat/pipe.png", tarfile.FIFOTYPE), None)], "is not a regular file or folder"),
        "device": ([(_info("train/cat/dev.png", tarfile.CHRTYPE), None)], "is not a regular file or folder"),
    }
    members, message = cases[name]
    tmp_path.mkdir(parents=True, exist_ok=True)
    return _tar_with(tmp_path / f"{name}.tar.gz", ok + members), message


@pytest.mark.parametrize("case", ["dotdot", "absolute", "symlink", "hardlink", "fifo", "device"])
@pytest.mark.parametrize("command", ["cifar10", "extract"])
def test_hostile_tar_is_refused(good, tmp_path, capsys, case, command):
    archive, message = _hostile(case, tmp_path / "arch")
    box = tmp_path / "box"
    box.mkdir()
    dest = box / "dest"
    argv = ["cifar10", archive, "--out", good / "out"] if command == "cifar10" else ["extract", archive, dest]
    expect_error(argv, capsys, message, good, box, tmp_path / "arch")
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "arch" / "evil.png").exists()
    assert not dest.exists() or not any(dest.iterdir())


@pytest.mark.parametrize("case", ["dotdot", "symlink"])
def test_hostile_zip_is_refused(good, tmp_path, capsys, case):
    archive = tmp_path / "a.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("train/cat/1.png", PNG_BYTES)
        if case == "dotdot":
            zf.writestr("../evil.png", PNG_BYTES)
        else:
            info = zipfile.ZipInfo("train/cat/link.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    message = "points outside the target folder" if case == "dotdot" else "is a link"
    expect_error(["extract", archive, tmp_path / "box" / "dest"], capsys, message, good)
    expect_error(["cifar10", archive, "--out", good / "out"], capsys, message, good)
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "box").exists()


def test_extract_refuses_writing_through_an_existing_link(good, tmp_path, capsys):
    """A link already in the target folder cannot be used to write outside it."""
    dest = tmp_path / "dest"
    (tmp_path / "outside").mkdir()
    dest.mkdir()
    (dest / "train").symlink_to(tmp_path / "outside")
    archive = _tar_with(tmp_path / "a.tar.gz", [(_info("train/cat/1.png"), PNG_BYTES)])
    expect_error(["extract", archive, dest], capsys, "would be written outside", good, tmp_path / "outside")
    assert not any((tmp_path / "outside").iterdir())


def test_good_archive_extracts_and_packs(tmp_path, capsys):
    members = [(_info(f"{s}/{c}/{i}.png"), cv2.imencode(".png", _gradient(32, 32, i * 7))[1].tobytes())
               for s in ("train", "test") for c in ("cat", "dog") for i in range(2)]
    archive = _tar_with(tmp_path / "ok.tar.gz", members)
    code, out, _ = run_tool(["extract", archive, tmp_path / "x"], capsys)
    assert code == 0 and "extracted 8 files" in out
    assert (tmp_path / "x" / "train" / "dog" / "1.png").read_bytes() == members[3][1]
    code, out, _ = run_tool(["cifar10", archive, "--out", tmp_path / "o", "--quiet"], capsys)
    assert code == 0 and "packed 4 images (0 re-encoded)" in out


# ---------------------------------------------------------------------------------------------------------------
# Unusual images: packed correctly or skipped with a reason
# ---------------------------------------------------------------------------------------------------------------

def _pack_tree(tmp_path: Path, capsys, extra: list[str] = ()) -> tuple[int, str, list]:
    """list (no shuffle) + pack (lossless PNG) of tmp_path/src; returns (exit, stdout, [(rel, label, img)])."""
    assert run_tool(["list", tmp_path / "src", "--out", tmp_path / "o", "--name", "t", "--no-shuffle"], capsys)[0] == 0
    code, out, err = run_tool(["pack", tmp_path / "o" / "t.lst", "--root", tmp_path / "src", "--out", tmp_path / "o",
                               "--encoding", ".png", "--quiet", *extra], capsys)
    assert code == 0, err
    rec = next(p for p in (tmp_path / "o").glob("t*.rec"))
    rows = read_lst(tmp_path / "o" / "t.lst")
    packed = {rel for rel, _ in rows} - {line.split(": ")[0].strip().removeprefix("skipped ")
                                         for line in out.splitlines() if line.startswith("  skipped ")}
    images = [img for _, _, img in read_records(rec)]
    kept = [(rel, lab) for rel, lab in rows if rel in packed]
    assert len(kept) == len(images)
    return code, out, [(rel, lab, img) for (rel, lab), img in zip(kept, images)]


def test_alpha_grayscale_16bit_images_are_converted(good, tmp_path, capsys):
    bgra = np.dstack([_gradient(), np.tile(np.arange(20, dtype=np.uint8) * 13, (16, 1))])
    gray = _gradient()[:, :, 0]
    deep = (_gradient().astype(np.uint16) * 257 + 100)
    _png(tmp_path / "src" / "a" / "alpha.png", bgra)
    _png(tmp_path / "src" / "a" / "gray.png", gray)
    _png(tmp_path / "src" / "b" / "deep16.png", deep)
    before = snapshot(good)
    _, out, got = _pack_tree(tmp_path, capsys)
    assert "packed 3 images (3 re-encoded), skipped 0" in out
    images = {rel: img for rel, _, img in got}
    alpha = bgra[:, :, 3:].astype(float) / 255
    assert (images["a/alpha.png"] == np.rint(bgra[:, :, :3] * alpha + 255 * (1 - alpha)).astype(np.uint8)).all()
    assert (images["a/gray.png"] == gray[:, :, None]).all()
    assert (images["b/deep16.png"] == ((deep.astype(np.uint32) * 255 + 32767) // 65535)).all()
    assert snapshot(good) == before


def test_cmyk_jpeg_is_converted(tmp_path, capsys):
    image_module = pytest.importorskip("PIL.Image")
    rgb = _gradient(24, 24)[:, :, ::-1]
    buf = io.BytesIO()
    image_module.fromarray(np.ascontiguousarray(rgb)).convert("CMYK").save(buf, "JPEG", quality=95)
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "cmyk.jpg").write_bytes(buf.getvalue())
    _png(tmp_path / "src" / "b" / "x.png", _gradient())
    _, out, got = _pack_tree(tmp_path, capsys, ["--pass-through"])
    assert "packed 2 images (1 re-encoded)" in out  # CMYK is never passed through
    cmyk = got[0][2]
    assert cmyk.shape == (24, 24, 3)
    assert np.abs(cmyk.astype(int) - _gradient(24, 24)).mean() < 6


def test_exif_rotated_jpeg_is_stored_upright(tmp_path, capsys):
    """A phone photo saved sideways with EXIF orientation 6: stored as a viewer shows it (MXNet's decoder ignores
    EXIF), so it is re-encoded even with --pass-through."""
    image_module = pytest.importorskip("PIL.Image")
    sideways = np.zeros((20, 40, 3), np.uint8)
    sideways[:, :10] = 255  # white band on the left; orientation 6 = rotate 90 degrees clockwise to view
    im = image_module.fromarray(sideways)
    exif = im.getexif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    im.save(buf, "JPEG", quality=95, exif=exif.tobytes())
    (tmp_path / "src" / "a").mkdir(parents=True)
    (tmp_path / "src" / "a" / "phone.jpg").write_bytes(buf.getvalue())
    _png(tmp_path / "src" / "b" / "x.png", _gradient())
    _, out, got = _pack_tree(tmp_path, capsys, ["--pass-through"])
    assert "packed 2 images (1 re-encoded)" in out
    upright = got[0][2]
    assert upright.shape == (40, 20, 3)
    assert upright[:10].mean() > 240 and upright[12:].mean() < 15  # the band is now on top


def test_tiny_huge_corrupt_and_empty_files_are_skipped_with_reasons(good, tmp_path, capsys):
    """1x1, a decompression bomb header, corrupt and empty files are skipped and named; a real 24-megapixel photo
    is packed (resized to shorter side 64)."""
    _png(tmp_path / "src" / "a" / "one.png", np.zeros((1, 1, 3), np.uint8))
    big = cv2.resize(_gradient(), (6000, 4000), interpolation=cv2.INTER_LINEAR)
    (tmp_path / "src" / "a" / "big.jpg").write_bytes(cv2.imencode(".jpg", big)[1].tobytes())
    png = bytearray(PNG_BYTES)
    png[16:24] = (60000).to_bytes(4, "big") + (60000).to_bytes(4, "big")  # IHDR claims 60000x60000
    (tmp_path / "src" / "b").mkdir()
    (tmp_path / "src" / "b" / "bomb.png").write_bytes(bytes(png))
    (tmp_path / "src" / "b" / "corrupt.jpg").write_bytes(PNG_BYTES[:40])
    (tmp_path / "src" / "b" / "empty.jpg").write_bytes(b"")
    (tmp_path / "src" / "b" / "text.png").write_text("hello")
    _png(tmp_path / "src" / "b" / "ok.png", _gradient(70, 90))
    before = snapshot(good)
    _, out, got = _pack_tree(tmp_path, capsys, ["--resize", "64"])
    assert "packed 2 images (2 re-encoded), skipped 5" in out
    assert "  skipped a/one.png: too small: 1x1 pixels (shorter side below 8)" in out
    assert "  skipped b/bomb.png: too large: 60000x60000 pixels (limit 100 megapixels)" in out
    assert "  skipped b/corrupt.jpg: not a decodable image" in out
    assert "  skipped b/empty.jpg: empty file" in out
    assert "  skipped b/text.png: not a decodable image" in out
    assert [(rel, img.shape) for rel, _, img in got] == [("a/big.jpg", (64, 96, 3)), ("b/ok.png", (64, 82, 3))]
    assert np.abs(got[0][2].astype(int) - cv2.resize(big, (96, 64), interpolation=cv2.INTER_AREA)).mean() < 3
    assert snapshot(good) == before


def test_spaces_and_non_ascii_names(good, tmp_path, capsys):
    names = {"chat noir/café crème.png": 10, "chat noir/日本 語.png": 60, "Ünïcödé dog/a b  c.png": 120}
    for rel, shift in names.items():
        _png(tmp_path / "src" / rel, _gradient(shift=shift))
    before = snapshot(good)
    _, out, got = _pack_tree(tmp_path, capsys)
    assert "packed 3 images" in out
    assert [(rel, lab) for rel, lab, _ in got] == [("chat noir/café crème.png", 0), ("chat noir/日本 語.png", 0),
                                                   ("Ünïcödé dog/a b  c.png", 1)]
    for rel, _, img in got:
        assert (img == _gradient(shift=names[rel])).all()
    assert (tmp_path / "o" / "synset.txt").read_text(encoding="utf-8") == "chat noir\nÜnïcödé dog\n"
    assert snapshot(good) == before


def test_real_cli_process_one_line_and_exit_2(good, tmp_path):
    """The installed entry point, as a user runs it: exit 2 and exactly one line, no traceback."""
    before = snapshot(good)
    proc = subprocess.run([sys.executable, str(TOOL), "check", str(tmp_path / "none" / "x.rec")],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr == f"im2rec_wrapper.py: error: {tmp_path / 'none'}: no such data folder\n"
    assert snapshot(good) == before


@pytest.mark.data
def test_sigkill_during_pack_leaves_old_files_and_no_finished_looking_rec(good, tmp_path):
    """kill -9 while `cifar10` is writing: the good cifar10_train.rec/.idx already there are byte-identical after,
    and the only new files are hidden partial ones (never a .rec under a final name)."""
    import signal
    import time

    tar = need(CIFAR_TAR)
    out = tmp_path / "data"
    _copy_rec(good, out)
    for suffix in (".rec", ".idx"):
        (out / f"g_q90{suffix}").rename(out / f"cifar10_train{suffix}")
    before = snapshot(out)
    proc = subprocess.Popen([sys.executable, str(TOOL), "cifar10", str(tar), "--out", str(out), "--quiet"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while not any(p.name.startswith(".cifar10_train.rec.partial") for p in out.iterdir()):
            assert proc.poll() is None and time.monotonic() < deadline, "the pack ended before it could be killed"
            time.sleep(0.05)
        time.sleep(0.5)  # well inside the write of 50,000 records
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    after = snapshot(out)
    assert {k: v for k, v in after.items() if not Path(k).name.startswith(".")} == before
    assert all(Path(k).name.startswith(".cifar10_train.") and ".partial-" in k for k in set(after) - set(before))


def test_stale_partials_of_dead_runs_are_removed(good, tmp_path, capsys):
    """Partial files of a killed run (dead PID) are cleaned up by the next pack; a live run's are kept."""
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)
    out = good / "out"
    stale = [out / f".g_q90.rec.partial-{dead_pid}", out / f".g_q90.idx.partial-{dead_pid}"]
    live = out / f".g_q90.rec.partial-{os.getpid()}-other"
    for path in stale:
        path.write_bytes(b"half a record")
    live.write_bytes(b"someone else's")
    code, out_text, _ = run_tool(["pack", out / "g.lst", "--root", good / "src", "--out", out, "--quiet"], capsys)
    assert code == 0 and "packed 6 images" in out_text
    assert not any(p.exists() for p in stale) and live.exists()
