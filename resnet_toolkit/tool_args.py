"""The checkpoint flags every after-training tool shares (``--prefix``, ``--epoch``, ``--image-shape``, devices,
``--plain-graph``, ``--int8``) and the one function that loads the model they name."""
from __future__ import annotations

import argparse
import os

from resnet_toolkit.checkpoint import latest_epoch, resolve_epoch, symbol_path
from resnet_toolkit.errors import UserError
from resnet_toolkit.model_facts import parse_image_shape
from resnet_toolkit.predictor import Predictor, load_int8_model, load_int8_onnx_model, load_model, with_backend


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


def add_checkpoint_args(parser: argparse.ArgumentParser, *, batch_size: int | None = 32,
                        batch_help: str = "images per forward pass", devices: bool = True, int8: bool = True,
                        plain_graph: bool = True, num_classes: bool = True, epoch_required: bool = False,
                        backend: bool = False, description: str | None = None) -> argparse._ArgumentGroup:
    """Declare the checkpoint flags the tools share (and :func:`load_model_from_flags` reads), in a "checkpoint"
    group of ``parser``: ``--prefix`` (required), ``--epoch`` (default None: the newest complete one;
    ``epoch_required`` makes it required), ``--image-shape``, and, each switched off by its keyword for a tool that
    does not take it: ``--batch-size`` (default ``batch_size`` images, ``batch_help``; None: no flag),
    ``--num-classes``, ``--gpu``/``--cpu`` (``devices``), ``--plain-graph`` and ``--int8``; ``backend`` adds
    ``--backend``. ``description`` is the group's line in ``--help``. Returns the group."""
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
                                "PREFIX-int8-EPOCH.params for MXNet, PREFIX-int8-EPOCH.onnx for onnxruntime and "
                                "openvino; CPU only); a --prefix naming those files is detected")
    if backend:
        from resnet_toolkit.backends import AUTO, AUTO_MIN_IMAGES, BACKENDS

        group.add_argument("--backend", choices=(AUTO, *BACKENDS), default=AUTO,
                           help=f"inference engine: mxnet (the folded, fused graph), onnxruntime or openvino (the "
                                f"model exported to ONNX in a temporary folder; CPU; with --int8 the "
                                f"PREFIX-int8-EPOCH.onnx tools/quantize.py wrote); auto: openvino for "
                                f"{AUTO_MIN_IMAGES} images or more when installed (measured fastest; its start costs "
                                f"seconds), else mxnet (default: auto)")
    return group


def load_model_from_flags(args, images: int | None = None) -> Predictor:
    """:func:`load_model` for the flags :func:`add_checkpoint_args` declares: ``--prefix``, ``--epoch`` (None:
    the newest, see :func:`resolve_epoch`), ``--gpu``, ``--cpu``, ``--batch-size``, ``--image-shape``,
    ``--plain-graph``, ``--int8``, ``--backend`` (``auto``: :func:`resnet_toolkit.backends.choose_backend` for
    ``images`` images) and ``--num-classes`` (checked against the checkpoint's ``fc1``). The returned model's
    ``backend`` says which engine runs it.

    ``--int8`` runs ``PREFIX-int8-symbol.json`` / ``PREFIX-int8-EPOCH.params`` (``tools/quantize.py`` writes them);
    a ``--prefix`` naming such files directly is recognised by its graph and run as INT8 without the flag."""
    from resnet_toolkit.quantize import INT8_SUFFIX, int8_files, int8_onnx_file, int8_prefix

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
    epoch = resolve_epoch(prefix, epoch if int8 else args.epoch, need_symbol=True)
    image_shape = parse_image_shape(args.image_shape) if args.image_shape else None
    is_int8 = int8 or _is_int8_checkpoint(prefix)
    backend = "mxnet"
    if getattr(args, "backend", "mxnet") != "mxnet":
        from resnet_toolkit.backends import choose_backend, require

        on_gpu = hasattr(args, "gpu") and pick_context(args.gpu, args.cpu).device_type == "gpu"
        mxnet_only = ("a GPU" if on_gpu and not is_int8
                      else "--plain-graph" if getattr(args, "plain_graph", False) else None)
        onnx_file = int8_onnx_file(prefix[:-len(INT8_SUFFIX)], epoch) if is_int8 else None
        if is_int8 and not onnx_file.is_file():
            mxnet_only = (f"an INT8 model without {onnx_file.name} (tools/quantize.py writes it "
                          f"where ONNX Runtime is installed)")
        backend = choose_backend(args.backend, images, mxnet_only)
        require(backend)
    if backend != "mxnet" and is_int8:
        model = load_int8_onnx_model(prefix, epoch, onnx_file, backend, args.batch_size,
                                     image_shape)
    elif backend != "mxnet":
        model = with_backend(load_model(prefix, epoch, None, args.batch_size, image_shape, fused=False), backend)
    elif is_int8:
        model = load_int8_model(prefix, epoch, args.batch_size, image_shape)
    else:
        model = load_model(prefix, epoch, pick_context(args.gpu, args.cpu), args.batch_size, image_shape,
                           fused=not args.plain_graph)
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
