"""Image folders, archives and CIFAR-10 batches -> MXNet RecordIO (``.rec`` + ``.idx``) and ``.lst`` files.

The logic behind ``tools/im2rec_wrapper.py``. Records are written with MXNet's own packing
(``mx.recordio.MXIndexedRecordIO`` + ``pack_img``, or ``pack`` for pass-through bytes) under a hidden name beside
the target, and renamed into place (``.idx`` first, then ``.rec``) only when complete: an interrupted run never
leaves a finished-looking ``.rec`` and never replaces a good one.

Conventions kept from the original: labels are class indices in sorted class-folder order, ``synset.txt`` beside
every ``.rec`` (one class name per line, index = line number), names ``cifar10_train.rec``/``cifar10_val.rec``,
``train_480_q90.rec``/``train_256_q90.rec``/``val_256_q90.rec`` and ``{name}_{resize}_q{quality}.rec``.

Every image goes through :func:`decode_image`: grayscale becomes 3 equal channels, alpha is composited over white,
16-bit is scaled to 8-bit, CMYK JPEGs are converted by OpenCV; empty, corrupt, non-image, too small and too large
files are skipped and named with the reason in the :class:`PackSummary`.
"""
from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import time
import warnings
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from resnet_toolkit.errors import DiskFull, ShortWrite, UserError
from resnet_toolkit.fileio import atomic_path, atomic_write_text, remove_stale_partials
from resnet_toolkit.safe_io import iter_archive_files, load_pickle_safely
from resnet_toolkit.synset import check_synset_replaceable, read_synset, write_synset

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
DIGIT_CLASSES = [str(d) for d in range(10)]
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")
DEFAULT_MIN_SIDE = 8  # pixels: smaller images carry no usable content at the networks' input sizes
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels (~300 MB decoded): beyond it, a likely decompression bomb
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


# ----------------------------------------------------------------------------------------------------------------
# Images
# ----------------------------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class ImageLimits:
    """Images with a shorter side below ``min_side`` pixels or more than ``max_pixels`` pixels are skipped."""

    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS

    def too_large(self, width: int, height: int) -> str | None:
        """The reason an image of ``width`` x ``height`` pixels is refused for its size, or None when it fits."""
        if width * height > self.max_pixels:
            return f"too large: {width}x{height} pixels (limit {self.max_pixels / 1e6:g} megapixels)"
        return None


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _exif_orientation(segment: bytes) -> int:
    """The EXIF orientation (1-8) in an APP1 segment's payload; 1 (upright) when absent or unreadable."""
    if not segment.startswith(b"Exif\0\0") or len(segment) < 14:
        return 1
    tiff = segment[6:]
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return 1


def _jpeg_header(data: bytes) -> tuple[int, int, bool] | None:
    """(width, height, simple) from a JPEG's segments: simple = 8-bit, 3 components and no EXIF rotation
    (MXNet's decoder ignores EXIF orientation, so a rotated photo must be stored upright, re-encoded)."""
    pos, end, upright = 2, len(data), True
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 10 <= end:
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            return width, height, upright and data[pos + 4] == 8 and data[pos + 9] == 3
        if marker == 0xE1:
            upright = upright and _exif_orientation(data[pos + 4:pos + 2 + length]) == 1
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def _header_info(data: bytes) -> tuple[int, int, bool] | None:
    """``(width, height, simple)`` read from the file header without decoding; None when unknown.

    ``simple``: an 8-bit 3-channel JPEG, or an 8-bit RGB PNG (no alpha, no palette), which every decoder reads
    as the same 3-channel image. JPEG and PNG headers are parsed here (fast); other formats through Pillow
    when it is installed.
    """
    if data.startswith(_PNG_MAGIC) and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return width, height, data[24] == 8 and data[25] == 2
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_header(data)
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.size[0], im.size[1], False
    except Image.DecompressionBombError as exc:
        raise _Skip(f"too large ({exc})") from None
    except Exception:  # noqa: BLE001  (Pillow raises many types for files it cannot identify; cv2 decides)
        return None


class _Skip(Exception):
    """An image that cannot be packed; the message is the reason shown in the summary."""


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """A decoded image (any of gray, gray+alpha, BGR, BGRA; 8 or 16 bits) as 3-channel 8-bit BGR.

    16-bit values are scaled by 255/65535 (rounded); alpha is composited over white, as a viewer shows it.
    """
    import cv2

    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise _Skip(f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (2, 4):
        color, alpha = img[:, :, :-1].astype(np.float32), img[:, :, -1:].astype(np.float32) / 255.0
        img = np.rint(color * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        channels -= 1
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(img)
    raise _Skip(f"unsupported number of channels ({channels})")


def header_size_problem(data: bytes, limits: ImageLimits = ImageLimits()) -> str | None:
    """The reason the file bytes ``data`` must not be decoded: their header (JPEG and PNG parsed here, other formats
    through Pillow when installed) claims more than ``limits.max_pixels`` pixels, which decoding would allocate
    (3 bytes each: a 100000x100000 header asks for 30 GB). None when the size fits or the header gives none."""
    try:
        info = _header_info(data)
    except _Skip as exc:
        return str(exc)
    return limits.too_large(info[0], info[1]) if info is not None else None


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, bool]:
    """Decode file bytes to 3-channel 8-bit BGR. Returns ``(image, as_is)``.

    ``as_is`` is True when the bytes are a JPEG or PNG that any decoder reads as this very image (8-bit RGB,
    no alpha, no palette, no CMYK), i.e. safe to store unchanged (pass-through). Raises ``_Skip`` with the reason
    for an empty, undecodable, too small or too large file.
    """
    import cv2

    if not data:
        raise _Skip("empty file")
    info = _header_info(data)
    if info is not None and (reason := limits.too_large(info[0], info[1])):
        raise _Skip(reason)
    # JPEG: IMREAD_COLOR applies the EXIF orientation and converts gray/CMYK to BGR; others: see every channel
    flags = cv2.IMREAD_COLOR if data.startswith(_JPEG_MAGIC) else cv2.IMREAD_UNCHANGED
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if raw is None or raw.size == 0:
        raise _Skip("not a decodable image")
    height, width = raw.shape[:2]
    if reason := limits.too_large(width, height):
        raise _Skip(reason)
    if min(width, height) < limits.min_side:
        raise _Skip(f"too small: {width}x{height} pixels (shorter side below {limits.min_side})")
    img = to_bgr8(raw)
    simple = raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3
    return img, bool(simple and info is not None and info[2] and data.startswith((_JPEG_MAGIC, _PNG_MAGIC)))


def resize_short(img: np.ndarray, short: int) -> np.ndarray:
    """Resize so the shorter side is ``short`` pixels, keeping the aspect ratio (area filter when shrinking)."""
    import cv2

    height, width = img.shape[:2]
    if min(height, width) == short:
        return img
    scale = short / min(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if height <= width:
        size = (size[0], short)
    else:
        size = (short, size[1])
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """The largest centered square of ``img``."""
    height, width = img.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return img[top:top + side, left:left + side]


@dataclass(frozen=True)
class Transform:
    """How each image is stored: ``resize`` (shorter side, pixels; 0 keeps the size), ``exact_size`` ((w, h):
    center-crop and resize to exactly this, for CIFAR-like data), ``center_crop`` (square first), ``quality``
    (JPEG 1-100, or PNG compression 0-9), ``encoding`` ('.jpg' or '.png'), ``pass_through`` (store the file's
    own bytes whenever they already are the image as stored), ``limits``."""

    resize: int = 0
    exact_size: tuple[int, int] | None = None
    center_crop: bool = False
    quality: int = 90
    encoding: str = ".jpg"
    pass_through: bool = False
    limits: ImageLimits = ImageLimits()

    def record(self, label: float, data: bytes | np.ndarray) -> tuple[bytes, bool]:
        """The packed record payload (IRHeader + image bytes, header id 0) and whether it was re-encoded."""
        import mxnet as mx

        header = mx.recordio.IRHeader(0, float(label), 0, 0)
        if isinstance(data, np.ndarray):
            img, as_is = to_bgr8(data), False
        else:
            img, as_is = decode_image(data, self.limits)
        if self.center_crop:
            img, as_is = center_crop_square(img), False
        if self.exact_size is not None:
            if (img.shape[1], img.shape[0]) != tuple(self.exact_size):
                import cv2

                img = cv2.resize(center_crop_square(img), tuple(self.exact_size), interpolation=cv2.INTER_AREA)
                as_is = False
        elif self.resize and min(img.shape[:2]) != self.resize:
            img, as_is = resize_short(img, self.resize), False
        if self.pass_through and as_is:
            return mx.recordio.pack(header, bytes(data)), False
        quality = self.quality if self.encoding == ".jpg" else min(self.quality, 9)
        return mx.recordio.pack_img(header, img, quality=quality, img_fmt=self.encoding), True


# ----------------------------------------------------------------------------------------------------------------
# Writing records
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class PackSummary:
    """What one pack produced: counts, skipped files with reasons, output size (bytes) and time (seconds)."""

    rec: Path
    packed: int = 0
    reencoded: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    bytes: int = 0
    seconds: float = 0.0
    labels: Counter = field(default_factory=Counter)

    def format(self) -> str:
        """Human-readable lines: one summary line, then one line per skipped file."""
        lines = [f"{self.rec}: packed {self.packed} images ({self.reencoded} re-encoded), skipped {len(self.skipped)},"
                 f" {self.bytes / 1e6:.1f} MB in {self.seconds:.1f} s"]
        lines += [f"  skipped {name}: {reason}" for name, reason in self.skipped]
        return "\n".join(lines)


@dataclass(frozen=True)
class Item:
    """One image to pack: its display ``name``, class ``label`` and a ``load`` returning bytes or an array."""

    name: str
    label: int
    load: Callable[[], bytes | np.ndarray]


def ensure_output_dir(out_dir: str | os.PathLike) -> Path:
    """Create ``out_dir`` if needed and prove it writable; a clear :class:`UserError` otherwise."""
    out = Path(out_dir)
    if out.exists() and not out.is_dir():
        raise UserError(f"output folder {out} exists and is not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".write-test-"):
            pass
    except OSError as exc:
        raise UserError(f"output folder {out} is not writable: {exc.strerror or exc}") from None
    return out



@contextlib.contextmanager
def record_writer(rec: Path) -> Iterator[object]:
    """An ``MXIndexedRecordIO`` writing beside ``rec`` and its ``.idx``; both renamed into place on success.

    Partial files that killed runs left beside them are removed first. A full disk (either file) is one
    :class:`DiskFull` naming ``rec``, and leaves both old files as they were; MXNet's writer drops its last
    buffered bytes when the disk fills at close without raising, so the ``.rec``'s size is checked against what
    it accepted."""
    import mxnet as mx

    rec = Path(rec)
    for target in (rec, rec.with_suffix(".idx")):
        remove_stale_partials(target.parent, target.name)
    try:
        with atomic_path(rec) as rec_tmp, atomic_path(rec.with_suffix(".idx")) as idx_tmp:
            writer = mx.recordio.MXIndexedRecordIO(str(idx_tmp), str(rec_tmp), "w")
            try:
                yield writer
                accepted = writer.tell()  # bytes, MXNet's unflushed buffer included
            finally:
                writer.close()
            if rec_tmp.stat().st_size != accepted:
                raise ShortWrite(f"{rec_tmp}: {rec_tmp.stat().st_size} of {accepted} bytes written")
    except DiskFull as exc:  # the .rec is what fills a disk, whichever of the two files met the end
        raise DiskFull(rec, exc.reason) from None


def _encode(item: Item, transform: Transform) -> tuple[Item, bytes | None, bool, str]:
    try:
        data = item.load()
        payload, reencoded = transform.record(item.label, data)
        return item, payload, reencoded, ""
    except _Skip as exc:
        return item, None, False, str(exc)
    except OSError as exc:
        return item, None, False, f"cannot read: {exc.strerror or exc}"


def _set_record_id(payload: bytes, record_id: int) -> bytes:
    """Put ``record_id`` into the IRHeader's id field (bytes 8..16 of a packed header)."""
    return payload[:8] + np.uint64(record_id).tobytes() + payload[16:]


def pack_items(items: Sequence[Item], rec: str | os.PathLike, transform: Transform, num_thread: int = 1,
               desc: str = "", progress: bool | None = None) -> PackSummary:
    """Pack ``items`` in order into ``rec`` (+ ``.idx``); record ids (the ``.idx`` keys) are 0..packed-1.

    Decoding and encoding run on ``num_thread`` threads (OpenCV releases the GIL); skipped items are listed in
    the summary. Raises :class:`UserError` (leaving any old ``rec`` untouched) when nothing could be packed.
    """
    from tqdm import tqdm

    rec = Path(rec)
    summary = PackSummary(rec)
    start = time.perf_counter()
    chunk = max(64, 64 * num_thread)
    with record_writer(rec) as writer, ThreadPoolExecutor(max(1, num_thread)) as pool, \
            tqdm(total=len(items), desc=desc or rec.name, unit="img", disable=progress is False or None) as bar:
        mapper = pool.map if num_thread > 1 else map  # threads only pay off when there are several
        for lo in range(0, len(items), chunk):
            for item, payload, reencoded, reason in mapper(lambda it: _encode(it, transform), items[lo:lo + chunk]):
                bar.update(1)
                if payload is None:
                    summary.skipped.append((item.name, reason))
                    continue
                writer.write_idx(summary.packed, _set_record_id(payload, summary.packed))
                summary.packed += 1
                summary.reencoded += int(reencoded)
                summary.labels[item.label] += 1
        if summary.packed == 0:
            reasons = "; ".join(f"{n}: {r}" for n, r in summary.skipped[:3])
            raise UserError(f"{rec}: no image could be packed ({len(summary.skipped)} skipped: {reasons})")
    summary.bytes = rec.stat().st_size
    summary.seconds = time.perf_counter() - start
    return summary


# ----------------------------------------------------------------------------------------------------------------
# Image folders and .lst files
# ----------------------------------------------------------------------------------------------------------------

@dataclass
class FolderScan:
    """An image-folder tree: ``classes`` (sorted folder names), ``items`` ((relative path, label)), files
    ``ignored`` (name, reason) and empty class folders."""

    root: Path
    classes: list[str]
    items: list[tuple[str, int]]
    ignored: list[tuple[str, str]] = field(default_factory=list)
    empty_classes: list[str] = field(default_factory=list)


def scan_image_folder(root: str | os.PathLike, min_classes: int = 2) -> FolderScan:
    """List ``root/<class>/**/<image>``: labels are class indices in sorted class-folder order.

    Raises :class:`UserError` when ``root`` is missing, holds no class folders, no images, or images of fewer
    than ``min_classes`` classes.
    """
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such image folder")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise UserError(f"{root}: no class folders (expected {root}/<class>/<image>)")
    scan = FolderScan(root, classes, [])
    for label, name in enumerate(classes):
        found = 0
        for folder, dirs, files in os.walk(root / name):
            dirs[:] = sorted(d for d in dirs if not d.startswith("."))
            for fname in sorted(files):
                rel = Path(folder, fname).relative_to(root).as_posix()
                if fname.startswith("."):
                    continue
                if not fname.lower().endswith(IMAGE_EXTENSIONS):
                    scan.ignored.append((rel, "not an image file name extension"))
                elif "\t" in rel or "\n" in rel or "\r" in rel:
                    scan.ignored.append((repr(rel), "tab or newline in the file name (not allowed in a .lst)"))
                else:
                    scan.items.append((rel, label))
                    found += 1
        if not found:
            scan.empty_classes.append(name)
    with_images = [c for c in classes if c not in scan.empty_classes]
    if not scan.items:
        raise UserError(f"{root}: no images found in {len(classes)} class folder(s) "
                        f"(extensions: {' '.join(IMAGE_EXTENSIONS)})")
    if len(with_images) < min_classes:
        raise UserError(f"{root}: images of only {len(with_images)} class ({', '.join(with_images)}); "
                        f"a classifier needs at least {min_classes} class folders with images")
    return scan


def write_lst(path: str | os.PathLike, items: Iterable[tuple[str, int]]) -> Path:
    """Write MXNet's ``.lst`` format: ``index<TAB>label<TAB>relative path`` (UTF-8), atomically."""
    text = "".join(f"{i}\t{float(label):f}\t{rel}\n" for i, (rel, label) in enumerate(items))
    atomic_write_text(path, text)
    return Path(path)


def read_lst_rows(path: str | os.PathLike) -> list[tuple[int, str, int]]:
    """``(index, relative path, label)`` rows of a ``.lst`` file (``index<TAB>label<TAB>path``, MXNet's format);
    a clear error naming the line when one is malformed, or when the file is missing or empty."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such .lst file") from None
    except OSError as exc:
        raise UserError(f"{path}: cannot read: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a UTF-8 text .lst file") from None
    rows = []
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t")
        try:
            if len(parts) < 3:
                raise ValueError
            index, label = int(parts[0]), float(parts[1])
        except ValueError:
            raise UserError(f"{path}:{number}: expected 'index<TAB>label<TAB>path', got {line[:80]!r}") from None
        if label != int(label) or label < 0:
            raise UserError(f"{path}:{number}: label {parts[1]} is not a class index")
        rows.append((index, parts[-1], int(label)))
    if not rows:
        raise UserError(f"{path}: empty list")
    return rows


def read_lst(path: str | os.PathLike) -> list[tuple[str, int]]:
    """``(relative path, label)`` rows of a ``.lst`` file (:func:`read_lst_rows` without the index)."""
    return [(rel, label) for _, rel, label in read_lst_rows(path)]


def make_lists(root: str | os.PathLike, out_dir: str | os.PathLike, name: str, train_ratio: float = 1.0,
               seed: int = 0, shuffle: bool = True, stratify: bool = True) -> tuple[list[Path], FolderScan]:
    """Scan ``root`` and write ``{name}_train.lst`` + ``{name}_val.lst`` (``train_ratio`` < 1) or ``{name}.lst``,
    and ``synset.txt``, into ``out_dir``. The shuffle is seeded; the split follows it: with ``stratify`` each class
    gives ``train_ratio`` of its images to the training list (:func:`split_by_class`), else the first
    ``train_ratio`` of all images go there."""
    if not 0.0 < train_ratio <= 1.0:
        raise UserError(f"--train-ratio must be in (0, 1], got {train_ratio}")
    scan = scan_image_folder(root)
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, scan.classes)
    items = list(scan.items)
    if shuffle:
        random.Random(seed).shuffle(items)
    if train_ratio < 1.0:
        cut = int(round(len(items) * train_ratio))
        train, val = split_by_class(items, train_ratio) if stratify else (items[:cut], items[cut:])
        if not train or not val:
            raise UserError(f"--train-ratio {train_ratio} leaves an empty split of {len(items)} images")
        paths = [write_lst(out / f"{name}_train.lst", train), write_lst(out / f"{name}_val.lst", val)]
    else:
        paths = [write_lst(out / f"{name}.lst", items)]
    write_synset(out, scan.classes)
    return paths, scan


def split_by_class(items: Sequence[tuple[str, int]], train_ratio: float
                   ) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """``(train, val)``: of each class's ``n`` items (``(relative path, label)``) the first ``round(n *
    train_ratio)`` (at least one) in ``items``' order go to ``train``, the rest to ``val``; both keep that order."""
    per_class = Counter(label for _, label in items)
    quota = {label: min(n, max(1, int(round(n * train_ratio)))) for label, n in per_class.items()}
    taken: Counter = Counter()
    train, val = [], []
    for rel, label in items:
        (train if taken[label] < quota[label] else val).append((rel, label))
        taken[label] += 1
    return train, val


def _file_loader(path: Path) -> Callable[[], bytes]:
    return lambda: path.read_bytes()


def rec_name(name: str, transform: Transform) -> str:
    """The original's naming: ``{name}_{resize}_q{quality}.rec``; ``{name}_q{quality}.rec`` without resize,
    ``{name}.rec`` for pass-through."""
    if transform.pass_through:
        return f"{name}.rec"
    if transform.resize:
        return f"{name}_{transform.resize}_q{transform.quality}.rec"
    return f"{name}_q{transform.quality}.rec"


def synset_for_lst(lst: Path, rows: Sequence[tuple[str, int]], synset: str | os.PathLike | None) -> list[str]:
    """Class names for a ``.lst``: ``synset`` if given, else ``synset.txt`` beside the ``.lst``, else the folder
    name each label's files sit in (when that is unambiguous)."""
    candidate = Path(synset) if synset else lst.parent / "synset.txt"
    if synset or candidate.is_file():
        classes = read_synset(candidate)
    else:
        names: dict[int, set[str]] = {}
        for rel, label in rows:
            names.setdefault(label, set()).add(PurePosixPath(rel).parts[0])
        if any(len(v) != 1 for v in names.values()) or sorted(names) != list(range(len(names))):
            raise UserError(f"{lst}: no synset.txt beside it and labels do not map to one folder each; "
                            "pass --synset")
        classes = [names[i].pop() for i in range(len(names))]
    top = max(label for _, label in rows)
    if top >= len(classes):
        raise UserError(f"{lst}: label {top} but {candidate} names only {len(classes)} classes")
    return classes


def pack_lst(lst: str | os.PathLike, root: str | os.PathLike, out_dir: str | os.PathLike, transform: Transform,
             name: str | None = None, num_thread: int = 1, synset: str | os.PathLike | None = None,
             progress: bool | None = None) -> PackSummary:
    """Pack the images a ``.lst`` names (relative to ``root``) into ``out_dir/{rec_name}`` + ``synset.txt``."""
    lst, root = Path(lst), Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such image folder")
    rows = read_lst(lst)
    classes = synset_for_lst(lst, rows, synset)
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, classes)
    items = [Item(rel, label, _file_loader(root / rel)) for rel, label in rows]
    summary = pack_items(items, out / rec_name(name or lst.stem, transform), transform, num_thread,
                         progress=progress)
    write_synset(out, classes)
    return summary


# ----------------------------------------------------------------------------------------------------------------
# CIFAR-10
# ----------------------------------------------------------------------------------------------------------------

def _cifar_split_of(path: PurePosixPath) -> tuple[str, str] | None:
    """``(split, class)`` for '.../train|test/<class>/<file>' paths."""
    parts = path.parts
    if len(parts) >= 3 and parts[-3] in ("train", "test") and parts[-1].lower().endswith(IMAGE_EXTENSIONS):
        return parts[-3], parts[-2]
    return None


def _cifar_from_tree(files: Iterable[tuple[PurePosixPath, Callable[[], bytes]]], source: Path):
    """Group '<split>/<class>/<file>' entries; returns (classes, {split: [Item]})."""
    found: dict[str, list[tuple[str, str, Callable]]] = {"train": [], "test": []}
    for path, load in files:
        hit = _cifar_split_of(path)
        if hit:
            found[hit[0]].append((hit[1], path.as_posix(), load))
    if not found["train"] or not found["test"]:
        raise UserError(f"{source}: expected train/<class>/<image> and test/<class>/<image> "
                        f"(found {len(found['train'])} train and {len(found['test'])} test images)")
    classes = sorted({c for c, _, _ in found["train"]})
    extra = sorted({c for c, _, _ in found["test"]} - set(classes))
    if extra:
        raise UserError(f"{source}: test classes {extra} have no train folder")
    if len(classes) < 2:
        raise UserError(f"{source}: images of only {len(classes)} class; a classifier needs at least 2")
    index = {c: i for i, c in enumerate(classes)}
    splits = {s: [Item(name, index[c], load) for c, name, load in sorted(found[s], key=lambda t: t[1])]
              for s in found}
    return classes, splits


def _is_cifar_batches(names: Iterable[str]) -> bool:
    return any(PurePosixPath(n).name == "data_batch_1" for n in names)


def _cifar_from_batches(blobs: dict[str, Callable[[], bytes]], source: Path):
    """Items from the official python batches (``data_batch_1..5``, ``test_batch``, ``batches.meta``)."""
    by_name = {PurePosixPath(k).name: v for k, v in blobs.items()}
    classes = list(CIFAR10_CLASSES)
    if "batches.meta" in by_name:
        meta = load_pickle_safely(by_name["batches.meta"](), f"{source}: batches.meta")
        names = meta.get(b"label_names") if isinstance(meta, dict) else None
        if not isinstance(names, list) or not all(isinstance(n, (bytes, str)) for n in names):
            raise UserError(f"{source}: batches.meta has no label_names list")
        classes = [n.decode("utf-8") if isinstance(n, bytes) else n for n in names]
    wanted = {"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
    splits: dict[str, list[Item]] = {}
    for split, batch_names in wanted.items():
        items: list[Item] = []
        for bname in batch_names:
            if bname not in by_name:
                raise UserError(f"{source}: {bname} is missing")
            batch = load_pickle_safely(by_name[bname](), f"{source}: {bname}")
            data = batch.get(b"data") if isinstance(batch, dict) else None
            labels = batch.get(b"labels") if isinstance(batch, dict) else None
            if (not isinstance(data, np.ndarray) or data.dtype != np.uint8 or data.ndim != 2
                    or data.shape[1] != 3072 or not isinstance(labels, list) or len(labels) != len(data)):
                raise UserError(f"{source}: {bname} is not a CIFAR-10 batch (needs uint8 data Nx3072 and N labels)")
            if not all(isinstance(v, int) and 0 <= v < len(classes) for v in labels):
                raise UserError(f"{source}: {bname} has labels outside 0..{len(classes) - 1}")
            images = data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)[:, :, :, ::-1]  # RGB planes -> HWC BGR
            for i, label in enumerate(labels):
                items.append(Item(f"{bname}[{i}]", label, (lambda img=images[i]: np.ascontiguousarray(img))))
        splits[split] = items
    return classes, splits


def load_cifar10_source(source: str | os.PathLike):
    """``(classes, {'train': [Item], 'test': [Item]}, from_batches)`` from an image tree, a tar/zip archive of
    one, or the official ``cifar-10-batches-py`` folder/archive."""
    source = Path(source)
    if source.is_dir():
        files = [p for p in source.rglob("*") if p.is_file() and not p.is_symlink()]
        rels = {p.relative_to(source).as_posix(): p for p in files}
        if _is_cifar_batches(rels):
            return (*_cifar_from_batches({k: _file_loader(p) for k, p in rels.items()}, source), True)
        return (*_cifar_from_tree(((PurePosixPath(k), _file_loader(p)) for k, p in sorted(rels.items())), source),
                False)
    if not source.exists():
        raise UserError(f"{source}: no such folder or archive")
    contents = {path.as_posix(): data for path, data in iter_archive_files(source)}
    loaders = {k: (lambda d=d: d) for k, d in contents.items()}
    if _is_cifar_batches(contents):
        return (*_cifar_from_batches(loaders, source), True)
    return (*_cifar_from_tree(((PurePosixPath(k), v) for k, v in loaders.items()), source), False)


def pack_cifar10(source: str | os.PathLike, out_dir: str | os.PathLike, pass_through: bool = True, seed: int = 0,
                 num_thread: int = 1, quality: int = 95, progress: bool | None = None) -> list[PackSummary]:
    """Write ``cifar10_train.rec`` / ``cifar10_val.rec`` (+ ``.idx``, 32x32) and ``synset.txt`` into ``out_dir``.

    Image files are stored unchanged when they already are 32x32 8-bit RGB JPEG/PNG (``pass_through``), else
    re-encoded as JPEG at ``quality``; the python batches are stored as PNG (lossless). Records are in a seeded
    shuffled order.
    """
    out = ensure_output_dir(out_dir)
    classes, splits, from_batches = load_cifar10_source(source)
    check_synset_replaceable(out, classes)
    transform = Transform(exact_size=(32, 32), quality=9 if from_batches else quality,
                          encoding=".png" if from_batches else ".jpg", pass_through=pass_through)
    summaries = []
    for split, target in (("train", "cifar10_train.rec"), ("test", "cifar10_val.rec")):
        items = list(splits[split])
        random.Random(seed).shuffle(items)
        summaries.append(pack_items(items, out / target, transform, num_thread, desc=target, progress=progress))
    write_synset(out, classes)
    return summaries


# ----------------------------------------------------------------------------------------------------------------
# ImageNet and the digits demo
# ----------------------------------------------------------------------------------------------------------------

def pack_imagenet(root: str | os.PathLike, out_dir: str | os.PathLike, quality: int = 90, num_thread: int = 1,
                  seed: int = 0, sizes: Sequence[int] = (480, 256), limits: ImageLimits = ImageLimits(),
                  progress: bool | None = None) -> list[PackSummary]:
    """The original's three files from ``root/train/<class>/*`` and ``root/val/<class>/*``:
    ``train_480_q90.rec`` (scale augmentation), ``train_256_q90.rec`` and ``val_256_q90.rec``, + ``synset.txt``.

    Val class folders must be train class names; labels follow the sorted train classes.
    """
    root = Path(root)
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise UserError(f"{root / sub}: no such folder (expected {root}/train/<class>/ and {root}/val/<class>/)")
    train = scan_image_folder(root / "train")
    val = scan_image_folder(root / "val", min_classes=1)
    unknown = sorted(set(val.classes) - set(train.classes))
    if unknown:
        raise UserError(f"{root / 'val'}: classes {unknown[:5]} are not train classes")
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, train.classes)
    index = {c: i for i, c in enumerate(train.classes)}
    train_items = [Item(f"train/{rel}", label, _file_loader(root / "train" / rel)) for rel, label in train.items]
    random.Random(seed).shuffle(train_items)
    val_items = [Item(f"val/{rel}", index[val.classes[label]], _file_loader(root / "val" / rel))
                 for rel, label in val.items]
    summaries = []
    for size in sizes:
        transform = Transform(resize=size, quality=quality, limits=limits)
        summaries.append(pack_items(train_items, out / f"train_{size}_q{quality}.rec", transform, num_thread,
                                    progress=progress))
    val_transform = Transform(resize=256, quality=quality, limits=limits)
    summaries.append(pack_items(val_items, out / f"val_256_q{quality}.rec", val_transform, num_thread,
                                progress=progress))
    write_synset(out, train.classes)
    return summaries


def digits_images(seed: int = 0, val_fraction: float = 0.2):
    """scikit-learn's 1,797 handwritten digits as 32x32 gray images (uint8), split stratified and seeded.

    Returns ``((train_images, train_labels), (val_images, val_labels))``; 8x8 values 0..16 are scaled to 0..255
    and enlarged with bilinear interpolation.
    """
    import cv2
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    digits = load_digits()
    small = np.clip(np.rint(digits.images * (255.0 / 16.0)), 0, 255).astype(np.uint8)
    big = np.stack([cv2.resize(im, (32, 32), interpolation=cv2.INTER_LINEAR) for im in small])
    xt, xv, yt, yv = train_test_split(big, digits.target, test_size=val_fraction, random_state=seed,
                                      stratify=digits.target)
    return (xt, yt), (xv, yv)


def pack_digits(out_dir: str | os.PathLike, seed: int = 0, val_fraction: float = 0.2,
                progress: bool | None = None) -> list[PackSummary]:
    """The demo data: ``digits_train.rec`` / ``digits_val.rec`` (+ ``.idx``; 32x32 RGB, lossless PNG) and
    ``synset.txt`` (classes '0'..'9') in ``out_dir``."""
    if not 0.0 < val_fraction < 1.0:
        raise UserError(f"--val-fraction must be in (0, 1), got {val_fraction}")
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, DIGIT_CLASSES)
    (xt, yt), (xv, yv) = digits_images(seed, val_fraction)
    transform = Transform(exact_size=(32, 32), quality=9, encoding=".png", limits=ImageLimits(min_side=1))
    summaries = []
    for images, labels, target in ((xt, yt, "digits_train.rec"), (xv, yv, "digits_val.rec")):
        items = [Item(f"{target}[{i}]", int(label), (lambda im=im: im)) for i, (im, label) in
                 enumerate(zip(images, labels))]
        summaries.append(pack_items(items, out / target, transform, desc=target, progress=progress))
    write_synset(out, DIGIT_CLASSES)
    return summaries


def _read_payloads(rec: str | os.PathLike) -> Iterator[tuple[Any, bytes]]:
    """Yield ``(header, image bytes)`` for each record of ``rec`` in file order."""
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(rec), "r")
    try:
        while (payload := reader.read()) is not None:
            yield mx.recordio.unpack(payload)
    finally:
        reader.close()


def read_records(rec: str | os.PathLike) -> Iterator[tuple[int, float, np.ndarray]]:
    """Yield ``(id, label, BGR image)`` for each record of ``rec`` in file order (for tests and checks)."""
    import cv2

    for header, data in _read_payloads(rec):
        yield header.id, float(header.label), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def read_labels(rec: str | os.PathLike) -> Iterator[tuple[int, float]]:
    """Yield ``(id, label)`` for each record of ``rec`` in file order, without decoding images."""
    for header, _ in _read_payloads(rec):
        yield header.id, float(header.label)


def subset_records(src: str | os.PathLike, dst: str | os.PathLike, labels: dict[int, int]) -> int:
    """Copy the records of ``src`` whose label is a key of ``labels`` to ``dst`` (+ ``.idx``, written beside and
    renamed into place), relabelled to ``labels[label]`` and renumbered 0..n-1; image bytes unchanged. Returns n.

    E.g. a fine-tuning task from a packed set: ``{5: 0, 6: 1, 7: 2, 8: 3, 9: 4}`` keeps the digits 5-9 as classes
    0-4."""
    import mxnet as mx

    count = 0
    with record_writer(Path(dst)) as writer:
        for header, data in _read_payloads(src):
            label = int(np.asarray(header.label).ravel()[0])
            if label in labels:
                writer.write_idx(count, mx.recordio.pack(header._replace(label=float(labels[label]), id=count), data))
                count += 1
    return count
