"""GluonCV's ``resnet{50,101,152}_v2`` weights as this project's checkpoint (the original's layer names).

The result is ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` (``arg:``/``aux:`` keys), the files the original
project published its trained models in; ``predict/predict.py --prefix PREFIX``, ``tools/score.py`` and
``tools/export_onnx.py`` read them like any checkpoint of this project.

This module owns the import job: the output checked before anything is read (:func:`check_output`), the converted
network run against GluonCV's own on random images when ``gluoncv`` is installed (:func:`gluoncv_reference`,
:func:`check_against_gluoncv`), and the checkpoint written only if they agree (:func:`import_gluoncv`). The
mapping itself (names, the input normalisation folded into ``bn_data``, BN epsilons, the models refused and why)
is :mod:`resnet_toolkit.gluoncv_names`'s.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np

from resnet_toolkit.checkpoint import list_epochs, params_path, save_checkpoint, symbol_path
from resnet_toolkit.errors import UserError
from resnet_toolkit.gluoncv_names import (
    GLUONCV_BN_EPS,
    IMAGENET_MEAN,
    IMAGENET_STD,
    convert_params,
    net_params,
    parse_gluoncv_model,
    read_params_file,
)
from symbols.spec import CLASSIFIER

IMPORT_EPOCH = 0  # PREFIX-0000.params, as the original project's published models


@dataclass
class ImportReport:
    """What was written: the two files, the model, its classes, and the check against GluonCV (max abs difference
    of the logits on ``check_batch`` random images, None when not checked)."""

    symbol_file: Path
    params_file: Path
    model: str
    num_classes: int
    check_batch: int
    max_abs_diff: float | None


def check_output(prefix: str | os.PathLike, force: bool) -> None:
    """Refuse an output that would overwrite a checkpoint (unless ``force``: then only an earlier import, epoch 0
    alone) or that cannot be written (its folder is a file)."""
    prefix = Path(prefix)
    folder = prefix.parent
    for parent in (folder, *folder.parents):
        if parent.exists():
            if not parent.is_dir():
                raise UserError(f"cannot write {symbol_path(prefix)}: {parent} is not a directory")
            break
    sym_file, params_file = symbol_path(prefix), params_path(prefix, IMPORT_EPOCH)
    for path in (sym_file, params_file):
        if path.is_dir():
            raise UserError(f"cannot write {path}: Is a directory")
    others = [e for e in list_epochs(prefix) if e != IMPORT_EPOCH]
    if others:
        raise UserError(f"{prefix} already has checkpoints of epochs {', '.join(map(str, others))} (predict would "
                        "load the newest, not the import); choose another --out")
    existing = [str(p) for p in (sym_file, params_file) if p.exists()]
    if existing and not force:
        raise UserError(f"{' and '.join(existing)} already exist{'s' if len(existing) == 1 else ''}; "
                        "--force replaces them")


def check_against_gluoncv(symbol, arg_params: dict, aux_params: dict, reference, check_batch: int,
                          rgb_mean: Sequence[float], rgb_std: Sequence[float], size: int = 224,
                          seed: int = 0) -> tuple[float, float]:
    """``(max abs difference, max abs logit)`` between ``reference`` (a GluonCV network: logits) on normalised
    random images and the converted network (``fc1``'s output) on the same images as raw 0..255."""
    import mxnet as mx

    images = np.random.RandomState(seed).uniform(0, 255, (check_batch, 3, size, size)).astype(np.float32)
    mean = np.asarray(rgb_mean, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(rgb_std, np.float32).reshape(1, 3, 1, 1)
    ctx = next(iter(reference.collect_params().values())).list_ctx()[0]
    want = reference(mx.nd.array((images / 255.0 - mean) / std, ctx=ctx)).asnumpy()
    logits = symbol.get_internals()[f"{CLASSIFIER}_output"]
    exe = logits.simple_bind(mx.cpu(), data=images.shape, grad_req="null")
    exe.copy_params_from(arg_params, aux_params, allow_extra_params=True)
    got = exe.forward(is_train=False, data=mx.nd.array(images))[0].asnumpy()
    return float(np.abs(got - want).max()), float(np.abs(want).max())


def gluoncv_reference(model: str, params: Mapping[str, object], num_classes: int):
    """GluonCV's own ``model`` (built without downloading anything) holding ``params``; a UserError naming the
    missing package when gluoncv is not installed."""
    import mxnet as mx

    try:
        from gluoncv.model_zoo import get_model
    except ImportError:
        raise UserError("the check against GluonCV needs the gluoncv package (pinned in requirements-nodeps.txt); "
                        "--check-batch 0 skips it") from None
    net = get_model(model, classes=num_classes)
    net.initialize(ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, 64, 64)))  # shapes
    legacy = not any("." in key for key in params)
    if legacy:
        targets = {name[len(net.prefix):]: p for name, p in net.collect_params().items()}
    else:
        targets = net._collect_params_with_prefix()
    for key, param in targets.items():
        param.set_data(params[key])
    return net


def import_gluoncv(model: str, out_prefix: str | os.PathLike, *, params_file: str | os.PathLike | None = None,
                   net=None, force: bool = False, num_classes: int | None = None,
                   rgb_mean: Sequence[float] = IMAGENET_MEAN, rgb_std: Sequence[float] = IMAGENET_STD,
                   check_batch: int = 2, tolerance: float = 1e-4) -> ImportReport:
    """Convert GluonCV ``model`` from ``params_file`` (written by ``save_parameters`` or ``save_params``) or from
    ``net`` (a GluonCV network in memory, initialised) and write ``out_prefix``-symbol.json and
    ``out_prefix``-0000.params.

    Unless ``check_batch`` is 0, GluonCV's network with the same weights and the converted one run
    ``check_batch`` random 224x224 images first, and a max abs difference of the logits above ``tolerance``
    (relative to the largest logit when that exceeds 1) is refused. Nothing is written on any error.
    """
    if (params_file is None) == (net is None):
        raise ValueError("give exactly one of params_file and net")
    parse_gluoncv_model(model)
    check_output(out_prefix, force)
    if net is not None:
        params, eps = net_params(net)
        source = f"the {type(net).__name__} network"
    else:
        params, eps = read_params_file(params_file), GLUONCV_BN_EPS
        source = str(params_file)
    symbol, arg_params, aux_params = convert_params(params, model, eps=eps, rgb_mean=rgb_mean, rgb_std=rgb_std,
                                                    num_classes=num_classes, source=source)
    classes = int(arg_params[f"{CLASSIFIER}_weight"].shape[0])
    diff = None
    if check_batch:
        reference = net if net is not None else gluoncv_reference(model, params, classes)
        diff, scale = check_against_gluoncv(symbol, arg_params, aux_params, reference, check_batch, rgb_mean,
                                            rgb_std)
        limit = tolerance * max(1.0, scale)
        if not diff <= limit:
            raise UserError(f"the converted network's logits differ from GluonCV's by {diff:.3g} on random images "
                            f"(> {limit:.3g}); nothing written")
    return ImportReport(*_write(out_prefix, symbol, arg_params, aux_params), model, classes, check_batch, diff)


def _write(prefix: str | os.PathLike, symbol, arg_params: dict, aux_params: dict) -> tuple[Path, Path]:
    """Write the checkpoint (symbol first, then the params, each renamed into place); on an OSError remove what
    this call wrote and raise a UserError."""
    prefix = Path(prefix)
    sym_file = symbol_path(prefix)
    had_symbol = sym_file.exists()
    try:
        prefix.parent.mkdir(parents=True, exist_ok=True)
        params_file = save_checkpoint(prefix, IMPORT_EPOCH, symbol, arg_params, aux_params)
    except OSError as exc:
        if not had_symbol:
            sym_file.unlink(missing_ok=True)
        raise UserError(f"cannot write {prefix}: {exc.strerror or exc}") from None
    return sym_file, params_file
