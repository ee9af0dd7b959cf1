"""Other inference engines for a checkpoint: ONNX Runtime and OpenVINO, run on the model exported to ONNX.

The tools' ``--backend`` picks one: ``mxnet`` (the folded, fused MXNet graph, :mod:`resnet_toolkit.fastpath`),
``onnxruntime`` or ``openvino``; ``auto`` (the default) applies the measured rule of :func:`choose_backend`.
ONNX Runtime and OpenVINO read the inference network exported by MXNet's own ONNX exporter
(:func:`export_onnx_file`: input ``data`` (N, 3, H, W) raw RGB 0..255 float32, output the softmax probabilities),
written to a temporary folder and removed once the engine has loaded it; nothing is written beside the
checkpoint. Both run float32 (OpenVINO's precision hint is pinned to f32: on CPUs with bfloat16 it would otherwise
pick bf16) and honour ``OMP_NUM_THREADS`` for their thread count, as MXNet does.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from resnet_toolkit.errors import UserError

BACKENDS = ("mxnet", "onnxruntime", "openvino")
AUTO = "auto"
PIP_NAMES = {"onnxruntime": "onnxruntime", "openvino": "openvino"}
# From this many images on, ``auto`` runs OpenVINO. Measured 2026-12-07 (bench/pages/speed.md, 1 thread):
# OpenVINO was the fastest engine in every cell (ResNet-50-v2 and CIFAR ResNet-20 at batch 1 and 32, 1.10-1.40x
# the fused MXNet graph on AVX-512, 1.06-1.30x with oneDNN capped at AVX2), but its start (export to ONNX +
# compile) costs 2.0 s more than MXNet's for ResNet-50 (2.33 vs 0.32 s, bench/backend_startup.py), which the
# 4.0-5.7 ms it saves per image repays after 350-500 images. The same rule holds for INT8 (the .onnx
# tools/quantize.py writes): OpenVINO ran it 1.01-1.49x MXNet's INT8 (1.03-1.35x on AVX2 kernels) and starts
# 0.5 s later for ResNet-50 (bench/pages/precision.md). On a real AVX2-only EPYC (Zen 3) it held at batch 32, float32
# and INT8, against PyTorch's eager/jit/torch.compile too (score.py on 10,000 CIFAR-10 images: 1.08x ONNX Runtime,
# 1.63x MXNet, whole process); there ONNX Runtime was 1.16x OpenVINO at batch 1 for CIFAR ResNet-20 only.
AUTO_MIN_IMAGES = 500


def export_onnx_file(symbol, arg_params: dict, aux_params: dict, image_shape: Sequence[int],
                     path: str | os.PathLike) -> None:
    """Write the inference network ``symbol`` (softmax output) with its parameters as ONNX to ``path``: batch
    dimension dynamic, opset of the installed onnx package, weights as initializers only."""
    from mxnet import onnx as mx_onnx

    shape = tuple(image_shape)
    mx_onnx.export_model(symbol, [arg_params, aux_params], in_shapes=[(1,) + shape], in_types=[np.float32],
                         onnx_file_path=str(path), dynamic=True, dynamic_input_shapes=[(None,) + shape])
    _drop_initializer_inputs(path)


def _drop_initializer_inputs(path: str | os.PathLike) -> None:
    """MXNet's exporter lists every weight as a graph input too, which keeps ONNX Runtime from treating them as
    constants (and makes it warn once per weight); keep only the real input and the initializers used by a node."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    used = {name for node in graph.node for name in node.input}
    initializers = [init for init in graph.initializer if init.name in used]
    names = {init.name for init in initializers}
    inputs = [inp for inp in graph.input if inp.name not in names and inp.name in used]
    del graph.initializer[:]
    graph.initializer.extend(initializers)
    del graph.input[:]
    graph.input.extend(inputs)
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def engine_threads() -> int | None:
    """``OMP_NUM_THREADS`` when set (the thread count MXNet runs with), else None: the engine's own default."""
    value = os.environ.get("OMP_NUM_THREADS", "").strip()
    return int(value) if value.isdigit() and int(value) > 0 else None


def onnxruntime_runner(onnx_path: str | os.PathLike, threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch) -> probabilities`` through an ONNX Runtime CPU session on ``onnx_path`` (all graph
    optimisations; ``threads`` intra-op threads, None: ONNX Runtime's default, one per physical core)."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(onnx_path), options, providers=["CPUExecutionProvider"])
    name = session.get_inputs()[0].name

    def run(batch: np.ndarray) -> np.ndarray:
        return session.run(None, {name: np.ascontiguousarray(batch, dtype=np.float32)})[0]
    return run


def openvino_runner(onnx_path: str | os.PathLike, batch_shape: Sequence[int], threads: int | None = None
                    ) -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch) -> probabilities`` through OpenVINO's CPU plugin on ``onnx_path``, compiled for the static
    ``batch_shape`` (N, 3, H, W), float32 precision, latency hint (one stream), ``threads`` inference threads."""
    import openvino as ov

    core = ov.Core()
    model = core.read_model(str(onnx_path))
    model.reshape({model.inputs[0].get_any_name(): list(batch_shape)})
    config = {"INFERENCE_PRECISION_HINT": "f32", "PERFORMANCE_HINT": "LATENCY"}
    if threads:
        config["INFERENCE_NUM_THREADS"] = threads
    compiled = core.compile_model(model, "CPU", config)
    request = compiled.create_infer_request()
    output = compiled.output(0)

    def run(batch: np.ndarray) -> np.ndarray:
        return request.infer([np.ascontiguousarray(batch, dtype=np.float32)])[output].copy()
    return run


# tools/quantize.py's calibration modes -> ONNX Runtime's: observed min/max, or the KL-optimal threshold.
ONNX_CALIB_METHODS = {"naive": "MinMax", "entropy": "Entropy"}


def quantize_onnx_file(fp32_path: str | os.PathLike, int8_path: str | os.PathLike, batches: Sequence[np.ndarray],
                       calib_mode: str = "naive", exclude: Sequence[str] = ()) -> None:
    """Write the INT8 version of the float32 ONNX model ``fp32_path`` to ``int8_path``: ONNX Runtime's static
    quantization in QDQ form (QuantizeLinear/DequantizeLinear pairs around each convolution and the classifier;
    weights int8 per output channel, activations uint8), one range per tensor from the ``batches`` (raw RGB
    0..255, (N, 3, H, W) float32) with ``calib_mode`` ('naive': min/max, 'entropy': KL). ONNX Runtime and
    OpenVINO both run the file in INT8 (OpenVINO folds each pair into its own INT8 kernels). ``exclude`` names
    MXNet layers (``conv0``, ``fc1``) kept in float32.

    Weights use 7 of their 8 bits (``reduce_range``): CPUs without VNNI (AVX2) multiply uint8 x int8 pairs into
    a saturating int16 sum, which full-range weights overflow. Measured on ResNet-20, 10,000 CIFAR-10 test images,
    OpenVINO on AVX2 kernels: 92.57 % with 8-bit weights, 92.98 % with 7 (float32 93.13 %); on AVX-512 VNNI 92.92
    and 92.98 %: the file runs as well on either kind of CPU."""
    from onnxruntime.quantization import (
        CalibrationDataReader,
        CalibrationMethod,
        QuantFormat,
        QuantType,
        quantize_static,
    )

    class Batches(CalibrationDataReader):
        def __init__(self):
            self.pending = list(batches)

        def get_next(self):
            return {"data": np.ascontiguousarray(self.pending.pop(0), dtype=np.float32)} if self.pending else None

    import onnx

    nodes = [n.name for n in onnx.load(str(fp32_path)).graph.node if any(n.name.startswith(e) for e in exclude)]
    # ONNX Runtime's logging module prints a pre-processing advice line and one warning per 1-D weight; quiet.
    import logging
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.ERROR)
    try:
        quantize_static(str(fp32_path), str(int8_path), Batches(), quant_format=QuantFormat.QDQ, per_channel=True,
                        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, reduce_range=True,
                        nodes_to_exclude=nodes,
                        calibrate_method=getattr(CalibrationMethod, ONNX_CALIB_METHODS[calib_mode]))
    finally:
        logging.getLogger().setLevel(level)


def installed(backend: str) -> bool:
    """Whether ``backend``'s engine imports here ('mxnet' always does)."""
    if backend == "mxnet":
        return True
    try:
        __import__(backend)
    except ImportError:
        return False
    return True


def choose_backend(requested: str, images: int | None, mxnet_only: str | None = None) -> str:
    """The engine a tool runs: ``requested`` unless it is ``auto``; then 'mxnet' where only MXNet can run the job
    (``mxnet_only`` names why: a GPU, --plain-graph, an INT8 model without its ONNX file) or for fewer than
    :data:`AUTO_MIN_IMAGES` images (``images``; None: unknown), else 'openvino' when it is installed, else
    'mxnet'. A :class:`UserError` when ``requested`` is another engine and ``mxnet_only`` is set."""
    if requested != AUTO:
        if requested != "mxnet" and mxnet_only:
            raise UserError(f"--backend {requested}: {mxnet_only} runs with --backend mxnet only")
        return requested
    if mxnet_only or images is None or images < AUTO_MIN_IMAGES:
        return "mxnet"
    return "openvino" if installed("openvino") else "mxnet"


def require(backend: str) -> None:
    """A :class:`UserError` naming the pip package when ``backend``'s engine is not installed."""
    if backend not in BACKENDS:
        raise UserError(f"--backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
    if not installed(backend):
        raise UserError(f"--backend {backend}: the {PIP_NAMES[backend]} package is not installed "
                        f"(pip install {PIP_NAMES[backend]}; requirements.txt pins it)")


def file_runner(backend: str, onnx_path: str | os.PathLike, batch_shape: Sequence[int],
                threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch) -> probabilities`` for ``backend`` ('onnxruntime' or 'openvino') on the ONNX file
    ``onnx_path`` (e.g. the INT8 model ``tools/quantize.py`` writes), for batches of ``batch_shape``."""
    require(backend)
    threads = threads if threads is not None else engine_threads()
    if backend == "onnxruntime":
        return onnxruntime_runner(onnx_path, threads)
    return openvino_runner(onnx_path, batch_shape, threads)


def make_runner(backend: str, symbol, arg_params: dict, aux_params: dict, batch_shape: Sequence[int],
                threads: int | None = None) -> Callable[[np.ndarray], np.ndarray]:
    """``run(batch) -> probabilities`` for ``backend`` ('onnxruntime' or 'openvino') on the inference network
    ``symbol``, exported to a temporary ONNX file that is gone when this returns."""
    require(backend)
    threads = threads if threads is not None else engine_threads()
    with tempfile.TemporaryDirectory(prefix="resnet-onnx-") as tmp:
        path = Path(tmp) / "model.onnx"
        try:
            export_onnx_file(symbol, arg_params, aux_params, batch_shape[1:], path)
        except Exception as exc:  # noqa: BLE001  (the exporter raises many kinds; the user needs one line)
            detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
            raise UserError(f"--backend {backend}: the model does not export to ONNX ({detail}); use "
                            f"--backend mxnet") from None
        return file_runner(backend, path, batch_shape, threads)
