"""How close a training step's convolutions run to this core's float32 peak: the ceiling on any speed-up.

One training step of ``--model`` at ``--batch`` (this project's training graph, as ``train_resnet.py`` runs it) is
run under ``DNNL_VERBOSE=1``; its oneDNN convolution kernels are summed per pass (forward, backward data, backward
weights) and their multiply-adds (:func:`symbols.complexity.model_complexity`, ``conv_macs``: each pass does the
forward's count once) turned into GFLOP/s (2 FLOPs a multiply-add). Beside them, the rate oneDNN reaches on one
large float32 matrix product (``FullyConnected``, ``--gemm`` cubed, its gemm kernel): the practical peak of the core
at the ISA oneDNN runs. A pass at 90 % of that rate cannot get much faster by any implementation that computes the
same convolution directly. Threads: ``OMP_NUM_THREADS`` (set it to the thread count of the step you compare).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.conv_efficiency --json bench/results/avx2-epyc/conv-efficiency.json
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from bench.throughput import step_kernels

PASSES = ("forward_training", "backward_data", "backward_weights")


def gemm_gflops(n: int, repeats: int = 5) -> float:
    """Best-of-``repeats`` GFLOP/s of oneDNN's float32 ``FullyConnected`` on (n, n) x (n, n)^T, no bias."""
    import mxnet as mx

    data = mx.nd.random.uniform(-1, 1, shape=(n, n))
    weight = mx.nd.random.uniform(-1, 1, shape=(n, n))
    mx.nd.FullyConnected(data, weight, no_bias=True, num_hidden=n).wait_to_read()  # primitive created
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        mx.nd.FullyConnected(data, weight, no_bias=True, num_hidden=n).wait_to_read()
        best = min(best, time.perf_counter() - t)
    return 2 * n ** 3 / best / 1e9


def conv_pass_times(model: str, batch: int) -> dict[str, tuple[int, float]]:
    """Pass -> (kernel calls, ms) of the convolutions of one training step (after two untimed steps)."""
    tally = step_kernels(model, batch, "train", "ours/fp32", dict(os.environ))
    out: dict[str, tuple[int, float]] = {}
    for (prim, _impl, prop, _src), (calls, ms) in tally.items():
        if prim == "convolution" and prop in PASSES:
            c, m = out.get(prop, (0, 0.0))
            out[prop] = (c + calls, m + ms)
    all_ms = sum(ms for _calls, ms in tally.values())
    out["all primitives"] = (sum(int(calls) for calls, _ in tally.values()), all_ms)
    return out


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="conv_efficiency.py", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="cifar_resnet20_v2")
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--gemm", type=int, default=2048, help="size of the square matrix product timed for the peak")
    p.add_argument("--json", default=None, help="also write the figures here")
    args = p.parse_args(argv)

    from resnet_toolkit.capability import cpu_model, probe
    from symbols.complexity import model_complexity

    gflop_per_pass = 2 * model_complexity(args.model).conv_macs * args.batch / 1e9
    peak = gemm_gflops(args.gemm)
    passes = conv_pass_times(args.model, args.batch)
    threads = os.environ.get("OMP_NUM_THREADS", "default")
    print(f"{cpu_model()}; oneDNN runs {probe().isa_words()}; OMP_NUM_THREADS={threads}")
    print(f"{args.model} batch {args.batch}: {gflop_per_pass:.2f} GFLOP of convolution a pass; "
          f"oneDNN float32 gemm ({args.gemm}^3): {peak:.1f} GFLOP/s\n")
    print("| pass | calls | ms | GFLOP/s | ÷ gemm rate |\n|---|---|---|---|---|")
    rows = []
    for name in PASSES:
        calls, ms = passes.get(name, (0, float("nan")))
        rate = gflop_per_pass / (ms / 1e3)
        rows.append({"pass": name, "calls": calls, "ms": round(ms, 2), "gflop_s": round(rate, 1),
                     "of_gemm": round(rate / peak, 3)})
        print(f"| {name} | {calls} | {ms:.1f} | {rate:.1f} | {rate / peak:.2f} |")
    conv_ms = sum(passes.get(name, (0, 0.0))[1] for name in PASSES)
    total = passes["all primitives"][1]
    print(f"\nconvolutions {conv_ms:.1f} ms of {total:.1f} ms in oneDNN primitives ({100 * conv_ms / total:.0f} %)")
    if args.json:
        from resnet_toolkit.fileio import atomic_write_text
        report = {"date": time.strftime("%Y-%m-%d"), "command": " ".join(sys.argv), "cpu": cpu_model(),
                  "onednn_isa": probe().isa_words(), "threads": threads, "model": args.model, "batch": args.batch,
                  "conv_gflop_per_pass": round(gflop_per_pass, 3), "gemm_gflop_s": round(peak, 1), "passes": rows,
                  "conv_ms": round(conv_ms, 2), "primitives_ms": round(total, 2)}
        atomic_write_text(args.json, json.dumps(report, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
