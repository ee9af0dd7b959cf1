"""End-to-end training speed of ``train_resnet.py`` (images/s read from its own Speedometer lines) under several
sets of flags, run in rotation so that a shared machine's load falls on all of them alike.

Each run is one short epoch (``--num-examples``) of a fresh ``train_resnet.py`` process on the same record files;
its speed is the median of the Speedometer's ``Speed: N samples/sec`` windows after the first (which holds the
iterator's start-up). The report gives, per configuration, the median over rounds and the median of per-round
ratios to the first configuration.

    python -m bench.train_speed --data-dir DIR --data-type cifar10 --depth 20 --batch-size 128 --rounds 3 \\
        --config default= --config plain=--plain-graph --config gluon=--api,gluon \\
        --config gluon-plain=--api,gluon,--plain-graph

``--config NAME=FLAGS`` takes comma-separated extra flags (empty for the defaults).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SPEED = re.compile(r"Epoch\[\d+\] Batch \[[\d-]+\]\s+Speed: ([\d.]+) samples/sec")


def parse_config(text: str) -> tuple[str, list[str]]:
    """``NAME=FLAG,FLAG,...`` -> (NAME, [FLAG, ...])."""
    name, sep, flags = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"--config wants NAME=FLAGS, got {text!r}")
    return name, [f for f in flags.split(",") if f]


def window_speeds(stdout: str) -> list[float]:
    """The Speedometer's samples/sec values, in order."""
    return [float(m.group(1)) for m in SPEED.finditer(stdout)]


def run_once(common: list[str], extra: list[str], workdir: Path, env: dict) -> dict:
    """One fresh ``train_resnet.py`` run; returns its window speeds and wall time (s)."""
    prefix = Path(tempfile.mkdtemp(dir=workdir)) / "m"
    cmd = [sys.executable, str(ROOT / "train_resnet.py"), *common, *extra, "--model-prefix", str(prefix)]
    tic = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=ROOT)
    wall = time.perf_counter() - tic
    if proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return {"speeds": window_speeds(proc.stdout), "wall_s": round(wall, 2)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-dir", required=True)
    parser.add_argument("--data-type", default="cifar10")
    parser.add_argument("--depth", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--num-examples", type=int, default=128 * 25, help="images in each run's one epoch")
    parser.add_argument("--frequent", type=int, default=5, help="Speedometer window, batches")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--config", type=parse_config, action="append", required=True,
                        help="NAME=comma,separated,flags (repeatable; the first is the reference)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)

    common = ["--data-type", args.data_type, "--data-dir", args.data_dir, "--depth", str(args.depth),
              "--batch-size", str(args.batch_size), "--num-examples", str(args.num_examples), "--end-epoch", "1",
              "--frequent", str(args.frequent)]
    env = dict(os.environ)
    results: dict[str, list[dict]] = {name: [] for name, _ in args.config}
    with tempfile.TemporaryDirectory() as tmp:
        for rnd in range(args.rounds):
            order = args.config[rnd % len(args.config):] + args.config[:rnd % len(args.config)]
            for name, extra in order:
                run = run_once(common, extra, Path(tmp), env)
                run["img_s"] = statistics.median(run["speeds"][1:] or run["speeds"])
                results[name].append(run)
                print(f"round {rnd + 1} {name:16s} {run['img_s']:8.1f} img/s  (wall {run['wall_s']} s)", flush=True)

    ref = args.config[0][0]
    summary = {}
    print(f"\n| config | flags | img/s (median of {args.rounds} runs) | ÷ {ref} (median of per-round ratios) |")
    print("|---|---|---|---|")
    for name, extra in args.config:
        speeds = [r["img_s"] for r in results[name]]
        ratio = statistics.median(a / b for a, b in zip(speeds, (r["img_s"] for r in results[ref])))
        summary[name] = {"flags": extra, "img_s": round(statistics.median(speeds), 1), "ratio": round(ratio, 3),
                         "runs": results[name]}
        print(f"| {name} | `{' '.join(extra) or '(defaults)'}` | {summary[name]['img_s']} | {ratio:.2f} |")
    if args.json:
        args.json.write_text(json.dumps({"common": common, "load_avg": os.getloadavg(), "configs": summary},
                                        indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
