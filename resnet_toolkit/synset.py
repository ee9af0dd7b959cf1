"""``synset.txt``: the class names of a data set, one per line, the line number being the class index. The packer
writes it beside the records, training copies it beside the checkpoint, prediction and scoring read it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from resnet_toolkit.errors import UserError
from resnet_toolkit.fileio import atomic_write_text

SYNSET = "synset.txt"


def check_synset_replaceable(out_dir: str | os.PathLike, classes: Sequence[str]) -> None:
    """A :class:`UserError` when ``out_dir/synset.txt`` exists and names other classes than ``classes``: it belongs
    to the records of another data set there, which would then train and predict with wrong class names. The
    packers call it before writing anything."""
    path = Path(out_dir) / SYNSET
    if not path.is_file():
        return
    try:
        old = [line.strip() for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        found = f"{len(old)} classes: {_preview(old)}"
    except (OSError, UnicodeDecodeError):
        old, found = None, "unreadable"  # not this data set's either
    new = [name.strip() for name in classes]
    if old != new:
        raise UserError(f"{path} already holds another data set's class list ({found}), not these {len(new)} "
                        f"classes ({_preview(new)}); pack into another --out (each data set in its own folder, "
                        f"its records beside its synset.txt)")


def _preview(names: Sequence[str], count: int = 3) -> str:
    return ", ".join(names[:count]) + (", ..." if len(names) > count else "")


def write_synset(out_dir: str | os.PathLike, classes: Sequence[str]) -> Path:
    """Write ``out_dir/synset.txt`` (one class name per line, index = line number), atomically; refused
    (:func:`check_synset_replaceable`) where a synset.txt naming other classes is there."""
    check_synset_replaceable(out_dir, classes)
    path = Path(out_dir) / SYNSET
    atomic_write_text(path, "".join(f"{name}\n" for name in classes))
    return path


def read_synset(path: str | os.PathLike) -> list[str]:
    """Class names, one per line (blank lines at the end dropped). A line ``n01440764 tench, Tinca tinca`` in
    MXNet's older synset format is kept whole."""
    path = Path(path)
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such synset file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read synset file ({getattr(exc, 'strerror', None) or exc})") from None
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        raise UserError(f"{path}: synset file is empty")
    return [line.strip() for line in lines]


def copy_synset(data_dir: str | os.PathLike, target_dir: str | os.PathLike) -> None:
    """Copy ``data_dir/synset.txt`` (when there is one) to ``target_dir`` unless the same text is already there."""
    source = Path(data_dir) / SYNSET
    if source.is_file():
        target = Path(target_dir) / SYNSET
        text = source.read_text(encoding="utf-8")
        if not target.is_file() or target.read_text(encoding="utf-8", errors="replace") != text:
            atomic_write_text(target, text)


# A ``classes.txt`` beside the class folders names them (Imagenette's and many data sets' convention).
CLASS_NAMES_FILE = "classes.txt"
MAX_NAMES_BYTES = 1 << 20  # a class-names file is a short text; anything larger is not one


def read_class_names(path: str | os.PathLike) -> dict[str, str]:
    """``{folder: name}`` from a class-names file: one ``FOLDER NAME`` line per class, the folder name first, then
    a tab or spaces, then the human-readable name (Imagenette's ``classes.txt``: ``n01440764<TAB>tench``). Read as
    text only; a :class:`UserError` naming the line for a line without a name or a folder named twice."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_NAMES_BYTES:
            raise UserError(f"{path}: {path.stat().st_size} bytes is too large for a class-names file "
                            f"(at most {MAX_NAMES_BYTES})")
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise UserError(f"{path}: no such class-names file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read class-names file ({getattr(exc, 'strerror', None) or exc})") from None
    names: dict[str, str] = {}
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.strip().split(None, 1)
        if len(parts) != 2:
            raise UserError(f"{path}:{number}: expected 'FOLDER NAME' (a class folder, a tab or spaces, its "
                            f"name), got {line.strip()!r}")
        folder, name = parts
        if folder in names:
            raise UserError(f"{path}:{number}: class folder {folder!r} named twice")
        names[folder] = name.strip()
    if not names:
        raise UserError(f"{path}: class-names file is empty")
    return names


def named_classes(classes: Sequence[str], names_file: str | os.PathLike | None) -> list[str]:
    """The ``synset.txt`` lines for class folders ``classes`` (sorted, label order): ``'n01440764 tench'`` (the
    folder, a space, its name from ``names_file``: MXNet's ImageNet synset format, which predictions print whole),
    or the folder names themselves without a file. A :class:`UserError` when the file leaves a class unnamed."""
    if names_file is None:
        return list(classes)
    names = read_class_names(names_file)
    missing = [c for c in classes if c not in names]
    if missing:
        raise UserError(f"{names_file}: no name for {len(missing)} class folder(s): {_preview(missing)} "
                        f"(one 'FOLDER NAME' line per class folder)")
    return [f"{c} {names[c]}" for c in classes]


def default_names_file(root: str | os.PathLike, given: str | os.PathLike | None) -> Path | None:
    """``given``, else ``root/classes.txt`` when there is one, else None (class folders name themselves)."""
    if given:
        return Path(given)
    candidate = Path(root) / CLASS_NAMES_FILE
    return candidate if candidate.is_file() else None
