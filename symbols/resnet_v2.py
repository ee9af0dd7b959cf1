"""Pre-activation ResNet with MXNet's Symbol API, with the original reproduction's layer names.

Unit (He et al. 2016, "Identity Mappings in Deep Residual Networks", Fig. 1b/4e): BN -> ReLU -> conv, twice
(basic: 3x3, 3x3) or three times (bottleneck: 1x1, 3x3, 1x1 at a quarter of the width), plus a shortcut that
is the identity, or, on the first unit of every stage, a 1x1 convolution of the unit's first activation
(``act1``). Names: ``bn_data``, ``conv0``, ``bn0``, ``stage{i}_unit{j}_{bn1,relu1,conv1,...,sc}``, ``bn1``,
``fc1``, ``softmax``: checkpoints of tornadomeet/ResNet load unchanged.
"""
from __future__ import annotations

import mxnet as mx

from .spec import CLASSIFIER, ResNetSpec, get_spec

BN_EPS = 2e-5


def _bn(data: mx.sym.Symbol, name: str, bn_mom: float, fix_gamma: bool = False) -> mx.sym.Symbol:
    return mx.sym.BatchNorm(data=data, fix_gamma=fix_gamma, eps=BN_EPS, momentum=bn_mom, name=name)


def _conv(data: mx.sym.Symbol, num_filter: int, kernel: int, stride: int, name: str,
          workspace: int) -> mx.sym.Symbol:
    return mx.sym.Convolution(data=data, num_filter=num_filter, kernel=(kernel, kernel), stride=(stride, stride),
                              pad=(kernel // 2, kernel // 2), no_bias=True, workspace=workspace, name=name)


def residual_unit(data: mx.sym.Symbol, num_filter: int, stride: int, dim_match: bool, name: str,
                  bottleneck: bool, bn_mom: float = 0.9, workspace: int = 512,
                  memonger: bool = False) -> mx.sym.Symbol:
    """One pre-activation unit producing ``num_filter`` channels.

    ``dim_match`` False gives the projection shortcut (1x1 conv of ``act1`` with ``stride``); True the identity.
    ``memonger`` marks the shortcut as a candidate cut point for :mod:`symbols.memonger` (``mirror_stage``).
    """
    bn1 = _bn(data, name + "_bn1", bn_mom)
    act1 = mx.sym.Activation(data=bn1, act_type="relu", name=name + "_relu1")
    if bottleneck:
        mid = num_filter // 4
        conv1 = _conv(act1, mid, 1, 1, name + "_conv1", workspace)
        act2 = mx.sym.Activation(data=_bn(conv1, name + "_bn2", bn_mom), act_type="relu", name=name + "_relu2")
        conv2 = _conv(act2, mid, 3, stride, name + "_conv2", workspace)
        act3 = mx.sym.Activation(data=_bn(conv2, name + "_bn3", bn_mom), act_type="relu", name=name + "_relu3")
        body = _conv(act3, num_filter, 1, 1, name + "_conv3", workspace)
    else:
        conv1 = _conv(act1, num_filter, 3, stride, name + "_conv1", workspace)
        act2 = mx.sym.Activation(data=_bn(conv1, name + "_bn2", bn_mom), act_type="relu", name=name + "_relu2")
        body = _conv(act2, num_filter, 3, 1, name + "_conv2", workspace)
    shortcut = data if dim_match else _conv(act1, num_filter, 1, stride, name + "_sc", workspace)
    if memonger:
        shortcut._set_attr(mirror_stage="True")
    return mx.sym.elemwise_add(body, shortcut, name=name + "_plus")


def resnet_symbol(spec: ResNetSpec, num_classes: int, bn_mom: float = 0.9, workspace: int = 512,
                  memonger: bool = False) -> mx.sym.Symbol:
    """The whole network for ``spec``, ending in ``SoftmaxOutput`` named ``softmax`` (label ``softmax_label``).

    Input ``data`` is raw RGB in 0..255: ``bn_data`` (gamma fixed at 1, beta learned) normalises it.
    """
    data = mx.sym.Variable(name="data")
    body = _bn(data, "bn_data", bn_mom, fix_gamma=True)
    if spec.net_type == "cifar10":
        body = _conv(body, spec.filters[0], 3, 1, "conv0", workspace)
    else:
        body = _conv(body, spec.filters[0], 7, 2, "conv0", workspace)
        body = mx.sym.Activation(data=_bn(body, "bn0", bn_mom), act_type="relu", name="relu0")
        body = mx.sym.Pooling(data=body, kernel=(3, 3), stride=(2, 2), pad=(1, 1), pool_type="max", name="pool0")
    for i, num_units in enumerate(spec.units):
        for j in range(num_units):
            body = residual_unit(body, spec.filters[i + 1], stride=2 if (i > 0 and j == 0) else 1,
                                 dim_match=j > 0, name=f"stage{i + 1}_unit{j + 1}", bottleneck=spec.bottleneck,
                                 bn_mom=bn_mom, workspace=workspace, memonger=memonger)
    body = mx.sym.Activation(data=_bn(body, "bn1", bn_mom), act_type="relu", name="relu1")
    body = mx.sym.Pooling(data=body, global_pool=True, kernel=(7, 7), pool_type="avg", name="pool1")
    body = mx.sym.Flatten(data=body, name="flatten0")
    fc1 = mx.sym.FullyConnected(data=body, num_hidden=num_classes, name=CLASSIFIER)
    return mx.sym.SoftmaxOutput(data=fc1, name="softmax")


def get_symbol(num_classes: int, depth: int, net_type: str = "imagenet", bn_mom: float = 0.9,
               workspace: int = 512, memonger: bool = False) -> mx.sym.Symbol:
    """Build the Symbol for (``net_type``, ``depth``); raises a clear error for an unknown depth."""
    return resnet_symbol(get_spec(net_type, depth), num_classes, bn_mom, workspace, memonger)
