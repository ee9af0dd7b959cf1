"""Process-level MXNet settings for speed on CPU, none of which changes a result.

Call :func:`configure` at the top of an entry point, before the first ``import mxnet`` (OpenMP and MXNet's engine
read their variables once, when the library loads). A variable the user already set is left alone, so every
setting can be overridden from the shell. The measurements behind each value are in bench/RESULTS.md ("Speed").
"""
from __future__ import annotations

import os
import sys

# read once when libmxnet / libgomp load: setting them later has no effect (and would only leak into children)
LOAD_TIME = ("OMP_NUM_THREADS", "MXNET_CPU_WORKER_NTHREADS")


def physical_cores() -> int:
    """CPUs this process may run on (its affinity mask), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def omp_threads(cores: int) -> int:
    """OpenMP threads for MXNet's kernels on a machine with ``cores`` usable CPUs: all of them.

    MXNet 1.9's own default on x86 is half the logical CPUs (it assumes hyper-threads): 1 on a 2-vCPU box, where 2
    threads trained CIFAR ResNet-20 1.9x faster (bench/RESULTS.md, "Speed"). On a machine that other jobs keep busy,
    an OpenMP team waits at every barrier for its slowest thread (measured 3-4x slower at load 6-8 on 2 cores):
    set ``OMP_NUM_THREADS=1`` there yourself; a value already in the environment is never replaced.
    """
    return max(1, cores)


def recommended_settings() -> dict[str, str]:
    """The environment variables :func:`configure` sets, with their values for this machine now."""
    return {
        "OMP_NUM_THREADS": str(omp_threads(physical_cores())),
        # MXNet's engine: one CPU worker thread issuing ops (each op is itself OpenMP-parallel)
        "MXNET_CPU_WORKER_NTHREADS": "1",
        # no "Subgraph backend MKLDNN is activated" line for every inference executor
        "MXNET_SUBGRAPH_VERBOSE": "0",
    }


def configure(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Set each of :func:`recommended_settings` (updated by ``overrides``) in ``os.environ`` unless already set.

    Returns the variables it set, with their values. Called after MXNet was imported (a test calling a CLI's
    ``main`` in-process), it leaves the load-time variables (:data:`LOAD_TIME`) alone.
    """
    applied = {}
    loaded = "mxnet" in sys.modules
    for key, value in {**recommended_settings(), **(overrides or {})}.items():
        if key not in os.environ and not (loaded and key in LOAD_TIME):
            os.environ[key] = value
            applied[key] = value
    return applied
