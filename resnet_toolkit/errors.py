"""One clear line for a user's mistake, never a traceback from inside MXNet."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from symbols.errors import UserError

__all__ = ["UserError", "clear_failed_ops", "error_line", "fail", "run_cli"]


def fail(message: str) -> NoReturn:
    """Raise a :class:`UserError` with ``message``."""
    raise UserError(message)


def run_cli(main: Callable[[list[str] | None], int | None], argv: list[str] | None = None) -> NoReturn:
    """Run ``main(argv)`` and exit: 0 on success, 2 with one ``error: ...`` line on a :class:`UserError`,
    130 on Ctrl-C. Any other exception is a bug in this project and keeps its traceback."""
    prog = sys.argv[0].rsplit("/", 1)[-1]
    try:
        code = main(argv)
    except UserError as exc:
        print(f"{prog}: error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        sys.exit(130)
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
