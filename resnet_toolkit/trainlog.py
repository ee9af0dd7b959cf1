"""The training log: MXNet's line shapes on stdout and in a log file that never shows a torn line."""
from __future__ import annotations

import logging
import os
import shutil
import sys
from pathlib import Path

from resnet_toolkit.fileio import atomic_path, remove_stale_partials

LOG_FORMAT = "%(asctime)-15s Node[{rank}] %(message)s"


class CommittedLogFile(logging.Handler):
    """A log file that never shows a torn line: lines go to a hidden running file beside it, and
    :meth:`commit` (once per epoch and at the end) copies that into place with a rename.

    An existing log is continued (appended), as ``logging.FileHandler`` would.
    """

    def __init__(self, path: str | Path):
        super().__init__()
        self.path = Path(path)
        self.running = self.path.with_name(f".{self.path.name}.running-{os.getpid()}")
        # Lines a killed run logged after its last commit are also on its stdout; its running file is garbage.
        remove_stale_partials(self.path.parent, self.path.name, marker=".running-")
        if self.path.is_file():
            shutil.copyfile(self.path, self.running)
        self.stream = open(self.running, "a", encoding="utf-8")  # noqa: SIM115  (closed in close())

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.stream.write(self.format(record) + "\n")
            self.stream.flush()
        except Exception:  # noqa: BLE001  (logging's own contract: report, never raise)
            self.handleError(record)

    def commit(self) -> None:
        self.stream.flush()
        with atomic_path(self.path) as tmp:
            shutil.copyfile(self.running, tmp)

    def close(self) -> None:
        if not self.stream.closed:
            self.commit()
            self.stream.close()
            self.running.unlink(missing_ok=True)
        super().close()


class TrainingLog:
    """Root-logger set-up for one run (MXNet's ``Speedometer`` logs through the root logger)."""

    def __init__(self, log_file: str | None, rank: int):
        fmt = logging.Formatter(LOG_FORMAT.format(rank=rank))
        self.handlers: list[logging.Handler] = [logging.StreamHandler(sys.stdout)]
        self.file = CommittedLogFile(log_file) if log_file else None
        if self.file:
            self.handlers.append(self.file)
        root = logging.getLogger()
        self.saved_level = root.level
        for handler in self.handlers:
            handler.setFormatter(fmt)
            root.addHandler(handler)
        root.setLevel(logging.INFO)

    def commit(self) -> None:
        if self.file:
            self.file.commit()

    def close(self) -> None:
        root = logging.getLogger()
        for handler in self.handlers:
            root.removeHandler(handler)
            handler.flush()
            if handler is self.file:
                handler.close()
        root.setLevel(self.saved_level)

