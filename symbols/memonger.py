"""Sublinear-memory training: choose which activations to keep and recompute the rest in the backward pass.

The method is Chen, Xu, Zhang and Guestrin, "Training Deep Nets with Sublinear Memory Cost" (2016): walk the
graph in topological order, accumulate the size of every operator's output since the last kept one, and at a
candidate split point keep its output when the accumulated size exceeds a budget; everything else is recomputed
from the nearest kept outputs when the backward pass needs it. The search tries budgets and keeps the plan whose
memory, as MXNet's executor plans it, is smallest.

MXNet 1.9.1 recomputes a node when its ``force_mirroring`` attribute is ``'True'`` (stored as
``__force_mirroring__`` and read by the graph executor's gradient pass; Symbol / ``mx.mod.Module`` path only,
Gluon's ``hybridize`` ignores it). Nothing else is needed to honour a plan; ``MXNET_BACKWARD_DO_MIRROR`` must stay
unset, it overrides the plan and makes it worse (``../shared/notes/memonger-probe.md``).

Candidate split points are the graph's cut points (an operator output that every path from the input to the loss
passes through: in a ResNet, each unit's sum). When the Symbol carries ``mirror_stage='True'`` hints (as
:func:`symbols.resnet_v2.get_symbol` does with ``memonger=True``), only hinted cut points are candidates; a hint on
a node that is not a cut point (a projection shortcut) is ignored, since keeping it bounds no recomputation. The
post-activation families (:mod:`symbols.resnet_v1`) hint each unit's output, the ReLU after its sum.

Planned memory is the executor's own figure: ``debug_str()``'s ``Total N MB allocated``, the memory pool MXNet
allocates at bind for every activation and every intermediate gradient (after its in-place and sharing plan). It
excludes parameters, their gradients, auxiliary states, inputs and temporary workspace, which no plan changes;
:func:`memory_report` adds those from the inferred shapes.
"""
from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from .errors import UserError

MB = 1 << 20
_TOTAL = re.compile(r"^Total (\d+) MB allocated$", re.MULTILINE)
_OUTPUT = re.compile(r"^(.*)_output\d*$")
_FORCE = "__force_mirroring__"
_HINT = "__mirror_stage__"

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Graph:
    """The Symbol's JSON with the output bytes of every operator node (variables: 0), in topological order."""

    doc: dict
    nbytes: tuple[int, ...]

    @property
    def nodes(self) -> list[dict]:
        return self.doc["nodes"]

    def is_op(self, i: int) -> bool:
        return self.nodes[i]["op"] != "null"


@dataclass(frozen=True)
class Plan:
    """One mirror plan: the operators whose outputs are kept at split points; every other operator is recomputed.

    ``kept_mb``: bytes kept at split points / 2**20; ``max_segment_mb``: the largest run of outputs between two
    kept points (what one recomputation holds at once), / 2**20. ``budget_mb`` is the budget that produced it.
    """

    budget_mb: float
    kept: tuple[str, ...]
    kept_mb: float
    max_segment_mb: float


@dataclass(frozen=True)
class MemoryReport:
    """Memory of a Symbol bound for training (``grad_req='write'``) at given input shapes, MB (2**20 bytes).

    ``planned_mb``: the executor's pool for activations and intermediate gradients (``Total N MB allocated``);
    ``arrays_mb``: arguments (parameters and inputs), their gradients and auxiliary states, from inferred shapes.
    """

    planned_mb: int
    arrays_mb: float

    @property
    def total_mb(self) -> float:
        return self.planned_mb + self.arrays_mb


def _infer(sym: mx.sym.Symbol, input_shapes: dict, type_dict: dict | None):
    """(internals, output shapes, output dtypes) with a clear error for shapes that do not fit the network."""
    internals = sym.get_internals()
    types = type_dict or {name: np.float32 for name in input_shapes}
    try:
        _, out_shapes, _ = internals.infer_shape(**input_shapes)
        _, out_types, _ = internals.infer_type(**types)
    except mx.base.MXNetError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "shape inference failed"
        raise UserError(f"input shapes {input_shapes} do not fit the network: {first}") from None
    if out_shapes is None or any(s is None for s in out_shapes):
        raise UserError(f"input shapes {input_shapes} leave some shapes unknown; give every input's shape")
    return internals, out_shapes, out_types


def _graph(sym: mx.sym.Symbol, input_shapes: dict, type_dict: dict | None) -> _Graph:
    internals, out_shapes, out_types = _infer(sym, input_shapes, type_dict)
    per_node: dict[str, int] = {}
    for name, shape, dtype in zip(internals.list_outputs(), out_shapes, out_types):
        match = _OUTPUT.match(name)
        if match:
            per_node[match.group(1)] = per_node.get(match.group(1), 0) + int(np.prod(shape)) * np.dtype(dtype).itemsize
    doc = json.loads(sym.tojson())
    nbytes = tuple(per_node.get(n["name"], 0) if n["op"] != "null" else 0 for n in doc["nodes"])
    return _Graph(doc, nbytes)


def cut_points(graph: _Graph) -> list[int]:
    """Indices of operator nodes that split the graph: no edge between operators jumps over them.

    In topological order, node ``i`` is a cut point when no operator before it is still needed after it. Keeping
    such a node's output is enough to recompute everything after it without reaching further back.
    """
    last_use = {}
    for j, node in enumerate(graph.nodes):
        for src, _, _ in node.get("inputs", []):
            if graph.is_op(src):
                last_use[src] = j
    cuts, reach = [], -1
    for i in range(len(graph.nodes)):
        if not graph.is_op(i):
            continue
        if reach <= i and i in last_use:
            cuts.append(i)
        reach = max(reach, last_use.get(i, -1))
    return cuts


def candidates(graph: _Graph) -> list[int]:
    """Split points the planner may keep: hinted cut points when the Symbol has ``mirror_stage`` hints, else all."""
    cuts = cut_points(graph)
    hinted = [i for i in cuts if graph.nodes[i].get("attrs", {}).get(_HINT) == "True"]
    has_hints = any(n.get("attrs", {}).get(_HINT) == "True" for n in graph.nodes)
    return hinted if has_hints else cuts


def plan_for_budget(graph: _Graph, split_points: list[int], budget_mb: float) -> Plan:
    """The paper's greedy pass: keep a split point once the outputs accumulated since the last kept one exceed
    ``budget_mb`` (MB); return the kept node names with the kept bytes and the largest segment (MB)."""
    split = set(split_points)
    budget = budget_mb * MB
    kept, kept_bytes, segment, max_segment = [], 0, 0, 0
    for i in range(len(graph.nodes)):
        if not graph.is_op(i):
            continue
        segment += graph.nbytes[i]
        if i in split and segment > budget:
            kept.append(graph.nodes[i]["name"])
            kept_bytes += graph.nbytes[i]
            max_segment = max(max_segment, segment)
            segment = 0
    max_segment = max(max_segment, segment)
    return Plan(budget_mb, tuple(kept), kept_bytes / MB, max_segment / MB)


# Operators whose gradient needs none of their inputs' values (only the output gradient).
_GRAD_IGNORES_INPUTS = frozenset({"elemwise_add", "_plus", "_Plus", "ElementWiseSum", "add_n", "_grad_add"})


def mkldnn_active() -> bool:
    """Whether MXNet runs its CPU operators through MKLDNN (the CPU wheel's default; never on a GPU build)."""
    return mx.runtime.Features().is_enabled("MKLDNN") and os.environ.get("MXNET_MKLDNN_ENABLED", "1") != "0"


def apply_plan(sym: mx.sym.Symbol, kept: tuple[str, ...] | list[str] | None,
               mirror_unread: bool | None = None) -> mx.sym.Symbol:
    """A copy of ``sym`` where operators recompute (``force_mirroring='True'``) except those in ``kept``
    (``'False'``). ``kept=None`` gives a copy with no mirroring at all. ``sym`` itself is left unchanged.

    An operator consumed only by kept operators whose gradient ignores their inputs (a kept unit sum's two
    operands) has an output the backward pass never reads; MXNet still recomputes it when mirrored, for its
    gradient's control dependency alone, with nowhere to write. MKLDNN's convolution accepts that (and the plan
    needs less memory); MXNet's own and cuDNN's fail (``req[conv::kOut] == kWriteTo``). ``mirror_unread`` None
    mirrors such operators only where MKLDNN runs (:func:`mkldnn_active`).
    """
    if mirror_unread is None:
        mirror_unread = mkldnn_active()
    doc = json.loads(sym.tojson())
    keep = set(kept or ())
    nodes = doc["nodes"]
    consumers: dict[int, list[dict]] = {}
    for node in nodes:
        for src, _, _ in node.get("inputs", []):
            consumers.setdefault(src, []).append(node)
    for i, node in enumerate(nodes):
        attrs = node.get("attrs", {})
        attrs.pop(_FORCE, None)
        if node["op"] != "null" and kept is not None:
            unread = not mirror_unread and bool(consumers.get(i)) and all(
                c["name"] in keep and c["op"] in _GRAD_IGNORES_INPUTS for c in consumers[i])
            attrs[_FORCE] = "False" if node["name"] in keep or unread else "True"
        if attrs:
            node["attrs"] = attrs
    return mx.sym.load_json(json.dumps(doc))


def planned_memory_mb(sym: mx.sym.Symbol, type_dict: dict | None = None, **input_shapes) -> int:
    """MB (2**20 bytes) that MXNet's executor allocates for activations and intermediate gradients when ``sym``
    is bound for training (``grad_req='write'``) at ``input_shapes`` (e.g. ``data=(64, 3, 32, 32)``).

    Read from the executor's ``debug_str()`` (``Total N MB allocated``, truncated to whole MB). Binding on the CPU
    reserves this memory without touching it, so asking costs little resident memory.
    """
    _infer(sym, input_shapes, type_dict)
    executor = sym.simple_bind(mx.cpu(), grad_req="write", type_dict=type_dict, **input_shapes)
    found = _TOTAL.search(executor.debug_str())
    del executor
    if not found:
        raise RuntimeError("MXNet's executor debug_str() has no 'Total N MB allocated' line")
    return int(found.group(1))


def memory_report(sym: mx.sym.Symbol, type_dict: dict | None = None, **input_shapes) -> MemoryReport:
    """:func:`planned_memory_mb` plus the arrays no plan changes: arguments, their gradients, auxiliary states."""
    arg_shapes, _, aux_shapes = sym.infer_shape(**input_shapes)
    arrays = 2 * sum(int(np.prod(s)) for s in arg_shapes) + sum(int(np.prod(s)) for s in aux_shapes)
    return MemoryReport(planned_memory_mb(sym, type_dict=type_dict, **input_shapes), arrays * 4 / MB)


def search_plan(sym: mx.sym.Symbol, ntrial: int = 6, type_dict: dict | None = None,
                **input_shapes) -> mx.sym.Symbol:
    """A copy of ``sym`` with the mirror attributes of the plan that MXNet's executor allocates least for.

    ``input_shapes``: every input's shape at the per-device batch, e.g. ``data=(64, 3, 32, 32)``. Budgets (MB of
    outputs between kept points) are tried on a log grid from the smallest segment to the whole graph, then
    ``ntrial`` more between the best one's neighbours; each distinct plan is bound once to read its planned memory.
    The network without mirroring competes too: when no plan saves memory (a tiny network) the copy returned has
    no mirroring, so it trains exactly as ``sym`` does. The arithmetic is unchanged either way.
    """
    graph = _graph(sym, input_shapes, type_dict)
    split = candidates(graph)
    baseline = planned_memory_mb(apply_plan(sym, None), type_dict=type_dict, **input_shapes)
    log.info("memonger: %d split points, no plan: %d MB", len(split), baseline)
    if not split:
        return apply_plan(sym, None)

    measured: dict[tuple[str, ...], tuple[int, Plan]] = {}

    def trial(budget_mb: float) -> int:
        plan = plan_for_budget(graph, split, budget_mb)
        if plan.kept not in measured:
            cost = planned_memory_mb(apply_plan(sym, plan.kept), type_dict=type_dict, **input_shapes)
            measured[plan.kept] = (cost, plan)
            log.info("memonger: budget %.1f MB keeps %d: planned %d MB", budget_mb, len(plan.kept), cost)
        return measured[plan.kept][0]

    total_mb = sum(graph.nbytes) / MB
    low = max(plan_for_budget(graph, split, 0.0).max_segment_mb, 1e-3)
    grid = np.geomspace(low / 2, max(total_mb, low), num=max(ntrial, 2) * 2)
    costs = [trial(float(b)) for b in grid]
    best = int(np.argmin(costs))
    lo, hi = grid[max(best - 1, 0)], grid[min(best + 1, len(grid) - 1)]
    for b in np.geomspace(lo, hi, num=ntrial + 2)[1:-1]:
        trial(float(b))

    # Least memory; among equals the plan keeping more (less recomputation).
    cost, plan = min(measured.values(), key=lambda cp: (cp[0], -len(cp[1].kept)))
    if cost >= baseline:
        log.info("memonger: no plan below %d MB; returning the network without mirroring", baseline)
        return apply_plan(sym, None)
    log.info("memonger: best budget %.1f MB keeps %d of %d split points: %d MB (no plan: %d MB, %.1fx less)",
             plan.budget_mb, len(plan.kept), len(split), cost, baseline, baseline / max(cost, 1))
    return apply_plan(sym, plan.kept)

