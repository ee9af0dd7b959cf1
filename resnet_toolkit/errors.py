"""One clear line for a user's mistake, never a traceback from inside MXNet."""
from __future__ import annotations

import errno
import os
import shutil
import sys
from pathlib import Path
from typing import Callable, NoReturn

from symbols.errors import UserError

__all__ = ["UserError", "clear_failed_ops", "error_line", "fail", "run_cli"]


def fail(message: str) -> NoReturn:
    """Raise a :class:`UserError` with ``message``."""
    raise UserError(message)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 with one ``error: ...`` line on a :class:`UserError`,
    130 on Ctrl-C, 2 with one line naming the file and the free space on a full disk (ENOSPC, EDQUOT, EFBIG).
    Any other exception is a bug in this project and keeps its traceback."""
    prog = sys.argv[0].rsplit("/", 1)[-1]
    try:
        code = main(argv)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
    except OSError as exc:  # a full disk met outside resnet_toolkit.fileio.atomic_path (which reports it itself)
        if not is_disk_full(exc):
            raise
        print(f"{prog}: error: {DiskFull(exc.filename or 'a file', disk_full_reason(exc))}", file=sys.stderr)
        sys.exit(2)
    sys.exit(int(code or 0))


def clear_failed_ops() -> str | None:
    """Wait for every pending MXNet operation and drop the error any failed one left behind; returns its first
    line (None when nothing had failed).

    MXNet runs operations asynchronously: an operation that fails (e.g. a kernel oneDNN cannot build on this CPU)
    stores its error on the arrays and shared resources (temporary space, random generators) it wrote, and any
    later operation touching those rethrows it, even in unrelated code, until someone waits on them. Loading a
    model for prediction calls this first, so one earlier failure in the same process never poisons a prediction.
    """
    import logging

    import mxnet as mx

    try:
        mx.nd.waitall()
    except mx.base.MXNetError as exc:
        line = error_line(exc)
        logging.getLogger(__name__).warning("an earlier MXNet operation in this process failed (%s); its error "
                                            "was cleared", line)
        return line
    return None


def error_line(exc: BaseException) -> str:
    """The line of an exception that says what went wrong: for an MXNet error (a C++ stack trace, then the
    message), its last non-empty line; for anything else, its first."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    if not lines:
        return type(exc).__name__
    return lines[-1] if type(exc).__name__ == "MXNetError" else lines[0]


# ------------------------------------------------------------------------------------------- a full disk
DISK_FULL_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EFBIG})  # disk full, quota, file size limit


class ShortWrite(OSError):
    """A file that came out shorter than what was written to it: MXNet's file writers drop a write that fails
    when they close the file (a full disk, a quota, a file size limit) without raising; the caller measured it."""


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` is a write refused for want of room: an ``OSError`` ENOSPC (disk full), EDQUOT (quota) or
    EFBIG (file size limit), a :class:`ShortWrite`, or MXNet's own file writer failing (an ``MXNetError`` with
    ``FileStream.Write incomplete``, which keeps no errno)."""
    if isinstance(exc, ShortWrite):
        return True
    if isinstance(exc, OSError):
        return exc.errno in DISK_FULL_ERRNOS
    return type(exc).__name__ == "MXNetError" and "Write incomplete" in str(exc)


def format_bytes(count: int) -> str:
    """A byte count for people, in decimal units: ``'0 bytes'``, ``'812 bytes'``, ``'4.1 KB'``, ``'3.4 GB'``."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("KB", 1e3)):
        if count >= size:
            return f"{count / size:.1f} {unit}"
    return f"{count} bytes"


def disk_full_reason(exc: BaseException) -> str:
    """The words for an exception :func:`is_disk_full` accepts: the system's (``No space left on device``,
    ``Disk quota exceeded``, ``File too large``), or, for a writer that kept no errno, what is known."""
    if isinstance(exc, OSError) and exc.strerror and not isinstance(exc, ShortWrite):
        return exc.strerror
    return "write incomplete (disk full, quota or file size limit)"


class DiskFull(UserError):
    """A write of ``target`` refused for want of room (:func:`is_disk_full`). The message names ``target``, the
    ``reason`` and the space free in ``target``'s folder, measured when the message is read: after every partial
    file of the failed write was removed, so it is the space the user has to work with."""

    def __init__(self, target: str | os.PathLike, reason: str):
        super().__init__(str(target), reason)
        self.target, self.reason = Path(target), reason

    def __str__(self) -> str:
        folder = self.target.parent
        try:
            free = f"{format_bytes(shutil.disk_usage(folder).free)} free in {folder}"
        except OSError:
            free = f"free space in {folder} unknown"
        return f"cannot write {self.target}: {self.reason} ({free}); free some space and run again"
