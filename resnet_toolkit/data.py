"""RecordIO input pipelines: the original's file layouts, aug-level presets, and ImageRecordIter factories.

The network receives raw RGB in 0..255 (no mean/std here): ``bn_data`` is the input normaliser, as in the
original. Always pass the ``.idx`` beside the ``.rec``: with it MXNet 1.9.1 shuffles the whole file (seeded),
without it only inside each chunk it reads.

The record files themselves are checked and read by :mod:`resnet_toolkit.records`.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from resnet_toolkit.errors import UserError
from resnet_toolkit.records import (
    check_batch_fits,
    check_decodable,
    check_image_sizes,
    check_record_file,
    count_records,
    decode_records,
)


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
