"""Inference from a training checkpoint: load it, preprocess images as validation does, batch, top-k.

A checkpoint is MXNet's pair ``{prefix}-symbol.json`` (ending in ``SoftmaxOutput`` named ``softmax``) and
``{prefix}-{epoch:04d}.params`` (``arg:NAME`` / ``aux:NAME``), with the data set's ``synset.txt`` (one class name
per line) beside it. Both files are data (JSON and MXNet's NDArray format); nothing loaded from them runs code.

Preprocessing matches the validation iterator: decode as RGB with MXNet's own decoder (the one ImageRecordIter
uses), shorter side to ``resize`` (256 for a 224 input, the input size itself for CIFAR), center crop to the input
size, raw 0..255 values in NCHW float32: the network's ``bn_data`` normalises, as in the original.
"""
from __future__ import annotations

import argparse
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from resnet_toolkit.checkpoint import latest_epoch, list_epochs, load_params, params_path, symbol_path
from resnet_toolkit.errors import UserError, clear_failed_ops
from resnet_toolkit.im2rec import IMAGE_EXTENSIONS, ImageLimits, header_size_problem
from resnet_toolkit.synset import read_synset

CLASSIFIER = "fc1"


def check_checkpoint(prefix: str | os.PathLike, epoch: int) -> tuple[Path, Path]:
    """The checkpoint's two files; a :class:`UserError` naming the missing one (and the epochs that exist)."""
    symbol_file, params_file = symbol_path(prefix), params_path(prefix, epoch)
    if not symbol_file.is_file():
        raise UserError(f"{symbol_file}: no such checkpoint symbol file (check --prefix)")
    if not params_file.is_file():
        epochs = list_epochs(prefix)
        have = f"saved epochs: {', '.join(map(str, epochs))}" if epochs else "no epoch saved for this prefix"
        raise UserError(f"{params_file}: no checkpoint for epoch {epoch} ({have})")
    return symbol_file, params_file


def resolve_checkpoint(prefix: str | os.PathLike, epoch: int | None = None) -> int:
    """The epoch to load: ``epoch`` itself, or for None the newest complete checkpoint (the largest NNNN with a
    ``-NNNN.params`` file; the original project's published models are epoch 0). A :class:`UserError` naming the
    files it looked for when there is none, and :func:`check_checkpoint`'s errors otherwise."""
    if epoch is None:
        epochs = list_epochs(prefix)
        if not epochs:
            name, folder = Path(prefix).name, Path(prefix).parent
            where = os.path.abspath(folder) + ("" if folder.is_dir() else ", a folder that does not exist")
            raise UserError(f"no checkpoint {name}-NNNN.params (looked for {name}-symbol.json and {name}-*.params "
                            f"in {where})")
        epoch = epochs[-1]
    check_checkpoint(prefix, epoch)
    return epoch


def load_checkpoint(prefix: str | os.PathLike, epoch: int):
    """``(symbol, arg_params, aux_params)`` of a checkpoint, with clear errors for missing or damaged files."""
    symbol_file, _ = check_checkpoint(prefix, epoch)  # before importing MXNet: a fast, clear error
    import mxnet as mx

    clear_failed_ops()  # an earlier failed operation in this process must not surface in this model
    try:
        symbol = mx.sym.load(str(symbol_file))
    except mx.base.MXNetError:
        raise UserError(f"{symbol_file}: not an MXNet symbol file") from None
    arg_params, aux_params = load_params(prefix, epoch)
    return symbol, arg_params, aux_params


def inference_symbol(symbol):
    """The network without its training head: ``softmax`` of the classifier's output (``fc1_output``).

    A checkpoint's symbol ends in ``SoftmaxOutput``, which needs a label input; its forward equals this one's.
    """
    import mxnet as mx

    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    if f"{CLASSIFIER}_output" in outputs:
        logits = internals[f"{CLASSIFIER}_output"]
    else:
        children = symbol.get_children()
        if children is None:
            raise UserError("the checkpoint's symbol has no classifier layer (fc1) before its output")
        logits = children[0]
    return mx.sym.softmax(logits, axis=1, name="softmax")


def num_classes_of(arg_params: dict, params_file: str | os.PathLike = "checkpoint") -> int:
    """Output count of the classifier ``fc1`` (rows of ``fc1_weight``)."""
    weight = arg_params.get(f"{CLASSIFIER}_weight")
    if weight is None:
        raise UserError(f"{params_file}: has no {CLASSIFIER}_weight; not a checkpoint of this project's networks")
    return int(weight.shape[0])


def default_image_shape(symbol) -> tuple[int, int, int]:
    """(3, 224, 224) for a network with the ImageNet stem (``pool0``), else (3, 32, 32) (the CIFAR stem)."""
    return (3, 224, 224) if "pool0_output" in symbol.get_internals().list_outputs() else (3, 32, 32)


def default_resize(image_shape: Sequence[int]) -> int:
    """Validation's shorter side for an input size: 256 for 224 (the 256-short-side val records), else the size."""
    size = min(image_shape[1:])
    return size if size <= 64 else int(round(size * 256 / 224))


def parse_image_shape(text: str) -> tuple[int, int, int]:
    """``'3,224,224'`` -> ``(3, 224, 224)``; a clear error otherwise."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or shape[0] != 3 or min(shape) <= 0:
        raise UserError(f"--image-shape must be 3,HEIGHT,WIDTH (e.g. 3,224,224), got {text!r}")
    return shape  # type: ignore[return-value]


def pick_context(gpu: int | None = None, cpu: bool = False):
    """``mx.cpu()`` when asked or when no GPU is present, else ``mx.gpu(gpu or 0)``; an absent GPU is an error."""
    import mxnet as mx

    gpus = mx.context.num_gpus()
    if cpu or (gpu is None and gpus == 0):
        return mx.cpu()
    gpu = gpu or 0
    if not 0 <= gpu < gpus:
        raise UserError(f"--gpu {gpu}: this machine has {gpus} GPU(s) visible to MXNet; use --cpu")
    return mx.gpu(gpu)


class Model:
    """A bound inference network: ``predict(batch)`` -> class probabilities.

    ``batch`` is float32 NCHW raw RGB 0..255 with at most ``batch_size`` images; returns (n, num_classes)
    float32 probabilities. ``symbol`` is the inference symbol (softmax of fc1) and ``arg_params`` /
    ``aux_params`` its parameters, for exporters. ``fast`` (an object with ``forward(batch)``: the folded, fused
    float32 graph or an INT8 one) runs when set; ``module`` otherwise (None for INT8 models).
    """

    def __init__(self, module, symbol, arg_params: dict, aux_params: dict, batch_size: int,
                 image_shape: tuple[int, int, int], num_classes: int, fast=None):
        self.module = module
        self.fast = fast  # resnet_toolkit.fastpath.InferenceModel bound for batch_size, or None: the module runs
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
        if self.fast is not None:
            return self.fast.forward(batch.astype(np.float32, copy=False)).asnumpy()[:n]
        self.module.forward(mx.io.DataBatch([mx.nd.array(batch, dtype="float32")]), is_train=False)
        return self.module.get_outputs()[0].asnumpy()[:n]


def load_model(prefix: str | os.PathLike, epoch: int, ctx=None, batch_size: int = 32,
               image_shape: Sequence[int] | None = None, fast: bool = True) -> Model:
    """Load checkpoint ``prefix``/``epoch`` and bind it for inference on ``ctx`` (default CPU) for batches of up
    to ``batch_size`` images of ``image_shape`` (default from the network's stem: 224 or 32 square).

    ``fast`` (CPU only, the default): predict through :class:`resnet_toolkit.fastpath.InferenceModel` (conv+BN folded,
    BN+ReLU fused, MKLDNN subgraph); the same outputs within 1e-4 (tested), 1.03-1.12x the plain module's img/s
    on a quiet 2-core machine (bench/RESULTS.md). ``fast=False`` runs the checkpoint's graph as saved (MXNet
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
    fast_model = None
    if fast and (ctx or mx.cpu()).device_type == "cpu":
        from resnet_toolkit.fastpath import InferenceModel
        try:
            fast_model = InferenceModel(net, arg_params, aux_params, (batch_size,) + shape, ctx=ctx or mx.cpu())
        except (mx.base.MXNetError, KeyError, ValueError):
            fast_model = None  # an unusual graph: the plain module above runs it
    return Model(module, net, arg_params, aux_params, batch_size, shape, num_classes, fast_model)


def load_int8_model(prefix: str | os.PathLike, epoch: int, batch_size: int = 32,
                    image_shape: Sequence[int] | None = None) -> Model:
    """Load the INT8 model :mod:`resnet_toolkit.quantize` wrote (``prefix`` is its own prefix, ``P-int8``) and bind it
    on the CPU for batches of up to ``batch_size`` images (``image_shape`` defaults from the stem)."""
    import mxnet as mx

    from resnet_toolkit.capability import probe
    from resnet_toolkit.quantize import Int8Executor, is_quantized

    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
    if not is_quantized(symbol):
        raise UserError(f"{symbol_path(prefix)}: not an INT8 graph (make one with tools/quantize.py)")
    shape = tuple(image_shape) if image_shape else default_image_shape(symbol)
    probe().require("int8", "INT8 inference (--int8)")
    try:
        executor = Int8Executor(symbol, arg_params, aux_params, (batch_size,) + shape)
        num_classes = int(executor.executor.outputs[0].shape[1])
    except (mx.base.MXNetError, KeyError) as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
        raise UserError(f"{params_path(prefix, epoch)}: does not fit {symbol_path(prefix).name}: {detail}") from None
    return Model(None, symbol, arg_params, aux_params, batch_size, shape, num_classes, executor)


def add_checkpoint_args(parser: argparse.ArgumentParser, *, batch_size: int | None = 32,
                        batch_help: str = "images per forward pass", devices: bool = True, int8: bool = True,
                        plain_graph: bool = True, num_classes: bool = True, epoch_required: bool = False,
                        description: str | None = None) -> argparse._ArgumentGroup:
    """Declare the checkpoint flags the tools share (and :func:`load_model_from_flags` reads), in a "checkpoint"
    group of ``parser``: ``--prefix`` (required), ``--epoch`` (default None: the newest complete one;
    ``epoch_required`` makes it required), ``--image-shape``, and, each switched off by its keyword for a tool that
    does not take it: ``--batch-size`` (default ``batch_size`` images, ``batch_help``; None: no flag),
    ``--num-classes``, ``--gpu``/``--cpu`` (``devices``), ``--plain-graph`` and ``--int8``. ``description`` is the
    group's line in ``--help``. Returns the group."""
    group = parser.add_argument_group("checkpoint", description)
    group.add_argument("--prefix", required=True,
                       help="checkpoint prefix (PREFIX-symbol.json, PREFIX-NNNN.params), e.g. "
                            "model/resnet-imagenet-50-0")
    group.add_argument("--epoch", type=int, required=epoch_required,
                       help="checkpoint epoch, the NNNN of PREFIX-NNNN.params"
                            + ("" if epoch_required else " (default: the newest complete one)"))
    if batch_size is not None:
        group.add_argument("--batch-size", type=int, default=batch_size, help=f"{batch_help} (default {batch_size})")
    group.add_argument("--image-shape", help="network input 3,H,W (default: 3,224,224 or 3,32,32 from the stem)")
    if num_classes:
        group.add_argument("--num-classes", type=int, help="check that the checkpoint has this many classes")
    if devices:
        group.add_argument("--gpu", type=int, help="GPU id to run on (default: GPU 0 when present, else CPU)")
        group.add_argument("--cpu", action="store_true", help="run on the CPU even when a GPU is present")
    if plain_graph:
        group.add_argument("--plain-graph", action="store_true",
                           help="run the checkpoint's graph as saved instead of the folded, fused one (same results)")
    if int8:
        group.add_argument("--int8", action="store_true",
                           help="run the INT8 model tools/quantize.py wrote (PREFIX-int8-symbol.json, "
                                "PREFIX-int8-EPOCH.params; CPU only); a --prefix naming those files is detected")
    return group


def load_model_from_flags(args) -> Model:
    """:func:`load_model` for the flags :func:`add_checkpoint_args` declares: ``--prefix``, ``--epoch`` (None:
    the newest, see :func:`resolve_checkpoint`), ``--gpu``, ``--cpu``, ``--batch-size``, ``--image-shape``,
    ``--plain-graph``, ``--int8`` and ``--num-classes`` (checked against the checkpoint's ``fc1``).

    ``--int8`` runs ``PREFIX-int8-symbol.json`` / ``PREFIX-int8-EPOCH.params`` (``tools/quantize.py`` writes them);
    a ``--prefix`` naming such files directly is recognised by its graph and run as INT8 without the flag."""
    from resnet_toolkit.quantize import int8_files, int8_prefix

    prefix = str(args.prefix)
    int8 = getattr(args, "int8", False)
    if int8:
        if args.gpu is not None:
            raise UserError("--int8 runs on the CPU only (MXNet 1.9.1's INT8 kernels are oneDNN's); drop --gpu")
        prefix = prefix[:-len("-int8")] if prefix.endswith("-int8") else prefix
        epoch = args.epoch if args.epoch is not None else latest_epoch(int8_prefix(prefix))
        which = epoch if epoch is not None else "N"
        hint = f"make it with: python tools/quantize.py --prefix {prefix} --epoch {which} "
        if epoch is None:
            raise UserError(f"{int8_prefix(prefix)}-NNNN.params: no INT8 model; {hint}--calib-rec TRAIN_OR_VAL.rec")
        missing = [p for p in int8_files(prefix, epoch) if not p.is_file()]
        if missing:
            raise UserError(f"{missing[0]}: no INT8 model for epoch {epoch}; {hint}--calib-rec TRAIN_OR_VAL.rec")
        prefix = int8_prefix(prefix)
    epoch = resolve_checkpoint(prefix, epoch if int8 else args.epoch)
    image_shape = parse_image_shape(args.image_shape) if args.image_shape else None
    if int8 or _is_int8_checkpoint(prefix):
        model = load_int8_model(prefix, epoch, args.batch_size, image_shape)
    else:
        model = load_model(prefix, epoch, pick_context(args.gpu, args.cpu), args.batch_size, image_shape,
                           fast=not args.plain_graph)
    if args.num_classes is not None and args.num_classes != model.num_classes:
        raise UserError(f"--num-classes {args.num_classes} does not match the checkpoint: its fc1 has "
                        f"{model.num_classes} outputs")
    return model


def _is_int8_checkpoint(prefix: str | os.PathLike) -> bool:
    """Whether ``PREFIX-symbol.json`` holds a quantized graph (read as text: no MXNet needed)."""
    try:
        text = symbol_path(prefix).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return False
    return '"_contrib_quantize' in text


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


def predict_images(model: Model, paths: Sequence[str | os.PathLike], names: Sequence[str], k: int = 5,
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


@dataclass
class Score:
    """Accuracy over a record file: ``images`` scored, ``top1``/``top5`` correct fractions (0..1), ``top_k`` the k
    of ``top5`` (5, or the class count when smaller), ``seconds`` wall time of the pass (decode included)."""

    images: int
    top1: float
    top5: float
    top_k: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


def score_record(model: Model, rec: str | os.PathLike, progress: bool = True, preprocess_threads: int = 2,
                 resize: int | None = None) -> Score:
    """Top-1 and top-5 accuracy of ``model`` over every image of ``rec`` (its ``.idx`` beside it), preprocessed as
    validation: the record's image (its shorter side first resized to ``resize`` pixels when given)
    center-cropped to the model's input (CIFAR: the whole 32x32 image). The counts of
    :func:`resnet_toolkit.evaluation.evaluate_record`, which also gives the confusion matrix and per-class accuracy."""
    from resnet_toolkit.evaluation import evaluate_record

    return evaluate_record(model, rec, progress, preprocess_threads, resize).score()
