"""Faster inference (and a faster Gluon training set-up) for the ResNet-v2 networks, without changing results.

- :func:`fold_conv_bn`: a Symbol graph rewrite that folds every BatchNorm whose input is a Convolution used by
  nothing else into that convolution (weights scaled per output channel, a bias added). In the pre-activation
  unit this is ``bn2``/``bn3`` after ``conv1``/``conv2`` (``bn2`` after ``conv1`` in basic units) and ``bn0``
  after the ImageNet ``conv0``; ``bn1`` of a unit follows a sum and ``bn_data`` precedes a padded convolution, so
  neither folds exactly. In the post-activation families (v1b, ResNeXt, vd) every BN but ``bn_data`` follows a
  convolution and folds. Inference only: training normalises with batch statistics.
- :func:`fuse_mkldnn`: MXNet's MKLDNN subgraph pass (conv + BN + ReLU + sum fusion), ``optimize_for('MKLDNN')``.
- :class:`FusedExecutor`: both, bound once for a fixed input shape with inference-only (grad_req 'null') arrays.
- :func:`gluon_inference_block`: a Gluon net exported, folded, fused and re-wrapped as a static SymbolBlock.
- :func:`training_graph`: global-average pooling as ``mean`` and BN+ReLU as one op, for training (same
  parameters; the backward pass is faster).
- :func:`hybridize_for_training`: that graph for a Gluon net, with ``static_alloc``/``static_shape``.

Each is checked against the plain path by tests/test_fastpath.py (outputs within 1e-4 relative).
"""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np

from resnet_toolkit.errors import clear_failed_ops
from symbols.spec import CLASSIFIER


def _bn_scale_shift(gamma: np.ndarray, beta: np.ndarray, mean: np.ndarray, var: np.ndarray, eps: float,
                    fix_gamma: bool) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (scale, shift) with BN(x) = scale * x + shift, in float64 for an exact fold."""
    g = np.ones_like(gamma, dtype=np.float64) if fix_gamma else gamma.astype(np.float64)
    scale = g / np.sqrt(var.astype(np.float64) + eps)
    return scale, beta.astype(np.float64) - mean.astype(np.float64) * scale


_TRUE = ("True", "true", "1")


def _consumers(graph: dict) -> dict[int, int]:
    """How many inputs (and graph heads) read each node."""
    uses: dict[int, int] = {}
    for node in graph["nodes"]:
        for src, *_ in node["inputs"]:
            uses[src] = uses.get(src, 0) + 1
    for src, *_ in graph["heads"]:
        uses[src] = uses.get(src, 0) + 1
    return uses


def _rebuild(graph: dict, aliases: dict[int, int], edit=None) -> mx.sym.Symbol:
    """A Symbol from ``graph`` without the nodes in ``aliases`` (node id -> the node whose output 0 replaces it).

    ``edit(nid, node, new_nodes)`` may change a copied node in place and append new variable nodes before it.
    """
    nodes, new_nodes = graph["nodes"], []
    remap: dict[tuple[int, int], tuple[int, int]] = {}
    for nid, node in enumerate(nodes):
        if nid in aliases:
            remap[(nid, 0)] = remap[(aliases[nid], 0)]
            continue
        node = json.loads(json.dumps(node))
        node["inputs"] = [[*remap[(s, o)], *rest] for s, o, *rest in node["inputs"]]
        if edit is not None:
            edit(nid, node, new_nodes)
        new_nodes.append(node)
        for out in range(1 if node["op"] == "null" else 3):  # BN has 3 outputs; extra entries are harmless
            remap[(nid, out)] = (len(new_nodes) - 1, out)
    new_graph = {"nodes": new_nodes, "arg_nodes": [i for i, n in enumerate(new_nodes) if n["op"] == "null"],
                 "heads": [[*remap[(s, o)], *rest] for s, o, *rest in graph["heads"]],
                 "attrs": graph.get("attrs", {})}
    return mx.sym.load_json(json.dumps(new_graph))


def _single_output_bn(node: dict) -> bool:
    attrs = node.get("attrs", {})
    return (node["op"] == "BatchNorm" and attrs.get("output_mean_var", "False") not in _TRUE
            and attrs.get("axis", "1") == "1")


def fold_conv_bn(sym: mx.sym.Symbol, arg_params: dict, aux_params: dict
                 ) -> tuple[mx.sym.Symbol, dict, dict, list[str]]:
    """Fold every Convolution -> BatchNorm pair (the conv's output read by that BN only) into the convolution.

    Returns ``(symbol, arg_params, aux_params, folded_bn_names)``; the inputs are not modified. The folded
    convolution keeps its name, gains ``{conv}_bias`` and its weight is scaled per output channel; the BN's
    parameters are dropped. Parameters are NDArrays keyed by variable name (a Module checkpoint's dicts).
    """
    graph = json.loads(sym.tojson())
    nodes, uses = graph["nodes"], _consumers(graph)
    folds = {}  # bn node id -> conv node id
    for nid, node in enumerate(nodes):
        if _single_output_bn(node):
            src, out = node["inputs"][0][:2]
            if nodes[src]["op"] == "Convolution" and out == 0 and uses[src] == 1:
                folds[nid] = src
    arg_params, aux_params = dict(arg_params), dict(aux_params)
    conv_to_bn = {conv: bn for bn, conv in folds.items()}
    folded: list[str] = []

    def edit(nid: int, node: dict, new_nodes: list) -> None:
        if nid not in conv_to_bn:
            return
        bn = nodes[conv_to_bn[nid]]
        gamma, beta, mean, var = (nodes[s]["name"] for s, *_ in bn["inputs"][1:5])
        battrs = bn.get("attrs", {})
        scale, shift = _bn_scale_shift(
            arg_params.pop(gamma).asnumpy(), arg_params.pop(beta).asnumpy(),
            aux_params.pop(mean).asnumpy(), aux_params.pop(var).asnumpy(),
            float(battrs.get("eps", "0.001")), battrs.get("fix_gamma", "True") in _TRUE)
        weight_name = new_nodes[node["inputs"][1][0]]["name"]
        weight = arg_params[weight_name].asnumpy().astype(np.float64)
        arg_params[weight_name] = mx.nd.array((weight * scale[:, None, None, None]).astype(np.float32))
        attrs = node.setdefault("attrs", {})
        if attrs.get("no_bias", "False") in _TRUE:
            bias, bias_name = shift, node["name"] + "_bias"
            new_nodes.append({"op": "null", "name": bias_name, "inputs": []})
            node["inputs"].append([len(new_nodes) - 1, 0, 0])
            attrs["no_bias"] = "False"
        else:
            bias_name = new_nodes[node["inputs"][2][0]]["name"]
            bias = arg_params[bias_name].asnumpy().astype(np.float64) * scale + shift
        arg_params[bias_name] = mx.nd.array(bias.astype(np.float32))
        folded.append(bn["name"])

    return _rebuild(graph, folds, edit), arg_params, aux_params, folded


def training_graph(sym: mx.sym.Symbol, bn_relu: bool = True, mean_pool: bool = True,
                   beside_grouped: bool | None = None) -> tuple[mx.sym.Symbol, dict[str, int]]:
    """The same network with two graph rewrites measured faster for CPU training (identical parameters).

    - global average ``Pooling`` -> ``mean`` over (H, W) with keepdims: MXNet 1.9's pooling backward in a
      bound graph costs ~10% of a CIFAR ResNet-20 step (and slows the BN backward after it); ``mean`` is cheap;
    - ``BatchNorm`` -> ``Activation(relu)`` (the BN read by that ReLU only) -> ``_contrib_BatchNormWithReLU``,
      one MKLDNN primitive forward and backward, bit-identical to the pair (tested). Pairs that feed a
      non-global Pooling stay unfused (MXNet 1.9.1 failed in their backward); pairs beside a grouped convolution
      are fused only where oneDNN runs that backward (``beside_grouped``; default: asked of oneDNN once,
      :mod:`resnet_toolkit.capability`: oneDNN 2.4.4 cannot build it on AVX-512 and gets its gradients
      wrong on AVX2, so today they stay unfused everywhere).

    Returns ``(symbol, counts)`` with how many of each rewrite were made (``bn_relu``, ``mean_pool``; and
    ``bn_relu_beside_grouped_conv``, the pairs left unfused next to grouped convolutions, when there are any).
    Parameter and auxiliary-state names are unchanged, so checkpoints load into either graph.
    """
    graph = json.loads(sym.tojson())
    nodes, uses = graph["nodes"], _consumers(graph)
    means = {nid for nid, node in enumerate(nodes)
             if mean_pool and node["op"] == "Pooling" and node.get("attrs", {}).get("global_pool") in _TRUE
             and node.get("attrs", {}).get("pool_type", "max") == "avg"}
    # MXNet 1.9.1 fails ("could not create a primitive descriptor iterator") in the backward of a Pooling that
    # reads a fused BN+ReLU: leave the pairs that feed a remaining Pooling (ImageNet's pool0) unfused.
    feeds_pooling = {src for nid, node in enumerate(nodes) if node["op"] == "Pooling" and nid not in means
                     for src, *_ in node["inputs"]}
    # On some ISAs (AVX-512) it cannot build the backward of a fused BN+ReLU that reads or feeds a grouped
    # convolution with few channels per group (ResNeXt 32x4d's 4 and 8; the same error): leave those unfused there.
    grouped = {nid for nid, node in enumerate(nodes)
               if node["op"] == "Convolution" and int(node.get("attrs", {}).get("num_group", "1")) > 1}
    if grouped and beside_grouped is None:
        from resnet_toolkit.capability import probe

        beside_grouped = probe().supports("fused_bn_relu_beside_grouped_conv")
    if beside_grouped:
        grouped = set()
    feeds_grouped = {src for nid in grouped for src, *_ in nodes[nid]["inputs"]}
    relus = {}  # relu node id -> bn node id
    beside_grouped = 0
    for nid, node in enumerate(nodes):
        if nid in feeds_pooling:
            continue
        if node["op"] == "Activation" and node.get("attrs", {}).get("act_type") == "relu":
            src, out = node["inputs"][0][:2]
            if bn_relu and _single_output_bn(nodes[src]) and out == 0 and uses[src] == 1:
                if nid in feeds_grouped or nodes[src]["inputs"][0][0] in grouped:
                    beside_grouped += 1
                    continue
                relus[nid] = src
    fused_bns = set(relus.values())
    counts = {"bn_relu": len(relus), "mean_pool": len(means)}
    if beside_grouped:
        counts["bn_relu_beside_grouped_conv"] = beside_grouped  # left unfused

    def edit(nid: int, node: dict, new_nodes: list) -> None:
        if nid in fused_bns:
            node["op"] = "_contrib_BatchNormWithReLU"
        elif nid in means:
            node["op"], node["attrs"] = "mean", {"axis": "(2, 3)", "keepdims": "True"}

    return _rebuild(graph, relus, edit), counts


def fuse_mkldnn(sym: mx.sym.Symbol, arg_params: dict, aux_params: dict) -> mx.sym.Symbol:
    """MXNet's MKLDNN subgraph fusion (conv+BN+ReLU+sum, FC+...), for inference-bound executors only."""
    args = {**arg_params}
    return sym.optimize_for("MKLDNN", args=args, aux=dict(aux_params), ctx=mx.cpu())


def strip_softmax(sym: mx.sym.Symbol) -> mx.sym.Symbol:
    """The same graph ending in ``softmax`` (plain probabilities) instead of ``SoftmaxOutput``: no label input."""
    internals = sym.get_internals()
    if sym.name == "softmax" and f"{CLASSIFIER}_output" in internals.list_outputs():
        return mx.sym.softmax(internals[f"{CLASSIFIER}_output"], name="softmax")
    return sym


class FusedExecutor:
    """The fastest measured MXNet inference path for a fixed input shape: fold BN, fuse for MKLDNN, bind once.

    ``forward(data)`` takes an NDArray or numpy array of ``data_shape`` (N, C, H, W; raw RGB 0..255 for these
    networks) and returns the network's output NDArray (class probabilities for a ``softmax``-ending symbol).
    """

    def __init__(self, sym: mx.sym.Symbol, arg_params: dict, aux_params: dict, data_shape: tuple,
                 fold_bn: bool = True, fuse: bool = True, bn_relu: bool = True, ctx: mx.Context | None = None):
        clear_failed_ops()  # an earlier failed operation in this process must not surface in this model
        self.ctx = ctx or mx.cpu()
        sym = strip_softmax(sym)
        if fold_bn:
            sym, arg_params, aux_params, self.folded = fold_conv_bn(sym, arg_params, aux_params)
        else:
            self.folded = []
        if bn_relu:
            sym = training_graph(sym, mean_pool=False)[0]
        if fuse and self.ctx.device_type == "cpu":
            sym = fuse_mkldnn(sym, arg_params, aux_params)
        self.symbol, self.data_shape = sym, tuple(data_shape)
        args = {name: arg_params[name].as_in_context(self.ctx) for name in sym.list_arguments() if name != "data"}
        args["data"] = mx.nd.zeros(self.data_shape, ctx=self.ctx)
        aux = {name: aux_params[name].as_in_context(self.ctx) for name in sym.list_auxiliary_states()}
        self.executor = sym.bind(self.ctx, args=args, aux_states=aux, grad_req="null")

    def forward(self, data) -> mx.nd.NDArray:
        """Run one batch; returns the first output (shared buffer: copy it before the next call if kept)."""
        if tuple(data.shape) != self.data_shape:
            raise ValueError(f"input shape {tuple(data.shape)} != bound shape {self.data_shape}")
        self.executor.arg_dict["data"][:] = data
        return self.executor.forward(is_train=False)[0]


def gluon_inference_block(net: mx.gluon.HybridBlock, data_shape: tuple, fold_bn: bool = True,
                          fuse: bool = True) -> mx.gluon.SymbolBlock:
    """An inference-only SymbolBlock equal to ``net``: folded BN, MKLDNN fusion, static memory.

    ``net`` must be initialised; it is hybridized and run once on zeros of ``data_shape`` to trace its graph.
    """
    net.hybridize()
    net(mx.nd.zeros(data_shape))
    sym = net._cached_graph[1]
    data_name = net._cached_graph[0][0].name
    params = {p.var().name: p.data() for p in net.collect_params().values()}
    aux_names = set(sym.list_auxiliary_states())
    arg_params = {k: v for k, v in params.items() if k not in aux_names}
    aux_params = {k: v for k, v in params.items() if k in aux_names}
    if fold_bn:
        sym, arg_params, aux_params, _ = fold_conv_bn(sym, arg_params, aux_params)
    if fuse:
        sym = fuse_mkldnn(sym, arg_params, aux_params)
    block = mx.gluon.SymbolBlock(sym, mx.sym.var(data_name))
    for name, param in block.collect_params().items():
        param._load_init((arg_params.get(name) if name in arg_params else aux_params[name]), mx.cpu())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


def hybridize_for_training(net: mx.gluon.HybridBlock, data_shape: tuple) -> mx.gluon.HybridBlock:
    """A training block equal to ``net`` with :func:`training_graph`'s rewrites and static memory.

    The returned SymbolBlock shares ``net``'s Parameters (a ``gluon.Trainer`` over ``net.collect_params()``
    updates both; checkpoints saved from ``net`` are unchanged). ``net`` must be initialised; it is traced once
    on zeros of ``data_shape`` (no parameter or running statistic changes: the trace runs outside autograd).
    """
    net.hybridize()
    net(mx.nd.zeros(data_shape))
    sym, _ = training_graph(net._cached_graph[1])
    data_name = net._cached_graph[0][0].name
    block = mx.gluon.SymbolBlock(sym, mx.sym.var(data_name), params=net.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    return block
