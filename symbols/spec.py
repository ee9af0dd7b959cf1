"""The one table of pre-activation ResNet architectures, as the original reproduction defined them.

ImageNet depths come from He et al. 2016 (Table 1 of "Deep Residual Learning", with the v2 unit of "Identity
Mappings"); 200 and 269 are the original project's deeper variants. CIFAR depths follow the paper's rule:
basic units when (depth - 2) % 6 == 0 below 164, bottleneck units when (depth - 2) % 9 == 0 from 164 on.
"""
from __future__ import annotations

from dataclasses import dataclass

from resnetv2.errors import UserError

DATA_TYPES = ("cifar10", "imagenet")

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
CIFAR_BOTTLENECK_FROM = 164
# The CIFAR depths named by the papers; any depth that fits the rule is accepted.
CIFAR_NAMED_DEPTHS = (20, 32, 44, 56, 110, 164, 1001)


@dataclass(frozen=True)
class ResNetSpec:
    """One architecture: ``filters[0]`` is the stem's width, ``filters[i + 1]`` the output width of stage i."""

    data_type: str
    depth: int
    units: tuple[int, ...]
    filters: tuple[int, ...]
    bottleneck: bool

    @property
    def num_stages(self) -> int:
        return len(self.units)

    @property
    def image_shape(self) -> tuple[int, int, int]:
        """(channels, height, width) of the network's input in the original's training set-up."""
        return (3, 32, 32) if self.data_type == "cifar10" else (3, 224, 224)


def _cifar_units(depth: int) -> tuple[int, bool] | None:
    """(units per stage, bottleneck) for a CIFAR depth, or None when the depth fits neither rule."""
    if depth >= CIFAR_BOTTLENECK_FROM and (depth - 2) % 9 == 0:
        return (depth - 2) // 9, True
    if 8 <= depth < CIFAR_BOTTLENECK_FROM and (depth - 2) % 6 == 0:
        return (depth - 2) // 6, False
    return None


def valid_depths(data_type: str) -> str:
    """Human-readable description of the depths accepted for ``data_type``."""
    if data_type == "imagenet":
        return ", ".join(str(d) for d in IMAGENET_UNITS)
    return (f"(depth-2)%6==0 below {CIFAR_BOTTLENECK_FROM} (basic units) or (depth-2)%9==0 from "
            f"{CIFAR_BOTTLENECK_FROM} (bottleneck units), e.g. {', '.join(map(str, CIFAR_NAMED_DEPTHS))}")


def get_spec(data_type: str, depth: int) -> ResNetSpec:
    """Look up the architecture for ``data_type`` ('cifar10' or 'imagenet') and ``depth``.

    Raises :class:`UserError` naming the valid choices when either is unknown.
    """
    if data_type not in DATA_TYPES:
        raise UserError(f"unknown data type {data_type!r}; valid: {', '.join(DATA_TYPES)}")
    if data_type == "imagenet":
        if depth not in IMAGENET_UNITS:
            raise UserError(f"no imagenet ResNet-v2 of depth {depth}; valid depths: {valid_depths(data_type)}")
        units, bottleneck = IMAGENET_UNITS[depth]
        return ResNetSpec(data_type, depth, units, IMAGENET_FILTERS[bottleneck], bottleneck)
    found = _cifar_units(depth)
    if found is None:
        raise UserError(f"no cifar10 ResNet-v2 of depth {depth}; valid depths: {valid_depths(data_type)}")
    per_stage, bottleneck = found
    return ResNetSpec(data_type, depth, (per_stage,) * 3, CIFAR_FILTERS[bottleneck], bottleneck)
