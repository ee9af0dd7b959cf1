"""One clear line for a user's mistake, never a traceback from inside MXNet."""
from __future__ import annotations

import sys
from typing import Callable, NoReturn

from symbols.errors import UserError

__all__ = ["UserError", "fail", "run_cli"]


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
