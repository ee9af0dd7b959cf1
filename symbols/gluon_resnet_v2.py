"""Pre-activation ResNet as Gluon HybridBlocks, built from the same spec table as the Symbol.

Every block has an explicit prefix equal to the Symbol's layer name, so parameter names are the Symbol's
(``stage1_unit1_conv1_weight``, ``bn_data_beta``, ``fc1_bias``, ...) in every process, however many nets were
built before. The one difference is BN statistics: Gluon calls them ``*_running_mean/var``, Symbol checkpoints
``*_moving_mean/var``; :func:`symbol_name` maps Gluon's to the Symbol's.
"""
from __future__ import annotations

import mxnet as mx
from mxnet.gluon import HybridBlock, nn

from .spec import CLASSIFIER, ResNetSpec, get_spec

BN_EPS = 2e-5


def _bn(prefix: str, bn_mom: float, fix_gamma: bool = False) -> nn.BatchNorm:
    return nn.BatchNorm(momentum=bn_mom, epsilon=BN_EPS, scale=not fix_gamma, prefix=prefix)


def _conv(channels: int, kernel: int, stride: int, prefix: str) -> nn.Conv2D:
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2, use_bias=False, prefix=prefix)


class PreActUnit(HybridBlock):
    """One pre-activation unit: (BN -> ReLU -> conv) x 2 (basic) or x 3 (bottleneck) plus a shortcut.

    The projection shortcut (``_sc``, 1x1 conv with ``stride``) reads the first activation, as in the original;
    it exists when ``dim_match`` is False (the first unit of every stage).
    """

    def __init__(self, num_filter: int, stride: int, dim_match: bool, name: str, bottleneck: bool,
                 bn_mom: float = 0.9):
        super().__init__(prefix=name + "_")
        mid = num_filter // 4 if bottleneck else num_filter
        # (out channels, kernel, stride) of conv1, conv2[, conv3]
        if bottleneck:
            convs = [(mid, 1, 1), (mid, 3, stride), (num_filter, 1, 1)]
        else:
            convs = [(num_filter, 3, stride), (num_filter, 3, 1)]
        with self.name_scope():
            self.bns = [_bn(f"bn{k + 1}_", bn_mom) for k in range(len(convs))]
            self.convs = [_conv(c, k, s, f"conv{n + 1}_") for n, (c, k, s) in enumerate(convs)]
            for n, (bn, conv) in enumerate(zip(self.bns, self.convs)):
                self.register_child(bn, f"bn{n + 1}")
                self.register_child(conv, f"conv{n + 1}")
            self.sc = None if dim_match else _conv(num_filter, 1, stride, "sc_")

    def hybrid_forward(self, F, x):
        act1 = F.Activation(self.bns[0](x), act_type="relu")
        out = self.convs[0](act1)
        for bn, conv in zip(self.bns[1:], self.convs[1:]):
            out = conv(F.Activation(bn(out), act_type="relu"))
        shortcut = x if self.sc is None else self.sc(act1)
        return out + shortcut


class PreActResNet(HybridBlock):
    """The whole network for ``spec``; returns logits (``fc1``'s output), softmax is left to the loss.

    Input is raw RGB in 0..255, normalised by ``bn_data`` (gamma fixed at 1, beta learned), as the Symbol.
    """

    def __init__(self, spec: ResNetSpec, num_classes: int, bn_mom: float = 0.9):
        super().__init__(prefix="")
        self.spec = spec
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            with self.features.name_scope():
                self.features.add(_bn("bn_data_", bn_mom, fix_gamma=True))
                if spec.net_type == "cifar10":
                    self.features.add(_conv(spec.filters[0], 3, 1, "conv0_"))
                else:
                    self.features.add(_conv(spec.filters[0], 7, 2, "conv0_"), _bn("bn0_", bn_mom),
                                      nn.Activation("relu"), nn.MaxPool2D(3, 2, 1))
                for i, num_units in enumerate(spec.units):
                    for j in range(num_units):
                        self.features.add(PreActUnit(spec.filters[i + 1], 2 if (i > 0 and j == 0) else 1,
                                                     j > 0, f"stage{i + 1}_unit{j + 1}", spec.bottleneck, bn_mom))
                self.features.add(_bn("bn1_", bn_mom), nn.Activation("relu"), nn.GlobalAvgPool2D(),
                                  nn.Flatten())
            self.output = nn.Dense(num_classes, prefix=f"{CLASSIFIER}_")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))


def get_net(num_classes: int, depth: int, net_type: str = "imagenet", bn_mom: float = 0.9) -> PreActResNet:
    """Build the (uninitialised) Gluon net for (``net_type``, ``depth``)."""
    return PreActResNet(get_spec(net_type, depth), num_classes, bn_mom)


def symbol_name(gluon_param_name: str) -> str:
    """Gluon parameter name -> the Symbol checkpoint's name (``*_running_mean`` -> ``*_moving_mean``)."""
    return gluon_param_name.replace("_running_mean", "_moving_mean").replace("_running_var", "_moving_var")


def load_symbol_params(net: PreActResNet, arg_params: dict, aux_params: dict,
                       ctx: mx.Context | list | None = None) -> None:
    """Set every parameter of ``net`` from a Symbol checkpoint's ``arg_params``/``aux_params``.

    Raises ``KeyError`` naming the first parameter the checkpoint lacks, ``ValueError`` on a shape mismatch.
    """
    source = {**arg_params, **aux_params}
    for name, param in net.collect_params().items():
        key = symbol_name(name)
        if key not in source:
            raise KeyError(f"checkpoint has no parameter {key!r}")
        value = source[key]
        if param.shape and all(param.shape) and tuple(param.shape) != tuple(value.shape):
            raise ValueError(f"{key}: checkpoint shape {tuple(value.shape)} != network shape {param.shape}")
        if param._data is None:
            param.shape = value.shape
            param.initialize(init=mx.init.Constant(0), ctx=ctx or mx.cpu(), force_reinit=True)
        param.set_data(value)


def symbol_params(net: PreActResNet) -> tuple[dict, dict]:
    """``(arg_params, aux_params)`` of ``net`` under the Symbol's names, ready for ``mx.model.save_checkpoint``."""
    arg_params, aux_params = {}, {}
    for name, param in net.collect_params().items():
        target = aux_params if param.grad_req == "null" and "running_" in name else arg_params
        target[symbol_name(name)] = param.data().copyto(mx.cpu())
    return arg_params, aux_params
