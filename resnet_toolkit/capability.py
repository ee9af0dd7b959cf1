"""What this CPU's oneDNN can run, asked of oneDNN itself rather than guessed from ``/proc/cpuinfo``.

oneDNN picks its kernels by the instruction sets it finds at run time (and caps them at ``DNNL_MAX_CPU_ISA``
when set, e.g. ``AVX2`` on an AVX-512 machine to run what an AVX2-only CPU runs). Whether MXNet 1.9.1 can then
build a given primitive depends on that ISA: bfloat16 convolutions need AVX-512 (native with AVX512-BF16 or AMX,
emulated below), and some fused backward passes fail on one ISA and work on another. So each feature the project
relies on is tried once, on a tiny graph, in a child process (a failed oneDNN op leaves MXNet's engine holding an
exception that later, unrelated operations may rethrow; a child keeps this process clean). :func:`probe` returns
the answer, cached for the process and handed to child processes through :data:`CACHE_ENV`.

Features (:data:`FEATURES`):

- ``bfloat16``: a bfloat16 convolution + BatchNorm + ReLU forward and backward (``--dtype bfloat16``);
- ``int8``: a tiny network quantized with ``quantize_model_mkldnn`` and run (``tools/quantize.py``, ``--int8``);
- ``fused_bn_relu_beside_grouped_conv``: the backward of fused BN+ReLUs that feed and read a grouped convolution
  with 4 channels per group, equal to the unfused pairs' (:func:`resnet_toolkit.fastpath.training_graph` fuses
  those pairs only where it is; oneDNN 2.4.4 cannot build it on AVX-512, and gets it wrong on AVX2).

``python -m resnet_toolkit.sysinfo`` prints all of it for bug reports.
"""
from __future__ import annotations

import functools
import json
import os
import subprocess
import sys
from dataclasses import asdict, dataclass, field

from resnet_toolkit.errors import UserError, error_line

FEATURES = ("bfloat16", "int8", "fused_bn_relu_beside_grouped_conv")
CACHE_ENV = "RESNET_TOOLKIT_ONEDNN_PROBE"  # the JSON of a probe already made, inherited by child processes
_MARK = "RESNET_TOOLKIT_PROBE_JSON "
# What each feature needs, for the refusal line.
NEEDS = {
    "bfloat16": "oneDNN's bfloat16 kernels, which need AVX-512 (fast only with AVX512-BF16 or AMX)",
    "int8": "oneDNN's INT8 kernels (AVX2 or newer; fast with AVX512-VNNI or AVX-VNNI)",
    "fused_bn_relu_beside_grouped_conv": "a correct fused BN+ReLU backward beside a grouped convolution",
}


@dataclass(frozen=True)
class Capabilities:
    """oneDNN's answer on this machine: ``isa`` in oneDNN's own words (e.g. 'Intel AVX2'), ``max_cpu_isa`` the
    ``DNNL_MAX_CPU_ISA`` cap in force ('' when unset), ``onednn`` its version ('v2.4.4'), ``features`` name ->
    whether it ran, ``errors`` name -> the first line of the failure for each feature that did not."""

    isa: str
    max_cpu_isa: str
    onednn: str = ""
    features: dict = field(default_factory=dict)
    errors: dict = field(default_factory=dict)

    def supports(self, feature: str) -> bool:
        if feature not in FEATURES:
            raise ValueError(f"unknown feature {feature!r}; known: {', '.join(FEATURES)}")
        return bool(self.features.get(feature))

    @property
    def native_bf16(self) -> bool:
        """Whether oneDNN runs bfloat16 in hardware (its ISA line names bfloat16 support, or AMX)."""
        isa = self.isa.lower()
        return "bfloat16" in isa or "amx" in isa

    def isa_words(self) -> str:
        cap = f" (capped by DNNL_MAX_CPU_ISA={self.max_cpu_isa})" if self.max_cpu_isa else ""
        return f"{self.isa or 'unknown ISA'}{cap}"

    def require(self, feature: str, what: str) -> None:
        """Raise one :class:`UserError` line when ``feature`` does not run here; ``what`` names the user's
        request (e.g. '--dtype bfloat16')."""
        if not self.supports(feature):
            raise UserError(f"{what} is not available on this CPU: oneDNN runs {self.isa_words()}, and {what} needs "
                            f"{NEEDS[feature]} (python -m resnet_toolkit.sysinfo shows what this machine can do)")


def cpu_model(cpuinfo: str = "/proc/cpuinfo") -> str:
    """The CPU's model name as the kernel reports it (e.g. 'AMD EPYC'), else the platform's word for it."""
    try:
        with open(cpuinfo, encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.partition(":")[2].strip()
    except OSError:
        pass
    import platform

    return platform.processor() or "unknown"


def _max_cpu_isa() -> str:
    return os.environ.get("DNNL_MAX_CPU_ISA", os.environ.get("MKLDNN_MAX_CPU_ISA", ""))


def _from_json(text: str) -> Capabilities | None:
    try:
        raw = json.loads(text)
        caps = Capabilities(str(raw["isa"]), str(raw["max_cpu_isa"]), str(raw["onednn"]), dict(raw["features"]),
                            dict(raw["errors"]))
    except (ValueError, KeyError, TypeError):
        return None
    return caps if set(caps.features) == set(FEATURES) else None


@functools.cache
def probe(timeout: float = 120.0) -> Capabilities:
    """Ask oneDNN, once per process (a child process, 2-4 s), what runs here. Reuses :data:`CACHE_ENV` when an
    ancestor probed under the same ``DNNL_MAX_CPU_ISA``; sets it for the children of this process."""
    cached = _from_json(os.environ.get(CACHE_ENV, ""))
    if cached is not None and cached.max_cpu_isa == _max_cpu_isa():
        return cached
    env = dict(os.environ, DNNL_VERBOSE="1", MXNET_SUBGRAPH_VERBOSE="0")
    env.pop(CACHE_ENV, None)
    try:
        out = subprocess.run([sys.executable, "-c", "from resnet_toolkit.capability import _child; _child()"],
                             capture_output=True, text=True, timeout=timeout, env=env)
        stdout = out.stdout
    except subprocess.TimeoutExpired:
        stdout = ""
    isa, version, result = "", "", None
    for line in stdout.splitlines():
        if line.startswith("dnnl_verbose,info,cpu,isa:") and not isa:
            isa = line.split("isa:", 1)[1].strip()
        elif line.startswith("dnnl_verbose,info,oneDNN ") and not version:
            version = line.split(",")[2].split()[1]  # "dnnl_verbose,info,oneDNN v2.4.4 (commit ...)"
        elif line.startswith(_MARK):
            result = json.loads(line[len(_MARK):])
    if result is None:  # the child died (a crash inside a kernel, or killed): nothing is known to work
        result = {"features": {f: False for f in FEATURES},
                  "errors": {f: "the capability probe process did not finish" for f in FEATURES}}
    caps = Capabilities(isa, _max_cpu_isa(), version, result["features"], result["errors"])
    os.environ[CACHE_ENV] = json.dumps(asdict(caps))
    return caps


# ------------------------------------------------------------------------------------ the child process's probes
def _run_bfloat16(mx) -> None:
    from mxnet.contrib import amp

    x = mx.sym.Convolution(mx.sym.var("data"), num_filter=16, kernel=(3, 3), pad=(1, 1), no_bias=True, name="c")
    y = mx.sym.Activation(mx.sym.BatchNorm(x, fix_gamma=False, name="bn"), act_type="relu")
    # MXNet AMP's lists, as --dtype bfloat16's default policy (resnet_toolkit.precision) converts a training graph
    sym = amp.convert_symbol(mx.sym.MakeLoss(mx.sym.sum(y)), target_dtype="bfloat16", data_names=["data"])
    _step(mx, sym, (2, 16, 8, 8))


def _run_int8(mx) -> None:
    from mxnet.contrib.quantization import quantize_model_mkldnn

    x = mx.sym.Convolution(mx.sym.var("data"), num_filter=16, kernel=(3, 3), pad=(1, 1), name="c")
    y = mx.sym.Activation(mx.sym.BatchNorm(x, fix_gamma=False, name="bn"), act_type="relu")
    sym = mx.sym.softmax(mx.sym.FullyConnected(mx.sym.flatten(y), num_hidden=4, name="fc"))
    shape = (4, 16, 8, 8)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=shape)
    mx.random.seed(0)
    args = {n: mx.nd.random.uniform(-0.5, 0.5, s) for n, s in zip(sym.list_arguments(), arg_shapes) if n != "data"}
    aux = {n: mx.nd.ones(s) for n, s in zip(sym.list_auxiliary_states(), aux_shapes)}
    calib = mx.io.NDArrayIter(mx.nd.random.uniform(0, 1, shape), batch_size=shape[0])
    qsym, qarg, qaux = quantize_model_mkldnn(sym, args, aux, data_names=("data",), label_names=(), ctx=mx.cpu(),
                                             calib_mode="naive", calib_data=calib, num_calib_examples=shape[0],
                                             quantized_dtype="auto", quantize_mode="smart")
    qarg = dict(qarg, data=mx.nd.random.uniform(0, 1, shape))
    exe = qsym.bind(mx.cpu(), args=qarg, aux_states=qaux, grad_req="null")
    exe.forward(is_train=False)[0].asnumpy()


def _run_fused_bn_relu_beside_grouped_conv(mx) -> None:
    """A fused BN+ReLU feeding and one reading a grouped convolution (4 channels per group, as ResNeXt 32x4d),
    trained one step fused and unfused from the same values: the gradients must agree (they are the same
    function). Measured with oneDNN 2.4.4: AVX-512 cannot build the fused backward; AVX2 builds it and returns
    wrong gradients (relative errors near 1), so "it runs" is not enough."""
    import numpy as np

    def bn_relu(x, fused: bool, name: str):
        if fused:
            return mx.sym.contrib.BatchNormWithReLU(x, fix_gamma=False, name=name)
        return mx.sym.Activation(mx.sym.BatchNorm(x, fix_gamma=False, name=name), act_type="relu")

    grads = []
    for fused in (False, True):
        x = mx.sym.Convolution(mx.sym.var("data"), num_filter=128, kernel=(1, 1), no_bias=True, name="c1")
        z = mx.sym.Convolution(bn_relu(x, fused, "bn1"), num_filter=128, kernel=(3, 3), pad=(1, 1), num_group=32,
                               no_bias=True, name="c2")
        v = mx.sym.Convolution(bn_relu(z, fused, "bn2"), num_filter=16, kernel=(1, 1), no_bias=True, name="c3")
        exe = mx.sym.MakeLoss(mx.sym.sum(v * v)).simple_bind(mx.cpu(), data=(2, 64, 8, 8), grad_req="write")
        rng = np.random.RandomState(0)
        for arr in exe.arg_arrays:
            arr[:] = rng.uniform(-1, 1, arr.shape)
        exe.forward(is_train=True)
        exe.backward()
        grads.append([g.asnumpy() for g in exe.grad_arrays])
    worst = max(float(np.abs(a - b).max() / max(1e-12, float(np.abs(a).max()))) for a, b in zip(*grads))
    if worst > 1e-4:
        raise RuntimeError(f"it runs, but its gradients differ from the unfused pair's (max relative error "
                           f"{worst:.2g})")


def _step(mx, sym, data_shape) -> None:
    """Bind ``sym``, fill its arguments, run forward and backward and wait for every result."""
    exe = sym.simple_bind(mx.cpu(), data=data_shape, grad_req="write")
    for i, arr in enumerate(exe.arg_arrays):
        arr[:] = mx.nd.random.uniform(0.1, 1.0, arr.shape, dtype=arr.dtype) if i else 1.0
    exe.forward(is_train=True)
    exe.backward()
    for grad in exe.grad_arrays:
        if grad is not None:
            grad.asnumpy()
    mx.nd.waitall()


def _child() -> None:
    """Run every probe, each guarded; print their verdicts as one marked JSON line on stdout."""
    import mxnet as mx

    mx.nd.ones((1,)).asnumpy()
    features, errors = {}, {}
    probes = {"bfloat16": _run_bfloat16, "int8": _run_int8,
              "fused_bn_relu_beside_grouped_conv": _run_fused_bn_relu_beside_grouped_conv}
    # a plain float32 convolution first, so that oneDNN prints its ISA line even if every probe fails
    mx.nd.Convolution(mx.nd.ones((1, 1, 3, 3)), mx.nd.ones((1, 1, 1, 1)), kernel=(1, 1), num_filter=1,
                      no_bias=True).asnumpy()
    for name in FEATURES:
        try:
            probes[name](mx)
            features[name] = True
        except Exception as exc:  # noqa: BLE001  (any failure means: not available here)
            features[name] = False
            errors[name] = error_line(exc)[:300]
            try:
                mx.nd.waitall()  # drop the failed op's exception before the next probe
            except Exception:  # noqa: BLE001
                pass
    sys.stdout.flush()
    print(_MARK + json.dumps({"features": features, "errors": errors}), flush=True)
