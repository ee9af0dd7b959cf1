"""Writes that never leave a half-written file under a final name."""
from __future__ import annotations

import contextlib
import glob
import os
from pathlib import Path
from typing import Iterator

from resnet_toolkit.errors import DiskFull, ShortWrite, UserError, disk_full_reason, is_disk_full


def partial_name(target: str | os.PathLike) -> Path:
    """Where a write of ``target`` happens before it is renamed into place (same folder, so rename is atomic)."""
    target = Path(target)
    return target.with_name(f".{target.name}.partial-{os.getpid()}")


@contextlib.contextmanager
def atomic_path(target: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside ``target``; on success fsync it and rename it onto ``target``.

    On any exception the temporary file is removed and ``target`` (if it existed) is left untouched; a write that
    failed for want of room (:func:`is_disk_full`: disk full, quota, file size limit) becomes a :class:`DiskFull`
    (a :class:`UserError`) naming ``target`` and the free space. Usage: ``with atomic_path(p) as tmp: save(tmp)``.
    """
    target = Path(target)
    tmp = partial_name(target)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        if is_disk_full(exc):
            raise DiskFull(target, disk_full_reason(exc)) from None
        raise
    _fsync_dir(target.parent)


def write_ndarrays(path: str | os.PathLike, arrays: dict) -> None:
    """``mx.nd.save`` the NDArrays ``arrays`` (name -> array) to ``path``, then read the file back: MXNet's writer
    drops a write that fails when it closes the file (its last buffered bytes, on a full disk) without raising,
    and the read-back turns that short file into a :class:`ShortWrite`. Write to an :func:`atomic_path`, never
    to a final name: it turns the error into a :class:`DiskFull` and keeps the old file."""
    import mxnet as mx

    mx.nd.save(str(path), arrays)
    try:
        saved = mx.nd.load(str(path))
    except mx.base.MXNetError:
        saved = None
    if not isinstance(saved, dict) or sorted(saved) != sorted(arrays):
        raise ShortWrite(f"{path}: {Path(path).stat().st_size} bytes, not a complete NDArray file")


def atomic_write_text(target: str | os.PathLike, text: str) -> None:
    """Write ``text`` (UTF-8) to ``target`` atomically."""
    with atomic_path(target) as tmp:
        tmp.write_text(text, encoding="utf-8")


def check_writable_file(target: str | os.PathLike, flag: str = "") -> Path:
    """``target`` as a Path when a file can be written there (its folder exists, is a folder, is writable, and
    ``target`` is not a folder); otherwise a :class:`UserError` naming ``flag`` and the reason. Writes nothing:
    call it before a long computation whose result goes to ``target``."""
    target = Path(target)
    head = f"{flag}: " if flag else ""
    parent = target.parent
    if not parent.exists():
        raise UserError(f"{head}cannot write {target}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"{head}cannot write {target}: {parent} is not a directory")
    if target.is_dir():
        raise UserError(f"{head}cannot write {target}: Is a directory")
    if not _can_write_in(parent):
        raise UserError(f"{head}cannot write {target}: no permission to write in {parent}")
    return target


def check_writable_dir(folder: str | os.PathLike, what: str) -> Path:
    """Create ``folder`` if needed and check a file can be written there; a clear error otherwise (``what`` names
    the folder's use, e.g. ``'--log-file'``)."""
    folder = Path(folder or ".")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"cannot create {what} folder {folder}: {exc.strerror}") from None
    if not _can_write_in(folder):
        raise UserError(f"{what} folder {folder} is not writable")
    return folder


def _can_write_in(folder: Path) -> bool:
    """Whether new files can be made in ``folder``: the one test :func:`check_writable_file` and
    :func:`check_writable_dir` share."""
    return folder.is_dir() and os.access(folder, os.W_OK | os.X_OK)


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
