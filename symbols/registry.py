"""Model names in GluonCV's style (``resnet50_v2``, ``cifar_resnet164_v2``) over the spec table."""
from __future__ import annotations

import re

from resnetv2.errors import UserError

from .spec import CIFAR_NAMED_DEPTHS, IMAGENET_UNITS, get_spec

_NAME = re.compile(r"^(cifar_)?resnet(\d+)_v2$")


def model_names() -> list[str]:
    """Every named model: ImageNet depths and the papers' CIFAR depths."""
    return ([f"resnet{d}_v2" for d in IMAGENET_UNITS] + [f"cifar_resnet{d}_v2" for d in CIFAR_NAMED_DEPTHS])


def parse_model_name(name: str) -> tuple[str, int]:
    """``'cifar_resnet164_v2'`` -> ``('cifar10', 164)``; raises a clear error for anything else."""
    match = _NAME.match(name)
    if not match:
        raise UserError(f"unknown model name {name!r}; expected e.g. {', '.join(model_names()[:3])}, ...")
    data_type, depth = ("cifar10" if match.group(1) else "imagenet"), int(match.group(2))
    get_spec(data_type, depth)  # validates the depth
    return data_type, depth


def get_symbol(num_classes: int, depth: int, data_type: str = "imagenet", **kwargs):
    """The Symbol network (see :func:`symbols.resnet_v2.get_symbol`)."""
    from .resnet_v2 import get_symbol as build
    return build(num_classes, depth, data_type, **kwargs)


def get_net(num_classes: int, depth: int, data_type: str = "imagenet", **kwargs):
    """The Gluon network (see :func:`symbols.gluon_resnet_v2.get_net`)."""
    from .gluon_resnet_v2 import get_net as build
    return build(num_classes, depth, data_type, **kwargs)


def get_model(name: str, num_classes: int | None = None, api: str = "gluon", **kwargs):
    """Build a named model; ``num_classes`` defaults to 10 (CIFAR) or 1000 (ImageNet); ``api`` 'gluon'|'symbol'."""
    data_type, depth = parse_model_name(name)
    classes = num_classes or (10 if data_type == "cifar10" else 1000)
    build = get_net if api == "gluon" else get_symbol
    return build(classes, depth, data_type, **kwargs)
