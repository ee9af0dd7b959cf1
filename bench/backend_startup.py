"""Start-up cost of each ``--backend``: load a checkpoint and make the first prediction (batch 1), seconds.

What ``--backend auto``'s image threshold (:data:`resnet_toolkit.backends.AUTO_MIN_IMAGES`) weighs against the
engines' throughput (``python -m bench.throughput --engines module onnxruntime openvino``).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.backend_startup --models cifar_resnet20_v2 resnet50_v2
    OMP_NUM_THREADS=1 .venv/bin/python -m bench.backend_startup --int8     # the INT8 models tools/quantize.py writes

Each model gets a Xavier-initialised checkpoint in a temporary folder; each engine is timed ``--repeats`` times
(fresh load each time), the median printed, with a JSON line at the end. ``--int8`` quantizes the checkpoint first
as ``tools/quantize.py`` does (MXNet's files and the ``.onnx``, ranges from 2 random images) and times loading
those instead.
"""
from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.backends import BACKENDS
from resnet_toolkit.errors import run_cli


def write_checkpoint(model: str, folder: Path) -> str:
    """A Xavier-initialised checkpoint of ``model`` (a :func:`symbols.model_names` name) in ``folder``; its prefix."""
    import mxnet as mx

    from bench.throughput import model_shape
    from symbols import get_model

    shape, classes = model_shape(model)
    sym = get_model(model, classes, api="symbol")
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", (1,) + shape)], label_shapes=[("softmax_label", (1,))])
    mod.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    prefix = str(folder / model)
    mod.save_checkpoint(prefix, 1)
    return prefix


def write_int8(prefix: str, model: str) -> None:
    """Quantize checkpoint ``prefix`` epoch 1 into the files ``tools/quantize.py`` writes (``P-int8-symbol.json``,
    ``P-int8-0001.params``, ``P-int8-0001.onnx``), ranges from 2 random images: for timing, not accuracy."""
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_model_mkldnn

    from bench.throughput import model_shape
    from resnet_toolkit.backends import export_onnx_file, quantize_onnx_file
    from resnet_toolkit.checkpoint import load_checkpoint
    from resnet_toolkit.fileio import write_ndarrays
    from resnet_toolkit.model_facts import inference_symbol
    from resnet_toolkit.quantize import int8_files, int8_onnx_file

    shape, _ = model_shape(model)
    sym, arg_params, aux_params = load_checkpoint(prefix, 1)
    net = inference_symbol(sym)
    images = np.random.RandomState(0).uniform(0, 255, (2,) + shape).astype(np.float32)
    qsym, qarg, qaux = quantize_model_mkldnn(
        net, arg_params, aux_params, data_names=("data",), label_names=(), ctx=mx.cpu(), calib_mode="naive",
        calib_data=mx.io.NDArrayIter(mx.nd.array(images), batch_size=1), num_calib_examples=2,
        quantized_dtype="auto", quantize_mode="smart")
    symbol_file, params_file = int8_files(prefix, 1)
    symbol_file.write_text(qsym.tojson(), encoding="utf-8")
    blob = {f"arg:{k}": v for k, v in qarg.items()}
    blob.update({f"aux:{k}": v for k, v in qaux.items()})
    write_ndarrays(params_file, blob)
    fp32 = f"{prefix}-fp32.onnx"
    export_onnx_file(net, arg_params, aux_params, shape, fp32)
    quantize_onnx_file(fp32, int8_onnx_file(prefix, 1), [images[:1], images[1:]])


def startup_seconds(prefix: str, backend: str, int8: bool = False) -> float:
    """Wall seconds to load ``prefix`` epoch 1 (its INT8 files with ``int8``) for ``backend`` and predict one
    image."""
    from resnet_toolkit.predictor import load_int8_model, load_int8_onnx_model, load_model, with_backend
    from resnet_toolkit.quantize import int8_onnx_file, int8_prefix

    start = time.perf_counter()
    if int8 and backend == "mxnet":
        model = load_int8_model(int8_prefix(prefix), 1, batch_size=1)
    elif int8:
        model = load_int8_onnx_model(int8_prefix(prefix), 1, int8_onnx_file(prefix, 1), backend, batch_size=1)
    else:
        model = with_backend(load_model(prefix, 1, batch_size=1, fused=backend == "mxnet"), backend)
    model.predict(np.zeros((1,) + tuple(model.image_shape), np.float32))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cifar_resnet20_v2", "resnet50_v2"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--int8", action="store_true", help="time the INT8 models (quantized first) instead")
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            prefix = write_checkpoint(model, Path(tmp))
            if args.int8:
                write_int8(prefix, model)
            for backend in args.backends:
                seconds = statistics.median(startup_seconds(prefix, backend, args.int8) for _ in range(args.repeats))
                results.append({"model": model, "backend": backend, "int8": args.int8, "startup_s": round(seconds, 3)})
                print(f"{model:20s} {backend:12s} {'INT8 ' if args.int8 else ''}load + first prediction "
                      f"{seconds:6.2f} s", flush=True)
    print("json_stats: " + json.dumps(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
