"""Writes that never leave a half-written file under a final name."""
from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import Iterator


def partial_name(target: str | os.PathLike) -> Path:
    """Where a write of ``target`` happens before it is renamed into place (same folder, so rename is atomic)."""
    target = Path(target)
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` (if it existed) is left untouched.
    Usage: ``with atomic_path(p) as tmp: save(tmp)``.
    """
    target = Path(target)
    tmp = partial_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        raise
    _fsync_dir(target.parent)


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_writable_file(target: str | os.PathLike, flag: str = "") -> Path:
    """``target`` as a Path when a file can be written there (its folder exists, is a folder, is writable, and
    ``target`` is not a folder); otherwise a :class:`UserError` naming ``flag`` and the reason. Writes nothing:
    call it before a long computation whose result goes to ``target``."""
    from resnet_toolkit.errors import UserError

    target = Path(target)
    head = f"{flag}: " if flag else ""
    parent = target.parent
    if not parent.exists():
        raise UserError(f"{head}cannot write {target}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"{head}cannot write {target}: {parent} is not a directory")
    if target.is_dir():
        raise UserError(f"{head}cannot write {target}: Is a directory")
    if not os.access(parent, os.W_OK | os.X_OK):
        raise UserError(f"{head}cannot write {target}: no permission to write in {parent}")
    return target


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: some file systems refuse to open folders)."""
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def process_alive(pid: int) -> bool:
    """Whether process ``pid`` exists (this process counts as alive): tells a crashed writer's leftovers from a
    running one's."""
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_partials(folder: str | os.PathLike, name_start: str, marker: str = ".partial-") -> list[Path]:
    """Delete the hidden files ``.{name_start}...{marker}PID`` in ``folder`` whose writer process is gone (a
    killed run's half-written files, :func:`partial_name`); files of live processes are kept. Returns the
    deleted paths. ``marker`` names the kind (``.partial-`` for :func:`atomic_path`, ``.running-`` for the
    training log's running copy)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    for path in folder.glob(f".{glob.escape(name_start)}*{marker}*"):
        pid = path.name.rsplit(marker, 1)[1]
        if pid.isdigit() and not process_alive(int(pid)):
            with contextlib.suppress(OSError):
                path.unlink()
                removed.append(path)
    return removed
