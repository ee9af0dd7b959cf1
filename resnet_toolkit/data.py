"""RecordIO input pipelines: the original's file layouts, aug-level presets, and ImageRecordIter factories.

The network receives raw RGB in 0..255 (no mean/std here): ``bn_data`` is the input normaliser, as in the
original. Always pass the ``.idx`` beside the ``.rec``: with it MXNet 1.9.1 shuffles the whole file (seeded),
without it only inside each chunk it reads.
"""
from __future__ import annotations

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


def train_aug(layout: DatasetLayout, aug_level: int) -> dict[str, Any]:
    """ImageRecordIter augmentation arguments for training ``layout`` at ``aug_level`` (0-3).

    CIFAR-style layouts (``pad`` > 0) always use pad + random crop (+ mirror when the layout allows), which is
    the original's CIFAR augmentation at every level.
    """
    if aug_level not in AUG_PRESETS:
        raise UserError(f"--aug-level must be one of {sorted(AUG_PRESETS)}, got {aug_level}")
    if layout.pad:
        return dict(rand_crop=True, rand_mirror=layout.mirror, pad=layout.pad, fill_value=127)
    kwargs = dict(AUG_PRESETS[aug_level])
    kwargs["rand_mirror"] = kwargs["rand_mirror"] and layout.mirror
    if kwargs.get("max_rotate_angle") or kwargs.get("max_random_scale"):
        kwargs["fill_value"] = 127
    return kwargs


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
    return mx.io.ImageRecordIter(
        path_imgrec=str(rec), path_imgidx=str(idx), data_shape=tuple(data_shape), batch_size=batch_size,
        label_width=1, data_name="data", label_name="softmax_label", num_parts=num_parts, part_index=part_index,
        preprocess_threads=preprocess_threads, **kwargs)


def make_train_iter(rec: str | Path, layout: DatasetLayout, batch_size: int, aug_level: int = 1,
                    num_parts: int = 1, part_index: int = 0, seed: int = 0, preprocess_threads: int = 4,
                    data_shape: tuple[int, int, int] | None = None):
    """Shuffled, augmented training iterator over ``rec`` (its ``.idx`` beside it).

    ``seed`` seeds both the shuffle and the augmentation, so the same seed replays the same batches; pass a
    different seed per epoch (e.g. ``base_seed + epoch``) for fresh randomness that a resumed run reproduces.
    ``num_parts``/``part_index`` give each distributed worker its own disjoint share of the records.
    """
    rec_path, idx_path = check_record_file(rec, layout.make_command)
    return _record_iter(rec_path, idx_path, data_shape or layout.image_shape, batch_size, num_parts, part_index,
                        preprocess_threads, shuffle=True, seed=seed, seed_aug=seed,
                        **train_aug(layout, aug_level))


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
    epoch_size = max(num_examples // (batch_size * num_workers), 1)
    return DataPlan(train_rec, val_rec, records, num_examples, epoch_size)
