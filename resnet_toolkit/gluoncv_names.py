"""GluonCV's ``ResNetV2`` layer names and arrays mapped onto this project's (the original's layer names).

This module owns the mapping and nothing else: which GluonCV models map (``MAPPABLE``) and why the others are
refused (``REFUSED``), GluonCV's layers in both of Gluon's naming layouts with their counterparts here
(:func:`gluoncv_layers`), the array conversion (:func:`map_arrays`, :func:`convert_params`: the input
normalisation folded into ``bn_data``, the BN epsilons matched), and reading Gluon's parameters from a file or a
network in memory (:func:`read_params_file`, :func:`net_params`). Checking against GluonCV and writing the
checkpoint are :mod:`resnet_toolkit.importer`'s.

Input convention. The imported network takes what every network of this project takes: raw RGB 0..255 in NCHW
float32, with validation's preprocessing (shorter side 256, center crop 224: GluonCV's own evaluation transform).
GluonCV's networks take ``(x / 255 - mean) / std`` (``mean`` 0.485,0.456,0.406 and ``std`` 0.229,0.224,0.225 for
its ImageNet models). That normalisation is folded into ``bn_data`` (gamma fixed at 1, as GluonCV's first BN):

    moving_mean = 255 * (mean + std * running_mean)
    moving_var  = (255 * std)^2 * (running_var + eps_gluoncv) - eps_ours
    beta        = GluonCV's beta

so that ``bn_data(x)`` equals GluonCV's first BN of the normalised image, for every x. Every other BN differs only
in epsilon (GluonCV 1e-5, this project 2e-5): ``moving_var = running_var + 1e-5 - 2e-5``, clipped at 0 with gamma
rescaled where it clips, so that ``gamma / sqrt(moving_var + 2e-5)`` is GluonCV's ``gamma / sqrt(running_var +
1e-5)``. Everything else is copied. The outputs equal GluonCV's to float rounding (tested within 1e-4), and the
importer checks it on random images before it writes anything when ``gluoncv`` is installed.

What cannot be mapped, and is refused. This project's first unit of every stage adds a 1x1 projection of the
unit's *activated* input, ``sc(relu(bn1(x)))``, as the original did. GluonCV's ``resnet18_v2``/``resnet34_v2``
add the input ``x`` itself in stage 1 unit 1 (64 channels in and out, no projection), and its CIFAR v2 networks
do the same there and project ``x`` *before* BN and ReLU in stages 2-3. A 1x1 convolution of ``relu(bn1(x))``
cannot give back ``x`` wherever the ReLU clips, so no weights make those networks equal to ours: an identity
matrix in ``sc`` changes the outputs (tested), and the importer refuses them rather than write an approximation.

Parameter files are read with ``mx.nd.load`` (data only, never a pickle), in either of Gluon's layouts: the
structural names of ``save_parameters`` (``features.5.0.bn1.gamma``) or the older ``save_params`` names
(``stage1_batchnorm0_gamma``).
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np

from resnet_toolkit.errors import UserError
from symbols.spec import CLASSIFIER

GLUONCV_BN_EPS = 1e-5
IMAGENET_MEAN = (0.485, 0.456, 0.406)  # GluonCV's transforms.Normalize, on ToTensor's 0..1 scale
IMAGENET_STD = (0.229, 0.224, 0.225)

MAPPABLE = {"resnet50_v2": 50, "resnet101_v2": 101, "resnet152_v2": 152}
_BASIC_REASON = ("its stage 1 unit 1 adds its input x unchanged (64 channels in and out, no projection), where "
                 "this project's network adds stage1_unit1_sc, a 1x1 convolution of relu(bn1(x)), as the original "
                 "did; no weights make the two equal wherever the ReLU clips")
_CIFAR_REASON = ("GluonCV's CIFAR v2 units add their input x unchanged in stage 1 unit 1 and a 1x1 projection of x "
                 "before BN and ReLU in stages 2-3, where this project's network projects relu(bn1(x)) in the first "
                 "unit of every stage, as the original did; no weights make the two equal wherever the ReLU clips")
REFUSED = {"resnet18_v2": _BASIC_REASON, "resnet34_v2": _BASIC_REASON, "cifar_resnet20_v2": _CIFAR_REASON,
           "cifar_resnet56_v2": _CIFAR_REASON, "cifar_resnet110_v2": _CIFAR_REASON}

_BN_FIELDS = {"gamma": "gamma", "beta": "beta", "running_mean": "moving_mean", "running_var": "moving_var"}
_AUX = ("moving_mean", "moving_var")
_LEGACY_TYPE = {"bn": "batchnorm", "conv": "conv", "dense": "dense"}


@dataclass(frozen=True)
class Layer:
    """One parameterised layer of GluonCV's network and its counterpart here.

    ``gluon`` is the structural path (``features.5.0.bn1``), ``legacy`` the ``save_params`` name stem
    (``stage1_batchnorm0``), ``ours`` this project's layer name (``stage1_unit1_bn1``), ``kind`` one of
    ``'bn' 'conv' 'dense'``, and ``data_bn`` True for GluonCV's first BN (``bn_data`` here)."""

    gluon: str
    legacy: str
    ours: str
    kind: str
    data_bn: bool = False

    def fields(self) -> tuple[str, ...]:
        return {"bn": tuple(_BN_FIELDS), "conv": ("weight",), "dense": ("weight", "bias")}[self.kind]


def gluoncv_layers(net_type: str, depth: int) -> list[Layer]:
    """The layers of GluonCV's ``ResNetV2`` (ImageNet) or ``CIFARResNetV2`` of ``depth``, in creation order, each
    with its counterpart in this project's network. A GluonCV unit with no projection maps to nothing (``ours``
    of its projection is absent); callers refuse those networks (see the module docstring)."""
    from symbols import get_spec

    spec = get_spec(net_type, depth)
    counters: dict[tuple[str, str], int] = {}

    def legacy(scope: str, kind: str) -> str:  # Gluon's automatic names: a counter per layer type and scope
        n = counters.get((scope, kind), 0)
        counters[(scope, kind)] = n + 1
        return f"{scope}{_LEGACY_TYPE[kind]}{n}"

    layers = [Layer("features.0", legacy("", "bn"), "bn_data", "bn", data_bn=True),
              Layer("features.1", legacy("", "conv"), "conv0", "conv")]
    first_stage = 2
    if net_type == "imagenet":
        layers.append(Layer("features.2", legacy("", "bn"), "bn0", "bn"))
        first_stage = 5  # after bn0, relu, max pool
    convs = 3 if spec.bottleneck else 2
    for i, units in enumerate(spec.units):
        scope = f"stage{i + 1}_"
        projects = spec.filters[i + 1] != spec.filters[i]  # GluonCV: a projection only where channels change
        for j in range(units):
            path, name = f"features.{first_stage + i}.{j}", f"stage{i + 1}_unit{j + 1}"
            for k in range(1, convs + 1):
                layers.append(Layer(f"{path}.bn{k}", legacy(scope, "bn"), f"{name}_bn{k}", "bn"))
                layers.append(Layer(f"{path}.conv{k}", legacy(scope, "conv"), f"{name}_conv{k}", "conv"))
            if j == 0 and projects:
                layers.append(Layer(f"{path}.downsample", legacy(scope, "conv"), f"{name}_sc", "conv"))
    layers.append(Layer(f"features.{first_stage + spec.num_stages}", legacy("", "bn"), "bn1", "bn"))
    layers.append(Layer("output", legacy("", "dense"), CLASSIFIER, "dense"))
    return layers


def parse_gluoncv_model(model: str) -> tuple[str, int]:
    """``'resnet50_v2'`` -> ``('imagenet', 50)`` for a GluonCV model this importer maps exactly; a
    :class:`UserError` naming the reason for the ones it refuses and the valid names for anything else."""
    if model in MAPPABLE:
        return "imagenet", MAPPABLE[model]
    valid = ", ".join(MAPPABLE)
    if model in REFUSED:
        raise UserError(f"GluonCV's {model} cannot be mapped exactly onto this project's network: "
                        f"{REFUSED[model]} (models that map: {valid})")
    raise UserError(f"unknown GluonCV model {model!r}; models that map onto this project's networks: {valid} "
                    f"({', '.join(REFUSED)} cannot be mapped exactly)")


def _iter_keys(layers: Sequence[Layer], legacy: bool) -> Iterator[tuple[str, Layer, str]]:
    for layer in layers:
        for field in layer.fields():
            yield (f"{layer.legacy}_{field}" if legacy else f"{layer.gluon}.{field}"), layer, field


def _fold_data_bn(beta, mean, var, eps: float, rgb_mean: Sequence[float], rgb_std: Sequence[float],
                  our_eps: float) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``bn_data``'s (beta, moving_mean, moving_var) on raw 0..255 input, equal to GluonCV's first BN (gamma fixed
    at 1) on ``(x / 255 - rgb_mean) / rgb_std``; see the module docstring."""
    scale = 255.0 * np.asarray(rgb_std, dtype=np.float64)
    moving_mean = 255.0 * np.asarray(rgb_mean, dtype=np.float64) + scale * mean
    moving_var = scale ** 2 * (var + eps) - our_eps
    if not (moving_var + our_eps > 0).all():
        raise UserError("--std too small: the folded input normalisation has no positive variance")
    return beta, moving_mean, moving_var


def match_bn_eps(gamma: np.ndarray, var: np.ndarray, eps: float, our_eps: float) -> tuple[np.ndarray, np.ndarray]:
    """(gamma, moving_var) for a BN with epsilon ``our_eps`` that computes what one with ``gamma``, ``var`` and
    ``eps`` does: ``gamma' / sqrt(var' + our_eps) == gamma / sqrt(var + eps)``, with ``var' = max(var + eps -
    our_eps, 0)`` (gamma is changed only where the variance clips). Float64 in, float64 out."""
    new_var = np.maximum(var + eps - our_eps, 0.0)
    clipped = var + eps - our_eps < 0
    new_gamma = np.where(clipped, gamma * np.sqrt((new_var + our_eps) / (var + eps)), gamma)
    return new_gamma, new_var


def convert_params(params: Mapping[str, object], model: str, *, eps: float | Mapping[str, float] = GLUONCV_BN_EPS,
                   rgb_mean: Sequence[float] = IMAGENET_MEAN, rgb_std: Sequence[float] = IMAGENET_STD,
                   num_classes: int | None = None, source: str = "the parameters", dtype: str = "float32"):
    """GluonCV ``model``'s parameters -> ``(symbol, arg_params, aux_params)`` of this project's network.

    ``params`` maps Gluon's names (structural ``features.5.0.bn1.gamma`` or legacy ``stage1_batchnorm0_gamma``)
    to NDArrays or numpy arrays; ``eps`` is GluonCV's BN epsilon, one for all or per structural BN path
    (``'features.0'``); ``rgb_mean``/``rgb_std`` the normalisation GluonCV's network expects, on the 0..1 scale;
    ``num_classes`` (default: the file's) is checked against the classifier; ``dtype`` of the returned arrays
    (the arithmetic is float64). ``source`` names the parameters in errors. Raises :class:`UserError` for a
    refused model and for missing, extra, misshaped or non-finite parameters.
    """
    import mxnet as mx

    from symbols import get_symbol

    net_type, depth = parse_gluoncv_model(model)
    ours = map_arrays(params, net_type, depth, eps=eps, rgb_mean=rgb_mean, rgb_std=rgb_std,
                      num_classes=num_classes, source=source, model=model)
    symbol = get_symbol(ours[f"{CLASSIFIER}_weight"].shape[0], depth, net_type)
    arg_params = {n: mx.nd.array(v, dtype=dtype) for n, v in ours.items() if not n.endswith(_AUX)}
    aux_params = {n: mx.nd.array(v, dtype=dtype) for n, v in ours.items() if n.endswith(_AUX)}
    needed = set(symbol.list_arguments()) - {"data", "softmax_label"}
    assert set(arg_params) == needed and set(aux_params) == set(symbol.list_auxiliary_states()), "mapping incomplete"
    return symbol, arg_params, aux_params


def map_arrays(params: Mapping[str, object], net_type: str, depth: int, *,
               eps: float | Mapping[str, float] = GLUONCV_BN_EPS, rgb_mean: Sequence[float] = IMAGENET_MEAN,
               rgb_std: Sequence[float] = IMAGENET_STD, num_classes: int | None = None,
               source: str = "the parameters", model: str | None = None) -> dict[str, np.ndarray]:
    """The layer-by-layer mapping behind :func:`convert_params`, for any GluonCV v2 network of (``net_type``,
    ``depth``), mappable or not: this project's parameter names -> float64 arrays. A layer of this project's
    network that GluonCV's lacks (the projection of a refused model) is simply absent from the result."""
    from symbols import get_symbol
    from symbols.resnet_v2 import BN_EPS

    model = model or f"{'cifar_' if net_type == 'cifar10' else ''}resnet{depth}_v2"
    layers = gluoncv_layers(net_type, depth)
    legacy = bool(params) and not any("." in key for key in params)
    expected = {key: (layer, field) for key, layer, field in _iter_keys(layers, legacy)}
    missing = [key for key in expected if key not in params]
    extra = [key for key in params if key not in expected]
    if missing or extra:
        what = []
        if missing:
            what.append(f"lacks {len(missing)} of {model}'s {len(expected)} parameters (first: {missing[0]})")
        if extra:
            what.append(f"has {len(extra)} parameters {model} does not (first: {extra[0]})")
        raise UserError(f"{source} is not GluonCV's {model}: it {' and '.join(what)}")

    arrays = {key: _as_float64(value) for key, value in params.items()}
    classes = arrays["dense0_weight" if legacy else "output.weight"].shape[0]
    if num_classes is not None and num_classes != classes:
        raise UserError(f"--num-classes {num_classes} does not match {source}: its classifier has {classes} outputs")
    symbol = get_symbol(classes, depth, net_type)
    arg_shapes, _, aux_shapes = symbol.infer_shape(data=(1, 3, 224, 224))
    shapes = dict(zip(symbol.list_arguments(), arg_shapes))
    shapes.update(zip(symbol.list_auxiliary_states(), aux_shapes))
    ours: dict[str, np.ndarray] = {}
    wrong = []
    for key, (layer, field) in expected.items():
        name = f"{layer.ours}_{_BN_FIELDS.get(field, field)}"
        if tuple(arrays[key].shape) != tuple(shapes[name]):
            wrong.append(f"{key} {tuple(arrays[key].shape)}, {model} needs {tuple(shapes[name])}")
        elif not np.isfinite(arrays[key]).all():
            raise UserError(f"{source}: {key} holds NaN or infinite values")
        ours[name] = arrays[key]
    if wrong:
        raise UserError(f"{source} is not GluonCV's {model}: {len(wrong)} of its {len(expected)} parameters have "
                        f"other shapes (first: {wrong[0]})")

    for layer in (layer for layer in layers if layer.kind == "bn"):
        layer_eps = eps if isinstance(eps, (int, float)) else eps.get(layer.gluon, GLUONCV_BN_EPS)
        var = ours[f"{layer.ours}_moving_var"]
        if not (var + layer_eps > 0).all():
            raise UserError(f"{source}: {layer.gluon}.running_var + eps is not positive (not a trained BN)")
        if layer.data_bn:
            beta, mean, var = _fold_data_bn(ours["bn_data_beta"], ours["bn_data_moving_mean"], var, layer_eps,
                                            rgb_mean, rgb_std, BN_EPS)
            ours.update(bn_data_beta=beta, bn_data_moving_mean=mean, bn_data_moving_var=var,
                        bn_data_gamma=np.ones_like(beta))  # fixed at 1 in both networks
        else:
            gamma, var = match_bn_eps(ours[f"{layer.ours}_gamma"], var, layer_eps, BN_EPS)
            ours.update({f"{layer.ours}_gamma": gamma, f"{layer.ours}_moving_var": var})
    return ours


def _as_float64(value) -> np.ndarray:
    return np.asarray(value.asnumpy() if hasattr(value, "asnumpy") else value, dtype=np.float64)


def read_params_file(path: str | os.PathLike) -> dict:
    """The named arrays of a Gluon ``.params`` file (``mx.nd.load``: data only); clear errors for anything else."""
    import mxnet as mx

    path = Path(path)
    if not path.is_file():
        raise UserError(f"{path}: {'is a directory' if path.is_dir() else 'no such file'}")
    try:
        loaded = mx.nd.load(str(path))
    except mx.base.MXNetError:
        raise UserError(f"{path}: not an MXNet parameter file (truncated or corrupt)") from None
    if not isinstance(loaded, dict) or not loaded:
        raise UserError(f"{path}: holds no named parameters")
    if any(re.match(r"^(arg|aux):", key) for key in loaded):
        raise UserError(f"{path}: a Symbol checkpoint (arg:/aux: keys), not a Gluon parameter file; it needs no "
                        "import: use its prefix directly")
    return loaded


def net_params(net) -> tuple[dict, dict]:
    """``(params, eps)`` of a Gluon network in memory: its parameters under their structural names (what
    ``save_parameters`` writes) and each BatchNorm's epsilon by structural path."""
    import mxnet as mx
    from mxnet.gluon import nn

    params = {}
    for key, param in net._collect_params_with_prefix().items():
        try:
            params[key] = param.data().copyto(mx.cpu())
        except RuntimeError:  # MXNetError and DeferredInitializationError are RuntimeErrors
            raise UserError(f"the network's parameter {key} is not initialised (run it on a batch first)") from None
    eps = {}

    def walk(block, path: str) -> None:
        if isinstance(block, nn.BatchNorm):
            eps[path] = float(block._kwargs["eps"])
        for name, child in block._children.items():
            walk(child, f"{path}.{name}" if path else name)

    walk(net, "")
    return params, eps
