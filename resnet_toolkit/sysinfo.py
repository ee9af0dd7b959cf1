"""What this machine runs, for bug reports: ``python -m resnet_toolkit.sysinfo`` (``--json`` for a record).

Prints Python, numpy and MXNet versions, MXNet's build features, the CPU and its vector extensions as the kernel
reports them, the oneDNN version and the ISA oneDNN actually runs (capped by ``DNNL_MAX_CPU_ISA`` when set), and
which of the project's ISA-dependent features work here (:mod:`resnet_toolkit.capability`), with the reason for
each that does not.
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import sys
from dataclasses import asdict

from resnet_toolkit.capability import FEATURES, cpu_model, probe
from resnet_toolkit.precision import cpu_flags

VECTOR_FLAGS = ("avx2", "fma", "avx512f", "avx512bw", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16",
                "amx_int8")
# What each feature means for a user, in one phrase.
USES = {"bfloat16": "train with --dtype bfloat16",
        "int8": "tools/quantize.py and --int8 inference",
        "fused_bn_relu_beside_grouped_conv": "the fused BN+ReLU beside ResNeXt's grouped convolutions (training)"}


def above_avx2(isa: str) -> bool:
    """Whether oneDNN's ISA line (e.g. 'Intel AVX-512 with Intel DL Boost') names more than AVX2."""
    return any(word in isa for word in ("AVX-512", "AVX512", "AMX"))


def collect() -> dict:
    """Everything printed, as one dict."""
    import mxnet as mx
    import numpy as np

    caps = probe()
    flags = cpu_flags()
    return {
        "python": platform.python_version(), "platform": platform.platform(), "numpy": np.__version__,
        "mxnet": mx.__version__,
        "mxnet_features": sorted(f.name for f in mx.runtime.Features().values() if f.enabled),
        "cpu": cpu_model(), "cores": os.cpu_count(),
        "cpu_flags": [f for f in VECTOR_FLAGS if f in flags],
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS", ""),
        **{f"onednn_{k}": v for k, v in asdict(caps).items() if k not in ("features", "errors")},
        "features": caps.features, "errors": caps.errors,
    }


def format_report(info: dict) -> str:
    lines = [f"python        {info['python']} ({info['platform']})",
             f"numpy         {info['numpy']}",
             f"mxnet         {info['mxnet']}  built with: {', '.join(info['mxnet_features'])}",
             f"cpu           {info['cpu']}, {info['cores']} logical cores; "
             f"{' '.join(info['cpu_flags']) or 'no AVX2/AVX-512'}",
             f"oneDNN        {info['onednn_onednn'] or 'unknown version'}, runs: {info['onednn_isa'] or 'unknown'}"
             + (f" (DNNL_MAX_CPU_ISA={info['onednn_max_cpu_isa']})" if info["onednn_max_cpu_isa"] else ""),
             f"OMP threads   {info['omp_num_threads'] or 'MXNet default'}",
             "features (tried on this machine):"]
    for name in FEATURES:
        mark = "yes" if info["features"].get(name) else "no "
        why = "" if info["features"].get(name) else f"  ({info['errors'].get(name, 'not available')})"
        lines.append(f"  {mark} {name:36s} {USES[name]}{why}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m resnet_toolkit.sysinfo", description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true", help="one JSON object instead of the report")
    parser.add_argument("--above-avx2", action="store_true",
                        help="print nothing; exit 0 when oneDNN runs an ISA above AVX2 here (AVX-512, AMX), else 1 "
                             "(.ci/run: whether a second run capped at DNNL_MAX_CPU_ISA=AVX2 tests anything new)")
    args = parser.parse_args(argv)
    if args.above_avx2:
        return 0 if above_avx2(probe().isa) else 1
    info = collect()
    print(json.dumps(info, indent=1) if args.json else format_report(info))
    return 0


if __name__ == "__main__":
    sys.exit(main())
