"""The data-set importers: CIFAR-10, ImageNet and the digits demo -> RecordIO files in the original's names.

``cifar10_train.rec``/``cifar10_val.rec`` (32x32) from an image tree, a tar/zip archive of one, or the official
python batches (read as data only, :mod:`resnet_toolkit.untrusted`); ``train_480_q90.rec``/``train_256_q90.rec``/
``val_256_q90.rec`` from an ImageNet folder; ``digits_train.rec``/``digits_val.rec`` from scikit-learn's digits.
Each is written by :func:`resnet_toolkit.im2rec.pack_items`, with ``synset.txt`` beside it.
"""
from __future__ import annotations

import os
import random
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Sequence

import numpy as np

from resnet_toolkit.errors import UserError
from resnet_toolkit.im2rec import (
    Item,
    PackSummary,
    ensure_output_dir,
    file_loader,
    pack_items,
    scan_image_folder,
)
from resnet_toolkit.images import IMAGE_EXTENSIONS, ImageLimits, Transform
from resnet_toolkit.synset import check_synset_replaceable, default_names_file, named_classes, write_synset
from resnet_toolkit.untrusted import iter_archive_files, load_pickle_safely

DIGIT_CLASSES = [str(d) for d in range(10)]
CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


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
            return (*_cifar_from_batches({k: file_loader(p) for k, p in rels.items()}, source), True)
        return (*_cifar_from_tree(((PurePosixPath(k), file_loader(p)) for k, p in sorted(rels.items())), source),
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
                  progress: bool | None = None, names_file: str | os.PathLike | None = None) -> list[PackSummary]:
    """The original's three files from ``root/train/<class>/*`` and ``root/val/<class>/*``:
    ``train_480_q90.rec`` (scale augmentation), ``train_256_q90.rec`` and ``val_256_q90.rec``, + ``synset.txt``.
    ``sizes`` are the shorter sides of the training files, validation's is the last (e.g. ``(274, 146)`` for a
    128 crop: 480 and 256 scaled as 128 is to 224).

    Val class folders must be train class names; labels follow the sorted train classes. ``synset.txt`` names
    each class ``'FOLDER NAME'`` from ``names_file``, else from ``root/classes.txt`` when there is one
    (:func:`resnet_toolkit.synset.named_classes`), else by its folder name.
    """
    root = Path(root)
    if not sizes or any(int(size) < 8 for size in sizes):
        raise UserError(f"--sizes must be shorter sides of at least 8 pixels, got {list(sizes)}")
    for sub in ("train", "val"):
        if not (root / sub).is_dir():
            raise UserError(f"{root / sub}: no such folder (expected {root}/train/<class>/ and {root}/val/<class>/)")
    train = scan_image_folder(root / "train")
    val = scan_image_folder(root / "val", min_classes=1)
    unknown = sorted(set(val.classes) - set(train.classes))
    if unknown:
        raise UserError(f"{root / 'val'}: classes {unknown[:5]} are not train classes")
    synset = named_classes(train.classes, default_names_file(root, names_file))
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, synset)
    index = {c: i for i, c in enumerate(train.classes)}
    train_items = [Item(f"train/{rel}", label, file_loader(root / "train" / rel)) for rel, label in train.items]
    random.Random(seed).shuffle(train_items)
    val_items = [Item(f"val/{rel}", index[val.classes[label]], file_loader(root / "val" / rel))
                 for rel, label in val.items]
    summaries = []
    for size in sizes:
        transform = Transform(resize=size, quality=quality, limits=limits)
        summaries.append(pack_items(train_items, out / f"train_{size}_q{quality}.rec", transform, num_thread,
                                    progress=progress))
    val_transform = Transform(resize=sizes[-1], quality=quality, limits=limits)
    summaries.append(pack_items(val_items, out / f"val_{sizes[-1]}_q{quality}.rec", val_transform, num_thread,
                                progress=progress))
    write_synset(out, synset)
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
