"""Start-up cost of each ``--backend``: load a checkpoint and make the first prediction (batch 1), seconds.

What ``--backend auto``'s image threshold (:data:`resnet_toolkit.backends.AUTO_MIN_IMAGES`) weighs against the
engines' throughput (``python -m bench.throughput --engines module onnxruntime openvino``).

    OMP_NUM_THREADS=1 .venv/bin/python -m bench.backend_startup --models cifar_resnet20_v2 resnet50_v2

Each model gets a Xavier-initialised checkpoint in a temporary folder; each engine is timed ``--repeats`` times
(fresh load each time), the median printed, with a JSON line at the end.
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


def startup_seconds(prefix: str, backend: str) -> float:
    """Wall seconds to load ``prefix`` epoch 1 for ``backend`` and predict one image."""
    from resnet_toolkit.predictor import load_model, with_backend

    start = time.perf_counter()
    model = with_backend(load_model(prefix, 1, batch_size=1, fused=backend == "mxnet"), backend)
    model.predict(np.zeros((1,) + tuple(model.image_shape), np.float32))
    return time.perf_counter() - start


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", nargs="+", default=["cifar_resnet20_v2", "resnet50_v2"])
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for model in args.models:
            prefix = write_checkpoint(model, Path(tmp))
            for backend in args.backends:
                seconds = statistics.median(startup_seconds(prefix, backend) for _ in range(args.repeats))
                results.append({"model": model, "backend": backend, "startup_s": round(seconds, 3)})
                print(f"{model:20s} {backend:12s} load + first prediction {seconds:6.2f} s", flush=True)
    print("json_stats: " + json.dumps(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
