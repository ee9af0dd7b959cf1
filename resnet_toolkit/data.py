"""RecordIO input pipelines: the original's file layouts, aug-level presets, and ImageRecordIter factories.

The network receives raw RGB in 0..255 (no mean/std here): ``bn_data`` is the input normaliser, as in the
original. Always pass the ``.idx`` beside the ``.rec``: with it MXNet 1.9.1 shuffles the whole file (seeded),
without it only inside each chunk it reads.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_toolkit.errors import UserError


@dataclass(frozen=True)
class DatasetLayout:
    """Files and shapes of one data type, as the original named them.

    ``train_rec`` maps an aug level to the training file (ImageNet levels 2-3 read the 480-short-side records
    for scale augmentation, level 1 the 256 ones). ``pad`` and ``mirror`` are the CIFAR-style augmentation:
    zero-pad (filled with 127) then random-crop back, and horizontal flips.
    """

    name: str
    train_rec: dict[int, str]
    val_rec: str
    image_shape: tuple[int, int, int]
    num_classes: int
    net_type: str  # which stem the network uses: 'cifar10' (3x3 conv) or 'imagenet' (7x7/2 + max-pool)
    pad: int = 0
    mirror: bool = True
    make_command: str = ""

    def train_path(self, data_dir: str | Path, aug_level: int) -> Path:
        return Path(data_dir) / self.train_rec[min(max(aug_level, 1), max(self.train_rec))]

    def val_path(self, data_dir: str | Path) -> Path:
        return Path(data_dir) / self.val_rec


LAYOUTS: dict[str, DatasetLayout] = {
    "cifar10": DatasetLayout("cifar10", {1: "cifar10_train.rec"}, "cifar10_val.rec", (3, 32, 32), 10, "cifar10",
                             pad=4, make_command="python tools/im2rec_wrapper.py cifar10 SOURCE --out DATA_DIR"),
    "imagenet": DatasetLayout("imagenet", {1: "train_256_q90.rec", 2: "train_480_q90.rec"}, "val_256_q90.rec",
                              (3, 224, 224), 1000, "imagenet",
                              make_command="python tools/im2rec_wrapper.py imagenet IMAGENET_ROOT --out DATA_DIR"),
    # The demo: scikit-learn's handwritten digits as 32x32 RGB, trained like CIFAR-10 (no flips: a mirrored
    # digit is another glyph).
    "digits": DatasetLayout("digits", {1: "digits_train.rec"}, "digits_val.rec", (3, 32, 32), 10, "cifar10",
                            pad=4, mirror=False, make_command="python tools/im2rec_wrapper.py digits --out DATA_DIR"),
}


def get_layout(data_type: str) -> DatasetLayout:
    """The :class:`DatasetLayout` for ``data_type``; a clear error listing the known ones otherwise."""
    if data_type not in LAYOUTS:
        raise UserError(f"unknown data type {data_type!r}; valid: {', '.join(LAYOUTS)}")
    return LAYOUTS[data_type]


# Aug level -> ImageRecordIter arguments for ImageNet-size images, exactly the original's values.
# Level 2's scale range 0.533..1 of a 480-short-side record gives a short side of 256..480; HSL jitter is
# 0.4 of each channel's range (36 of 90 hue, 50 of 127 saturation and lightness).
AUG_PRESETS: dict[int, dict[str, Any]] = {
    0: dict(rand_crop=False, rand_mirror=False),
    1: dict(rand_crop=True, rand_mirror=True),
    2: dict(rand_crop=True, rand_mirror=True, max_random_scale=1.0, min_random_scale=0.533,
            max_aspect_ratio=0.25, random_h=36, random_s=50, random_l=50),
    3: dict(rand_crop=True, rand_mirror=True, max_random_scale=1.0, min_random_scale=0.533,
            max_aspect_ratio=0.25, random_h=36, random_s=50, random_l=50, max_rotate_angle=10, max_shear_ratio=0.1),
    # Not the original's: the RandomResizedCrop of the modern recipes (Inception-style; GluonCV, MindSpore,
    # PaddleClas): a crop of 8-100 % of the image's area with aspect ratio 3/4-4/3, resized to the input size.
    4: dict(rand_mirror=True, random_resized_crop=True, min_random_area=0.08, max_random_area=1.0,
            min_aspect_ratio=3 / 4, max_aspect_ratio=4 / 3),
}


DEFAULT_AUG_LEVEL = 2


def resolve_augmentation(layout: DatasetLayout, aug_level: int | None, mirror: bool | None, pad: int | None,
                         saved: dict | None = None) -> tuple[int, bool, int]:
    """The ``(aug level, mirror, pad in pixels)`` a run trains with.

    Each value given (not None) is kept; one not given takes the value in ``saved`` (the ``PREFIX-args.json``
    mapping of the run a ``--retrain`` continues, flag name -> value), else the default: level
    :data:`DEFAULT_AUG_LEVEL`, the layout's mirror and pad (none of either at level 0).
    """
    saved = saved or {}
    if aug_level is None:
        aug_level = saved.get("aug-level", DEFAULT_AUG_LEVEL)
    if mirror is None:
        mirror = saved.get("mirror")
    if pad is None:
        pad = saved.get("pad")
    if mirror is None:
        mirror = layout.mirror and aug_level > 0
    if pad is None:
        pad = layout.pad if aug_level > 0 else 0
    return int(aug_level), bool(mirror), int(pad)


def train_aug(layout: DatasetLayout, aug_level: int, mirror: bool | None = None,
              pad: int | None = None) -> dict[str, Any]:
    """ImageRecordIter augmentation arguments for training ``layout`` at ``aug_level`` (0-4).

    ``mirror``: random horizontal flips; ``pad``: pixels of value 127 added on every side before a random crop
    back to the input size. None: the layout's choice at that level (:func:`resolve_augmentation`).
    CIFAR-style layouts (``layout.pad`` > 0) use one preset at every level 1-4: pad 4 + random crop + mirror, the
    original's CIFAR augmentation; level 0 is no augmentation for every layout (the center crop, no flips).
    """
    if aug_level not in AUG_PRESETS:
        raise UserError(f"--aug-level must be one of {sorted(AUG_PRESETS)}, got {aug_level}")
    aug_level, mirror, pad = resolve_augmentation(layout, aug_level, mirror, pad)
    kwargs = dict(AUG_PRESETS[min(aug_level, 1)] if layout.pad else AUG_PRESETS[aug_level])
    kwargs["rand_mirror"] = mirror
    if pad:
        kwargs.update(rand_crop=True, pad=pad, fill_value=127)
    if kwargs.get("max_rotate_angle") or kwargs.get("max_random_scale"):
        kwargs["fill_value"] = 127
    return kwargs


def add_augmentation_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--aug-level``, ``--mirror``/``--no-mirror`` and ``--pad`` (read by :func:`train_aug`). Their defaults are
    None: a ``--retrain`` then keeps the choices of the run it continues (:func:`resolve_augmentation`)."""
    aug = parser.add_argument_group("Augmentation (training images only; validation is always the center crop)")
    aug.add_argument("--aug-level", type=int, default=None, choices=sorted(AUG_PRESETS),
                     help=f"default {DEFAULT_AUG_LEVEL} (with --retrain: the continued run's). ImageNet-size data: "
                          "0 none (the center crop, no flips), 1 random crop + mirror, 2 +scale 256-480/aspect/HSL "
                          "jitter, 3 +rotation/shear, 4 RandomResizedCrop (area 0.08-1, aspect 3/4-4/3) + mirror, "
                          "the modern recipe's. CIFAR-size data (cifar10, digits, folder of H <= 64): 0 none, 1-4 "
                          "pad 4 + random crop + mirror (digits: no mirror)")
    aug.add_argument("--mirror", action=argparse.BooleanOptionalAction, default=None,
                     help="random horizontal flips (default: on for every data type but digits, off at "
                          "--aug-level 0; with --retrain: the continued run's); --no-mirror for images whose "
                          "mirror image is another class (digits, letters, text)")
    aug.add_argument("--pad", type=int, default=None,
                     help="pixels of grey (127) added on each side before the random crop back to the input "
                          "size (default 4 for CIFAR-size data, 0 for ImageNet-size, 0 at --aug-level 0; with "
                          "--retrain: the continued run's)")
    return aug


def check_augmentation_args(args, image_shape: tuple[int, int, int]) -> None:
    """A :class:`UserError` for a ``--pad`` below 0 or above the input's height or width (pixels)."""
    if args.pad is not None and not 0 <= args.pad <= min(image_shape[1:]):
        raise UserError(f"--pad must be 0..{min(image_shape[1:])} pixels (the input's size), got {args.pad}")


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


def _record_iter(rec: Path, idx: Path, data_shape, batch_size: int, num_parts: int, part_index: int,
                 preprocess_threads: int, **kwargs):
    import mxnet as mx

    check_batch_fits(rec, batch_size, num_parts)
    try:  # the constructor already reads the first batch
        return mx.io.ImageRecordIter(
            path_imgrec=str(rec), path_imgidx=str(idx), data_shape=tuple(data_shape), batch_size=batch_size,
            label_width=1, data_name="data", label_name="softmax_label", num_parts=num_parts,
            part_index=part_index, preprocess_threads=preprocess_threads, **kwargs)
    except mx.base.MXNetError as exc:
        raise _unreadable(rec, exc) from None


def _unreadable(rec: Path, exc: Exception) -> UserError:
    """The one line for an MXNet error while ``ImageRecordIter`` reads ``rec``. In MXNet 1.9.1 that is an image
    that does not decode: the iterator does not skip it, and without ``pad`` its resize to the input fails."""
    lines = [line for line in str(exc).splitlines() if line.strip()]
    detail = lines[-1].strip() if lines else type(exc).__name__
    return UserError(f"{rec}: MXNet cannot read a batch of it ({detail}); an image probably does not decode: "
                     f"list them with python tools/im2rec_wrapper.py check --decode {rec}")


def next_batch(data_iter, rec: str | Path):
    """``data_iter.next()`` (an ImageRecordIter over ``rec``), MXNet's read errors as one :class:`UserError`
    line; StopIteration passes through."""
    import mxnet as mx

    try:
        return data_iter.next()
    except mx.base.MXNetError as exc:
        raise _unreadable(Path(rec), exc) from None


def iter_batches(data_iter, rec: str | Path):
    """The batches of ``data_iter`` (an ImageRecordIter over ``rec``) as :func:`next_batch` reads them."""
    while True:
        try:
            batch = next_batch(data_iter, rec)
        except StopIteration:
            return
        yield batch


def make_train_iter(rec: str | Path, layout: DatasetLayout, batch_size: int, aug_level: int = 1,
                    num_parts: int = 1, part_index: int = 0, seed: int = 0, preprocess_threads: int = 4,
                    data_shape: tuple[int, int, int] | None = None, mirror: bool | None = None,
                    pad: int | None = None):
    """Shuffled, augmented training iterator over ``rec`` (its ``.idx`` beside it); augmentation as
    :func:`train_aug` (``mirror``, ``pad`` in pixels: None for the layout's).

    ``seed`` seeds both the shuffle and the augmentation, so the same seed replays the same batches; pass a
    different seed per epoch (e.g. ``base_seed + epoch``) for fresh randomness that a resumed run reproduces.
    ``num_parts``/``part_index`` give each distributed worker its own disjoint share of the records.
    """
    rec_path, idx_path = check_record_file(rec, layout.make_command)
    return _record_iter(rec_path, idx_path, data_shape or layout.image_shape, batch_size, num_parts, part_index,
                        preprocess_threads, shuffle=True, seed=seed, seed_aug=seed,
                        **train_aug(layout, aug_level, mirror, pad))


def make_val_iter(rec: str | Path, layout: DatasetLayout, batch_size: int, num_parts: int = 1, part_index: int = 0,
                  preprocess_threads: int = 4, data_shape: tuple[int, int, int] | None = None,
                  resize: int | None = None):
    """Deterministic validation iterator: no shuffle (records in file order), center crop to the input size, no
    flips. ``resize`` (pixels): the shorter side of each image is first resized to it (bilinear, aspect kept)."""
    rec_path, idx_path = check_record_file(rec, layout.make_command)
    extra = {"resize": int(resize)} if resize else {}
    return _record_iter(rec_path, idx_path, data_shape or layout.image_shape, batch_size, num_parts, part_index,
                        preprocess_threads, shuffle=False, rand_crop=False, rand_mirror=False, **extra)


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


@dataclass
class DataPlan:
    """The record files of a run and its epoch size."""

    train_rec: Path
    val_rec: Path
    records: int          # records in the training file (all workers)
    num_examples: int     # images per epoch (all workers)
    epoch_size: int       # updates per epoch


def plan_data(layout: DatasetLayout, data_dir: str | Path, aug_level: int, batch_size: int, num_workers: int = 1,
              num_examples: int | None = None) -> DataPlan:
    """Check the record files and derive the epoch size as the original did: floor(examples / batch / workers).

    Training records are shared among ``num_workers``; every worker validates on the whole validation file.
    A sample of each file's images is decoded (:func:`decode_records`): undecodable images and sizes that do not
    fit ``layout.image_shape`` are refused (:func:`check_decodable`, :func:`check_image_sizes`).
    """
    if not Path(data_dir).is_dir():
        raise UserError(f"--data-dir {data_dir}: no such folder (make it with: {layout.make_command})")
    train_rec, _ = check_record_file(layout.train_path(data_dir, aug_level), layout.make_command)
    val_rec, _ = check_record_file(layout.val_path(data_dir), layout.make_command)
    records = count_records(train_rec)
    num_examples = num_examples or records
    if num_examples > records:
        raise UserError(f"--num-examples {num_examples} exceeds the {records} records in {train_rec}")
    check_batch_fits(train_rec, batch_size, num_workers)
    check_batch_fits(val_rec, batch_size)
    shape_flag = "--image-shape" if layout.name == "folder" else "--data-type folder --image-shape"
    for rec, aug, role in ((train_rec, train_aug(layout, aug_level), "training"), (val_rec, {}, "validation")):
        report = decode_records(rec)
        check_decodable(report)
        check_image_sizes(report, layout.image_shape, aug, role, shape_flag)
    epoch_size = max(num_examples // (batch_size * num_workers), 1)
    return DataPlan(train_rec, val_rec, records, num_examples, epoch_size)
