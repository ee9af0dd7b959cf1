"""Where a training run computes: its kvstore, rank and worker count, and its device contexts."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from resnet_toolkit.errors import UserError


@dataclass
class Cluster:
    """The kvstore (None when one context on one machine needs none), this worker's rank and the worker count.

    Everything distributed depends on these three: the data partition (``num_parts=num_workers``,
    ``part_index=rank``), the gradient scale (``1 / (batch_size * num_workers)`` for dist_sync) and the
    checkpoint prefix's rank suffix.
    """

    kv: Any
    rank: int = 0
    num_workers: int = 1


def make_cluster(kv_store: str, num_contexts: int) -> Cluster:
    """Create the kvstore for ``--kv-store`` and ``num_contexts`` devices (the one place that does)."""
    import mxnet as mx

    if "dist" not in kv_store and num_contexts == 1:
        return Cluster(None)
    try:
        kv = mx.kv.create(kv_store)
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "unknown error"
        raise UserError(f"--kv-store {kv_store}: cannot create it ({first})") from None
    return Cluster(kv, kv.rank, kv.num_workers)


def make_contexts(gpu_ids: list[int], cpus: int) -> list:
    """``mx.gpu(i)`` for each id in ``gpu_ids``; without GPUs ``cpus`` CPU contexts (data parallelism on CPU)."""
    import mxnet as mx

    if gpu_ids:
        return [mx.gpu(i) for i in gpu_ids]
    return [mx.cpu(i) for i in range(cpus)]

