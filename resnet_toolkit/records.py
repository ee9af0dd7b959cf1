"""RecordIO files read and checked: the ``.rec``/``.idx`` pair, record counts, labels, decodable images.

The checks are cheap (a few reads, or a sample of records decoded) and run before an ImageRecordIter is built: a
missing, truncated or mismatched file, too few records for a batch, an image that does not decode, images of the
wrong size for the network input or a class count that is not the data's is one :class:`UserError` line naming the
fix, never an abort inside MXNet. The readers give back what :mod:`resnet_toolkit.im2rec` wrote, in file order.

Imports nothing of :mod:`resnet_toolkit.data`: a check that names the command making a file takes it as
``make_command``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from resnet_toolkit.errors import UserError

RECORDIO_MAGIC = 0xCED7230A  # dmlc RecordIO: every record starts with this uint32 (little-endian)
_LENGTH_MASK = (1 << 29) - 1  # the lower 29 bits of the second uint32 are the length; the upper 3 the part flag
_SAMPLED_OFFSETS = 64  # index entries checked to point at record starts (plus the first and the last)


def check_record_file(rec: str | Path, make_command: str = "") -> tuple[Path, Path]:
    """``(rec, idx)`` when both exist and agree; otherwise a :class:`UserError` naming the file and the fix.

    Cheap checks (a few reads, whatever the file size): the data folder exists, ``rec`` starts with the RecordIO
    magic, every ``idx`` line is ``key<TAB>offset``, a sample of offsets (first, last and up to 64 between) are
    record starts, and the last record ends exactly at the end of ``rec`` (not truncated, nothing unindexed).
    """
    rec = Path(rec)
    idx = rec.with_suffix(".idx")
    hint = f" (make it with: {make_command})" if make_command else ""
    if not rec.parent.is_dir():
        raise UserError(f"{rec.parent}: no such data folder{hint}")
    for path in (rec, idx):
        if not path.is_file():
            raise UserError(f"{path}: no such file{hint}")
    _verify_record_pair(rec, idx, hint)
    return rec, idx


def _read_index(idx: Path) -> list[int]:
    offsets = []
    try:
        with open(idx, "rb") as fh:
            for number, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                parts = line.split(b"\t")
                try:
                    if len(parts) != 2:
                        raise ValueError
                    int(parts[0])
                    offsets.append(int(parts[1]))
                except ValueError:
                    raise UserError(f"{idx}: line {number} is not 'key<TAB>offset'; not a RecordIO index") from None
    except OSError as exc:
        raise UserError(f"{idx}: cannot read: {exc.strerror}") from None
    if not offsets:
        raise UserError(f"{idx}: empty index (no records)")
    return offsets


def _verify_record_pair(rec: Path, idx: Path, hint: str) -> None:
    import struct

    offsets = _read_index(idx)
    size = rec.stat().st_size
    try:
        fh = open(rec, "rb")
    except OSError as exc:
        raise UserError(f"{rec}: cannot read: {exc.strerror}") from None
    with fh:
        def header_at(pos: int) -> tuple[int, int] | None:
            fh.seek(pos)
            raw = fh.read(8)
            if len(raw) < 8:
                return None
            magic, lrec = struct.unpack("<II", raw)
            return (lrec >> 29, lrec & _LENGTH_MASK) if magic == RECORDIO_MAGIC else None

        if size < 8 or header_at(0) is None:
            fh.seek(0)
            raise UserError(f"{rec}: not a RecordIO file (it starts with {fh.read(8)!r}, not the RecordIO magic)")
        step = max(1, len(offsets) // _SAMPLED_OFFSETS)
        last = max(offsets)
        for number in sorted({0, len(offsets) - 1, *range(0, len(offsets), step)}):
            pos = offsets[number]
            if pos >= size:
                raise UserError(f"{rec}: truncated, or {idx.name} belongs to another file: entry {number} points "
                                f"at byte {pos}, past the end of {rec.name} ({size} bytes){hint}")
            if pos < 0 or header_at(pos) is None:
                raise UserError(f"{idx} does not match {rec}: entry {number} points at byte {pos}, which is not "
                                f"the start of a record ({rec.name} has {size} bytes){hint}")
        pos = last
        while True:  # follow the last record's parts (a record holding the magic is split) to its end
            head = header_at(pos)
            if head is None:
                if pos + 8 > size:
                    raise UserError(f"{rec}: truncated: its last record continues past the end of the file "
                                    f"({size} bytes); re-create it{hint}")
                raise UserError(f"{rec}: damaged record at byte {pos} (expected the RecordIO magic){hint}")
            flag, length = head
            pos += 8 + ((length + 3) & ~3)
            if flag in (0, 3):
                break
        if pos > size:
            raise UserError(f"{rec}: truncated: its last record ends at byte {pos} but the file has {size} bytes; "
                            f"re-create it{hint}")
        if pos < size:
            raise UserError(f"{idx} does not match {rec}: {size - pos} bytes after the last indexed record "
                            f"(an index of another or older .rec?){hint}")


def check_batch_fits(rec: str | Path, batch_size: int, num_parts: int = 1) -> None:
    """A :class:`UserError` when each of ``num_parts`` shares of ``rec`` holds fewer images than ``batch_size``
    (ImageRecordIter would abort inside MXNet)."""
    per_part = count_records(rec) // max(num_parts, 1)
    if per_part < batch_size:
        share = f" ({num_parts} workers' share)" if num_parts > 1 else ""
        raise UserError(f"{rec}: {per_part} images{share} is fewer than one batch of {batch_size}; "
                        f"use a smaller --batch-size")


def count_records(rec: str | Path) -> int:
    """Number of records in ``rec``, read from its ``.idx`` (one line per record)."""
    _, idx = check_record_file(rec)
    with open(idx, "rb") as fh:
        return sum(1 for line in fh if line.strip())


# ------------------------------------------------------------------------------------ what the records hold
SAMPLE_RECORDS = 64  # records decoded at the start of a run: the first 64 and 64 more spread over the file
LISTED_KEYS = 5      # keys of undecodable records named in one error line


@dataclass
class DecodeReport:
    """What decoding records of a ``.rec`` found: ``checked`` records decoded, ``bad_keys`` the ``.idx`` keys of
    those that are not decodable images, ``sizes`` ``(key, height, width)`` in pixels of those that are."""

    rec: Path
    checked: int
    bad_keys: list[int]
    sizes: list[tuple[int, int, int]]

    def summary(self, most: int = 3) -> str:
        """One line: records decoded, how many are not decodable, the ``most`` commonest sizes (width x height)."""
        from collections import Counter

        counts = Counter(f"{w}x{h}" for _, h, w in self.sizes)
        common = ", ".join(f"{size} ({n})" for size, n in counts.most_common(most))
        more = f", {len(counts) - most} other sizes" if len(counts) > most else ""
        return (f"decoded {self.checked} records: {len(self.bad_keys)} not decodable; sizes (WxH): "
                f"{common or 'none'}{more}")


def sample_keys(keys: list[int], count: int = SAMPLE_RECORDS) -> list[int]:
    """The first ``count`` of ``keys`` and up to ``count`` more spread evenly over the rest, in file order."""
    rest = keys[count:]
    step = max(1, len(rest) // count)
    return keys[:count] + rest[::step][:count]


def decode_records(rec: str | Path, every: bool = False) -> DecodeReport:
    """Decode records of ``rec`` (its ``.idx`` beside it) as MXNet's ImageRecordIter does (OpenCV's
    ``imdecode``, 3 colour channels): every one with ``every``, else :func:`sample_keys` (128 at most)."""
    import cv2
    import mxnet as mx
    import numpy as np

    rec, idx = check_record_file(rec)
    reader = mx.recordio.MXIndexedRecordIO(str(idx), str(rec), "r")
    level = cv2.getLogLevel()
    cv2.setLogLevel(2)  # errors only: OpenCV would print a warning line per truncated PNG
    try:
        keys = reader.keys if every else sample_keys(reader.keys)
        bad, sizes = [], []
        for key in keys:
            _, data = mx.recordio.unpack(reader.read_idx(key))
            image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR) if data else None
            if image is None or image.size == 0:
                bad.append(key)
            else:
                sizes.append((key, image.shape[0], image.shape[1]))
    finally:
        cv2.setLogLevel(level)
        reader.close()
    return DecodeReport(rec, len(keys), bad, sizes)


def check_decodable(report: DecodeReport) -> None:
    """A :class:`UserError` when any record of ``report`` is not a decodable image. None is allowed: MXNet 1.9.1's
    ImageRecordIter neither skips nor counts them (with ``pad`` the batch gets the fill value or stale memory under
    the record's label, without ``pad`` reading stops with an OpenCV error)."""
    if report.bad_keys:
        keys = ", ".join(map(str, report.bad_keys[:LISTED_KEYS])) + (", ..." if len(report.bad_keys) > LISTED_KEYS
                                                                     else "")
        raise UserError(f"{report.rec}: {len(report.bad_keys)} of {report.checked} records checked are not "
                        f"decodable images (keys {keys}); re-pack it from the images (all of them: python "
                        f"tools/im2rec_wrapper.py check --decode {report.rec})")


def check_image_sizes(report: DecodeReport, image_shape: tuple[int, int, int], aug: dict[str, Any], role: str,
                      shape_flag: str = "--image-shape") -> None:
    """A :class:`UserError` when the decoded images of ``report`` clearly do not fit the network input
    ``image_shape`` (C, H, W) under the iterator arguments ``aug`` ({} for validation: the center crop).

    Refused: an image smaller than the input (MXNet would silently upscale it), and images whose shorter side,
    after the smallest random scale of ``aug`` (``min_random_scale``, else 1), is over twice the input's larger
    side (each crop would see a small part of an image). Any size from the input's up serves RandomResizedCrop.
    ``role`` ('training', 'validation') and ``shape_flag`` (how the user sets the input shape) word the message.
    """
    if not report.sizes:
        return
    height, width = image_shape[1:]
    side = max(height, width)
    for key, h, w in report.sizes:
        if h < height or w < width:
            raise UserError(f"{report.rec}: record {key} is a {w}x{h} image, smaller than the {width}x{height} "
                            f"network input: MXNet would silently upscale it; pack the images at the size you "
                            f"train (pack --resize {side}) or pass {shape_flag} 3,{h},{w}")
    if aug.get("random_resized_crop"):
        return
    key, h, w = min(report.sizes, key=lambda s: min(s[1], s[2]))
    scale = float(aug.get("min_random_scale", 1.0))
    if min(h, w) * scale > 2 * side:
        seen = 100.0 * height * width / (h * w * scale * scale)
        raise UserError(f"{report.rec}: its images are {w}x{h} pixels or larger (record {key}), far larger than "
                        f"the {width}x{height} network input: {role} crops would see {seen:.1f} % of an image; "
                        f"pack them at the size you train (pack --resize N, N from {side} to {2 * side}) or pass "
                        f"{shape_flag} 3,{h},{w}")


def read_record_labels(rec: str | Path):
    """The label of every record of ``rec`` in ``.idx`` order (float32 array), read from the record headers at
    the ``.idx`` offsets: 36 bytes per record, no image read (a label array's first value)."""
    import struct

    import numpy as np

    rec, idx = check_record_file(rec)
    labels = []
    with open(rec, "rb") as fh:
        for offset in _read_index(idx):
            fh.seek(offset)
            # RecordIO framing (magic, length), then IRHeader (flag, label, id, id2), then a label array's values
            _, _, flag, label, _, _, first = struct.unpack("<IIIfQQf", fh.read(36).ljust(36, b"\0"))
            labels.append(first if flag > 0 else label)
    return np.asarray(labels, dtype=np.float32)


def check_class_count(num_classes: int, train_rec: str | Path, val_rec: str | Path,
                      synset: str | Path | None = None) -> None:
    """A :class:`UserError` unless ``num_classes`` is the data's class count: the lines of ``synset`` (the
    ``synset.txt`` beside the records) when there is one, else the training labels' highest + 1.

    Every label of both files is read (:func:`read_record_labels`); refused too: a label that is not a class
    index (negative, fractional), a label beyond the synset's classes, and (without a synset) validation labels
    beyond the training file's.
    """
    import numpy as np

    from resnet_toolkit.synset import read_synset

    top = {}
    for rec in (Path(train_rec), Path(val_rec)):
        labels = read_record_labels(rec)
        odd = labels[(labels < 0) | (labels != np.floor(labels))]
        if odd.size:
            raise UserError(f"{rec}: {odd.size} records have a label that is not a class index 0, 1, 2, ... "
                            f"(e.g. {odd[0]:g})")
        top[rec] = int(labels.max())
    train_top, val_top = top[Path(train_rec)], top[Path(val_rec)]
    if synset is not None:
        classes = len(read_synset(synset))
        for rec, highest in top.items():
            if highest >= classes:
                raise UserError(f"{rec} has labels up to {highest} but {synset} names {classes} classes: they are "
                                f"not of one data set (re-pack them together)")
        found = f"{synset} names {classes}"
    else:
        if val_top > train_top:
            raise UserError(f"{val_rec} has labels up to {val_top} but {train_rec} only up to {train_top}: "
                            f"validation holds classes training never sees")
        classes = train_top + 1
        found = f"the labels of {train_rec} run 0..{train_top}"
    if num_classes != classes:
        raise UserError(f"--num-classes {num_classes} but the data has {classes} classes ({found}); pass "
                        f"--num-classes {classes}")


# ------------------------------------------------------------------------------------ records read back
def read_payloads(rec: str | os.PathLike) -> Iterator[tuple[Any, bytes]]:
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

    for header, data in read_payloads(rec):
        yield header.id, float(header.label), cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)


def read_labels(rec: str | os.PathLike) -> Iterator[tuple[int, float]]:
    """Yield ``(id, label)`` for each record of ``rec`` in file order, without decoding images."""
    for header, _ in read_payloads(rec):
        yield header.id, float(header.label)
