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


def parse_gpus(text: str) -> list[int]:
    """``'0,1'`` -> ``[0, 1]``; ``''`` -> ``[]``. A clear error for anything else, or for a GPU that is absent."""
    text = (text or "").strip()
    if not text:
        return []
    try:
        ids = [int(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise UserError(f"--gpus must be comma-separated GPU ids like '0,1', got {text!r}") from None
    if any(i < 0 for i in ids) or len(set(ids)) != len(ids):
        raise UserError(f"--gpus must list distinct non-negative ids, got {text!r}")
    import mxnet as mx

    try:
        available = mx.context.num_gpus()
    except mx.base.MXNetError:
        available = 0
    missing = [i for i in ids if i >= available]
    if missing:
        seen = f"MXNet sees {available} GPU(s)" if available else "MXNet sees no GPU (CPU build or no CUDA device)"
        raise UserError(f"--gpus {text}: no GPU {missing[0]} on this machine; {seen}; omit --gpus to train on CPU")
    return ids
