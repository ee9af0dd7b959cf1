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
