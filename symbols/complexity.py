"""Parameters and multiply-adds of a network, read from its Symbol graph (what is built, not a second formula).

Conventions, those of torchvision's model table (``meta["num_params"]``, ``meta["_ops"]`` "GFLOPS"):

- parameters: learnable ones (convolution and FC weights, FC bias, BN gamma and beta; BN running statistics
  not). This project's input normaliser ``bn_data`` (3 fixed gammas, 3 learned betas: raw 0..255 RGB in, where
  torchvision normalises in the data pipeline) is counted apart, in ``bn_data_params``.
- GFLOPs: 10^9 multiply-adds of the convolutions and fully-connected layers for one image (a multiply-add counted
  once, as torchvision's and the papers' "FLOPs" do); BN, ReLU, pooling and sums are not counted.
"""
from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

INPUT_NORMALISER = "bn_data"


@dataclass(frozen=True)
class Complexity:
    """``params``: learnable parameters without ``bn_data`` (torchvision's count); ``bn_data_params``: its
    arguments (gamma and beta, 2 x 3); ``macs``: multiply-adds of conv and FC layers for one image, ``conv_macs``
    those of the convolutions alone."""

    params: int
    bn_data_params: int
    macs: int
    conv_macs: int = 0

    @property
    def gflops(self) -> float:
        """10^9 multiply-adds per image (torchvision's "GFLOPS")."""
        return self.macs / 1e9


def complexity(sym, image_shape: tuple[int, int, int]) -> Complexity:
    """Parameters and multiply-adds of Symbol ``sym`` for one (C, H, W) image."""
    shape = (1,) + tuple(image_shape)
    arg_shapes, _, _ = sym.infer_shape(data=shape)
    params = bn_data = 0
    for name, arg_shape in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        size = int(np.prod(arg_shape))
        if name.startswith(INPUT_NORMALISER + "_"):
            bn_data += size
        else:
            params += size
    internals = sym.get_internals()
    _, out_shapes, _ = internals.infer_shape(data=shape)
    out_shape = dict(zip(internals.list_outputs(), out_shapes))
    arg_shape = dict(zip(sym.list_arguments(), arg_shapes))
    macs = conv_macs = 0
    graph = json.loads(sym.tojson())
    nodes = graph["nodes"]
    for node in nodes:
        if node["op"] not in ("Convolution", "FullyConnected"):
            continue
        weight = arg_shape[nodes[node["inputs"][1][0]]["name"]]  # (out, in / groups, kh, kw) or (out, in)
        out_elems = int(np.prod(out_shape[node["name"] + "_output"][1:]))
        macs += out_elems * int(np.prod(weight[1:]))
        if node["op"] == "Convolution":
            conv_macs += out_elems * int(np.prod(weight[1:]))
    return Complexity(params, bn_data, macs, conv_macs)


def model_complexity(name: str, num_classes: int | None = None,
                     image_shape: tuple[int, int, int] | None = None) -> Complexity:
    """:func:`complexity` of a named model (:func:`symbols.model_names`); ``num_classes`` defaults to 10 (CIFAR)
    or 1000, ``image_shape`` to the data type's (3, 32, 32) or (3, 224, 224)."""
    from .registry import build_symbol, model_spec

    spec = model_spec(name)
    classes = num_classes or (10 if spec.net_type == "cifar10" else 1000)
    return complexity(build_symbol(spec, classes), image_shape or spec.image_shape)


def complexity_rows(names: list[str]) -> list[str]:
    """Markdown table rows ``| name | family | params | GFLOPs |`` for the README's network table."""
    from .registry import model_spec

    rows = ["| network | family | parameters | GFLOPs |", "|---|---|---:|---:|"]
    for name in names:
        c = model_complexity(name)
        rows.append(f"| {name} | {model_spec(name).family.title} | {c.params:,} | {c.gflops:.2f} |")
    return rows


README_NETWORKS = ["resnet18_v1", "resnet34_v1", "resnet50_v1", "resnet101_v1", "resnet152_v1", "resnext50_32x4d",
                   "resnext101_32x8d", "resnext101_64x4d", "resnet50_vd", "resnet50_v2", "resnet101_v2"]

if __name__ == "__main__":  # python -m symbols.complexity: the README's parameter/GFLOPs columns
    print("\n".join(complexity_rows(README_NETWORKS)))
