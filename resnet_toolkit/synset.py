"""``synset.txt``: the class names of a data set, one per line, the line number being the class index. The packer
writes it beside the records, training copies it beside the checkpoint, prediction and scoring read it."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Sequence

from resnet_toolkit.errors import UserError
from resnet_toolkit.fileio import atomic_write_text

SYNSET = "synset.txt"


def write_synset(out_dir: str | os.PathLike, classes: Sequence[str]) -> Path:
    """Write ``out_dir/synset.txt`` (one class name per line, index = line number), atomically."""
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
