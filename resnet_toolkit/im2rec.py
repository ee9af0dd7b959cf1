"""Image folders and ``.lst`` files -> MXNet RecordIO (``.rec`` + ``.idx``): the writer every packer uses.

The logic behind ``tools/im2rec_wrapper.py list`` and ``pack``. Records are written with MXNet's own packing
(``mx.recordio.MXIndexedRecordIO`` + ``pack_img``, or ``pack`` for pass-through bytes) under a hidden name beside
the target, and renamed into place (``.idx`` first, then ``.rec``) only when complete: an interrupted run never
leaves a finished-looking ``.rec`` and never replaces a good one.

Conventions kept from the original: labels are class indices in sorted class-folder order, ``synset.txt`` beside
every ``.rec`` (one class name per line, index = line number), names ``{name}_{resize}_q{quality}.rec``.

Each image is decoded and stored by :mod:`resnet_toolkit.images`; files that cannot be are skipped and named with
the reason in the :class:`PackSummary`. The data-set importers (CIFAR-10, ImageNet, digits) are in
:mod:`resnet_toolkit.datasets`; reading records back is :mod:`resnet_toolkit.records`.
"""
from __future__ import annotations

import contextlib
import os
import random
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Callable, Iterable, Iterator, Sequence

import numpy as np

from resnet_toolkit.errors import DiskFull, ShortWrite, UserError
from resnet_toolkit.fileio import atomic_path, atomic_write_text, remove_stale_partials
from resnet_toolkit.images import IMAGE_EXTENSIONS, ImageSkipped, Transform
from resnet_toolkit.records import read_payloads
from resnet_toolkit.synset import (
    check_synset_replaceable,
    default_names_file,
    named_classes,
    read_synset,
    write_synset,
)

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
    except ImageSkipped as exc:
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
               seed: int = 0, shuffle: bool = True, stratify: bool = True,
               names_file: str | os.PathLike | None = None) -> tuple[list[Path], FolderScan]:
    """Scan ``root`` and write ``{name}_train.lst`` + ``{name}_val.lst`` (``train_ratio`` < 1) or ``{name}.lst``,
    and ``synset.txt`` (class names from ``names_file`` or ``root/classes.txt`` as
    :func:`resnet_toolkit.synset.named_classes` reads them, else the folder names), into ``out_dir``. The shuffle
    is seeded; the split follows it: with ``stratify`` each class
    gives ``train_ratio`` of its images to the training list (:func:`split_by_class`), else the first
    ``train_ratio`` of all images go there."""
    if not 0.0 < train_ratio <= 1.0:
        raise UserError(f"--train-ratio must be in (0, 1], got {train_ratio}")
    scan = scan_image_folder(root)
    synset = named_classes(scan.classes, default_names_file(root, names_file))
    out = ensure_output_dir(out_dir)
    check_synset_replaceable(out, synset)
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
    write_synset(out, synset)
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


def file_loader(path: Path) -> Callable[[], bytes]:
    """A loader for :class:`Item`: reads the bytes of the file at ``path`` when called."""
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
    items = [Item(rel, label, file_loader(root / rel)) for rel, label in rows]
    summary = pack_items(items, out / rec_name(name or lst.stem, transform), transform, num_thread,
                         progress=progress)
    write_synset(out, classes)
    return summary




# ----------------------------------------------------------------------------------------------------------------
# Copying records
# ----------------------------------------------------------------------------------------------------------------

def subset_records(src: str | os.PathLike, dst: str | os.PathLike, labels: dict[int, int]) -> int:
    """Copy the records of ``src`` whose label is a key of ``labels`` to ``dst`` (+ ``.idx``, written beside and
    renamed into place), relabelled to ``labels[label]`` and renumbered 0..n-1; image bytes unchanged. Returns n.

    E.g. a fine-tuning task from a packed set: ``{5: 0, 6: 1, 7: 2, 8: 3, 9: 4}`` keeps the digits 5-9 as classes
    0-4."""
    import mxnet as mx

    count = 0
    with record_writer(Path(dst)) as writer:
        for header, data in read_payloads(src):
            label = int(np.asarray(header.label).ravel()[0])
            if label in labels:
                writer.write_idx(count, mx.recordio.pack(header._replace(label=float(labels[label]), id=count), data))
                count += 1
    return count


def select_classes(synset: Sequence[str], wanted: Sequence[str]) -> dict[int, int]:
    """``{old label: new label}`` for the classes ``wanted`` names, in the old label order. Each of ``wanted`` is a
    whole ``synset.txt`` line, its first word (a folder name such as ``n01440764``) or the rest of it (``tench``);
    a :class:`UserError` for a name that matches no class or several."""
    chosen = set()
    for want in wanted:
        want = want.strip()
        hits = [i for i, line in enumerate(synset)
                if want in (line, line.split(None, 1)[0], line.split(None, 1)[-1])]
        if len(hits) != 1:
            found = "no class" if not hits else f"{len(hits)} classes"
            raise UserError(f"--classes: {want!r} matches {found} of the {len(synset)} in synset.txt "
                            f"({', '.join(synset[:3])}, ...)")
        chosen.add(hits[0])
    if len(chosen) < 2:
        raise UserError(f"--classes: a classifier needs at least 2 classes, got {len(chosen)}")
    return {old: new for new, old in enumerate(sorted(chosen))}


def subset_data_dir(src_dir: str | os.PathLike, out_dir: str | os.PathLike, wanted: Sequence[str]
                    ) -> list[tuple[str, int]]:
    """Copy every ``.rec`` (+ ``.idx``) of the packed folder ``src_dir`` to ``out_dir``, keeping only the classes
    ``wanted`` (:func:`select_classes`), relabelled 0..n-1 in their old order, with the matching ``synset.txt``:
    a fine-tuning set from a packed one. Returns ``(record file name, records kept)`` per file."""
    src = Path(src_dir)
    synset = read_synset(src / "synset.txt")
    labels = select_classes(synset, wanted)
    recs = sorted(p for p in src.glob("*.rec") if p.with_suffix(".idx").is_file())
    if not recs:
        raise UserError(f"{src}: no .rec files with an .idx beside them")
    out = ensure_output_dir(out_dir)
    if out.resolve() == src.resolve():
        raise UserError(f"--out {out_dir} is the source folder; a subset goes into its own folder")
    classes = [synset[old] for old in sorted(labels)]
    check_synset_replaceable(out, classes)
    kept = [(rec.name, subset_records(rec, out / rec.name, labels)) for rec in recs]
    write_synset(out, classes)
    return kept
