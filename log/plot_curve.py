#!/usr/bin/env python
"""Plot top-1 (or top-5) error per epoch from MXNet training logs: train dashed, validation solid.

    python log/plot_curve.py --logs resnet-cifar10-164-0.log,other.log --out curve.png [--metric top5] [--csv t.csv]

One colour per log, legend by file name, axes fitted to the data. Reads every age of MXNet's log lines (see
``resnet_toolkit.logparse``); a restarted run appended to the same log keeps the latest values.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy compatibility before anything imports mxnet)
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.fileio import atomic_path
from resnet_toolkit.logparse import EpochRecord, error_series, parse_file, to_csv

FORMATS = ("png", "pdf", "svg")


def make_figure(runs: dict[str, list[EpochRecord]], metric: str = "top1"):
    """A matplotlib Figure: for each log (name -> records) its train error dashed and validation error solid,
    in one colour. Errors are 1 - accuracy (fractions); x is MXNet's 0-based epoch number. Logs without any
    value for ``metric`` are left out; the caller decides whether that is an error."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    fig = Figure(figsize=(8, 5), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    colours = matplotlib.rcParams["axes.prop_cycle"].by_key()["color"]
    all_errors: list[float] = []
    all_epochs: list[int] = []
    for i, (name, records) in enumerate(runs.items()):
        colour = colours[i % len(colours)]
        for split, style in (("train", "--"), ("val", "-")):
            epochs, errors = error_series(records, metric, split)
            if epochs:
                ax.plot(epochs, errors, linestyle=style, color=colour, marker="." if len(epochs) < 30 else None,
                        label=f"{name} {split}")
                all_errors += errors
                all_epochs += epochs
    if all_errors:
        first, last = min(all_epochs), max(all_epochs)
        ax.set_xlim(first - max(0.5, 0.02 * (last - first)), last + max(0.5, 0.02 * (last - first)))
        low, high = min(all_errors), max(all_errors)
        pad = max(0.02, 0.05 * (high - low))
        ax.set_ylim(max(0.0, low - pad), min(1.0, high + pad))
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel(f"{'top-1' if metric == 'top1' else 'top-5'} error")
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper right", fontsize="small")
    fig.tight_layout()
    return fig


def _check_out(path: Path, formats: tuple[str, ...] | None = None) -> None:
    parent = path.parent
    if not parent.exists():
        raise UserError(f"cannot write {path}: directory {parent} does not exist")
    if not parent.is_dir():
        raise UserError(f"cannot write {path}: {parent} is not a directory")
    if formats and path.suffix.lstrip(".").lower() not in formats:
        raise UserError(f"{path}: unsupported image format {path.suffix!r}; use one of {', '.join(formats)}")


def _write(path: Path, save) -> None:
    """``save(tmp)`` then rename onto ``path``; an OS error becomes one line naming ``path``."""
    try:
        with atomic_path(path) as tmp:
            save(tmp)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--logs", required=True, help="comma-separated training logs")
    parser.add_argument("--out", default="curve.png", help="image to write (.png, .pdf or .svg)")
    parser.add_argument("--metric", choices=("top1", "top5"), default="top1", help="which error to plot")
    parser.add_argument("--csv", help="also write the parsed per-epoch table to this CSV file")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logs = [Path(p) for p in args.logs.split(",") if p.strip()]
    if not logs:
        raise UserError("--logs names no file")
    out = Path(args.out)
    _check_out(out, FORMATS)
    if args.csv:
        _check_out(Path(args.csv))
    runs: dict[str, list[EpochRecord]] = {}
    for log in logs:
        name = log.name if log.name not in runs else str(log)
        runs[name] = parse_file(log)
    plotted = {name: recs for name, recs in runs.items()
               if error_series(recs, args.metric, "train")[0] or error_series(recs, args.metric, "val")[0]}
    if not plotted:
        raise UserError(f"no {args.metric} accuracy in {', '.join(map(str, logs))}")
    for name in runs:
        if name not in plotted:
            print(f"plot_curve.py: warning: {name}: no {args.metric} accuracy in this log; left out", file=sys.stderr)
    fig = make_figure(plotted, args.metric)
    _write(out, lambda tmp: fig.savefig(tmp, format=out.suffix.lstrip(".").lower()))
    if args.csv:
        _write(Path(args.csv), lambda tmp: tmp.write_text(to_csv(runs), encoding="utf-8"))
    print(f"wrote {out}" + (f" and {args.csv}" if args.csv else ""))
    return 0


if __name__ == "__main__":
    run_cli(main)
