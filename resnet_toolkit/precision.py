"""Low-precision training: bfloat16 on CPUs (oneDNN), float16 on GPUs, with float32 master weights.

Two policies say which ops run in the low type; the parameters stay float32 variables either way (the master
weights): the ``amp_cast`` backward returns their gradients in float32, so the optimizer, its momentum and every
checkpoint are float32, and a checkpoint trained in bfloat16 loads anywhere (``PREFIX-symbol.json`` is the graph
as built, without casts).

- ``'mxnet'`` (``--precision-policy mxnet``, the default for bfloat16): MXNet AMP's own lists
  (``amp.convert_symbol``): Convolution and FullyConnected in the low type, and the ops that follow them read and
  write it too (BatchNorm, including the fused BN+ReLU of :func:`resnet_toolkit.fastpath.training_graph`, and the
  residual sums); oneDNN keeps BN's mean and variance in float32. The input's ``bn_data``, the pooling and the
  softmax stay float32. PyTorch's CPU autocast runs BatchNorm in bfloat16 the same way.
- ``'fp32-bn'`` (the default for float16): only ``Convolution`` and ``FullyConnected`` run in the low type; a cast
  before each of their inputs and one back to float32 after, so BatchNorm, ReLU and the sums run in float32.
  On a CPU this is slow (0.5x float32 with native bfloat16): the cast back hands BN a plain NCHW array and oneDNN
  runs its reference kernel (bench/RESULTS.md).

float16 has 5 exponent bits, so small gradients underflow: it needs dynamic loss scaling
(:mod:`resnet_toolkit.lossscale`, MXNet AMP's policy: start at 2**16, halve and skip the update on an overflow,
double after 2000 clean steps). bfloat16 has float32's exponent range and trains without it. MXNet 1.9.1 has float16
convolutions only on GPUs (cuDNN) and bfloat16 ones only on CPUs (oneDNN): :func:`check_dtype` refuses the other
pairings with one line.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Iterable, Sequence

from resnet_toolkit.errors import UserError

DTYPES = ("float32", "bfloat16", "float16")
LOW_PRECISION_OPS = ("Convolution", "FullyConnected")
POLICIES = ("fp32-bn", "mxnet")
_MX_DTYPE_CODE = {"float32": "0"}  # mshadow type flag of a variable's __dtype__ attribute


# ------------------------------------------------------------------------------------------- what may run where
def cpu_flags(cpuinfo: str | Path = "/proc/cpuinfo") -> set[str]:
    """The CPU feature flags the kernel reports (first processor), e.g. ``{'avx512f', 'avx512_vnni', ...}``;
    empty where the file is absent (not Linux)."""
    try:
        text = Path(cpuinfo).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return set()
    for line in text.splitlines():
        if line.startswith("flags"):
            return set(line.partition(":")[2].split())
    return set()


def native_bf16(flags: Iterable[str] | None = None) -> bool:
    """Whether the CPU multiplies bfloat16 in hardware (AVX512-BF16 or AMX-BF16). Without it oneDNN 2.4 emulates
    bfloat16 on AVX-512 (kernels ``jit_bf16:avx512_core``), measured about 2x *slower* than float32 here."""
    flags = cpu_flags() if flags is None else set(flags)
    return bool(flags & {"avx512_bf16", "amx_bf16"})


def add_precision_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Precision")
    group.add_argument("--dtype", type=str, default="float32", choices=list(DTYPES),
                       help="compute type: bfloat16 on CPU (oneDNN), float16 on GPUs (--api gluon, dynamic loss "
                            "scaling); softmax, the optimizer and the weights stay float32, checkpoints are float32. "
                            "bfloat16 with the default policy biases the gradient through BatchNorm: a 160-epoch "
                            "CIFAR run ended 3.3 points under its float32 twin (bench/RESULTS.md); train final "
                            "models in float32")
    group.add_argument("--precision-policy", type=str, default=None, choices=list(POLICIES),
                       help="which ops run in --dtype: 'mxnet' = MXNet AMP's lists (Convolution, FC, BatchNorm, "
                            "ReLU, sums in the low type; BN statistics float32); 'fp32-bn' = only Convolution and "
                            "FC, BatchNorm in float32 (0.5x float32's speed on CPUs, bench/RESULTS.md). Default: "
                            "'mxnet' for bfloat16, 'fp32-bn' for float16")
    return group


def default_policy(dtype: str, policy: str | None = None) -> str:
    """``policy`` when given, else the default of ``dtype``: 'mxnet' for bfloat16 (1.55-1.73x float32 on a CPU
    with AVX512-BF16, where 'fp32-bn' is 0.48-0.79x: its float32 BatchNorm gets plain-layout arrays and runs
    oneDNN's reference kernel; bench/RESULTS.md), 'fp32-bn' for float16 and float32."""
    if policy is not None:
        if policy not in POLICIES:
            raise UserError(f"--precision-policy must be one of {', '.join(POLICIES)}, got {policy!r}")
        return policy
    return "mxnet" if dtype == "bfloat16" else "fp32-bn"


def check_dtype(dtype: str, num_gpus: int, api: str = "module", kv_store: str = "local",
                mkldnn: bool | None = None) -> None:
    """Refuse, with one :class:`UserError` line, a ``--dtype`` that cannot train on the chosen devices.

    ``num_gpus``: GPUs the run trains on (``--gpus``; 0 for CPU contexts); ``api``: ``--api``; ``kv_store``:
    ``--kv-store``; ``mkldnn``: whether MXNet was built with oneDNN (default: ask the library). float16 needs GPUs,
    the Gluon engine (its loss scaling scales the loss's gradient in ``backward``; the Module path's
    ``SoftmaxOutput`` has a fixed gradient scale) and one machine (workers of a dist kvstore would have to agree
    on every skipped update); bfloat16 needs CPUs and oneDNN with bfloat16 kernels for this CPU's ISA (asked of
    oneDNN itself: :func:`resnet_toolkit.capability.probe`; AVX-512 or newer).
    """
    if dtype not in DTYPES:
        raise UserError(f"--dtype must be one of {', '.join(DTYPES)}, got {dtype!r}")
    if dtype == "float16":
        if num_gpus == 0:
            raise UserError("--dtype float16 needs a GPU (--gpus 0[,1,...]): MXNet 1.9.1 has float16 convolutions "
                            "only with CUDA; on a CPU use --dtype bfloat16")
        if api != "gluon":
            raise UserError("--dtype float16 trains with --api gluon only (dynamic loss scaling scales the loss "
                            "before backward; the Module path's SoftmaxOutput has a fixed gradient scale)")
        if "dist" in kv_store:
            raise UserError(f"--dtype float16 cannot train with --kv-store {kv_store}: a worker whose gradients "
                            f"overflow skips its update, and ps-lite workers cannot skip one alone")
    if dtype == "bfloat16":
        if num_gpus:
            raise UserError("--dtype bfloat16 trains on CPUs only (MXNet 1.9.1's bfloat16 kernels are oneDNN's); "
                            "on GPUs use --dtype float16")
        if mkldnn is None:
            import mxnet as mx

            mkldnn = mx.runtime.Features().is_enabled("MKLDNN")
        if not mkldnn:
            raise UserError("--dtype bfloat16 needs MXNet built with oneDNN (MKLDNN); this build has none")
        from resnet_toolkit.capability import probe

        probe().require("bfloat16", "--dtype bfloat16")


def _probe_native_bf16() -> bool:
    from resnet_toolkit.capability import probe

    return probe().native_bf16


def describe(dtype: str, flags: Iterable[str] | None = None, policy: str | None = None) -> str:
    """One log line saying what runs in which precision (and, for bfloat16, whether the CPU has it natively:
    from ``flags`` when given, else from the ISA oneDNN reports)."""
    if dtype == "float32":
        return "precision: float32"
    if default_policy(dtype, policy) == "mxnet":
        line = (f"precision: {dtype} for Convolution, FullyConnected, BatchNorm, ReLU and sums (MXNet AMP's lists, "
                f"--precision-policy mxnet); BN statistics, softmax, optimizer and weights in float32")
    else:
        line = (f"precision: {dtype} for Convolution and FullyConnected (--precision-policy fp32-bn); BatchNorm, "
                f"softmax, optimizer and weights in float32")
    if dtype == "float16":
        return line + "; dynamic loss scaling"
    if not (native_bf16(flags) if flags is not None else _probe_native_bf16()):
        line += " (this CPU has no AVX512-BF16/AMX: oneDNN emulates bfloat16, slower than float32)"
    if default_policy(dtype, policy) == "mxnet":
        line += ("; note: BatchNorm in bfloat16 biases the gradient, and a 160-epoch run ended 3.3 points under its "
                 "float32 twin (bench/RESULTS.md): use float32 for a final model")
    return line


# ------------------------------------------------------------------------------------------- the graph rewrite
def _typed_params(graph: dict, data_names: Sequence[str]) -> None:
    """Mark every variable but the inputs float32 (``__dtype__``), so that type inference through ``amp_cast``
    (which accepts any input type) still makes the parameters and their gradients float32."""
    for node in graph["nodes"]:
        if node["op"] == "null" and node["name"] not in data_names:
            node.setdefault("attrs", {})["__dtype__"] = _MX_DTYPE_CODE["float32"]


def mixed_precision_symbol(sym, dtype: str, data_names: Sequence[str] = ("data", "softmax_label"),
                           ops: Sequence[str] = LOW_PRECISION_OPS, policy: str = "fp32-bn",
                           float32_ops: Sequence[str] = ()):
    """The training graph ``sym`` with ``ops`` in ``dtype`` ('bfloat16' or 'float16') and the rest in float32.

    ``policy='fp32-bn'`` (the default): a cast to ``dtype`` before every input of each op in ``ops`` and a cast
    back to float32 after it. ``policy='mxnet'``: ``mx.contrib.amp.convert_symbol`` with MXNet's lists (BatchNorm
    then reads and writes ``dtype``, with float32 parameters); every node whose op type is in ``float32_ops`` (e.g.
    ``'elemwise_add'``) is kept in float32 there, casts around it (a diagnostic; bench/pages/notebook.md). Either
    way the variables keep their names and are float32; ``dtype='float32'`` returns ``sym`` unchanged.
    ``data_names`` are the graph's inputs (not parameters).

    Apply it last: a later rewrite that round-trips the graph through ``tojson()`` (as :mod:`resnet_toolkit.fastpath`'s
    do) drops every ``amp_cast`` node, silently giving back the float32 graph.
    """
    import mxnet as mx

    if dtype == "float32":
        return sym
    if dtype not in DTYPES:
        raise ValueError(f"dtype {dtype!r} not in {DTYPES}")
    if policy not in POLICIES:
        raise ValueError(f"policy {policy!r} not in {POLICIES}")
    graph = json.loads(sym.tojson(remove_amp_cast=False))
    _typed_params(graph, data_names)
    if policy == "mxnet":
        from mxnet.contrib import amp

        typed = mx.sym.load_json(json.dumps(graph))
        kept = [node["name"] for node in graph["nodes"] if node["op"] in float32_ops]
        return amp.convert_symbol(typed, target_dtype=dtype, data_names=list(data_names),
                                  excluded_sym_names=kept or None)
    if float32_ops:
        raise ValueError("float32_ops applies to policy 'mxnet' only ('fp32-bn' keeps everything but ops float32)")
    nodes, new_nodes = graph["nodes"], []
    remap: dict[tuple[int, int], list] = {}

    def add(node: dict) -> int:
        new_nodes.append(node)
        return len(new_nodes) - 1

    cast_of: dict[tuple, list] = {}  # one cast per (source entry, dtype), shared by every reader
    low_of: dict[int, list] = {}  # a float32 cast node of a low-precision output -> that output

    def cast(entry: list, to: str, name: str) -> list:
        if to == dtype and entry[0] in low_of:  # an op in `ops` reading another's output: no round trip
            return low_of[entry[0]]
        key = (entry[0], entry[1], to)
        if key not in cast_of:
            nid = add({"op": "amp_cast", "name": f"{name}_amp_cast_{to}", "attrs": {"dtype": to},
                       "inputs": [entry]})
            cast_of[key] = [nid, 0, 0]
            if to == "float32":
                low_of[nid] = entry
        return cast_of[key]

    for nid, node in enumerate(nodes):
        node = dict(node)
        inputs = [remap[(s, o)] for s, o, *_ in node["inputs"]]
        if node["op"] in ops:
            node["inputs"] = [cast(entry, dtype, _entry_name(new_nodes, entry)) for entry in inputs]
            low = add(node)
            remap[(nid, 0)] = cast([low, 0, 0], "float32", f"{node['name']}_output")
            continue
        node["inputs"] = inputs
        new_id = add(node)
        for out in range(1 if node["op"] == "null" else 3):  # BatchNorm has 3 outputs; extra entries are harmless
            remap[(nid, out)] = [new_id, out, 0]
    new_graph = {"nodes": new_nodes, "arg_nodes": [i for i, n in enumerate(new_nodes) if n["op"] == "null"],
                 "heads": [remap[(s, o)] for s, o, *_ in graph["heads"]], "attrs": graph.get("attrs", {})}
    return mx.sym.load_json(json.dumps(new_graph))


def _entry_name(nodes: list, entry: list) -> str:
    node = nodes[entry[0]]
    return node["name"] if node["op"] == "null" else f"{node['name']}_output"


def node_dtypes(sym, **input_types: str) -> dict[str, str]:
    """Every internal output of ``sym`` -> its inferred dtype name ('float32', 'bfloat16', 'float16', ...), given
    the inputs' types (default: ``data`` and ``softmax_label`` float32). For tests and for checking a policy."""
    import numpy as np

    types = input_types or {"data": "float32", "softmax_label": "float32"}
    types = {k: v for k, v in types.items() if k in sym.list_inputs()}
    internals = sym.get_internals()
    _, out_types, _ = internals.infer_type(**types)
    if out_types is None:
        raise ValueError("type inference failed: a parameter's dtype is unknown")
    return {name: (t.names[0] if getattr(t, "names", None) else np.dtype(t).name)
            for name, t in zip(internals.list_outputs(), out_types)}


def param_dtypes(sym, **input_types: str) -> dict[str, str]:
    """Every argument and auxiliary state of ``sym`` -> its inferred dtype name (see :func:`node_dtypes`)."""
    import numpy as np

    types = input_types or {"data": "float32", "softmax_label": "float32"}
    types = {k: v for k, v in types.items() if k in sym.list_inputs()}
    arg_types, _, aux_types = sym.infer_type(**types)
    if arg_types is None:
        raise ValueError("type inference failed: a parameter's dtype is unknown")
    names = sym.list_arguments() + sym.list_auxiliary_states()
    return {n: (t.names[0] if getattr(t, "names", None) else np.dtype(t).name)
            for n, t in zip(names, list(arg_types) + list(aux_types))}


# ------------------------------------------------------------------------------------------------- Gluon
def mixed_precision_block(net, data_shape: tuple, dtype: str, training_graph: bool = True, policy: str = "fp32-bn"):
    """A training block equal to ``net`` with :func:`mixed_precision_symbol`'s casts (and, with ``training_graph``,
    :func:`resnet_toolkit.fastpath.training_graph`'s rewrites), static memory.

    The returned SymbolBlock shares ``net``'s float32 Parameters, as
    :func:`resnet_toolkit.fastpath.hybridize_for_training` does: a ``gluon.Trainer`` over ``net.collect_params()``
    updates both, checkpoints saved from ``net`` are float32. ``net`` must be initialised; it is traced once on
    zeros of ``data_shape`` (per context). Its output (the logits) is float32.
    """
    import mxnet as mx

    if dtype == "float32":
        if training_graph:
            from resnet_toolkit.fastpath import hybridize_for_training

            return hybridize_for_training(net, data_shape)
        net.hybridize()
        return net
    net.hybridize()
    net(mx.nd.zeros(data_shape, ctx=next(iter(net.collect_params().values())).list_ctx()[0]))
    sym = net._cached_graph[1]
    data_name = net._cached_graph[0][0].name
    if training_graph:
        from resnet_toolkit import fastpath

        sym, _ = fastpath.training_graph(sym)
    sym = mixed_precision_symbol(sym, dtype, data_names=(data_name,), policy=policy)
    block = mx.gluon.SymbolBlock(sym, mx.sym.var(data_name, dtype="float32"), params=net.collect_params())
    block.hybridize(static_alloc=True, static_shape=True)
    return block


def float32_params(params: dict) -> dict:
    """``params`` (name -> NDArray) with every non-float32 array cast to float32 on the CPU (bfloat16 through
    ``amp_cast``, which numpy cannot read); float32 arrays are returned as they are. The guard before a
    checkpoint is written: the checkpoint format is float32 whatever the run trained in."""
    import mxnet as mx
    import numpy as np

    out = {}
    for name, value in params.items():
        dtype = np.dtype(value.dtype)
        if dtype == np.float32:
            out[name] = value
        elif dtype.names:  # MXNet's bfloat16 is a numpy structured dtype
            out[name] = mx.nd.amp_cast(value.as_in_context(mx.cpu()), dtype="float32")
        else:
            out[name] = value.astype("float32")
    return out

