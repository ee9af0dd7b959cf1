"""Model names in GluonCV's style over the spec table, and the builders every tool calls.

Names: ``resnet50_v2`` / ``cifar_resnet164_v2`` (pre-activation, the original's), ``resnet50_v1`` /
``cifar_resnet20_v1`` (v1b), ``resnext50_32x4d`` / ``cifar_resnext29_32x4d`` (ResNeXt, cardinality x width),
``resnet50_vd`` (ResNet-vd, ImageNet only).
"""
from __future__ import annotations

import re

from .errors import UserError
from .spec import CIFAR_NAMED_DEPTHS, FAMILIES, IMAGENET_UNITS, NETWORKS, ResNetSpec, family_defaults, get_spec

_NAMES = (
    (re.compile(r"^(cifar_)?resnet(\d+)_v2$"), "resnet_v2"),
    (re.compile(r"^(cifar_)?resnet(\d+)_v1$"), "resnet_v1"),
    (re.compile(r"^(cifar_)?resnet(\d+)_vd$"), "resnet_vd"),
    (re.compile(r"^(cifar_)?resnext(\d+)_(\d+)x(\d+)d$"), "resnext"),
)
# The ResNeXt shapes published with weights (torchvision, GluonCV, MindSpore) and the paper's CIFAR ones.
RESNEXT_NAMES = ("resnext50_32x4d", "resnext101_32x4d", "resnext101_32x8d", "resnext101_64x4d",
                 "cifar_resnext29_32x4d", "cifar_resnext29_16x64d")
NAME_PATTERNS = "[cifar_]resnet<depth>_v2|_v1, resnet<depth>_vd, [cifar_]resnext<depth>_<groups>x<width>d"


def model_names() -> list[str]:
    """Every named model: each family at its ImageNet depths and the papers' CIFAR depths (the original's
    ``*_v2`` names first, in their old order), and the published ResNeXt shapes. Other depths and ResNeXt
    shapes that fit the table are accepted by :func:`model_spec` too."""
    names = []
    for suffix in ("v2", "v1"):
        names += [f"resnet{d}_{suffix}" for d in IMAGENET_UNITS] + [f"cifar_resnet{d}_{suffix}"
                                                                    for d in CIFAR_NAMED_DEPTHS]
    names += list(RESNEXT_NAMES) + [f"resnet{d}_vd" for d in IMAGENET_UNITS]
    return names


def model_spec(name: str) -> ResNetSpec:
    """The spec of a model name (``'resnext101_64x4d'``, ``'cifar_resnet20_v1'``, ...); a clear error naming the
    accepted forms for anything else, or the valid depths for an unknown depth."""
    for pattern, network in _NAMES:
        match = pattern.match(name)
        if match:
            net_type = "cifar10" if match.group(1) else "imagenet"
            groups = width = None
            if network == "resnext":
                groups, width = int(match.group(3)), int(match.group(4))
            return get_spec(net_type, int(match.group(2)), network, groups, width)
    raise UserError(f"unknown model name {name!r}; valid: {NAME_PATTERNS} (e.g. resnet50_v2, cifar_resnet164_v2, "
                    f"resnet50_v1, resnext50_32x4d, resnet50_vd)")


def parse_model_name(name: str) -> tuple[str, int]:
    """``'cifar_resnet164_v2'`` -> ``('cifar10', 164)``: the data type and depth of any model name (the family
    and grouping are in :func:`model_spec`); raises a clear error for an unknown name or depth."""
    spec = model_spec(name)
    return spec.net_type, spec.depth


def build_symbol(spec: ResNetSpec, num_classes: int, **kwargs):
    """The Symbol of ``spec`` (ending in ``SoftmaxOutput`` 'softmax'); ``kwargs``: ``bn_mom``, ``workspace``,
    ``memonger``."""
    if spec.network == "resnet_v2":
        from .resnet_v2 import resnet_symbol
        return resnet_symbol(spec, num_classes, **kwargs)
    from .resnet_v1 import resnet_symbol
    return resnet_symbol(spec, num_classes, **kwargs)


def build_net(spec: ResNetSpec, num_classes: int, **kwargs):
    """The (uninitialised) Gluon net of ``spec``, returning logits; ``kwargs``: ``bn_mom``."""
    if spec.network == "resnet_v2":
        from .gluon_resnet_v2 import PreActResNet
        return PreActResNet(spec, num_classes, **kwargs)
    from .gluon_resnet_v1 import ResNetV1
    return ResNetV1(spec, num_classes, **kwargs)


def get_symbol(num_classes: int, depth: int, net_type: str = "imagenet", network: str = "resnet_v2",
               cardinality: int | None = None, bottleneck_width: int | None = None, **kwargs):
    """The Symbol network of (``net_type``, ``depth``, ``network``); ``cardinality``/``bottleneck_width`` for
    'resnext' (None: 32 and 4). See :func:`symbols.resnet_v2.get_symbol` for the other keywords."""
    return build_symbol(get_spec(net_type, depth, network, cardinality, bottleneck_width), num_classes, **kwargs)


def get_net(num_classes: int, depth: int, net_type: str = "imagenet", network: str = "resnet_v2",
            cardinality: int | None = None, bottleneck_width: int | None = None, **kwargs):
    """The Gluon network of (``net_type``, ``depth``, ``network``); see :func:`get_symbol`."""
    return build_net(get_spec(net_type, depth, network, cardinality, bottleneck_width), num_classes, **kwargs)


def get_model(name: str, num_classes: int | None = None, api: str = "gluon", **kwargs):
    """Build a named model; ``num_classes`` defaults to 10 (CIFAR) or 1000 (ImageNet); ``api`` 'gluon'|'symbol'."""
    spec = model_spec(name)
    classes = num_classes or (10 if spec.net_type == "cifar10" else 1000)
    if api not in ("gluon", "symbol"):
        raise UserError(f"unknown api {api!r}; valid: gluon, symbol")
    return (build_net if api == "gluon" else build_symbol)(spec, classes, **kwargs)


def describe_networks() -> str:
    """One line per family: its name and source (for ``--help`` texts and error messages)."""
    return "; ".join(f"{n}: {FAMILIES[n].title}, {FAMILIES[n].source}" for n in NETWORKS)


__all__ = ["build_net", "build_symbol", "describe_networks", "family_defaults", "get_model", "get_net",
           "get_symbol", "model_names", "model_spec", "parse_model_name"]
