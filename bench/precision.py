"""Low precision against float32 and the peers, same run: bfloat16 training and INT8 inference.

Cells (``--what train``: forward, backward, NAG update on a fixed random batch; ``--what infer``: one forward):

- ``ours/fp32``     : this project's Symbol through ``mx.mod.Module``, :mod:`resnet_toolkit.fastpath`'s graphs (the
  training graph; the folded, fused inference model): the float32 baseline of today's bench/throughput.py;
- ``ours/bf16``     : train only: the same training graph through
  :func:`resnet_toolkit.precision.mixed_precision_symbol`, policy 'fp32-bn'
  (convolutions and FC in bfloat16; BN, softmax, weights float32);
- ``ours/bf16-mxbn``: train only: policy 'mxnet', MXNet AMP's own lists (BatchNorm also reads/writes bfloat16):
  what ``train_resnet.py --dtype bfloat16`` runs by default since 2026-12-05;
- ``ours/int8``     : infer only: :func:`resnet_toolkit.quantize`'s oneDNN INT8 graph (naive calibration on 2 random
  batches: fine for speed, meaningless for accuracy);
- ``gluoncv/fp32``  : GluonCV's ``*_v2`` model, hybridized with static memory (as bench/throughput.py);
- ``torch/fp32``, ``torch/bf16`` (``torch.autocast('cpu', torch.bfloat16)``), ``torch/int8`` (FX graph-mode
  post-training quantization, x86 backend): the peer networks of ``../shared/peers/peer_torch.py``, channels_last,
  under ``--torch-python``.

Timing is bench/throughput.py's: one MXNet worker process and one PyTorch worker per cell, kept alive, each round
one step of every engine in a rotating order; a ratio is the median over rounds of the per-round ratio of step
times. Output: a Markdown table (img/s; ours-low ÷ ours-fp32, ÷ gluoncv, ÷ torch fp32, ÷ torch low) and ``--json``;
``--kernels`` adds, per cell and MXNet engine, the oneDNN kernels of one step and their share of its time.

    .venv/bin/python bench/precision.py --what train --models cifar_resnet20_v2 --threads 1 \
        --torch-python /tmp/ptv/bin/python
    .venv/bin/python bench/precision.py --what infer --models resnet50_v2 --batches 1 32 --threads 1
"""
from __future__ import annotations

import argparse
import inspect
import json
import os
import statistics
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE.parent), str(HERE)]

import throughput as tp  # noqa: E402  (bench/throughput.py: its step server, timing and peer builders)

DEFAULT_BATCHES = {("cifar", "train"): (128,), ("imagenet", "train"): (8,), ("cifar", "infer"): (1, 32),
                   ("imagenet", "infer"): (1, 32)}
LOW = {"train": ("bf16", "bf16-mxbn"), "infer": ("int8",)}
ENGINES = ("ours", "gluoncv", "torch")


def mx_keys(what: str, engines) -> list[str]:
    keys = []
    if "ours" in engines:
        keys += ["ours/fp32"] + [f"ours/{v}" for v in LOW[what]]
    if "gluoncv" in engines:
        keys.append("gluoncv/fp32")
    return keys


def torch_keys(what: str) -> list[str]:
    return ["torch/fp32", "torch/bf16" if what == "train" else "torch/int8"]


# ---------------------------------------------------------------- MXNet steps (in the worker process)

def _ours(model: str, batch: int, variant: str, what: str):
    import mxnet as mx

    from resnet_toolkit import fastpath
    from resnet_toolkit.precision import mixed_precision_symbol
    from symbols import get_model

    shape, classes = tp.model_shape(model)
    sym = get_model(model, classes, api="symbol")
    data, label = tp._mx_data(batch, shape, classes)
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    if what == "train":
        sym = fastpath.training_graph(sym)[0]
        if variant != "fp32":
            sym = mixed_precision_symbol(sym, "bfloat16", policy="mxnet" if variant == "bf16-mxbn" else "fp32-bn")
        mod = mx.mod.Module(sym, context=mx.cpu())
        mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
        mx.random.seed(0)
        mod.init_params(init)
        mod.init_optimizer(kvstore="local", optimizer="nag", optimizer_params={**tp.NAG, "rescale_grad": 1 / batch})
        dbatch = mx.io.DataBatch([data], [label])

        def step():
            mod.forward_backward(dbatch)
            mod.update()
            mx.nd.waitall()
        return step
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)], for_training=False)
    mx.random.seed(0)
    mod.init_params(init)
    arg_params, aux_params = mod.get_params()
    if variant == "fp32":
        model_obj = fastpath.InferenceModel(sym, arg_params, aux_params, data.shape)
    else:
        from mxnet.contrib.quantization import quantize_model_mkldnn

        from resnet_toolkit.quantize import Int8Executor

        calib = mx.io.NDArrayIter(mx.nd.random.uniform(0, 255, (2 * batch,) + shape), batch_size=batch)
        qsym, qarg, qaux = quantize_model_mkldnn(
            fastpath.strip_softmax(sym), arg_params, aux_params, label_names=(), ctx=mx.cpu(), calib_mode="naive",
            calib_data=calib, num_calib_examples=2 * batch, quantized_dtype="auto", quantize_mode="smart")
        model_obj = Int8Executor(qsym, qarg, qaux, data.shape)

    def step():
        model_obj.forward(data).wait_to_read()
    return step


def _gluoncv(model: str, batch: int, variant: str, what: str):
    return tp._build_gluoncv(model, batch, variant, what)


def run_server(spec: dict) -> int:
    """Worker entry: build every MXNet step of one cell, then serve (bench/throughput.py's protocol)."""
    if spec["configure"]:
        from resnet_toolkit import runtime
        runtime.configure()
    import resnet_toolkit  # noqa: F401  (numpy shim before mxnet)
    builders = {"ours": _ours, "gluoncv": _gluoncv}
    steps = {}
    for key in spec["keys"]:
        engine, variant = key.split("/")
        steps[key] = builders[engine](spec["model"], spec["batch"], variant, spec["what"])
    tp.serve(steps)
    return 0


TORCH_BUILDER = r"""
import copy, importlib.util, json, os, sys
import torch, torch.nn.functional as F
spec = json.loads(sys.argv[1])
if os.environ.get("OMP_NUM_THREADS"):
    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))
loader = importlib.util.spec_from_file_location("peer_torch", spec["peer"])
peer = importlib.util.module_from_spec(loader); loader.loader.exec_module(peer)
arch = {"resnet50_v2": (peer.Bottleneck, [3, 4, 6, 3], [64, 256, 512, 1024, 2048], True),
        "resnet101_v2": (peer.Bottleneck, [3, 4, 23, 3], [64, 256, 512, 1024, 2048], True),
        "cifar_resnet20_v2": (peer.Basic, [3, 3, 3], [16, 16, 32, 64], False),
        "cifar_resnet56_v2": (peer.Basic, [9, 9, 9], [16, 16, 32, 64], False)}[spec["model"]]
block, units, filters, imagenet = arch
classes, batch = spec["classes"], spec["batch"]
torch.manual_seed(0)
net = peer.PreActResNet(block, units, filters, classes, imagenet).to(memory_format=torch.channels_last)
x = (torch.rand([batch] + spec["shape"]) * 255).to(memory_format=torch.channels_last)
y = torch.arange(batch) % classes
steps = {}
if spec["what"] == "train":
    net.train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9, weight_decay=1e-4)
    def make(bf16):
        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(net(x), y)
            loss.backward(); opt.step()
        return step
    steps = {"torch/fp32": make(False), "torch/bf16": make(True)}
else:
    net.eval()
    def fp32():
        with torch.inference_mode():
            net(x)
    steps["torch/fp32"] = fp32
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import convert_fx, prepare_fx
    torch.backends.quantized.engine = "x86"
    prepared = prepare_fx(copy.deepcopy(net), get_default_qconfig_mapping("x86"), (x,))
    with torch.inference_mode():
        prepared(x); prepared(x)  # calibration: 2 random batches, as ours
    qnet = convert_fx(prepared)
    def int8():
        with torch.inference_mode():
            qnet(x)
    steps["torch/int8"] = int8
serve(steps)
"""


def run_kernel_step(spec: dict) -> int:
    """Worker entry for ``--kernels``: build one MXNet step, run it twice (primitives created), print a marker,
    run it once more: the oneDNN verbose lines after the marker are one step's kernels."""
    import resnet_toolkit  # noqa: F401  (numpy shim before mxnet)
    engine, variant = spec["key"].split("/")
    step = {"ours": _ours, "gluoncv": _gluoncv}[engine](spec["model"], spec["batch"], variant, spec["what"])
    step()
    step()
    print("KERNELS-START", flush=True)
    step()
    return 0


def kernel_tally(lines) -> dict[tuple[str, str, str, str], list[float]]:
    """``dnnl_verbose,exec,...`` lines -> (primitive, implementation, propagation, source dtype) -> [calls, ms]."""
    tally: dict[tuple[str, str, str, str], list[float]] = {}
    for line in lines:
        if not line.startswith("dnnl_verbose,exec,cpu,"):
            continue
        fields = line.strip().split(",")
        primitive, impl, prop, mds = fields[3], fields[4], fields[5], fields[6]
        src = mds.split()[0].split("::")[0].split("_")[-1] if mds else "?"  # 'src_bf16::blocked..' -> 'bf16'
        entry = tally.setdefault((primitive, impl, prop, src), [0, 0.0])
        entry[0] += 1
        entry[1] += float(fields[-1])
    return tally


def show_kernels(model: str, batch: int, what: str, args: argparse.Namespace, env: dict, top: int = 8) -> str:
    """One step of every MXNet engine of the cell under ``DNNL_VERBOSE=1``: its most expensive kernels."""
    import subprocess

    out = []
    for key in mx_keys(what, args.engines):
        spec = {"model": model, "batch": batch, "what": what, "key": key}
        proc = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--kernel-step", json.dumps(spec)],
                              capture_output=True, text=True, env={**env, "DNNL_VERBOSE": "1"}, timeout=600)
        lines = proc.stdout.split("KERNELS-START", 1)[-1].splitlines()
        tally = kernel_tally(lines)
        total = sum(ms for _, ms in tally.values()) or float("nan")
        out += [f"**{model} bs{batch} {what} {key}**: oneDNN kernels of one step ({total:.1f} ms in primitives)",
                "", "| primitive | implementation | pass | src | calls | ms | share |", "|---|---|---|---|---|---|---|"]
        for (prim, impl, prop, src), (calls, ms) in sorted(tally.items(), key=lambda kv: -kv[1][1])[:top]:
            out.append(f"| {prim} | {impl} | {prop} | {src} | {calls} | {ms:.1f} | {100 * ms / total:.0f} % |")
        out.append("")
    return "\n".join(out)


# ---------------------------------------------------------------- orchestration

def start_servers(model: str, batch: int, what: str, args: argparse.Namespace, env: dict) -> list:
    servers = []
    keys = mx_keys(what, args.engines)
    if keys:
        spec = {"model": model, "batch": batch, "what": what, "keys": keys, "configure": not args.threads}
        servers.append(tp.Server([sys.executable, str(Path(__file__).resolve()), "--serve", json.dumps(spec)],
                                 keys, env))
    if "torch" in args.engines and args.torch_python:
        shape, classes = tp.model_shape(model)
        spec = {"peer": str(tp.PEERS / "peer_torch.py"), "model": model, "batch": batch, "what": what,
                "shape": list(shape), "classes": classes}
        servers.append(tp.Server([args.torch_python, "-c", inspect.getsource(tp.serve) + TORCH_BUILDER,
                                  json.dumps(spec)], torch_keys(what), env))
    return servers


def ratios(times: dict[str, list[float]], what: str) -> dict[str, float]:
    """``low|reference`` -> median over rounds of reference step time / low step time (img/s ratio)."""
    out = {}
    lows = [f"ours/{v}" for v in LOW[what]] + ["torch/bf16" if what == "train" else "torch/int8"]
    refs = ["ours/fp32", "gluoncv/fp32", "torch/fp32", "torch/bf16" if what == "train" else "torch/int8"]
    for low in lows:
        for ref in refs:
            if low != ref and low in times and ref in times and not (low.startswith("torch") and ref != "torch/fp32"):
                out[f"{low}|{ref}"] = round(statistics.median(r / x for x, r in zip(times[low], times[ref])), 3)
    return out


def format_table(rows: dict, ratio: dict) -> str:
    lines = []
    for (model, batch, what), cells in rows.items():
        lines += [f"**{model} bs{batch} {what}** (img/s; p50/p90 ms)", "",
                  "| engine | img/s | p50/p90 ms | ÷ ours fp32 | ÷ gluoncv fp32 | ÷ torch fp32 | ÷ torch low |",
                  "|---|---|---|---|---|---|---|"]
        low_torch = "torch/bf16" if what == "train" else "torch/int8"
        for key, c in cells.items():
            r = ratio[(model, batch, what)]
            vals = [r.get(f"{key}|{ref}") for ref in ("ours/fp32", "gluoncv/fp32", "torch/fp32", low_torch)]
            lines.append(f"| {key} | {c['img_s']:.2f} | {c['p50_ms']:.1f}/{c['p90_ms']:.1f} | "
                         + " | ".join("–" if v is None else f"{v:.2f}" for v in vals) + " |")
        lines.append("")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="precision.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--models", nargs="+", default=["cifar_resnet20_v2", "cifar_resnet56_v2", "resnet50_v2"])
    p.add_argument("--batches", nargs="+", type=int, default=None,
                   help="batch sizes (default: train 128 cifar / 8 imagenet; infer 1 32)")
    p.add_argument("--what", nargs="+", choices=("train", "infer"), default=["train", "infer"])
    p.add_argument("--engines", nargs="+", choices=ENGINES, default=list(ENGINES))
    p.add_argument("--seconds", type=float, default=4.0, help="timed seconds per engine and cell (after warm-up)")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps per engine and cell")
    p.add_argument("--min-steps", type=int, default=3, help="at least this many rounds")
    p.add_argument("--max-steps", type=int, default=200, help="at most this many rounds")
    p.add_argument("--torch-python", default=None, help="python of a venv with torch (peer_torch.py's nets)")
    p.add_argument("--threads", type=int, default=None, help="one OpenMP/intra-op thread count for every engine")
    p.add_argument("--json", type=Path, default=None, help="write every cell, step time and ratio here")
    p.add_argument("--kernels", action="store_true",
                   help="also list, per cell and MXNet engine, the oneDNN kernels of one step (DNNL_VERBOSE=1)")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--kernel-step", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from resnet_toolkit.errors import UserError
    from symbols import parse_model_name

    args = parse_args(argv)
    if args.serve:
        return run_server(json.loads(args.serve))
    if args.kernel_step:
        return run_kernel_step(json.loads(args.kernel_step))
    for model in args.models:
        parse_model_name(model)
    if args.torch_python and not Path(args.torch_python).exists():
        raise UserError(f"--torch-python {args.torch_python}: no such file")
    env = {**os.environ}
    env.pop("OMP_NUM_THREADS", None)
    env.pop("MXNET_CPU_WORKER_NTHREADS", None)
    env["MXNET_SUBGRAPH_VERBOSE"] = "0"
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    raw, ratio = {}, {}
    for what in args.what:
        for model in args.models:
            kind = "cifar" if model.startswith("cifar_") else "imagenet"
            for batch in args.batches or DEFAULT_BATCHES[(kind, what)]:
                t0 = time.perf_counter()
                try:
                    raw[(model, batch, what)] = tp.time_cell(model, batch, what, args, env, start=start_servers)
                except RuntimeError as exc:
                    print(f"{model} bs{batch} {what}: {exc}", file=sys.stderr)
                    continue
                ratio[(model, batch, what)] = ratios(raw[(model, batch, what)], what)
                summary = ", ".join(f"{k} {batch * len(t) / sum(t):.2f}" for k, t in raw[(model, batch, what)].items())
                print(f"{model} bs{batch} {what}: {summary} img/s ({time.perf_counter() - t0:.0f} s, "
                      f"load {os.getloadavg()[0]:.1f})", file=sys.stderr, flush=True)
    rows = {key: {k: tp.summarize(t, key[1]) for k, t in cells.items() if t} for key, cells in raw.items()}
    print(format_table(rows, ratio))
    if args.kernels:
        for model, batch, what in raw:
            print(show_kernels(model, batch, what, args, env))
    if args.json:
        from resnet_toolkit.capability import probe
        from resnet_toolkit.fileio import atomic_write_text
        from resnet_toolkit.precision import cpu_flags

        report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "threads": args.threads,
                  "onednn_isa": probe().isa_words(), "native_bf16": probe().native_bf16,
                  "vnni": "avx512_vnni" in cpu_flags(),
                  "loadavg_end": os.getloadavg(),
                  "cells": [{"model": m, "batch": b, "what": w, "engine": k, **c}
                            for (m, b, w), cells in rows.items() for k, c in cells.items()],
                  "step_seconds": [{"model": m, "batch": b, "what": w, "engine": k, "times": [round(x, 5) for x in t]}
                                   for (m, b, w), cells in raw.items() for k, t in cells.items()],
                  "ratios": {f"{m}|{b}|{w}|{k}": v for (m, b, w), r in ratio.items() for k, v in r.items()}}
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    from resnet_toolkit.errors import run_cli
    run_cli(main)
