"""Side-by-side throughput: this project's ResNet-v2 against GluonCV's ``*_v2`` and plain PyTorch, same run.

For every (model, batch) it times, each in a fresh subprocess so that process-level settings cannot leak:

- ``module``  : this project's Symbol through ``mx.mod.Module`` (train: forward, backward, NAG update as
  ``train_resnet.py`` does it; infer: forward of an inference-bound module);
- ``gluon``   : this project's Gluon net, hybridized, ``gluon.Trainer`` with the same NAG settings;
- ``gluoncv`` : GluonCV's ``*_v2`` model, set up as ``../shared/peers/peer_mxnet_gluoncv.py`` does;
- ``torch``   : the same networks in plain PyTorch (channels_last), built from ``../shared/peers/peer_torch.py``
  run under ``--torch-python``.

Our two engines run in two variants: ``base`` (plain MXNet defaults: what the code did before any speed work)
and ``fast`` (:func:`resnetv2.runtime.configure` + :mod:`resnetv2.fastpath`). Training img/s, inference img/s,
and per-batch latency p50/p90 in ms. Ratios are fast/peer and base/peer, from the same run.

    .venv/bin/python bench/throughput.py --models cifar_resnet20_v2 --torch-python /tmp/ptv/bin/python
    .venv/bin/python bench/throughput.py --models resnet50_v2 --batches 1 8 --what infer --repeat 3

Do not time anything while other jobs load the machine; compare ratios only.
"""
from __future__ import annotations

import argparse
import inspect
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
PEERS = REPO.parent / "shared" / "peers"
MODELS = ("cifar_resnet20_v2", "cifar_resnet56_v2", "cifar_resnet164_v2", "resnet50_v2", "resnet101_v2")
DEFAULT_BATCHES = {"cifar": (128,), "imagenet": (1, 8, 32)}
ENGINES = ("module", "gluon", "gluoncv", "torch")
OURS = ("module", "gluon")
VARIANTS = ("base", "fast")
NAG = {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4}  # train_resnet.py's optimizer settings


def model_shape(model: str) -> tuple[tuple[int, int, int], int]:
    """(C, H, W) input shape and class count of a benchmark model name."""
    return ((3, 32, 32), 10) if model.startswith("cifar_") else ((3, 224, 224), 1000)


# ---------------------------------------------------------------- timing (shared by every engine, torch too)

def time_steps(step, warmup: int, seconds: float, min_steps: int, max_steps: int) -> list[float]:
    """Run ``step`` ``warmup`` times, then until ``seconds`` are filled (within [min_steps, max_steps]).

    Returns the wall time of every timed step in seconds. Its source is also sent to the PyTorch worker.
    """
    for _ in range(warmup):
        step()
    times: list[float] = []
    start = time.perf_counter()
    while len(times) < max_steps and (len(times) < min_steps or time.perf_counter() - start < seconds):
        t = time.perf_counter()
        step()
        times.append(time.perf_counter() - t)
    return times


def summarize(times: list[float], batch: int) -> dict:
    """img/s over all timed steps and per-step latency percentiles in ms."""
    ordered = sorted(times)

    def pct(p: float) -> float:
        return ordered[min(len(ordered) - 1, max(0, math.ceil(p / 100 * len(ordered)) - 1))] * 1e3

    return {"img_s": round(batch * len(times) / sum(times), 3), "p50_ms": round(pct(50), 2),
            "p90_ms": round(pct(90), 2), "steps": len(times)}


# ---------------------------------------------------------------- MXNet workers (run in a subprocess)

def _measure(step, timing: dict, batch: int) -> dict:
    """Time ``step``; with ``timing['profile']`` (a file path) also run 3 steps under MXNet's profiler, per op
    (bulk execution off), and write its aggregate table (time per operator, ms over the 3 steps) there."""
    timing = dict(timing)
    profile = timing.pop("profile", None)
    result = summarize(time_steps(step, **timing), batch)
    if profile:
        import mxnet as mx
        trace = os.path.join(tempfile.gettempdir(), f"throughput-profile-{os.getpid()}.json")  # not kept
        mx.profiler.set_config(profile_all=True, aggregate_stats=True, filename=trace)
        mx.profiler.set_state("run")
        start = time.perf_counter()
        for _ in range(3):
            step()
        mx.nd.waitall()
        mx.profiler.set_state("stop")
        Path(profile).write_text(f"3 steps, {time.perf_counter() - start:.3f} s wall\n"
                                 + mx.profiler.dumps(sort_by="total", ascending=False))
    return result


def _mx_data(batch: int, shape: tuple, classes: int):
    import mxnet as mx
    rng = mx.random.seed(7) or None  # noqa: F841
    data = mx.nd.random.uniform(0, 255, shape=(batch,) + shape)
    label = mx.nd.array([i % classes for i in range(batch)])
    return data, label


def _worker_module(model: str, batch: int, variant: str, what: str, timing: dict) -> dict:
    import mxnet as mx

    from resnetv2 import fastpath
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = _mx_data(batch, shape, classes)
    dbatch = mx.io.DataBatch([data], [label])
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if what == "train":
        if variant == "fast":
            sym = fastpath.training_graph(sym)[0]
        mod = mx.mod.Module(sym, context=mx.cpu())
        mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
        mod.init_params(init)
        mod.init_optimizer(kvstore="local", optimizer="nag",
                           optimizer_params={**NAG, "rescale_grad": 1.0 / batch})

        def step():
            mod.forward_backward(dbatch)
            mod.update()
            mx.nd.waitall()
        return _measure(step, timing, batch)
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    mod.init_params(init)
    arg_params, aux_params = mod.get_params()
    if variant == "fast":
        model_obj = fastpath.InferenceModel(sym, arg_params, aux_params, data.shape)

        def step():
            model_obj.forward(data).wait_to_read()
    else:
        mod = mx.mod.Module(sym, context=mx.cpu())
        mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)],
                 for_training=False)
        mod.set_params(arg_params, aux_params)
        dbatch = mx.io.DataBatch([data])

        def step():
            mod.forward(dbatch, is_train=False)
            mod.get_outputs()[0].wait_to_read()
    return _measure(step, timing, batch)


def _worker_gluon(model: str, batch: int, variant: str, what: str, timing: dict) -> dict:
    import mxnet as mx
    from mxnet import autograd, gluon

    from resnetv2 import fastpath
    from symbols import get_model

    shape, classes = model_shape(model)
    net = get_model(model, classes, api="gluon")
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    data, label = _mx_data(batch, shape, classes)
    if what == "train":
        if variant == "fast":
            net = fastpath.hybridize_for_training(net, data.shape)
        else:
            net.hybridize()
        for name, param in net.collect_params().items():
            if name.endswith(("_beta", "_bias")):
                param.wd_mult = 0.0  # as the Symbol optimizer: decay weights and gammas only
        trainer = gluon.Trainer(net.collect_params(), "nag", dict(NAG))
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        def step():
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(batch)
            mx.nd.waitall()
        return _measure(step, timing, batch)
    if variant == "fast":
        net = fastpath.gluon_inference_block(net, data.shape)
    else:
        net.hybridize()

    def step():
        net(data).wait_to_read()
    return _measure(step, timing, batch)


def _gluoncv_net(model: str, classes: int):
    from gluoncv.model_zoo import get_model
    if model == "cifar_resnet164_v2":  # GluonCV has no 164; its own classes with the paper's bottleneck layout
        from gluoncv.model_zoo.cifarresnet import CIFARResNetV2
        from gluoncv.model_zoo.resnet import BottleneckV2
        return CIFARResNetV2(BottleneckV2, [18, 18, 18], [16, 64, 128, 256], classes=classes)
    return get_model(model, classes=classes)


def _worker_gluoncv(model: str, batch: int, variant: str, what: str, timing: dict) -> dict:
    """As peer_mxnet_gluoncv.py: Xavier init, hybridize(static_alloc, static_shape), SGD momentum 0.9 wd 1e-4."""
    import mxnet as mx
    from mxnet import autograd, gluon

    shape, classes = model_shape(model)
    net = _gluoncv_net(model, classes)
    net.initialize(mx.init.Xavier())
    net.hybridize(static_alloc=True, static_shape=True)
    data, label = _mx_data(batch, shape, classes)
    if what == "train":
        trainer = gluon.Trainer(net.collect_params(), "sgd", {"learning_rate": 0.01, "momentum": 0.9, "wd": 1e-4})
        loss_fn = gluon.loss.SoftmaxCrossEntropyLoss()

        def step():
            with autograd.record():
                loss = loss_fn(net(data), label)
            loss.backward()
            trainer.step(batch)
            mx.nd.waitall()
    else:
        def step():
            net(data).wait_to_read()
    return _measure(step, timing, batch)


TORCH_WORKER = r'''
import importlib.util, json, sys, time
import os, torch, torch.nn.functional as F
args = json.loads(sys.argv[1])
if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
spec = importlib.util.spec_from_file_location("peer_torch", args["peer"])
peer = importlib.util.module_from_spec(spec); spec.loader.exec_module(peer)
arch = {"resnet50_v2": (peer.Bottleneck, [3, 4, 6, 3], [64, 256, 512, 1024, 2048], True),
        "resnet101_v2": (peer.Bottleneck, [3, 4, 23, 3], [64, 256, 512, 1024, 2048], True),
        "cifar_resnet20_v2": (peer.Basic, [3, 3, 3], [16, 16, 32, 64], False),
        "cifar_resnet56_v2": (peer.Basic, [9, 9, 9], [16, 16, 32, 64], False),
        "cifar_resnet164_v2": (peer.Bottleneck, [18, 18, 18], [16, 64, 128, 256], False)}[args["model"]]
block, units, filters, imagenet = arch
classes, batch = args["classes"], args["batch"]
net = peer.PreActResNet(block, units, filters, classes, imagenet)
mf = torch.channels_last if args["channels_last"] else torch.contiguous_format
net = net.to(memory_format=mf)
x = torch.rand([batch] + args["shape"]).to(memory_format=mf) * 255
y = torch.arange(batch) % classes
if args["what"] == "train":
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    def step():
        opt.zero_grad(set_to_none=True); loss = F.cross_entropy(net(x), y); loss.backward(); opt.step()
    times = time_steps(step, **args["timing"])
else:
    net.eval()
    with torch.inference_mode():
        times = time_steps(lambda: net(x), **args["timing"])
print("RESULT " + json.dumps(times))
'''

WORKERS = {"module": _worker_module, "gluon": _worker_gluon, "gluoncv": _worker_gluoncv}


def run_worker(args: argparse.Namespace) -> int:
    """Subprocess entry: configure the process, time one cell, print ``RESULT {json}``."""
    if args.worker in OURS and args.variant == "fast":
        from resnetv2 import runtime
        runtime.configure()
    import resnetv2  # noqa: F401  (numpy shim before mxnet)
    timing = json.loads(args.timing)
    result = WORKERS[args.worker](args.models[0], args.batches[0], args.variant, args.what[0], timing)
    print("RESULT " + json.dumps(result))
    return 0


# ---------------------------------------------------------------- orchestration

def cell_command(engine: str, variant: str, model: str, batch: int, what: str, timing: dict,
                 torch_python: str | None, channels_last: bool) -> list[str] | None:
    """The subprocess command that times one cell, or None when the engine is unavailable."""
    if engine == "torch":
        if not torch_python:
            return None
        shape, classes = model_shape(model)
        spec = {"peer": str(PEERS / "peer_torch.py"), "model": model, "batch": batch, "what": what,
                "shape": list(shape), "classes": classes, "channels_last": channels_last, "timing": timing}
        return [torch_python, "-c", inspect.getsource(time_steps) + TORCH_WORKER, json.dumps(spec)]
    return [sys.executable, str(Path(__file__).resolve()), "--worker", engine, "--variant", variant,
            "--models", model, "--batches", str(batch), "--what", what, "--timing", json.dumps(timing)]


def run_cell(cmd: list[str], batch: int, env: dict) -> dict | None:
    """Run one timing subprocess; its result dict, or None (with the reason on stderr) when it failed."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT ")]
    if proc.returncode != 0 or not lines:
        print(f"  failed ({proc.returncode}): {proc.stderr.strip().splitlines()[-1:]}", file=sys.stderr)
        return None
    result = json.loads(lines[-1][len("RESULT "):])
    return summarize(result, batch) if isinstance(result, list) else result


def median_cell(results: list[dict]) -> dict:
    """Median over repeats of img/s and latencies."""
    keys = ("img_s", "p50_ms", "p90_ms")
    return {k: round(statistics.median(r[k] for r in results), 3) for k in keys} | {"runs": len(results)}


def ratios(raw: dict) -> dict:
    """Ours (each engine/variant) / each peer, img/s: the median over rounds of the ratio within a round.

    A ratio of two cells timed minutes apart in the same round is far steadier on a shared machine than the
    ratio of two medians. Keys: ``model|batch|what|engine/variant|peer``.
    """
    out = {}
    for (model, batch, what), cells in raw.items():
        for ours in [f"{e}/{v}" for e in OURS for v in VARIANTS]:
            for peer in ("gluoncv/-", "torch/-", "module/base", "gluon/base"):
                if ours in cells and peer in cells and peer != ours and not (
                        peer.endswith("/base") and not ours.startswith(peer.split("/")[0])):
                    pairs = list(zip(cells[ours], cells[peer]))
                    out[f"{model}|{batch}|{what}|{ours}|{peer.removesuffix('/-')}"] = round(
                        statistics.median(a["img_s"] / b["img_s"] for a, b in pairs), 3)
    return out


def format_table(rows: dict, ratio: dict) -> str:
    """Markdown table: one line per (model, batch, what): median img/s per engine, the best of ours, its ratios."""
    cols = [f"{e}/{v}" for e in OURS for v in VARIANTS] + ["gluoncv/-", "torch/-"]
    head = ["model", "batch", "what"] + [c.replace("/-", "") for c in cols] + [
        "best ours", "÷ own base", "÷ gluoncv", "÷ torch", "p50/p90 ms"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for (model, batch, what), cells in rows.items():
        ours = [c for c in cols[:4] if c in cells and c.endswith("/fast")] or [c for c in cols[:4] if c in cells]
        best = max(ours, key=lambda c: cells[c]["img_s"]) if ours else None
        vals = [f"{cells[c]['img_s']:.2f}" if c in cells else "–" for c in cols]
        key = f"{model}|{batch}|{what}|{best}|"
        own = f"{best.split('/')[0]}/base" if best else ""
        rat = [f"{ratio[key + p]:.2f}" if key + p in ratio else "–" for p in (own, "gluoncv", "torch")]
        lat = f"{cells[best]['p50_ms']:.1f}/{cells[best]['p90_ms']:.1f}" if best else "–"
        lines.append("| " + " | ".join([model, str(batch), what] + vals + [best or "–"] + rat + [lat]) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="throughput.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=list(MODELS), help="model names (default: all five)")
    p.add_argument("--batches", nargs="+", type=int, default=None,
                   help="batch sizes (default: 128 for cifar, 1 8 32 for imagenet)")
    p.add_argument("--what", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--variants", nargs="+", choices=VARIANTS, default=list(VARIANTS))
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per cell (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per cell")
    p.add_argument("--min-steps", type=int, default=3)
    p.add_argument("--max-steps", type=int, default=200)
    p.add_argument("--repeat", type=int, default=1, help="rounds over all cells; the table shows medians")
    p.add_argument("--torch-python", default=None, help="python of a venv with torch (peer_torch.py)")
    p.add_argument("--torch-nchw", action="store_true", help="PyTorch in NCHW instead of channels_last")
    p.add_argument("--threads", type=int, default=None,
                   help="the same OpenMP/intra-op thread count for every engine (default: each one's own default: "
                        "MXNet 1.9 half the logical CPUs, PyTorch all cores, ours resnetv2.runtime's choice)")
    p.add_argument("--json", type=Path, default=None, help="write every cell and ratio here")
    p.add_argument("--profile-dir", type=Path, default=None,
                   help="also profile our cells (MXNet profiler, per op) into this folder, one table per cell")
    p.add_argument("--worker", choices=tuple(WORKERS), help=argparse.SUPPRESS)
    p.add_argument("--variant", default="base", help=argparse.SUPPRESS)
    p.add_argument("--timing", default="{}", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    return args


def main(argv: list[str] | None = None) -> int:
    from resnetv2.errors import UserError
    from symbols import parse_model_name

    args = parse_args(argv)
    if args.worker:
        return run_worker(args)
    for model in args.models:
        parse_model_name(model)
    if args.torch_python and not Path(args.torch_python).exists():
        raise UserError(f"--torch-python {args.torch_python}: no such file")
    if "torch" in args.engines and args.torch_python and not (PEERS / "peer_torch.py").exists():
        raise UserError(f"no {PEERS / 'peer_torch.py'}")
    timing = {"warmup": args.warmup, "seconds": args.seconds, "min_steps": args.min_steps,
              "max_steps": args.max_steps}
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)  # every engine starts from its own defaults...
    env.pop("MXNET_CPU_WORKER_NTHREADS", None)
    if args.profile_dir:
        env["MXNET_EXEC_BULK_EXEC_TRAIN"] = "0"  # per-op times (bulked segments hide which op costs what)
        env["MXNET_EXEC_BULK_EXEC_INFERENCE"] = "0"
    if args.threads:  # ...unless one thread count is asked for all
        env["OMP_NUM_THREADS"] = str(args.threads)
    raw: dict = {}
    for rnd in range(args.repeat):
        for model in args.models:
            kind = "cifar" if model.startswith("cifar_") else "imagenet"
            for batch in args.batches or DEFAULT_BATCHES[kind]:
                for what in args.what:
                    for engine in args.engines:
                        for variant in (args.variants if engine in OURS else ["-"]):
                            cell_timing = dict(timing)
                            if args.profile_dir and engine in OURS:
                                args.profile_dir.mkdir(parents=True, exist_ok=True)
                                cell_timing["profile"] = str(args.profile_dir.resolve()
                                                             / f"{model}-bs{batch}-{what}-{engine}-{variant}.txt")
                            cmd = cell_command(engine, variant, model, batch, what, cell_timing, args.torch_python,
                                               not args.torch_nchw)
                            if cmd is None:
                                continue
                            t0 = time.perf_counter()
                            result = run_cell(cmd, batch, env)
                            tag = f"{engine}/{variant}"
                            print(f"[{rnd + 1}/{args.repeat}] {model} bs{batch} {what} {tag}: "
                                  f"{result and result['img_s']} img/s ({time.perf_counter() - t0:.0f} s, "
                                  f"load {os.getloadavg()[0]:.1f})",
                                  file=sys.stderr, flush=True)
                            if result:
                                raw.setdefault((model, batch, what), {}).setdefault(tag, []).append(result)
    rows = {key: {tag: median_cell(rs) for tag, rs in cells.items()} for key, cells in raw.items()}
    ratio = ratios(raw)
    print(format_table(rows, ratio))
    report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "timing": timing,
              "threads": args.threads, "loadavg_end": os.getloadavg(),
              "cells": [{"model": m, "batch": b, "what": w, "engine": t, **c}
                        for (m, b, w), cells in rows.items() for t, c in cells.items()],
              "raw": [{"model": m, "batch": b, "what": w, "engine": t, "runs": rs}
                      for (m, b, w), cells in raw.items() for t, rs in cells.items()],
              "ratios": ratio}
    text = json.dumps(report, indent=1)
    if args.json:
        from resnetv2.fileio import atomic_write_text
        atomic_write_text(args.json, text + "\n")
    else:
        print(json.dumps(report["ratios"]))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(REPO))
    from resnetv2.errors import run_cli
    run_cli(main)
