"""A run's starting weights: fresh initialisation, a checkpoint checked against the network, and fine-tuning
from another network's checkpoint."""
from __future__ import annotations

import argparse
import math
from dataclasses import dataclass, field
from pathlib import Path

from resnet_toolkit.errors import UserError
from symbols.spec import CLASSIFIER


def init_params(sym, data_shape: tuple[int, ...], seed: int) -> tuple[dict, dict]:
    """Fresh parameters for ``sym`` as ``Module.init_params`` makes them: Xavier(gaussian, in, 2) (He-normal) on
    weights, zeros on biases/betas/means, ones on gammas/variances, in sorted name order after
    ``mx.random.seed(seed)``. Both engines start from these, so they start equal."""
    import mxnet as mx

    mx.random.seed(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape, softmax_label=data_shape[:1])
    initializer = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    attrs = sym.attr_dict()
    inputs = {"data", "softmax_label"}
    args = {n: s for n, s in zip(sym.list_arguments(), arg_shapes) if n not in inputs}
    auxs = dict(zip(sym.list_auxiliary_states(), aux_shapes))
    out = []
    for shapes in (args, auxs):
        params = {}
        for name in sorted(shapes):
            params[name] = mx.nd.zeros(shapes[name])
            initializer(mx.init.InitDesc(name, attrs.get(name, None)), params[name])
        out.append(params)
    return out[0], out[1]


def check_checkpoint_fits(sym, data_shape, arg_params: dict, aux_params: dict, where: Path,
                          num_classes: int) -> None:
    """A clear error when a loaded checkpoint does not fit the network built from the flags."""
    expected = param_shapes(sym, data_shape)
    loaded = {**arg_params, **aux_params}
    fc = loaded.get(f"{CLASSIFIER}_bias")
    if fc is not None and fc.shape[0] != num_classes:
        raise UserError(f"--num-classes {num_classes} does not match checkpoint {where}, which has "
                        f"{fc.shape[0]} classes")
    for name, shape in expected.items():
        if name not in loaded:
            raise UserError(f"checkpoint {where} has no parameter {name!r}: it was trained with another --depth, "
                            f"--network or --data-type")
        if tuple(loaded[name].shape) != tuple(shape):
            raise UserError(f"checkpoint {where}: {name} has shape {tuple(loaded[name].shape)}, the network "
                            f"built from the flags needs {tuple(shape)} (another --depth, --network or --data-type?)")
    extra = sorted(set(loaded) - set(expected))
    if extra:
        raise UserError(f"checkpoint {where} has parameter {extra[0]!r} ({len(extra)} in all) that the network built "
                        f"from the flags lacks: it was trained with another --depth, --network or --data-type")


def param_shapes(sym, data_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    """Every parameter and auxiliary state of ``sym`` (inputs aside) -> its shape for a batch of ``data_shape``
    (batch, channels, height, width)."""
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape, softmax_label=data_shape[:1])
    shapes = {n: tuple(s) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in ("data", "softmax_label")}
    shapes.update((n, tuple(s)) for n, s in zip(sym.list_auxiliary_states(), aux_shapes))
    return shapes


def check_symbol_file(sym, data_shape: tuple[int, ...], path: Path) -> None:
    """A :class:`UserError` when ``path`` (a checkpoint's ``-symbol.json``) holds another network than ``sym``:
    other layers (operator and name, in order) or other parameter shapes for a batch of ``data_shape``. Attributes
    that leave the network's function alone (BatchNorm momentum, ``--workspace``, ``--memonger``'s marks) may
    differ: the file then stays as it is."""
    import json

    import mxnet as mx

    def layers(text: str) -> list[tuple[str, str]]:
        return [(node["op"], node["name"]) for node in json.loads(text)["nodes"]]

    hint = ("a retrain cannot change the network (another --depth, --network, --num-classes or --image-shape?); "
            "start a new run with another --model-prefix")
    try:
        saved_layers = layers(path.read_text(encoding="utf-8"))
        saved_shapes = param_shapes(mx.sym.load(str(path)), data_shape)
    except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError, mx.base.MXNetError):
        raise UserError(f"{path}: not an MXNet symbol file (damaged?); {hint}") from None
    built_layers = layers(sym.tojson())
    if saved_layers != built_layers:
        first = next((b for a, b in zip(saved_layers, built_layers) if a != b), None)
        where = (f"layer {first[1]!r} ({first[0]})" if first else
                 f"{len(built_layers)} nodes, not {len(saved_layers)}")
        raise UserError(f"--retrain: the flags build another network than {path} holds ({where}); {hint}")
    for name, shape in param_shapes(sym, data_shape).items():
        if saved_shapes.get(name) != shape:
            raise UserError(f"--retrain: the flags build another network than {path} holds ({name} has shape "
                            f"{saved_shapes.get(name)} there, {shape} from the flags); {hint}")


# The PREFIX-args.json values (flag names) that shape the network a checkpoint holds: a --retrain changes none.
NETWORK_FLAGS = ("network", "depth", "cardinality", "bottleneck-width", "num-classes", "image-shape")


def check_same_network(saved: dict, requested: dict, where: Path, prefix: str) -> None:
    """A :class:`UserError` naming every :data:`NETWORK_FLAGS` value that differs between ``saved`` (what the
    continued run's ``where``, its ``PREFIX-args.json``, holds) and ``requested`` (this run's flags); both map flag
    names to values, the image shape as 'C,H,W' (:func:`resnet_toolkit.train_args.network_flags`); a flag
    ``saved`` lacks (a file of an older version) is not compared."""
    changed = [f"--{flag} {saved[flag]} -> {requested.get(flag)}" for flag in NETWORK_FLAGS
               if flag in saved and saved[flag] != requested.get(flag)]
    if changed:
        raise UserError(f"--retrain cannot change the network saved in {where}: {', '.join(changed)} (saved -> "
                        f"requested); start a new run with another --model-prefix (--finetune {prefix} starts one "
                        f"from its weights)")



def zero_last_layers(network: str, arg_params: dict) -> list[str]:
    """``--last-gamma``: zero in place what makes every residual unit of ``network`` start as the identity
    (:func:`symbols.spec.last_layer_names`); returns the names zeroed."""
    from symbols.spec import last_layer_names

    names = last_layer_names(network, arg_params)
    for name in names:
        arg_params[name][:] = 0
    return names


def parse_prefix_epoch(text: str, flag: str) -> tuple[str, str | None]:
    """A checkpoint named on the command line as ``'PREFIX[,EPOCH]'`` (``--finetune``, ``--teacher``) ->
    ``(PREFIX, EPOCH or None)``; the epoch is a number (None: the newest). Errors name ``flag``."""
    prefix, _, epoch = text.rpartition(",") if "," in text else (text, "", "")
    if not prefix:
        raise UserError(f"{flag} wants PREFIX[,EPOCH], got {text!r}")
    if epoch and not epoch.strip().isdigit():
        raise UserError(f"{flag} {text}: the epoch after the comma must be a number, got {epoch!r}")
    return prefix, (epoch.strip() or None)


def parse_finetune(text: str) -> tuple[str, str | None]:
    """``--finetune PREFIX[,EPOCH]`` -> ``(PREFIX, EPOCH or None)``."""
    return parse_prefix_epoch(text, "--finetune")


@dataclass
class FinetuneReport:
    """What :func:`finetune_params` did with each array: taken from the checkpoint, initialised afresh, or left
    out (in the checkpoint, not in the network)."""

    source: Path
    loaded: list[str] = field(default_factory=list)
    reinitialised: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)

    def lines(self) -> list[str]:
        def names(items: list[str]) -> str:
            return ", ".join(items) if len(items) <= 6 else f"{', '.join(items[:6])}, ... ({len(items)} in all)"

        out = [f"--finetune {self.source}: loaded {len(self.loaded)} arrays"]
        if self.reinitialised:
            out.append(f"--finetune: initialised afresh {len(self.reinitialised)}: {names(self.reinitialised)}")
        if self.dropped:
            out.append(f"--finetune: dropped {len(self.dropped)} of the checkpoint's: {names(self.dropped)}")
        return out


# The classifier: always initialised afresh by --finetune (the new task's classes).
CLASSIFIER_PREFIX = f"{CLASSIFIER}_"


def finetune_params(text: str, sym, data_shape: tuple[int, ...], seed: int
                    ) -> tuple[dict, dict, FinetuneReport]:
    """Starting weights for ``--finetune PREFIX[,EPOCH]``: every array of ``sym`` whose name and shape match
    the checkpoint's comes from it, the classifier ``fc1`` and everything else is initialised as
    :func:`init_params` does. Raises :class:`UserError` when the checkpoint is missing, or when fewer than half of
    the network's arrays (the classifier aside) fit it by name and shape: it holds another network."""
    from resnet_toolkit import checkpoint as ckpt

    prefix, epoch_text = parse_finetune(text)
    epoch = ckpt.resolve_epoch(prefix, epoch_text, flag=f"--finetune {text}")
    source_args, source_auxs = ckpt.load_params(prefix, epoch)
    source = {**source_args, **source_auxs}
    arg_params, aux_params = init_params(sym, data_shape, seed)
    report = FinetuneReport(ckpt.params_path(prefix, epoch))
    for params in (arg_params, aux_params):
        for name, value in params.items():
            found = source.get(name)
            if (found is not None and not name.startswith(CLASSIFIER_PREFIX)
                    and tuple(found.shape) == tuple(value.shape)):
                params[name] = found.astype(value.dtype)
                report.loaded.append(name)
            else:
                report.reinitialised.append(name)
    report.dropped = sorted(set(source) - set(arg_params) - set(aux_params))
    body = [n for n in report.reinitialised if not n.startswith(CLASSIFIER_PREFIX)]
    if len(body) > len(report.loaded):
        raise UserError(f"--finetune {text}: only {len(report.loaded)} of the network's "
                        f"{len(report.loaded) + len(body)} arrays (classifier aside) fit {report.source} by name and "
                        f"shape: it holds another network (another --depth, --network or --data-type?); e.g. {body[0]}")
    return arg_params, aux_params, report


# ------------------------------------------------------------------------------------------------- flags
def add_finetune_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    tune = parser.add_argument_group("Fine-tuning")
    tune.add_argument("--finetune", type=str, default=None,
                      help="PREFIX[,EPOCH]: start from this checkpoint's weights (epoch omitted: the newest); "
                           "every parameter whose name and shape match is loaded, fc1 is new for --num-classes; "
                           "a fresh schedule and optimizer state")
    tune.add_argument("--freeze-stages", type=int, default=0,
                      help="with --finetune: do not train the stem and stages 1..N")
    tune.add_argument("--lr-mult-body", type=float, default=1.0,
                      help="rate multiplier for everything but the classifier fc1 (e.g. 0.1 when fine-tuning)")
    return tune


def check_finetune_args(args, num_stages: int) -> None:
    """One clear :class:`UserError` for fine-tuning flags that cannot go together or are out of range."""
    if not math.isfinite(args.lr_mult_body) or args.lr_mult_body < 0:
        raise UserError(f"--lr-mult-body must be a finite number >= 0, got {args.lr_mult_body}")
    if args.freeze_stages < 0:
        raise UserError(f"--freeze-stages must be >= 0, got {args.freeze_stages}")
    if args.finetune and args.retrain:
        raise UserError("--finetune starts a new run from other weights; --retrain continues this run's own "
                        "checkpoints: use one of them")
    if args.freeze_stages and not args.finetune:
        raise UserError("--freeze-stages needs --finetune (frozen random weights learn nothing)")
    if args.freeze_stages > num_stages:
        raise UserError(f"--freeze-stages {args.freeze_stages}: the network has {num_stages} stages")
