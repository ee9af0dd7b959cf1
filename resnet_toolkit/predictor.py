"""Inference from a training checkpoint: load it, preprocess images as validation does, batch, top-k.

A checkpoint is MXNet's pair ``{prefix}-symbol.json`` (ending in ``SoftmaxOutput`` named ``softmax``) and
``{prefix}-{epoch:04d}.params`` (``arg:NAME`` / ``aux:NAME``), with the data set's ``synset.txt`` (one class name
per line) beside it. Both files are data (JSON and MXNet's NDArray format); nothing loaded from them runs code.

Preprocessing matches the validation iterator: decode as RGB with MXNet's own decoder (the one ImageRecordIter
uses), shorter side to ``resize`` (256 for a 224 input, the input size itself for CIFAR), center crop to the input
size, raw 0..255 values in NCHW float32: the network's ``bn_data`` normalises, as in the original.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from resnet_toolkit.checkpoint import load_checkpoint, params_path, symbol_path
from resnet_toolkit.errors import UserError
from resnet_toolkit.images import IMAGE_EXTENSIONS, ImageLimits, header_size_problem
from resnet_toolkit.model_facts import default_image_shape, default_resize, inference_symbol, num_classes_of
from resnet_toolkit.synset import read_synset


class Predictor:
    """A bound inference network: ``predict(batch)`` -> class probabilities.

    ``batch`` is float32 NCHW raw RGB 0..255 with at most ``batch_size`` images; returns (n, num_classes)
    float32 probabilities. ``symbol`` is the inference symbol (softmax of fc1) and ``arg_params`` /
    ``aux_params`` its parameters, for exporters. What runs: ``runner`` when set (another engine,
    :func:`with_backend`), else ``fused`` (an object with ``forward(batch)``: the folded, fused float32 graph or an
    INT8 one), else ``module`` (None for INT8 models). ``backend`` names the engine.
    """

    def __init__(self, module, symbol, arg_params: dict, aux_params: dict, batch_size: int,
                 image_shape: tuple[int, int, int], num_classes: int, fused=None, runner=None,
                 backend: str = "mxnet"):
        self.module = module
        self.runner = runner  # batch (batch_size, 3, H, W) float32 -> probabilities, or None: MXNet runs
        self.backend = backend
        self.fused = fused  # resnet_toolkit.fastpath.FusedExecutor bound for batch_size, or None: the module runs
        self.symbol = symbol
        self.arg_params = arg_params
        self.aux_params = aux_params
        self.batch_size = batch_size
        self.image_shape = image_shape
        self.num_classes = num_classes

    def predict(self, batch: np.ndarray) -> np.ndarray:
        import mxnet as mx

        n = batch.shape[0]
        if not 0 < n <= self.batch_size:
            raise ValueError(f"batch of {n} images; this model is bound for 1..{self.batch_size}")
        if n < self.batch_size:  # pad the last batch; the padding's outputs are dropped
            full = np.zeros((self.batch_size,) + tuple(batch.shape[1:]), dtype=np.float32)
            full[:n] = batch
            batch = full
        if self.runner is not None:
            return np.asarray(self.runner(batch.astype(np.float32, copy=False)))[:n]
        if self.fused is not None:
            return self.fused.forward(batch.astype(np.float32, copy=False)).asnumpy()[:n]
        self.module.forward(mx.io.DataBatch([mx.nd.array(batch, dtype="float32")]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[:n]


def load_model(prefix: str | os.PathLike, epoch: int, ctx=None, batch_size: int = 32,
               image_shape: Sequence[int] | None = None, fused: bool = True) -> Predictor:
    """Load checkpoint ``prefix``/``epoch`` and bind it for inference on ``ctx`` (default CPU) for batches of up
    to ``batch_size`` images of ``image_shape`` (default from the network's stem: 224 or 32 square).

    ``fused`` (CPU only, the default): predict through :class:`resnet_toolkit.fastpath.FusedExecutor` (conv+BN folded,
    BN+ReLU fused, MKLDNN subgraph); the same outputs within 1e-4 (tested), 1.03-1.12x the plain module's img/s
    on a quiet 2-core machine (bench/RESULTS.md). ``fused=False`` runs the checkpoint's graph as saved (MXNet
    1.9.1 still applies its own MKLDNN pass to it)."""
    import mxnet as mx

    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
    params_file = params_path(prefix, epoch)
    num_classes = num_classes_of(arg_params, params_file)
    net = inference_symbol(symbol)
    shape = tuple(image_shape) if image_shape else default_image_shape(symbol)
    module = mx.mod.Module(net, data_names=("data",), label_names=None, context=ctx or mx.cpu())
    try:
        module.bind(data_shapes=[("data", (batch_size,) + shape)], for_training=False)
        module.set_params(arg_params, aux_params, allow_missing=False, allow_extra=True)
    except (mx.base.MXNetError, RuntimeError, ValueError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{params_file}: does not fit {Path(str(prefix) + '-symbol.json').name}: {detail}") from None
    fused_model = None
    if fused and (ctx or mx.cpu()).device_type == "cpu":
        from resnet_toolkit.fastpath import FusedExecutor
        try:
            fused_model = FusedExecutor(net, arg_params, aux_params, (batch_size,) + shape, ctx=ctx or mx.cpu())
        except (mx.base.MXNetError, KeyError, ValueError):
            fused_model = None  # an unusual graph: the plain module above runs it
    return Predictor(module, net, arg_params, aux_params, batch_size, shape, num_classes, fused_model)


def with_backend(model: Predictor, backend: str) -> Predictor:
    """``model`` run by ``backend`` ('mxnet': itself; 'onnxruntime' or 'openvino': its inference network exported
    to ONNX and loaded there, :mod:`resnet_toolkit.backends`), bound for the same batch size and input."""
    if backend == "mxnet":
        return model
    from resnet_toolkit.backends import make_runner

    runner = make_runner(backend, model.symbol, model.arg_params, model.aux_params,
                         (model.batch_size,) + tuple(model.image_shape))
    return Predictor(None, model.symbol, model.arg_params, model.aux_params, model.batch_size, model.image_shape,
                     model.num_classes, runner=runner, backend=backend)


def _read_int8(prefix: str | os.PathLike, epoch: int, batch_size: int, image_shape: Sequence[int] | None):
    """The INT8 files :mod:`resnet_toolkit.quantize` wrote (``prefix`` = ``P-int8``), checked: ``(symbol,
    arg_params, aux_params, input shape)``, the shape defaulting from the stem."""
    from resnet_toolkit.quantize import is_quantized

    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
    if not is_quantized(symbol):
        raise UserError(f"{symbol_path(prefix)}: not an INT8 graph (make one with tools/quantize.py)")
    shape = tuple(image_shape) if image_shape else default_image_shape(symbol)
    return symbol, arg_params, aux_params, shape


def load_int8_model(prefix: str | os.PathLike, epoch: int, batch_size: int = 32,
                    image_shape: Sequence[int] | None = None) -> Predictor:
    """Load the INT8 model :mod:`resnet_toolkit.quantize` wrote (``prefix`` is its own prefix, ``P-int8``) and bind it
    on the CPU for batches of up to ``batch_size`` images (``image_shape`` defaults from the stem)."""
    import mxnet as mx

    from resnet_toolkit.capability import probe
    from resnet_toolkit.quantize import Int8Executor

    symbol, arg_params, aux_params, shape = _read_int8(prefix, epoch, batch_size, image_shape)
    probe().require("int8", "INT8 inference (--int8)")
    try:
        executor = Int8Executor(symbol, arg_params, aux_params, (batch_size,) + shape)
        num_classes = int(executor.executor.outputs[0].shape[1])
    except (mx.base.MXNetError, KeyError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{params_path(prefix, epoch)}: does not fit {symbol_path(prefix).name}: {detail}") from None
    return Predictor(None, symbol, arg_params, aux_params, batch_size, shape, num_classes, executor)


def load_int8_onnx_model(prefix: str | os.PathLike, epoch: int, onnx_path: str | os.PathLike, backend: str,
                         batch_size: int = 32, image_shape: Sequence[int] | None = None) -> Predictor:
    """The INT8 model :mod:`resnet_toolkit.quantize` wrote as ONNX (``onnx_path``, beside ``prefix``, the
    ``P-int8`` files whose graph gives the input shape) run by ``backend`` ('onnxruntime' or 'openvino') for
    batches of up to ``batch_size`` images."""
    from resnet_toolkit.backends import file_runner

    symbol, arg_params, aux_params, shape = _read_int8(prefix, epoch, batch_size, image_shape)
    try:
        runner = file_runner(backend, onnx_path, (batch_size,) + shape)
        num_classes = int(np.asarray(runner(np.zeros((batch_size,) + shape, np.float32))).shape[1])
    except UserError:
        raise
    except Exception as exc:  # noqa: BLE001  (each engine raises its own kinds; the user needs one line)
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{onnx_path}: {backend} cannot run it: {detail}") from None
    return Predictor(None, symbol, arg_params, aux_params, batch_size, shape, num_classes, runner=runner,
                     backend=backend)


def class_names(num_classes: int, synset: str | os.PathLike | None = None,
                folders: Iterable[str | os.PathLike] = (),
                imagenet_synset: str | os.PathLike | None = None) -> tuple[list[str], Path | None]:
    """Names for a network's ``num_classes`` classes and the file they came from: ``synset`` when given, else the
    first ``synset.txt`` in ``folders`` (the checkpoint's folder, where training copies it; the record file's,
    where the packer writes it), else ``imagenet_synset`` for a 1000-class network, else the class numbers
    ``'0'..'N-1'`` (and None). A :class:`UserError` when the file's line count differs from ``num_classes``."""
    candidates = [Path(synset)] if synset else [Path(f) / "synset.txt" for f in folders]
    path = next((c for c in candidates if synset or c.is_file()), None)
    if path is None and num_classes == 1000 and imagenet_synset:
        path = Path(imagenet_synset)
    if path is None:
        return [str(i) for i in range(num_classes)], None
    names = read_synset(path)
    if len(names) != num_classes:
        raise UserError(f"{path}: {len(names)} class names, but the checkpoint's fc1 has {num_classes} outputs")
    return names, path


class ImageError(Exception):
    """An image that cannot be read or decoded (the caller reports it and goes on)."""


def load_image(path: str | os.PathLike, image_shape: Sequence[int], resize: int | None = None,
               limits: ImageLimits | None = None) -> np.ndarray:
    """One image as float32 (3, H, W), RGB 0..255: shorter side to ``resize`` (default
    :func:`default_resize`), center crop to ``image_shape``. Raises :class:`ImageError` when it cannot be read,
    does not decode (e.g. a truncated file whose header is intact), or when its header claims more than
    ``limits.max_pixels`` pixels (``limits`` default: the packer's :class:`ImageLimits`, 100 megapixels; checked
    before decoding, which would allocate 3 bytes per pixel)."""
    import mxnet as mx

    _, height, width = image_shape
    resize = resize or default_resize(image_shape)
    try:
        data = Path(path).read_bytes()
    except OSError as exc:
        raise ImageError(f"cannot read image ({exc.strerror})") from None
    if not data:
        raise ImageError("empty file")
    problem = header_size_problem(data, limits or ImageLimits())
    if problem:
        raise ImageError(problem)
    if data.startswith(b"\x89PNG\r\n\x1a\n") and b"IEND" not in data:  # a cut download; libpng would print a line
        raise ImageError("truncated PNG (no IEND chunk)")
    try:
        img = mx.image.imdecode(data, flag=1, to_rgb=True)
        img.wait_to_read()  # MXNet decodes asynchronously: a truncated file fails here, not at imdecode
    except mx.base.MXNetError:
        raise ImageError("cannot decode image") from None
    h, w = img.shape[:2]
    if min(h, w) != resize:
        img = mx.image.resize_short(img, resize, interp=1)  # bilinear, as im2rec's resize
        h, w = img.shape[:2]
    if h < height or w < width:
        img = mx.image.imresize(img, max(w, width), max(h, height), interp=1)
    img, _ = mx.image.center_crop(img, (width, height))
    return img.asnumpy().astype(np.float32).transpose(2, 0, 1)


def find_images(inputs: Iterable[str | os.PathLike]) -> list[Path]:
    """Files named in ``inputs`` as given, and every image file (by suffix) under the folders among them, sorted.
    A folder with no image is a :class:`UserError`."""
    found: list[Path] = []
    for item in map(Path, inputs):
        if item.is_dir():
            images = sorted(p for p in item.rglob("*") if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file())
            if not images:
                raise UserError(f"{item}: no image files in this folder ({', '.join(IMAGE_EXTENSIONS)})")
            found += images
        else:
            found.append(item)
    return found


@dataclass
class Prediction:
    """Top-k of one image: ``classes`` indices, ``names`` class names, ``probabilities`` in 0..1, best first;
    or ``error`` (the image was skipped)."""

    image: str
    classes: list[int]
    names: list[str]
    probabilities: list[float]
    error: str | None = None

    def as_dict(self) -> dict:
        if self.error:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "top_k": [{"rank": i, "class": c, "name": n, "probability": p}
                                               for i, (c, n, p) in enumerate(zip(self.classes, self.names,
                                                                                self.probabilities))]}


def top_k(probabilities: np.ndarray, k: int) -> list[int]:
    """Indices of the ``k`` largest probabilities, largest first (ties: lower index first)."""
    order = np.argsort(-probabilities, kind="stable")
    return [int(i) for i in order[:k]]


def predict_images(model: Predictor, paths: Sequence[str | os.PathLike], names: Sequence[str], k: int = 5,
                   resize: int | None = None) -> Iterator[Prediction]:
    """Classify ``paths`` in batches of ``model.batch_size``; one :class:`Prediction` per path, in order.
    An image that does not decode gives a Prediction with ``error`` set; the others still run."""
    k = min(k, model.num_classes)
    pending: list[tuple[str, np.ndarray]] = []

    def flush() -> Iterator[Prediction]:
        probs = model.predict(np.stack([img for _, img in pending]))
        for (path, _), p in zip(pending, probs):
            best = top_k(p, k)
            yield Prediction(path, best, [names[i] for i in best], [float(p[i]) for i in best])
        pending.clear()

    for path in map(str, paths):
        try:
            pending.append((path, load_image(path, model.image_shape, resize)))
        except ImageError as exc:
            yield from flush() if pending else ()
            yield Prediction(path, [], [], [], error=str(exc))
            continue
        if len(pending) == model.batch_size:
            yield from flush()
    if pending:
        yield from flush()


def format_prediction(pred: Prediction) -> str:
    """The original's text lines: ``0: class = lynx  with probability = 25.2 %``."""
    lines = [pred.image]
    lines += [f"{rank}: class = {name}  with probability = {100 * prob:.1f} %"
              for rank, (name, prob) in enumerate(zip(pred.names, pred.probabilities))]
    return "\n".join(lines)


def predictions_json(preds: Sequence[Prediction]) -> str:
    """All predictions as one JSON document: ``[{"image": ..., "top_k": [{rank, class, name, probability}]}]``."""
    return json.dumps([p.as_dict() for p in preds], indent=1)


