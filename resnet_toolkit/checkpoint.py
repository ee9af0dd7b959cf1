"""MXNet checkpoints written so that a kill at any moment leaves the last complete epoch loadable.

Files, as ``mx.model.save_checkpoint`` names them: ``{prefix}-symbol.json``, ``{prefix}-{epoch:04d}.params``
(keys ``arg:NAME`` / ``aux:NAME``; file ``N`` holds the parameters after ``Epoch[N-1]``), plus the optimizer state
``{prefix}-{epoch:04d}.states``. Each file is written beside its final name and renamed into place; within an epoch
the ``.states`` file goes first and the ``.params`` last, so an epoch counts as complete exactly when its
``.params`` exists.

``.states`` is not MXNet's pickle (a pickle can run code when loaded): it is an ``mx.nd.save`` file with keys
``state:NAME`` (one momentum array per parameter), ``meta:num_update``, ``meta:next_lr`` (the rate of the
first update of the next epoch before any warm-up, so a step-mode retrain without ``--lr`` continues the same
curve) and ``meta:base_lr`` (the peak of a cosine/poly curve).
"""
from __future__ import annotations

import argparse
import os
import re
from pathlib import Path
from typing import Iterable

from resnet_toolkit import fileio
from resnet_toolkit.errors import UserError, clear_failed_ops
from resnet_toolkit.fileio import atomic_path, atomic_write_text, write_ndarrays


def symbol_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}-symbol.json")


def params_path(prefix: str | os.PathLike, epoch: int) -> Path:
    return Path(f"{prefix}-{epoch:04d}.params")


def states_path(prefix: str | os.PathLike, epoch: int) -> Path:
    return Path(f"{prefix}-{epoch:04d}.states")


def list_epochs(prefix: str | os.PathLike) -> list[int]:
    """Epoch numbers with a complete checkpoint (a ``.params`` file) under ``prefix``, ascending."""
    prefix = Path(prefix)
    pattern = re.compile(re.escape(prefix.name) + r"-(\d{4,})\.params$")
    if not prefix.parent.is_dir():
        return []
    found = (pattern.match(p.name) for p in prefix.parent.iterdir())
    return sorted(int(m.group(1)) for m in found if m)


def latest_epoch(prefix: str | os.PathLike) -> int | None:
    """The newest complete checkpoint's epoch, or None when there is none."""
    epochs = list_epochs(prefix)
    return epochs[-1] if epochs else None


def resolve_epoch(prefix: str | os.PathLike, requested: str | int | None = None, *, need_symbol: bool = False,
                  flag: str = "") -> int:
    """The one picker of the checkpoint epoch to load (``--retrain``, ``--finetune``, ``--teacher``, the tools'
    ``--epoch``): ``requested`` as a number (an int or a numeric string), or the newest complete checkpoint (the
    largest NNNN with a ``-NNNN.params`` file) for None / ``-1`` / ``'latest'``.

    ``need_symbol`` also requires ``PREFIX-symbol.json`` (the tools load the saved graph; a training run rebuilds
    it). Each failure is one :class:`UserError` line, starting with ``flag`` when given: no checkpoint at all
    names the files and the folder it looked in; a missing epoch names the epochs that exist.
    """
    head = f"{flag}: " if flag else ""
    name, folder = Path(prefix).name, Path(prefix).parent
    looked = f"{name}-symbol.json and {name}-*.params" if need_symbol else f"{name}-*.params"
    where = os.path.abspath(folder) + ("" if folder.is_dir() else ", a folder that does not exist")
    epochs = list_epochs(prefix)
    text = str(requested).strip()
    if requested is None or text in ("-1", "latest"):
        if not epochs:
            raise UserError(f"{head}no checkpoint {name}-NNNN.params (looked for {looked} in {where})")
        epoch = epochs[-1]
    elif text.isdigit():
        epoch = int(text)
    else:
        raise UserError(f"{head}the epoch must be a number >= 0, -1 or 'latest', got {requested!r}")
    if need_symbol and not symbol_path(prefix).is_file():
        raise UserError(f"{head}{symbol_path(prefix)}: no such checkpoint symbol file (check --prefix)")
    if not params_path(prefix, epoch).is_file():
        have = f"saved epochs: {', '.join(map(str, epochs))}" if epochs else f"none saved: looked in {where}"
        raise UserError(f"{head}no checkpoint {params_path(prefix, epoch)} ({have})")
    return epoch


def save_checkpoint(prefix: str | os.PathLike, epoch: int, symbol, arg_params: dict, aux_params: dict,
                    states: dict | None = None, replace_symbol: bool = True) -> Path:
    """Write ``-symbol.json`` (when absent, or different and ``replace_symbol``), ``.states`` (when given), then
    ``.params``.

    ``arg_params``/``aux_params`` map names to NDArrays; ``states`` maps ``.states`` keys to NDArrays (see the
    module docstring). ``replace_symbol=False`` (a retrain) never rewrites an existing symbol file: the older
    epochs beside it were trained with that graph. Returns the ``.params`` path. A full disk is a
    :class:`resnet_toolkit.fileio.DiskFull` (one line), leaving every earlier file as it was.
    """
    sym_file = symbol_path(prefix)
    sym_json = symbol.tojson()
    if not sym_file.is_file() or (replace_symbol
                                  and sym_file.read_text(encoding="utf-8", errors="replace") != sym_json):
        atomic_write_text(sym_file, sym_json)
    if states is not None:
        with atomic_path(states_path(prefix, epoch)) as tmp:
            write_ndarrays(tmp, states)
    target = params_path(prefix, epoch)
    blob = {f"arg:{k}": v for k, v in arg_params.items()}
    blob.update({f"aux:{k}": v for k, v in aux_params.items()})
    with atomic_path(target) as tmp:
        write_ndarrays(tmp, blob)
    return target


def _load_ndarrays(path: Path) -> dict:
    import mxnet as mx

    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError:
        raise UserError(f"{path}: not an MXNet NDArray file (truncated or corrupt)") from None
    if not isinstance(loaded, dict):
        raise UserError(f"{path}: holds an unnamed NDArray list, not a checkpoint")
    return loaded


def load_params(prefix: str | os.PathLike, epoch: int) -> tuple[dict, dict]:
    """``(arg_params, aux_params)`` of checkpoint ``epoch`` (see :func:`resolve_epoch` for choosing it)."""
    path = params_path(prefix, epoch)
    if not path.is_file():
        resolve_epoch(prefix, epoch)  # raises with the list of epochs
    arg_params, aux_params = {}, {}
    for key, value in _load_ndarrays(path).items():
        kind, _, name = key.partition(":")
        if kind == "arg":
            arg_params[name] = value
        elif kind == "aux":
            aux_params[name] = value
        else:
            raise UserError(f"{path}: key {key!r} is neither 'arg:NAME' nor 'aux:NAME'")
    return arg_params, aux_params


def load_states(prefix: str | os.PathLike, epoch: int) -> dict | None:
    """The ``.states`` blob of ``epoch``, or None when that epoch has none (e.g. the original project's files)."""
    path = states_path(prefix, epoch)
    return _load_ndarrays(path) if path.is_file() else None


def remove_stale_partials(prefix: str | os.PathLike) -> list[Path]:
    """Delete half-written files (``.{name}-....partial-PID``) of ``prefix`` left by killed processes."""
    return fileio.remove_stale_partials(Path(prefix).parent, f"{Path(prefix).name}-")


def best_path(prefix: str | os.PathLike) -> Path:
    return Path(f"{prefix}-best.json")


def read_best(prefix: str | os.PathLike) -> dict | None:
    """``{'epoch': N, 'val-accuracy': A}`` from ``PREFIX-best.json`` (written by ``--save-best``), or None."""
    import json

    path = best_path(prefix)
    if not path.is_file():
        return None
    try:
        best = json.loads(path.read_text(encoding="utf-8"))
        return {"epoch": int(best["epoch"]), "val-accuracy": float(best["val-accuracy"])}
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a best-checkpoint record ({{'epoch': N, 'val-accuracy': A}})") from None


def write_best(prefix: str | os.PathLike, epoch: int, accuracy: float) -> None:
    import json

    atomic_write_text(best_path(prefix), json.dumps({"epoch": epoch, "val-accuracy": round(accuracy, 6)}) + "\n")


def prune(prefix: str | os.PathLike, keep_last: int, keep: Iterable[int] = ()) -> list[int]:
    """Delete the checkpoints (``.params`` first, then ``.states``) of every complete epoch but the newest
    ``keep_last`` and those in ``keep``; return the epochs deleted. ``keep_last`` < 1 deletes nothing: the newest
    epoch, the one ``--retrain`` loads, is never deleted."""
    if keep_last < 1:
        return []
    epochs = list_epochs(prefix)
    protected = set(epochs[-keep_last:]) | set(keep)
    deleted = []
    for epoch in epochs:
        if epoch in protected:
            continue
        params_path(prefix, epoch).unlink(missing_ok=True)
        states_path(prefix, epoch).unlink(missing_ok=True)
        deleted.append(epoch)
    return deleted


def add_retention_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--keep-last`` and ``--save-best`` (read by :func:`resnet_toolkit.fit.fit` through :func:`prune` and
    :func:`write_best`)."""
    files = parser.add_argument_group("Checkpoint retention")
    files.add_argument("--keep-last", type=int, default=0,
                       help="keep only the newest N epochs' checkpoints (0 keeps all); never deletes the newest, "
                            "nor the best with --save-best")
    files.add_argument("--save-best", action="store_true",
                       help="keep the checkpoint with the best validation accuracy (PREFIX-best.json names it)")
    return files


def check_retention_args(args) -> None:
    if args.keep_last < 0:
        raise UserError(f"--keep-last must be >= 0, got {args.keep_last}")


# ---------------------------------------------------------------- finding and loading a checkpoint
def check_checkpoint(prefix: str | os.PathLike, epoch: int) -> tuple[Path, Path]:
    """The checkpoint's two files (symbol, params); :func:`resolve_epoch`'s :class:`UserError` when one is missing."""
    resolve_epoch(prefix, epoch, need_symbol=True)
    return symbol_path(prefix), params_path(prefix, epoch)


def load_checkpoint(prefix: str | os.PathLike, epoch: int):
    """``(symbol, arg_params, aux_params)`` of a checkpoint, with clear errors for missing or damaged files."""
    symbol_file, _ = check_checkpoint(prefix, epoch)  # before importing MXNet: a fast, clear error
    import mxnet as mx

    clear_failed_ops()  # an earlier failed operation in this process must not surface in this model
    try:
        symbol = mx.sym.load(str(symbol_file))
    except mx.base.MXNetError:
        raise UserError(f"{symbol_file}: not an MXNet symbol file") from None
    arg_params, aux_params = load_params(prefix, epoch)
    return symbol, arg_params, aux_params
