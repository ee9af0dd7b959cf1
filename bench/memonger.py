"""Memory and speed of training with and without the memory planner (``--memonger``), same run.

For every configuration (data type, depth, batch) the parent builds the Symbol with ``memonger=True``, reads
the executor's planned memory (``Total N MB allocated``: activations and intermediate gradients) without and
with :func:`symbols.memonger.search_plan`, and times the search. Then each variant trains in a fresh subprocess:
``mx.mod.Module`` with NAG (forward, backward, update, as ``train_resnet.py`` does), one warm-up step and
``--steps`` timed steps on random 0..255 images, and reports the median step time, its resident memory just
before the first step, and its peak resident memory (``VmHWM`` of /proc/self/status) at the end.

    .venv/bin/python -m bench.memonger                                   # ResNet-1001 b64 and ResNet-200 b8
    .venv/bin/python -m bench.memonger --configs cifar10:164:64 --steps 3 --json /tmp/memonger.json

The plain ResNet-1001 at batch 64 needs about 10 GB of RAM. Compare only ratios taken in the same run.
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy shim before mxnet)
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.fileio import atomic_write_text

REPO = Path(__file__).resolve().parent.parent
DEFAULT_CONFIGS = ("cifar10:1001:64", "imagenet:200:8")
NAG = {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}


def parse_config(text: str) -> tuple[str, int, int]:
    """``'cifar10:1001:64'`` -> ``('cifar10', 1001, 64)`` (data type, depth, batch)."""
    parts = text.split(":")
    if len(parts) != 3 or not parts[1].isdigit() or not parts[2].isdigit() or int(parts[2]) < 1:
        raise UserError(f"bad configuration {text!r}; expected DATA_TYPE:DEPTH:BATCH, e.g. cifar10:1001:64")
    return parts[0], int(parts[1]), int(parts[2])


def _status_mb(field: str) -> float:
    """A memory field of /proc/self/status (``VmRSS``: resident now, ``VmHWM``: peak resident), MB.

    ``VmHWM`` belongs to this process's own address space. ``ru_maxrss`` does not: Linux folds the parent's peak
    into it across fork/exec, so a worker started by a big parent would report the parent's peak.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"/proc/self/status has no {field}")


def worker(symbol_json: str, shape: tuple[int, ...], steps: int) -> dict:
    """Train ``steps`` + 1 Module steps of the Symbol in ``symbol_json`` on one batch of ``shape``; measure."""
    import mxnet as mx
    import numpy as np

    sym = mx.sym.load(symbol_json)
    batch = shape[0]
    module = mx.mod.Module(sym, context=mx.cpu())
    module.bind(data_shapes=[("data", shape)], label_shapes=[("softmax_label", (batch,))])
    module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    module.init_optimizer(optimizer="nag", optimizer_params={**NAG, "rescale_grad": 1.0 / batch})
    rng = np.random.RandomState(0)
    data_batch = mx.io.DataBatch([mx.nd.array(rng.uniform(0, 255, shape))],
                                 [mx.nd.array(rng.randint(0, 10, batch))])
    rss_before = _status_mb("VmRSS")
    times = []
    for _ in range(steps + 1):
        start = time.perf_counter()
        module.forward_backward(data_batch)
        module.update()
        mx.nd.waitall()
        times.append(time.perf_counter() - start)
    return {"rss_before_step_mb": round(rss_before, 1),
            "peak_rss_mb": round(_status_mb("VmHWM"), 1),
            "step_s": round(statistics.median(times[1:]), 3), "step_times_s": [round(t, 3) for t in times]}


def run_config(net_type: str, depth: int, batch: int, steps: int) -> dict:
    """Plan, then train both variants in fresh subprocesses; one result record."""
    from symbols import get_spec, get_symbol, memonger

    spec = get_spec(net_type, depth)
    shape = (batch, *spec.image_shape)
    sym = get_symbol(10 if net_type == "cifar10" else 1000, depth, net_type, memonger=True)
    start = time.perf_counter()
    plan = memonger.search_plan(sym, data=shape)
    search_s = time.perf_counter() - start
    record = {"net_type": net_type, "depth": depth, "batch": batch, "search_s": round(search_s, 1)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, network in (("plain", memonger.apply_plan(sym, None)), ("memonger", plan)):
            report = memonger.memory_report(network, data=shape)
            path = Path(tmp) / f"{name}-symbol.json"
            network.save(str(path))
            cmd = [sys.executable, "-m", "bench.memonger", "--worker", str(path), "--shape",
                   ",".join(map(str, shape)), "--steps", str(steps)]
            out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO)
            if out.returncode != 0:
                raise RuntimeError(f"{name} worker failed:\n{out.stderr[-2000:]}")
            measured = json.loads(out.stdout.strip().splitlines()[-1])
            record[name] = {"planned_mb": report.planned_mb, "arrays_mb": round(report.arrays_mb, 1), **measured}
            print(f"  {net_type} {depth} b{batch} {name}: {json.dumps(record[name])}", flush=True)
    plain, mem = record["plain"], record["memonger"]
    record["planned_ratio"] = round(plain["planned_mb"] / max(mem["planned_mb"], 1), 2)
    record["peak_rss_ratio"] = round(plain["peak_rss_mb"] / mem["peak_rss_mb"], 2)
    growth = [r["peak_rss_mb"] - r["rss_before_step_mb"] for r in (plain, mem)]
    record["step_rss_growth_ratio"] = round(growth[0] / max(growth[1], 1.0), 2)
    record["step_time_ratio"] = round(mem["step_s"] / plain["step_s"], 3)
    return record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--configs", nargs="+", default=list(DEFAULT_CONFIGS), metavar="TYPE:DEPTH:BATCH",
                        help="configurations (default: %(default)s)")
    parser.add_argument("--steps", type=int, default=2, help="timed steps after one warm-up (default: 2)")
    parser.add_argument("--json", help="also write the records here (JSON list)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--shape", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        print(json.dumps(worker(args.worker, tuple(int(x) for x in args.shape.split(",")), args.steps)))
        return 0

    if args.steps < 1:
        raise UserError("--steps must be at least 1")
    configs = [parse_config(c) for c in args.configs]
    records = []
    for net_type, depth, batch in configs:
        records.append(run_config(net_type, depth, batch, args.steps))
        r = records[-1]
        print(f"{net_type} ResNet-{depth} batch {batch}: planned {r['plain']['planned_mb']} -> "
              f"{r['memonger']['planned_mb']} MB ({r['planned_ratio']}x less), peak RSS "
              f"{r['plain']['peak_rss_mb']:.0f} -> {r['memonger']['peak_rss_mb']:.0f} MB ({r['peak_rss_ratio']}x), "
              f"step {r['plain']['step_s']:.2f} -> {r['memonger']['step_s']:.2f} s ({r['step_time_ratio']}x), "
              f"search {r['search_s']} s", flush=True)
    if args.json:
        atomic_write_text(args.json, json.dumps(records, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    run_cli(main)
