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


def omp_threads(cores: int, load: float) -> int:
    """OpenMP threads for MXNet's kernels on ``cores`` CPUs with a 1-minute load average of ``load``.

    All cores while other processes keep fewer than all of them busy (``load < cores``); one thread beyond. An
    OpenMP team waits at every barrier for its slowest thread, so on an oversubscribed machine a descheduled
    thread stalls every op. Measured on the 2-core box (bench/RESULTS.md, "Speed"): CIFAR ResNet-20 training with 2
    threads vs 1 ran 1.9x faster at load ~2, but 3-4x slower at load 6-8. MXNet 1.9's own default on x86 is half
    the logical CPUs (it assumes hyper-threads): 1 on a 2-vCPU box.
    """
    return max(1, cores) if load < cores else 1


def recommended_settings() -> dict[str, str]:
    """The environment variables :func:`configure` sets, with their values for this machine now."""
    cores = physical_cores()
    try:
        load = os.getloadavg()[0]
    except OSError:
        load = 0.0
    return {
        "OMP_NUM_THREADS": str(omp_threads(cores, load)),
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
