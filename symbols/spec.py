"""The one table of ResNet architectures: the original reproduction's pre-activation networks and the baselines
users compare them with, all read by the Symbol and the Gluon builders. No MXNet here.

Families (``network``):

- ``resnet_v2``: pre-activation units (He et al. 2016, "Identity Mappings in Deep Residual Networks"), as the
  original reproduction built them (a projection shortcut on the first unit of every stage);
- ``resnet_v1``: post-activation units (He et al. 2015) in the v1b / torchvision "v1.5" form: the stride of a
  bottleneck is on its 3x3 convolution, projection shortcuts (1x1 conv + BN) only where the shape changes;
- ``resnext``: ``resnet_v1`` bottlenecks whose 3x3 convolution has ``cardinality`` groups of
  ``bottleneck_width`` channels per 64 of the unit's plain width (Xie et al. 2017, "Aggregated Residual
  Transformations"; torchvision's and GluonCV's ``resnext*``);
- ``resnet_vd``: ``resnet_v1`` with a deep stem (three 3x3 convolutions, 32, 32, 64 channels) and, on strided
  projection shortcuts, a 2x2 average pool before a stride-1 1x1 convolution (He et al. 2019, "Bag of Tricks",
  ResNet-D; PaddleClas's ``ResNet*_vd``, GluonCV's ``resnet*_v1d``).

Every family reads raw RGB 0..255 and normalises it with ``bn_data`` (a BatchNorm with gamma fixed at 1), as the
original did. ImageNet depths come from He et al. 2015 (Table 1); 200 and 269 are the original project's deeper
variants. CIFAR depths follow the papers' rule: basic units when (depth - 2) % 6 == 0 below 164, bottleneck units
when (depth - 2) % 9 == 0 from 164 on; ResNeXt on CIFAR is the paper's ResNeXt-29 layout, bottleneck units at any
(depth - 2) % 9 == 0 with stage widths 256, 512, 1024 after a 64-channel 3x3 stem.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass, field

from .errors import UserError

# Net types. 'cifar10' and 'imagenet' name the network's STEM and the input scale it was designed for, not a
# data set: 'cifar10' a 3x3 stride-1 convolution for small (CIFAR-like) inputs, 'imagenet' a 7x7 stride-2
# convolution and a 3x3 stride-2 max pool (or resnet_vd's deep stem). The names are the original project's, kept
# because saved PREFIX-args.json files and the original's API use them: a --data-type folder run or a digits run
# gets one too. NET_TYPE_FACTS holds what each one means; net_type_for_input() picks one for an input size.
SMALL_INPUT_MAX = 64  # the largest input side (pixels) that counts as CIFAR-like: 3x3 stem, no validation resize


@dataclass(frozen=True)
class NetTypeFacts:
    """What one net type means for a model (timm's ``default_cfg`` idea): the stem it defaults to, the input it
    was designed for (the original's training set-up) and validation's resize, from the short side of the
    validation records made for that input (ImageNet's 256 for a 224 crop; CIFAR's images as they are)."""

    net_type: str
    stem: str                         # the default stem (:data:`STEMS`)
    image_shape: tuple[int, int, int]  # default network input (channels, height, width)
    val_short_side: int               # validation records' shorter side for an ``image_shape`` input

    def eval_resize(self, side: int) -> int:
        """Validation's shorter side for an input side of ``side`` pixels, scaled as ``val_short_side`` is to
        the default input: 256 for 224 (ImageNet), ``side`` itself for CIFAR."""
        return int(round(side * self.val_short_side / self.image_shape[1]))


NET_TYPE_FACTS: dict[str, NetTypeFacts] = {t.net_type: t for t in (
    NetTypeFacts("cifar10", "cifar", (3, 32, 32), 32),
    NetTypeFacts("imagenet", "imagenet", (3, 224, 224), 256),
)}
NET_TYPES = tuple(NET_TYPE_FACTS)


def net_type_for_side(side: int) -> str:
    """'cifar10' for an input side of at most :data:`SMALL_INPUT_MAX` pixels, else 'imagenet'."""
    return "cifar10" if side <= SMALL_INPUT_MAX else "imagenet"


def net_type_for_input(image_shape) -> str:
    """The net type (the stem) of a network for ``image_shape`` (channels, height, width), by its height: images
    up to :data:`SMALL_INPUT_MAX` pixels high get the CIFAR stem, larger ones the ImageNet stem."""
    return net_type_for_side(image_shape[1])


CLASSIFIER = "fc1"  # the classifier layer of every network here (the original's name): fc1_weight, fc1_bias

# depth -> (units per stage, bottleneck)
IMAGENET_UNITS: dict[int, tuple[tuple[int, ...], bool]] = {
    18: ((2, 2, 2, 2), False),
    34: ((3, 4, 6, 3), False),
    50: ((3, 4, 6, 3), True),
    101: ((3, 4, 23, 3), True),
    152: ((3, 8, 36, 3), True),
    200: ((3, 24, 36, 3), True),
    269: ((3, 30, 48, 8), True),
}
IMAGENET_FILTERS = {False: (64, 64, 128, 256, 512), True: (64, 256, 512, 1024, 2048)}
CIFAR_FILTERS = {False: (16, 16, 32, 64), True: (16, 64, 128, 256)}
CIFAR_RESNEXT_FILTERS = (64, 256, 512, 1024)  # ResNeXt-29's stem and stage widths (Xie et al. 2017, Table 7)
CIFAR_BOTTLENECK_FROM = 164
# The CIFAR depths named by the papers; any depth that fits the rule is accepted.
CIFAR_NAMED_DEPTHS = (20, 32, 44, 56, 110, 164, 1001)
CIFAR_RESNEXT_NAMED_DEPTHS = (29,)

# Stems. 'cifar': one 3x3 conv, stride 1. 'imagenet': a 7x7 conv, stride 2, and a 3x3 max pool, stride 2.
# 'deep': three 3x3 convs (the first stride 2) of filters[0]/2, filters[0]/2 and filters[0] channels, then the
# same max pool.
STEMS = ("cifar", "imagenet", "deep")


@dataclass(frozen=True)
class Family:
    """What a ``network`` name means: unit order, stem, shortcut and grouping, and where it comes from."""

    network: str
    title: str
    pre_activation: bool      # BN -> ReLU -> conv units (v2) instead of conv -> BN -> ReLU (v1)
    imagenet_stem: str        # 'imagenet' (7x7) or 'deep' (three 3x3)
    avg_down: bool            # strided projection shortcut = 2x2 avg pool + stride-1 1x1 conv
    cardinality: int          # default groups of the bottleneck's 3x3 conv
    bottleneck_width: int     # default channels per group for each 64 of the unit's plain width
    net_types: tuple[str, ...]
    bottleneck_only: bool
    source: str


FAMILIES: dict[str, Family] = {f.network: f for f in (
    Family("resnet_v2", "ResNet-v2", True, "imagenet", False, 1, 64, NET_TYPES, False,
           "He et al. 2016 (pre-activation), as tornadomeet/ResNet built it"),
    Family("resnet_v1", "ResNet-v1b", False, "imagenet", False, 1, 64, NET_TYPES, False,
           "He et al. 2015, stride on the 3x3 (torchvision resnet*, GluonCV resnet*_v1b)"),
    Family("resnext", "ResNeXt", False, "imagenet", False, 32, 4, NET_TYPES, True,
           "Xie et al. 2017 (torchvision resnext*, GluonCV resnext*, cifar_resnext29_*)"),
    Family("resnet_vd", "ResNet-vd", False, "deep", True, 1, 64, ("imagenet",), False,
           "He et al. 2019 ResNet-D (PaddleClas ResNet*_vd, GluonCV resnet*_v1d)"),
)}
NETWORKS = tuple(FAMILIES)


@dataclass(frozen=True)
class ResNetSpec:
    """One architecture: ``filters[0]`` is the stem's width, ``filters[i + 1]`` the output width of stage i.

    ``stem`` defaults to the data type's ('cifar' or 'imagenet'); ``cardinality`` and ``bottleneck_width`` shape
    the bottleneck's 3x3 convolution (1 and 64: a plain ResNet's).
    """

    net_type: str
    depth: int
    units: tuple[int, ...]
    filters: tuple[int, ...]
    bottleneck: bool
    network: str = "resnet_v2"
    cardinality: int = 1
    bottleneck_width: int = 64
    stem: str = field(default="")

    def __post_init__(self):
        if not self.stem:
            object.__setattr__(self, "stem", self.net_type_facts.stem)
        if self.stem not in STEMS:
            raise UserError(f"unknown stem {self.stem!r}; valid: {', '.join(STEMS)}")
        if self.network not in FAMILIES:
            raise UserError(f"unknown network {self.network!r}; valid: {', '.join(NETWORKS)}")
        if self.bottleneck:
            _check_groups(self)

    @property
    def family(self) -> Family:
        return FAMILIES[self.network]

    @property
    def num_stages(self) -> int:
        return len(self.units)

    @property
    def net_type_facts(self) -> NetTypeFacts:
        """:data:`NET_TYPE_FACTS` of ``net_type`` (a hand-made spec of any other name has ImageNet's, as before)."""
        return NET_TYPE_FACTS.get(self.net_type, NET_TYPE_FACTS["imagenet"])

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the network's input in the original's training set-up."""
        return self.net_type_facts.image_shape

    @property
    def pre_activation(self) -> bool:
        return self.family.pre_activation

    @property
    def avg_down(self) -> bool:
        """Whether a strided projection shortcut average-pools (2x2) before its stride-1 1x1 convolution."""
        return self.family.avg_down

    @property
    def stem_widths(self) -> tuple[int, ...]:
        """Output channels of the stem's convolutions, in order."""
        width = self.filters[0]
        return (width // 2, width // 2, width) if self.stem == "deep" else (width,)

    @property
    def mid_widths(self) -> tuple[int, ...]:
        """Per stage, the channels of a unit's inner convolutions: the 3x3 (and the 1x1 before it) of a
        bottleneck, ``planes * bottleneck_width / 64 * cardinality`` with ``planes = filters[i + 1] / 4`` (as
        torchvision and GluonCV); the width of both 3x3 convolutions of a basic unit."""
        if not self.bottleneck:
            return tuple(self.filters[1:])
        return tuple(f // 4 * self.bottleneck_width // 64 * self.cardinality for f in self.filters[1:])

    def stride(self, stage: int, unit: int) -> int:
        """Stride of unit ``unit`` (0-based) of stage ``stage`` (0-based): 2 on the first unit of stages 2 on."""
        return 2 if (stage > 0 and unit == 0) else 1

    def has_projection(self, stage: int, unit: int) -> bool:
        """Whether that unit's shortcut is a 1x1 projection (else the identity). The original's pre-activation
        nets project on the first unit of every stage; the v1 families where the shape changes (torchvision)."""
        if unit > 0:
            return False
        if self.pre_activation:
            return True
        return self.stride(stage, unit) != 1 or self.filters[stage] != self.filters[stage + 1]

    @property
    def name(self) -> str:
        """The registry name (:func:`symbols.registry.model_names`): ``resnet50_v1``, ``resnext50_32x4d``, ..."""
        prefix = "cifar_" if self.net_type == "cifar10" else ""
        if self.network == "resnext":
            return f"{prefix}resnext{self.depth}_{self.cardinality}x{self.bottleneck_width}d"
        suffix = {"resnet_v2": "v2", "resnet_v1": "v1", "resnet_vd": "vd"}[self.network]
        return f"{prefix}resnet{self.depth}_{suffix}"


def _check_groups(spec: ResNetSpec) -> None:
    """The grouped 3x3 convolution must split into ``cardinality`` groups of a whole number of channels."""
    if spec.cardinality < 1 or spec.bottleneck_width < 1:
        raise UserError(f"cardinality and bottleneck width must be at least 1, got {spec.cardinality} and "
                        f"{spec.bottleneck_width}")
    for stage, out in enumerate(spec.filters[1:], 1):
        planes = out // 4
        if planes * spec.bottleneck_width % 64:
            step = 64 // math.gcd(64, *(f // 4 for f in spec.filters[1:]))
            raise UserError(f"bottleneck width {spec.bottleneck_width} gives {planes}*{spec.bottleneck_width}/64 "
                            f"channels per group in stage {stage} (not whole); valid bottleneck widths here: "
                            f"multiples of {step}")
        mid = planes * spec.bottleneck_width // 64 * spec.cardinality
        if mid % spec.cardinality:  # cannot happen with the formula above; kept for hand-made specs
            raise UserError(f"cardinality {spec.cardinality} does not divide stage {stage}'s width {mid}")


def _cifar_units(depth: int, bottleneck_only: bool = False) -> tuple[int, bool] | None:
    """(units per stage, bottleneck) for a CIFAR depth, or None when the depth fits neither rule."""
    if bottleneck_only:
        return ((depth - 2) // 9, True) if depth >= 11 and (depth - 2) % 9 == 0 else None
    if depth >= CIFAR_BOTTLENECK_FROM and (depth - 2) % 9 == 0:
        return (depth - 2) // 9, True
    if 8 <= depth < CIFAR_BOTTLENECK_FROM and (depth - 2) % 6 == 0:
        return (depth - 2) // 6, False
    return None


def valid_depths(net_type: str, network: str = "resnet_v2") -> str:
    """Human-readable description of the depths accepted for ``net_type`` and ``network``."""
    bottleneck_only = FAMILIES[network].bottleneck_only if network in FAMILIES else False
    if net_type == "imagenet":
        return ", ".join(str(d) for d, (_, b) in IMAGENET_UNITS.items() if b or not bottleneck_only)
    if bottleneck_only:
        return f"(depth-2)%9==0 from 11 (bottleneck units), e.g. {', '.join(map(str, CIFAR_RESNEXT_NAMED_DEPTHS))}"
    return (f"(depth-2)%6==0 below {CIFAR_BOTTLENECK_FROM} (basic units) or (depth-2)%9==0 from "
            f"{CIFAR_BOTTLENECK_FROM} (bottleneck units), e.g. {', '.join(map(str, CIFAR_NAMED_DEPTHS))}")


def family_defaults(network: str, cardinality: int | None = None,
                    bottleneck_width: int | None = None) -> tuple[int, int]:
    """``(cardinality, bottleneck_width)`` for ``network``: the given values or the family's defaults (ResNeXt
    32 and 4, the others 1 and 64). Grouping is ResNeXt's: other families refuse anything but 1 and 64."""
    if network not in FAMILIES:
        raise UserError(f"unknown network {network!r}; valid: {', '.join(NETWORKS)}")
    family = FAMILIES[network]
    groups = family.cardinality if cardinality is None else int(cardinality)
    width = family.bottleneck_width if bottleneck_width is None else int(bottleneck_width)
    if network != "resnext" and (groups, width) != (1, 64):
        raise UserError(f"--cardinality/--bottleneck-width apply to --network resnext only; {network} has 1 group "
                        f"of width 64 (got {groups} and {width})")
    if groups < 1 or width < 1:
        raise UserError(f"--cardinality and --bottleneck-width must be at least 1, got {groups} and {width}")
    return groups, width


def get_spec(net_type: str, depth: int, network: str = "resnet_v2", cardinality: int | None = None,
             bottleneck_width: int | None = None) -> ResNetSpec:
    """Look up the architecture for ``net_type`` ('cifar10' or 'imagenet'), ``depth`` and ``network``
    (:data:`NETWORKS`; ``cardinality``/``bottleneck_width`` for 'resnext', None for the family's defaults).

    Raises :class:`UserError` naming the valid choices when any of them is unknown or they do not fit together.
    """
    if net_type not in NET_TYPES:
        scales = ", ".join(f"{t.net_type} {t.image_shape[1]}x{t.image_shape[2]}" for t in NET_TYPE_FACTS.values())
        raise UserError(f"unknown network type {net_type!r} (the input scale: {scales}); "
                        f"valid: {', '.join(NET_TYPES)}")
    groups, width = family_defaults(network, cardinality, bottleneck_width)
    family = FAMILIES[network]
    if net_type not in family.net_types:
        others = ", ".join(n for n, f in FAMILIES.items() if net_type in f.net_types)
        raise UserError(f"--network {network} is defined for {', '.join(family.net_types)} only (its deep stem "
                        f"downsamples 4x); valid networks for {net_type}: {others}")
    title = f"{net_type} {family.title}"
    if net_type == "imagenet":
        found = IMAGENET_UNITS.get(depth)
        if found is None or (family.bottleneck_only and not found[1]):
            raise UserError(f"no {title} of depth {depth}; valid depths: {valid_depths(net_type, network)}")
        units, bottleneck = found
        return ResNetSpec(net_type, depth, units, IMAGENET_FILTERS[bottleneck], bottleneck, network, groups,
                          width, family.imagenet_stem)
    found = _cifar_units(depth, family.bottleneck_only)
    if found is None:
        raise UserError(f"no {title} of depth {depth}; valid depths: {valid_depths(net_type, network)}")
    per_stage, bottleneck = found
    filters = CIFAR_RESNEXT_FILTERS if network == "resnext" else CIFAR_FILTERS[bottleneck]
    return ResNetSpec(net_type, depth, (per_stage,) * 3, filters, bottleneck, network, groups, width, "cifar")


def add_network_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """``--network``, ``--cardinality`` and ``--bottleneck-width`` (MXNet's ``add_*_args`` idiom). Defaults: the
    original's pre-activation network; None for the grouping flags, which then take the family's values."""
    group = parser.add_argument_group("network family")
    group.add_argument("--network", choices=NETWORKS, default="resnet_v2",
                       help="resnet_v2 (pre-activation, the original), resnet_v1 (v1b: stride on the 3x3), "
                            "resnext (grouped 3x3), resnet_vd (deep stem, avg-pool shortcuts; imagenet only)")
    group.add_argument("--cardinality", type=int, default=None,
                       help="resnext: groups of the 3x3 convolution (default 32)")
    group.add_argument("--bottleneck-width", type=int, default=None,
                       help="resnext: channels per group for each 64 of a stage's plain width (default 4)")
    return group


def last_layer_names(network: str, names) -> list[str]:
    """The parameters ``--last-gamma`` zeroes so that every residual unit starts as the identity, from a
    network's parameter ``names``: for ``resnet_v2`` each unit's last convolution weight (the pre-activation unit
    ends in a convolution; Goyal et al. 2017's zero-gamma, moved to the layer that ends the unit); for the
    post-activation families each unit's last BN gamma (``bn2`` basic, ``bn3`` bottleneck: Goyal et al. 2017,
    GluonCV's ``last_gamma``). Zeroing the convolution there instead would leave that BN normalising a constant."""
    # The pre-activation unit ends in a convolution: zeroing a BN gamma before a ReLU there would also zero its
    # gradient, and the unit would never train.
    layer = r"conv(\d)_weight" if network == "resnet_v2" else r"bn(\d)_gamma"
    pattern = r"^(stage\d+_unit\d+)_" + layer + "$"
    last: dict[str, tuple[int, str]] = {}  # unit -> (index of its last conv/BN, that layer's parameter)
    for name in names:
        match = re.match(pattern, name)
        if match:
            unit, index = match.group(1), int(match.group(2))
            last[unit] = max(last.get(unit, (0, "")), (index, name))
    return sorted(name for _, name in last.values())
