"""Post-activation ResNets (ResNet-v1b, ResNeXt, ResNet-vd) as Gluon HybridBlocks, from the same spec table as
the Symbol (:mod:`symbols.resnet_v1`).

Every block has an explicit prefix equal to the Symbol's layer name, so parameter names are the Symbol's in every
process (``stage1_unit1_conv2_weight``, ``stage2_unit1_sc_bn_gamma``, ``fc1_bias``, ...); BN statistics are
``*_running_mean/var`` here and ``*_moving_mean/var`` in Symbol checkpoints (:mod:`symbols.gluon_resnet_v2`'s
``symbol_name``/``load_symbol_params``/``symbol_params`` serve every family).
"""
from __future__ import annotations

from mxnet.gluon import HybridBlock, nn

from .gluon_resnet_v2 import BN_EPS
from .spec import CLASSIFIER, ResNetSpec


def _bn(prefix: str, bn_mom: float, fix_gamma: bool = False) -> nn.BatchNorm:
    return nn.BatchNorm(momentum=bn_mom, epsilon=BN_EPS, scale=not fix_gamma, prefix=prefix)


def _conv(channels: int, kernel: int, stride: int, prefix: str, groups: int = 1) -> nn.Conv2D:
    return nn.Conv2D(channels, kernel, strides=stride, padding=kernel // 2, groups=groups, use_bias=False,
                     prefix=prefix)


class ResidualUnitV1(HybridBlock):
    """One post-activation unit: (conv -> BN [-> ReLU]) x 2 (basic) or x 3 (bottleneck, grouped 3x3 with the
    stride), plus the shortcut, then ReLU. Children are registered in forward order (conv1, bn1, conv2, ...,
    sc, sc_bn): ``collect_params()`` lists them in that order."""

    def __init__(self, spec: ResNetSpec, stage: int, unit: int, bn_mom: float = 0.9):
        name = f"stage{stage + 1}_unit{unit + 1}"
        super().__init__(prefix=name + "_")
        out_width, mid, stride = spec.filters[stage + 1], spec.mid_widths[stage], spec.stride(stage, unit)
        if spec.bottleneck:
            convs = [(mid, 1, 1, 1), (mid, 3, stride, spec.cardinality), (out_width, 1, 1, 1)]
        else:
            convs = [(out_width, 3, stride, 1), (out_width, 3, 1, 1)]
        self.num_convs = len(convs)
        with self.name_scope():
            for k, (width, kernel, conv_stride, groups) in enumerate(convs, 1):
                setattr(self, f"conv{k}", _conv(width, kernel, conv_stride, f"conv{k}_", groups))
                setattr(self, f"bn{k}", _bn(f"bn{k}_", bn_mom))
            self.sc_pool = self.sc = self.sc_bn = None
            if spec.has_projection(stage, unit):
                sc_stride = stride
                if spec.avg_down and stride > 1:
                    self.sc_pool = nn.AvgPool2D(stride, stride, ceil_mode=True, count_include_pad=False,
                                                prefix="sc_pool_")
                    sc_stride = 1
                self.sc = _conv(out_width, 1, sc_stride, "sc_")
                self.sc_bn = _bn("sc_bn_", bn_mom)

    def hybrid_forward(self, F, x):
        out = x
        for k in range(1, self.num_convs + 1):
            out = getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(out))
            if k < self.num_convs:
                out = F.Activation(out, act_type="relu")
        shortcut = x
        if self.sc is not None:
            shortcut = self.sc_bn(self.sc(shortcut if self.sc_pool is None else self.sc_pool(shortcut)))
        return F.Activation(out + shortcut, act_type="relu")


class ResNetV1(HybridBlock):
    """The whole network for ``spec`` (ResNet-v1b, ResNeXt or ResNet-vd); returns logits (``fc1``'s output),
    softmax is left to the loss. Input is raw RGB 0..255, normalised by ``bn_data`` as the Symbol."""

    def __init__(self, spec: ResNetSpec, num_classes: int, bn_mom: float = 0.9):
        super().__init__(prefix="")
        if spec.pre_activation:
            raise ValueError(f"{spec.network} is a pre-activation network: build it with symbols.gluon_resnet_v2")
        self.spec = spec
        with self.name_scope():
            self.features = nn.HybridSequential(prefix="")
            with self.features.name_scope():
                self.features.add(_bn("bn_data_", bn_mom, fix_gamma=True))
                if spec.stem == "deep":
                    for k, width in enumerate(spec.stem_widths, 1):
                        self.features.add(_conv(width, 3, 2 if k == 1 else 1, f"conv0_{k}_"),
                                          _bn(f"bn0_{k}_", bn_mom), nn.Activation("relu"))
                else:
                    kernel, stride = (3, 1) if spec.stem == "cifar" else (7, 2)
                    self.features.add(_conv(spec.filters[0], kernel, stride, "conv0_"), _bn("bn0_", bn_mom),
                                      nn.Activation("relu"))
                if spec.stem != "cifar":
                    self.features.add(nn.MaxPool2D(3, 2, 1))
                for i, num_units in enumerate(spec.units):
                    for j in range(num_units):
                        self.features.add(ResidualUnitV1(spec, i, j, bn_mom))
                self.features.add(nn.GlobalAvgPool2D(), nn.Flatten())
            self.output = nn.Dense(num_classes, prefix=f"{CLASSIFIER}_")

    def hybrid_forward(self, F, x):
        return self.output(self.features(x))
