"""Issue 35, items 1, 8 and 9: your own images, safely.

1. predict/predict.py reports every bad image with one line (a truncated PNG whose header parses, an image whose
   header claims more pixels than the packer's limit, checked before decoding) and still classifies the others;
   exit 0 when at least one image was classified, 2 when none was.
8. A full disk (ENOSPC, EDQUOT, EFBIG; here a file size limit, RLIMIT_FSIZE, in a child process) while writing a
   checkpoint, a record file or an INT8 model is one line naming the file and the free space, exit 2, and every
   good file stays byte-for-byte as it was, also when MXNet's writer silently drops its last bytes at close.
9. tools/quantize.py refuses a calibration .rec whose images are not at the model's scale.
"""
from __future__ import annotations

import errno
import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from helpers import ENV, load_tool, need_feature, random_checkpoint, snapshot

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

ROOT = Path(__file__).resolve().parents[1]


def run_tool(tool: str, argv: list, capsys, monkeypatch) -> tuple[int, str, str]:
    """Run ``tool``'s ``main`` in-process as its command line would: (exit status, stdout, stderr)."""
    from resnet_toolkit.errors import run_cli

    module = load_tool(tool)
    monkeypatch.setattr(sys, "argv", [Path(tool).name])
    with pytest.raises(SystemExit) as exc:
        run_cli(module.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose IHDR says ``width`` x ``height`` 8-bit RGB, followed by a few bytes of image data and no end:
    decoding it would first allocate width * height * 3 bytes."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", zlib.compress(b"\0" * 64))


def jpeg_header_only(width: int, height: int) -> bytes:
    """A JPEG start (SOI, a baseline SOF0 of ``width`` x ``height``, 3 components) and nothing after it."""
    sof = struct.pack(">BHHB", 8, height, width, 3) + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01"
    return b"\xff\xd8" + b"\xff\xc0" + struct.pack(">H", len(sof) + 2) + sof


# ----------------------------------------------------------------------------------------------- 1. predict
@pytest.fixture(scope="module")
def images_and_model(tmp_path_factory):
    """A random CIFAR ResNet-8 checkpoint with its synset; three good 40x40 PNGs; a folder of bad images."""
    import cv2

    root = tmp_path_factory.mktemp("own_images_predict")
    prefix = random_checkpoint(root / "model" / "resnet-cifar10-8-0", 8, "cifar10", 10, calibrate=False)
    (root / "model" / "synset.txt").write_text("".join(f"class{i}\n" for i in range(10)))
    rng = np.random.RandomState(0)
    images = root / "images"
    images.mkdir()
    for name in ("a_good.png", "c_good.png", "e_good.png"):
        cv2.imwrite(str(images / name), rng.randint(0, 256, (40, 40, 3), dtype=np.uint8))
    whole = (images / "a_good.png").read_bytes()
    (images / "b_truncated.png").write_bytes(whole[:len(whole) // 2])  # header intact, data cut in half
    (images / "d_huge.png").write_bytes(png_header_only(15000, 15000))  # 225 megapixels: 675 MB decoded
    (images / "f_bomb.png").write_bytes(png_header_only(100000, 100000))  # 30 G elements
    (images / "g_huge.jpg").write_bytes(jpeg_header_only(20000, 20000))
    corrupt = bytearray(whole)
    corrupt[60:200] = bytes(140)  # image data zeroed, header and IEND intact: only decoding finds out
    (images / "h_corrupt.png").write_bytes(bytes(corrupt))
    return root, prefix


BAD_IMAGES = {
    "b_truncated.png": "truncated PNG (no IEND chunk)",
    "d_huge.png": "too large: 15000x15000 pixels (limit 100 megapixels)",
    "f_bomb.png": "too large: 100000x100000 pixels (limit 100 megapixels)",
    "g_huge.jpg": "too large: 20000x20000 pixels (limit 100 megapixels)",
    "h_corrupt.png": "cannot decode image",
}


def test_predict_reports_each_bad_image_in_one_line_and_classifies_the_others(images_and_model, capsys,
                                                                              monkeypatch):
    """Before the fix: the truncated and the corrupt PNG ended the run with an MXNet traceback (exit 1) and the
    images after them were never classified; the oversized headers were decoded (allocated) instead of refused."""
    root, prefix = images_and_model
    before = snapshot(root)
    code, out, err = run_tool("predict/predict.py", ["--prefix", prefix, "--img", root / "images", "--top-k", "1"],
                              capsys, monkeypatch)
    assert code == 0, err
    assert "Traceback" not in err
    warnings = [line for line in err.splitlines() if line.startswith("predict.py: ")]
    images = root / "images"
    assert warnings == [f"predict.py: warning: {images / name}: {reason} (skipped)"
                        for name, reason in BAD_IMAGES.items()]
    classified = [line for line in out.splitlines() if not line.startswith("0: class")]
    assert classified == [str(images / name) for name in ("a_good.png", "c_good.png", "e_good.png")]
    assert snapshot(root) == before


def test_predict_with_only_bad_images_exits_2(images_and_model, capsys, monkeypatch):
    root, prefix = images_and_model
    images = root / "images"
    code, out, err = run_tool("predict/predict.py", ["--prefix", prefix, "--img", images / "h_corrupt.png",
                                                     images / "f_bomb.png", "--json"], capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"predict.py: warning: {images / 'h_corrupt.png'}: cannot decode image (skipped)",
        f"predict.py: warning: {images / 'f_bomb.png'}: {BAD_IMAGES['f_bomb.png']} (skipped)",
        "predict.py: error: none of the 2 image(s) could be classified"]
    assert [r["error"] for r in json.loads(out)] == ["cannot decode image", BAD_IMAGES["f_bomb.png"]]


def test_load_image_shares_the_packers_pixel_limit(images_and_model):
    """One definition of the limit: the packer's ImageLimits, read from the header before decoding."""
    from resnet_toolkit.images import DEFAULT_MAX_PIXELS, ImageLimits, decode_image
    from resnet_toolkit.predictor import ImageError, load_image

    root, _ = images_and_model
    good = root / "images" / "a_good.png"
    with pytest.raises(ImageError, match=r"^too large: 40x40 pixels \(limit 0.001 megapixels\)$"):
        load_image(good, (3, 32, 32), limits=ImageLimits(max_pixels=1000))
    assert load_image(good, (3, 32, 32)).shape == (3, 32, 32)
    with pytest.raises(Exception, match=r"too large: 40x40 pixels \(limit 0.001 megapixels\)"):
        decode_image(good.read_bytes(), ImageLimits(max_pixels=1000))
    assert DEFAULT_MAX_PIXELS == 100_000_000


# --------------------------------------------------------------------------------------------- 8. disk full
_CHECKPOINT_UNDER_A_SIZE_LIMIT = r"""
import resource, signal, sys
import resnet_toolkit, mxnet as mx
from resnet_toolkit.checkpoint import params_path, save_checkpoint
from resnet_toolkit.errors import run_cli
prefix, mode = sys.argv[1], sys.argv[2]
symbol = mx.sym.FullyConnected(mx.sym.var("data"), num_hidden=10, name="fc1")
def arrays(value):
    return {"fc1_weight": mx.nd.full((10, 500), value), "fc1_bias": mx.nd.full((10,), value)}
if mode == "setup":
    save_checkpoint(prefix, 1, symbol, arrays(1.0), {})  # the good epoch 1
    sys.exit(0)
size = params_path(prefix, 1).stat().st_size  # the new file has this size too
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # writes past the limit fail with EFBIG instead of killing us
limit = 1000 if mode == "fails while writing" else size - 16  # else: only the last buffered bytes, at close
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def main(argv):
    save_checkpoint(prefix, 1, symbol, arrays(2.0), {})
    return 0


run_cli(main)
"""


@pytest.mark.parametrize("mode", ["fails while writing", "fails at close"])
def test_disk_full_while_saving_a_checkpoint_is_one_line_and_keeps_the_good_one(tmp_path, mode):
    """Before the fix: 'fails while writing' was an MXNetError traceback (exit 1); 'fails at close' exited 0
    after renaming a truncated .params over the good epoch (MXNet's writer does not report its failed close)."""
    folder = tmp_path / "model"
    folder.mkdir()
    script = tmp_path / "save.py"
    script.write_text(_CHECKPOINT_UNDER_A_SIZE_LIMIT)
    prefix = folder / "net"
    setup = subprocess.run([sys.executable, str(script), str(prefix), "setup"], capture_output=True, text=True,
                           env=dict(ENV, PYTHONPATH=str(ROOT)), timeout=120)
    assert setup.returncode == 0, setup.stderr
    good = snapshot(folder)
    proc = subprocess.run([sys.executable, str(script), str(prefix), mode], capture_output=True, text=True,
                          env=dict(ENV, PYTHONPATH=str(ROOT)), timeout=120)
    assert snapshot(folder) == good, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"save.py: error: cannot write {prefix}-0001.params: write incomplete (disk full, "
                               f"quota or file size limit) (")
    assert f" free in {folder}); free some space and run again" in lines[0]


_PACK_UNDER_A_SIZE_LIMIT = r"""
import resource, signal, sys
from pathlib import Path
import numpy as np
import resnet_toolkit
from resnet_toolkit.errors import run_cli
from resnet_toolkit.im2rec import Item, pack_items
from resnet_toolkit.images import Transform
rec, mode = Path(sys.argv[1]), sys.argv[2]
rng = np.random.RandomState(1)
images = [rng.randint(0, 256, (32, 32, 3), dtype=np.uint8) for _ in range(40)]
items = [Item(f"{i}.png", i % 2, lambda img=img: img) for i, img in enumerate(images)]
transform = Transform(encoding=".png", quality=1)
pack_items(items, rec.with_name("probe.rec"), transform, progress=False)  # how large the new file will be
size = rec.with_name("probe.rec").stat().st_size
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
limit = 4000 if mode == "fails while writing" else size - 16
resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))


def main(argv):
    pack_items(items, rec, transform, progress=False)
    return 0


run_cli(main)
"""


@pytest.mark.parametrize("mode", ["fails while writing", "fails at close"])
def test_disk_full_while_packing_is_one_line_and_keeps_the_old_records(tmp_path, mode):
    """Before the fix: an MXNetError traceback ('fails while writing'), or exit 0 with a truncated .rec renamed
    over the good one ('fails at close')."""
    folder = tmp_path / "data"
    folder.mkdir()
    rec = folder / "train.rec"
    rec.write_bytes(b"good old records")
    rec.with_suffix(".idx").write_text("0\t0\n")
    script = tmp_path / "pack.py"
    script.write_text(_PACK_UNDER_A_SIZE_LIMIT)
    before = {path: digest for path, digest in snapshot(folder).items() if not path.endswith(("probe.rec",
                                                                                              "probe.idx"))}
    proc = subprocess.run([sys.executable, str(script), str(rec), mode], capture_output=True, text=True,
                          env=dict(ENV, PYTHONPATH=str(ROOT)), timeout=120)
    after = {path: digest for path, digest in snapshot(folder).items() if not path.endswith(("probe.rec",
                                                                                             "probe.idx"))}
    assert after == before, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"pack.py: error: cannot write {rec}: write incomplete (disk full, quota or file "
                               f"size limit) (")


def test_disk_full_elsewhere_is_one_line(tmp_path, capsys, monkeypatch):
    """A text file written through atomic_write_text, and an OSError ENOSPC/EDQUOT/EFBIG raised anywhere else:
    one line naming the file and the free space. Before the fix: the OSError's traceback."""
    from resnet_toolkit.errors import run_cli
    from resnet_toolkit.fileio import atomic_write_text

    target = tmp_path / "synset.txt"
    target.write_text("good\n")
    real_write_text = Path.write_text

    def full_disk(self, *args, **kwargs):
        real_write_text(self, "ha")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(sys, "argv", ["tool.py"])
    monkeypatch.setattr(Path, "write_text", full_disk)
    with pytest.raises(SystemExit) as exc:
        run_cli(lambda argv: atomic_write_text(target, "new\n"))
    monkeypatch.undo()
    err = capsys.readouterr().err
    assert exc.value.code == 2
    assert err.startswith(f"tool.py: error: cannot write {target}: No space left on device (")
    assert err.endswith(f" free in {tmp_path}); free some space and run again\n") and err.count("\n") == 1
    assert target.read_text() == "good\n" and sorted(p.name for p in tmp_path.iterdir()) == ["synset.txt"]

    monkeypatch.setattr(sys, "argv", ["tool.py"])
    for code, words in ((errno.EDQUOT, "Disk quota exceeded"), (errno.EFBIG, "File too large")):
        def write(argv, code=code, words=words):
            raise OSError(code, words, str(tmp_path / "log.txt"))

        with pytest.raises(SystemExit) as exc:
            run_cli(write)
        err = capsys.readouterr().err
        assert exc.value.code == 2 and err.count("\n") == 1
        assert err.startswith(f"tool.py: error: cannot write {tmp_path / 'log.txt'}: {words} (")


# ------------------------------------------------------------------------------------------- quantize (8, 9)
@pytest.fixture(scope="module")
def quantize_work(tmp_path_factory):
    """A random CIFAR ResNet-8 (epoch 3), a good previous INT8 model beside it, and calibration .rec files of
    32x32 (right), 64x64 and 28x28 (wrong) images, 8 each."""
    import cv2
    import mxnet as mx

    need_feature("int8")
    root = tmp_path_factory.mktemp("own_images_quantize")
    prefix = random_checkpoint(root / "model" / "m", 8, "cifar10", 10, epoch=3, calibrate=False)
    (root / "model" / "m-int8-symbol.json").write_text("good old int8 symbol")
    (root / "model" / "m-int8-0003.params").write_bytes(b"good old int8 params")
    rng = np.random.RandomState(2)
    for size in (32, 64, 28):
        rec = root / f"calib{size}.rec"
        writer = mx.recordio.MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "w")
        for i in range(8):
            img = rng.randint(0, 256, (size, size, 3), dtype=np.uint8)
            writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i % 10), i, 0),
                                                 cv2.imencode(".png", img)[1].tobytes()))
        writer.close()
    return root, prefix


@pytest.mark.parametrize("size", [64, 28])
def test_quantize_refuses_calibration_images_of_another_size(quantize_work, capsys, monkeypatch, size):
    """Before the fix: exit 0, the INT8 files replaced by ones calibrated on another scale."""
    root, prefix = quantize_work
    rec = root / f"calib{size}.rec"
    before = snapshot(root)
    code, _, err = run_tool("tools/quantize.py", ["--prefix", prefix, "--epoch", "3", "--calib-rec", rec,
                                                  "--num-calib-batches", "1", "--batch-size", "4"],
                            capsys, monkeypatch)
    assert code == 2 and "Traceback" not in err
    assert err.strip().splitlines() == [
        f"quantize.py: error: {rec}: record 0 is a {size}x{size} image, but this model takes 32x32 inputs cropped "
        f"from images with a shorter side of 32 pixels: INT8 ranges calibrated on it would not fit; calibrate on a "
        f".rec packed at that size (python tools/im2rec_wrapper.py pack LIST.lst --resize 32 ...), or pass the "
        f"--image-shape the model was trained with"]
    assert snapshot(root) == before


def test_quantize_disk_full_is_one_line_and_keeps_the_old_int8_model(quantize_work, capsys, monkeypatch):
    """MXNet's own writer failing (its MXNetError 'FileStream.Write incomplete', no errno) after half a file.
    Before the fix: the MXNetError's traceback."""
    import mxnet as mx

    root, prefix = quantize_work
    before = snapshot(root)

    def full_disk(path, data):
        Path(path).write_bytes(b"half a file")
        raise mx.base.MXNetError("Traceback (most recent call last):\n  File \"../3rdparty/dmlc-core/src/io/"
                                 "local_filesys.cc\", line 38\nMXNetError: Check failed: std: :fwrite(ptr, 1, size,"
                                 " fp_) == size: FileStream.Write incomplete")

    monkeypatch.setattr(mx.nd, "save", full_disk)
    code, _, err = run_tool("tools/quantize.py", ["--prefix", prefix, "--epoch", "3", "--calib-rec",
                                                  root / "calib32.rec", "--num-calib-batches", "1",
                                                  "--batch-size", "4"], capsys, monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(f"quantize.py: error: cannot write {prefix}-int8-0003.params: write incomplete "
                               f"(disk full, quota or file size limit) (")
    assert snapshot(root) == before
