"""Post-activation ResNets with MXNet's Symbol API: ResNet-v1b, ResNeXt and ResNet-vd from the spec table.

Unit (He et al. 2015 with torchvision's "v1.5" stride placement): conv -> BN -> ReLU, twice (basic: 3x3, 3x3) or
three times (bottleneck: 1x1, 3x3 with the stride and ``cardinality`` groups, 1x1), without the last ReLU; the
sum with the shortcut, then ReLU. The shortcut is the identity, or where the shape changes a 1x1 convolution and
a BN (ResNet-vd: a 2x2 average pool, then a stride-1 1x1 convolution and a BN, on strided units).

Names follow the pre-activation networks': ``bn_data``, ``conv0``, ``bn0``, ``relu0``, ``pool0`` (the deep stem:
``conv0_{1,2,3}``, ``bn0_{1,2,3}``, ``relu0_{1,2,3}``, ``pool0``), ``stage{i}_unit{j}_{conv,bn,relu}{k}``,
``stage{i}_unit{j}_sc`` / ``_sc_bn`` / ``_sc_pool``, ``_plus``, ``_relu`` (the unit's output), ``pool1``, ``fc1``,
``softmax``. Input is raw RGB 0..255, normalised by ``bn_data`` (gamma fixed at 1, beta learned).
"""
from __future__ import annotations

import mxnet as mx

from .spec import CLASSIFIER, ResNetSpec

BN_EPS = 2e-5


def _bn(data: mx.sym.Symbol, name: str, bn_mom: float, fix_gamma: bool = False) -> mx.sym.Symbol:
    return mx.sym.BatchNorm(data=data, fix_gamma=fix_gamma, eps=BN_EPS, momentum=bn_mom, name=name)


def _conv(data: mx.sym.Symbol, num_filter: int, kernel: int, stride: int, name: str, workspace: int,
          num_group: int = 1) -> mx.sym.Symbol:
    return mx.sym.Convolution(data=data, num_filter=num_filter, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(kernel // 2, kernel // 2), num_group=num_group, no_bias=True,
                              workspace=workspace, name=name)


def _relu(data: mx.sym.Symbol, name: str) -> mx.sym.Symbol:
    return mx.sym.Activation(data=data, act_type="relu", name=name)


def stem(data: mx.sym.Symbol, spec: ResNetSpec, bn_mom: float = 0.9, workspace: int = 512) -> mx.sym.Symbol:
    """``bn_data`` and the stem of ``spec`` ('cifar': 3x3 conv; 'imagenet': 7x7/2 conv + 3x3/2 max pool;
    'deep': three 3x3 convs, the first stride 2, + the max pool), each conv followed by BN and ReLU."""
    body = _bn(data, "bn_data", bn_mom, fix_gamma=True)
    if spec.stem == "deep":
        for k, width in enumerate(spec.stem_widths, 1):
            body = _conv(body, width, 3, 2 if k == 1 else 1, f"conv0_{k}", workspace)
            body = _relu(_bn(body, f"bn0_{k}", bn_mom), f"relu0_{k}")
    else:
        kernel, stride = (3, 1) if spec.stem == "cifar" else (7, 2)
        body = _relu(_bn(_conv(body, spec.filters[0], kernel, stride, "conv0", workspace), "bn0", bn_mom), "relu0")
    if spec.stem != "cifar":
        body = mx.sym.Pooling(data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool0")
    return body


def residual_unit(data: mx.sym.Symbol, spec: ResNetSpec, stage: int, unit: int, bn_mom: float = 0.9,
                  workspace: int = 512, memonger: bool = False) -> mx.sym.Symbol:
    """Unit ``unit`` of stage ``stage`` (both 0-based) of ``spec``, named ``stage{stage+1}_unit{unit+1}``.

    ``memonger`` marks the unit's output (the ReLU after the sum, a cut point of the graph) as a candidate for
    :mod:`symbols.memonger` (``mirror_stage``).
    """
    name = f"stage{stage + 1}_unit{unit + 1}"
    out_width, mid, stride = spec.filters[stage + 1], spec.mid_widths[stage], spec.stride(stage, unit)
    if spec.bottleneck:
        convs = [(mid, 1, 1, 1), (mid, 3, stride, spec.cardinality), (out_width, 1, 1, 1)]
    else:
        convs = [(out_width, 3, stride, 1), (out_width, 3, 1, 1)]
    body = data
    for k, (width, kernel, conv_stride, groups) in enumerate(convs, 1):
        body = _bn(_conv(body, width, kernel, conv_stride, f"{name}_conv{k}", workspace, groups), f"{name}_bn{k}",
                   bn_mom)
        if k < len(convs):
            body = _relu(body, f"{name}_relu{k}")
    shortcut = data
    if spec.has_projection(stage, unit):
        sc_stride = stride
        if spec.avg_down and stride > 1:
            # ceil mode ('full') and count_include_pad=False: PaddleClas's and GluonCV's pool on odd sizes too
            shortcut = mx.sym.Pooling(data=shortcut, kernel=(stride, stride), stride=(stride, stride),
                                      pool_type="avg", pooling_convention="full", count_include_pad=False,
                                      name=f"{name}_sc_pool")
            sc_stride = 1
        shortcut = _bn(_conv(shortcut, out_width, 1, sc_stride, f"{name}_sc", workspace), f"{name}_sc_bn", bn_mom)
    out = _relu(mx.sym.elemwise_add(body, shortcut, name=f"{name}_plus"), f"{name}_relu")
    if memonger:
        out._set_attr(mirror_stage="True")
    return out


def resnet_symbol(spec: ResNetSpec, num_classes: int, bn_mom: float = 0.9, workspace: int = 512,
                  memonger: bool = False) -> mx.sym.Symbol:
    """The whole network for ``spec`` (a post-activation family), ending in ``SoftmaxOutput`` named
    ``softmax`` (label ``softmax_label``). Input ``data``: raw RGB 0..255, (N, 3, H, W)."""
    if spec.pre_activation:
        raise ValueError(f"{spec.network} is a pre-activation network: build it with symbols.resnet_v2")
    body = stem(mx.sym.Variable(name="data"), spec, bn_mom, workspace)
    for i, num_units in enumerate(spec.units):
        for j in range(num_units):
            body = residual_unit(body, spec, i, j, bn_mom, workspace, memonger)
    body = mx.sym.Pooling(data=body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    body = mx.sym.Flatten(data=body, name="flatten0")
    fc1 = mx.sym.FullyConnected(data=body, num_hidden=num_classes, name=CLASSIFIER)
    return mx.sym.SoftmaxOutput(data=fc1, name="softmax")
