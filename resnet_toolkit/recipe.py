"""The modern training recipe's pieces, each off by default (the original's recipe is the default):
soft targets (label smoothing, mixup), random erasing, per-parameter multipliers (no weight decay on BN and
biases, a lower rate for the body, frozen stages) and zero-initialised last layers.

Pure functions of numpy arrays and names; :mod:`resnet_toolkit.fit` applies them to both engines, so Module and Gluon
train on the same targets with the same multipliers.
"""
from __future__ import annotations

import argparse
import math
import re
from dataclasses import dataclass
from typing import Iterable

import numpy as np

from resnet_toolkit.errors import UserError
from resnet_toolkit.schedule import LR_MODES
from symbols.spec import CLASSIFIER


# --------------------------------------------------------------------------------------------- soft targets
def smooth_one_hot(labels: np.ndarray, num_classes: int, smoothing: float = 0.0) -> np.ndarray:
    """Targets (N, K) float32: ``1 - smoothing + smoothing / K`` on the label, ``smoothing / K`` elsewhere
    (Szegedy et al. 2016, as GluonCV and PyTorch define it). ``smoothing`` 0 gives the one-hot vectors."""
    labels = np.asarray(labels).astype(np.int64)
    targets = np.full((labels.shape[0], num_classes), smoothing / num_classes, dtype=np.float64)
    targets[np.arange(labels.shape[0]), labels] += 1.0 - smoothing
    return targets.astype(np.float32)


def mixup_lambda(alpha: float, seed: int, epoch: int, nbatch: int) -> float:
    """The mixing weight of batch ``nbatch`` of ``epoch``: a Beta(alpha, alpha) draw from a generator seeded by
    (seed, epoch, batch), so a retrained epoch mixes exactly as the first time."""
    return float(np.random.default_rng([seed, epoch, nbatch]).beta(alpha, alpha))


def mix(values: np.ndarray, lam: float) -> np.ndarray:
    """Mixup (Zhang et al. 2018) of a batch with itself reversed, as GluonCV does: ``lam * x + (1 - lam) *
    x[::-1]`` along axis 0 (images or targets alike)."""
    return lam * values + (1.0 - lam) * values[::-1]


def soft_cross_entropy(probs: np.ndarray, targets: np.ndarray) -> float:
    """Mean over the batch of ``-sum_k targets[n, k] * log(probs[n, k])`` (nats); ``targets`` may be integer
    labels (N,) or distributions (N, K)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        if targets.ndim == 1:
            return float(-np.mean(np.log(probs[np.arange(len(targets)), targets.astype(np.int64)])))
        logp = np.log(probs)
        return float(-np.mean(np.sum(np.where(targets > 0, targets * logp, 0.0), axis=1)))


# ------------------------------------------------------------------------------------------- random erasing
ERASE_AREA = (0.02, 0.4)   # fraction of the image an erased rectangle covers (Zhong et al.'s s_l, s_h)
ERASE_MIN_ASPECT = 0.3     # height/width drawn uniformly from [0.3, 1/0.3] (their r_1)
ERASE_ATTEMPTS = 10        # draws until a rectangle fits inside the image; none fits: the image is left as it is


ERASE_FILLS = ("random", "mean")


def random_erasing(data: np.ndarray, probability: float, seed: int, epoch: int, nbatch: int,
                   fill: str = "random", fill_range: tuple[float, float] = (0.0, 255.0)) -> np.ndarray:
    """Random erasing (Zhong et al. 2020): each image of the batch ``data`` (N, C, H, W), with ``probability``,
    gets one rectangle of ``ERASE_AREA`` of its area and height/width in [0.3, 1/0.3] replaced.

    ``fill="random"`` (the paper's RE-R): uniform random values in ``fill_range`` (raw pixel values: the
    iterators do not subtract a mean). ``fill="mean"`` (RE-M, what the authors' released CIFAR code does): each
    channel's mean over the whole batch before erasing, standing in for the dataset mean (a batch of 128 CIFAR-10
    images puts it within a few pixel values of it). Drawn from a generator seeded by (seed, epoch, batch) apart
    from mixup's, so a retrained epoch erases exactly as the first time; both fills draw the same rectangles.
    Returns a new array; ``data`` is not changed."""
    if fill not in ERASE_FILLS:
        raise ValueError(f"fill must be one of {ERASE_FILLS}, got {fill!r}")
    out = np.array(data, copy=True)
    if probability <= 0:
        return out
    rng = np.random.default_rng([seed, epoch, nbatch, 1])
    _, channels, height, width = out.shape
    channel_mean = out.mean(axis=(0, 2, 3), dtype=np.float64).astype(out.dtype)[:, None, None]
    for image in out:
        if rng.random() >= probability:
            continue
        for _ in range(ERASE_ATTEMPTS):
            area = rng.uniform(*ERASE_AREA) * height * width
            aspect = rng.uniform(ERASE_MIN_ASPECT, 1.0 / ERASE_MIN_ASPECT)
            h, w = int(round(math.sqrt(area * aspect))), int(round(math.sqrt(area / aspect)))
            if 0 < h < height and 0 < w < width:
                top, left = rng.integers(0, height - h + 1), rng.integers(0, width - w + 1)
                noise = rng.uniform(*fill_range, size=(channels, h, w))   # drawn for both fills: same stream
                image[:, top:top + h, left:left + w] = noise if fill == "random" else channel_mean
                break
    return out


@dataclass(frozen=True)
class TargetRecipe:
    """What a training batch's targets are: the labels (both off), or distributions (smoothing and/or mixup).

    ``mixup_off_epoch``: mixup is off in the last that many epochs of a run ending at ``end_epoch`` (GluonCV's
    ``--mixup-off-epoch``).
    """

    num_classes: int
    smoothing: float = 0.0
    mixup_alpha: float = 0.0
    mixup_off_epoch: int = 0
    end_epoch: int = 0
    seed: int = 0
    distilled: bool = False  # --teacher: the targets become distributions that the teachers' predictions join

    @property
    def soft(self) -> bool:
        """Whether targets are (N, K) distributions (the engines bind/compute the loss for those)."""
        return self.smoothing > 0 or self.mixup_alpha > 0 or self.distilled

    def mixes(self, epoch: int) -> bool:
        return self.mixup_alpha > 0 and epoch < self.end_epoch - self.mixup_off_epoch

    def apply(self, data: np.ndarray, labels: np.ndarray, epoch: int, nbatch: int
              ) -> tuple[np.ndarray | None, np.ndarray]:
        """``(mixed data or None when unchanged, targets)`` for one batch (data (N, C, H, W), labels (N,))."""
        if not self.soft:
            return None, labels
        targets = smooth_one_hot(labels, self.num_classes, self.smoothing)
        if not self.mixes(epoch):
            return None, targets
        lam = mixup_lambda(self.mixup_alpha, self.seed, epoch, nbatch)
        return mix(data, lam).astype(data.dtype), mix(targets, lam).astype(np.float32)


# ------------------------------------------------------------------------------------ per-parameter settings
_STAGE = re.compile(r"^stage(\d+)_")
HEAD_PREFIX = f"{CLASSIFIER}_"


def is_decayed(name: str, no_wd: bool = False) -> bool:
    """Whether weight decay applies to parameter ``name``: ``*_weight`` and ``*_gamma`` as MXNet's Symbol optimizer
    does (``Optimizer.set_wd_mult``), ``*_weight`` only with ``no_wd`` (no decay on BN gamma/beta and biases)."""
    return name.endswith("_weight") or (name.endswith("_gamma") and not no_wd)


def stage_of(name: str) -> int:
    """Which part of the network ``name`` belongs to: 0 the stem (``bn_data``, ``conv0``, ``bn0``), i for
    ``stage{i}_*``, a large number for the end (``bn1``, ``fc1``)."""
    match = _STAGE.match(name)
    if match:
        return int(match.group(1))
    if name.startswith(("bn_data", "conv0", "bn0")):
        return 0
    return 1 << 20


def frozen_names(names: Iterable[str], freeze_stages: int) -> list[str]:
    """Parameters not trained with ``--freeze-stages N``: the stem and stages 1..N (0 freezes nothing)."""
    if freeze_stages <= 0:
        return []
    return [n for n in names if stage_of(n) <= freeze_stages]


def multipliers(names: Iterable[str], no_wd: bool = False, lr_mult_body: float = 1.0
                ) -> tuple[dict[str, float], dict[str, float]]:
    """``(wd_mult, lr_mult)`` by parameter name, explicit for every name (no optimizer default is relied on).

    ``lr_mult_body`` scales the rate of everything but the classifier ``fc1`` (fine-tuning).
    """
    names = list(names)
    wd_mult = {n: 1.0 if is_decayed(n, no_wd) else 0.0 for n in names}
    lr_mult = {n: 1.0 if n.startswith(HEAD_PREFIX) else float(lr_mult_body) for n in names}
    return wd_mult, lr_mult


# ------------------------------------------------------------------------------------------------- flags
def add_recipe_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    """The modern recipe's options (GluonCV's flag names), each off by default: the original's recipe is the
    default (resnet_toolkit/recipe.py, resnet_toolkit/schedule.py)."""
    recipe = parser.add_argument_group("Recipe (each off by default)")
    recipe.add_argument("--lr-mode", type=str, default="step", choices=list(LR_MODES),
                        help="step: x --lr-factor at --lr-steps; cosine: (1+cos(pi t))/2 from --lr to 0 over the "
                             "updates after the warm-up; poly: (1-t)^2")
    recipe.add_argument("--warmup-epochs", type=float, default=0.0,
                        help="epochs of linear warm-up from --warmup-lr to the curve (counted in updates)")
    recipe.add_argument("--warmup-lr", type=float, default=0.0, help="rate of the first warm-up update")
    recipe.add_argument("--label-smoothing", type=float, default=0.0,
                        help="EPS: train against 1-EPS+EPS/K on the label and EPS/K elsewhere (K classes)")
    recipe.add_argument("--mixup", type=float, default=0.0,
                        help="ALPHA > 0: mixup, each batch mixed with itself reversed, weight ~ Beta(ALPHA, ALPHA)")
    recipe.add_argument("--mixup-off-epoch", type=int, default=0, help="train the last N epochs without mixup")
    recipe.add_argument("--random-erasing", type=float, default=0.0, metavar="P",
                        help="with probability P, one rectangle of 2-40%% of each training image (height/width "
                             "0.3-3.3) is filled (Zhong et al. 2020), as --random-erasing-fill says")
    recipe.add_argument("--random-erasing-fill", choices=ERASE_FILLS, default="random",
                        help="random: uniform random pixel values (the paper's RE-R, default); mean: each "
                             "channel's mean over the batch (RE-M, as the authors' released CIFAR code)")
    recipe.add_argument("--no-wd", action="store_true",
                        help="no weight decay on BatchNorm gamma (beta and biases are never decayed)")
    recipe.add_argument("--last-gamma", action="store_true",
                        help="start every residual unit as the identity: its last convolution's weights zero "
                             "(the pre-activation unit ends in a convolution, not a BatchNorm)")
    return recipe


def check_recipe_args(args) -> None:
    """One clear :class:`UserError` for a recipe flag out of its range (``args``: the parsed flags, with
    ``end_epoch`` and ``lr_step_epochs`` resolved)."""
    for name in ("warmup_epochs", "warmup_lr", "label_smoothing", "mixup"):
        value = getattr(args, name)
        if not math.isfinite(value) or value < 0:
            raise UserError(f"--{name.replace('_', '-')} must be a finite number >= 0, got {value}")
    if not 0 <= args.random_erasing <= 1:
        raise UserError(f"--random-erasing must be a probability in [0, 1], got {args.random_erasing}")
    if args.label_smoothing >= 1:
        raise UserError(f"--label-smoothing must be below 1, got {args.label_smoothing}")
    if args.warmup_epochs >= args.end_epoch:
        raise UserError(f"--warmup-epochs {args.warmup_epochs:g} must end before --end-epoch {args.end_epoch}")
    if args.warmup_epochs and args.lr_mode == "step" and args.lr_step_epochs \
            and args.warmup_epochs > args.lr_step_epochs[0]:
        raise UserError(f"--warmup-epochs {args.warmup_epochs:g} runs past the first --lr-steps epoch "
                        f"{args.lr_step_epochs[0]}")
    if args.mixup_off_epoch < 0:
        raise UserError(f"--mixup-off-epoch must be >= 0, got {args.mixup_off_epoch}")
    if args.mixup_off_epoch and not args.mixup:
        raise UserError("--mixup-off-epoch needs --mixup ALPHA")
    if args.random_erasing_fill != "random" and not args.random_erasing:
        raise UserError(f"--random-erasing-fill {args.random_erasing_fill} needs --random-erasing P")
