"""Learning rate as a pure function of the global update count.

The original (tornadomeet/ResNet) built ``MultiFactorScheduler(step=[epoch_size * (s - begin_epoch) for s in
steps if s > begin_epoch])`` afresh on every (re)start, with MXNet's update counter restarting at zero. Counted
globally that is: the update number ``u`` (1-based, as MXNet's ``num_update``) is multiplied by ``factor`` once for
every step epoch ``s`` with ``s > begin_epoch`` and ``u > s * epoch_size``; ``--lr`` is the rate in force when the
run begins. This module keeps exactly that meaning, so a resumed run continues on the same curve.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

# By network type (the stem: 'cifar10' for 32x32-style data, digits and small folders included; 'imagenet').
DEFAULT_LR = 0.1  # the original's --lr: the peak of a cosine/poly curve, the first rate of a step curve
DEFAULT_STEPS = {"cifar10": (120, 160), "imagenet": (30, 60, 90)}
DEFAULT_END_EPOCH = {"cifar10": 200, "imagenet": 120}


def learning_rate(num_update: int, lr: float, step_epochs: Sequence[int], epoch_size: int, factor: float = 0.1,
                  begin_epoch: int = 0) -> float:
    """The learning rate of update number ``num_update`` (1-based over the whole training, all epochs).

    ``lr`` is the rate at the start of epoch ``begin_epoch`` (0 for a fresh run); ``step_epochs`` are the epochs
    (0-based, absolute) whose first update is the first at the reduced rate; ``epoch_size`` is the number of
    updates per epoch. Steps at or before ``begin_epoch`` are taken as already contained in ``lr``.
    """
    drops = sum(1 for s in step_epochs if s > begin_epoch and num_update > s * epoch_size)
    return lr * factor ** drops


def rate_at_epoch(epoch: int, base_lr: float, step_epochs: Sequence[int], factor: float = 0.1) -> float:
    """The rate of the first update of ``epoch`` on a curve that starts at ``base_lr`` in epoch 0."""
    return base_lr * factor ** sum(1 for s in step_epochs if 0 < s <= epoch)


def parse_steps(text: str) -> tuple[int, ...]:
    """``'120,160'`` -> ``(120, 160)``; raises ``ValueError`` for anything but increasing positive integers."""
    steps = tuple(int(part) for part in text.split(",") if part.strip())
    if any(s <= 0 for s in steps) or list(steps) != sorted(set(steps)):
        raise ValueError(f"--lr-steps must be increasing positive epochs, got {text!r}")
    return steps


LR_MODES = ("step", "cosine", "poly")


def warmup_rate(num_update: int, target: float, warmup_updates: int, warmup_lr: float) -> float:
    """The rate of update ``num_update`` (1-based) during a linear warm-up of ``warmup_updates`` updates that starts
    at ``warmup_lr`` and would reach ``target`` at update ``warmup_updates + 1``; ``target`` after the warm-up."""
    if num_update > warmup_updates:
        return target
    return warmup_lr + (target - warmup_lr) * (num_update - 1) / warmup_updates


def annealed_rate(num_update: int, base_lr: float, first_update: int, total_updates: int, mode: str,
                  power: float = 2.0) -> float:
    """Cosine or polynomial decay from ``base_lr`` at update ``first_update`` to 0 after update ``total_updates``.

    ``mode`` 'cosine': ``base_lr * (1 + cos(pi * t)) / 2``; 'poly': ``base_lr * (1 - t) ** power``, with
    ``t = (num_update - first_update) / (total_updates - first_update + 1)`` the fraction of the decay done (0 at
    ``first_update``, GluonCV's ``LRScheduler`` counted 1-based). Updates past the end keep the last value.
    """
    span = max(total_updates - first_update + 1, 1)
    t = min(max(num_update - first_update, 0) / span, 1.0)
    if mode == "cosine":
        return base_lr * (1 + math.cos(math.pi * t)) / 2
    if mode == "poly":
        return base_lr * (1 - t) ** power
    raise ValueError(f"annealed_rate: mode must be 'cosine' or 'poly', got {mode!r}")


@dataclass
class Schedule:
    """The whole learning-rate curve of a run, an MXNet ``lr_scheduler`` (called with the 1-based ``num_update``).

    ``mode`` 'step': :func:`learning_rate` (the original's; ``base_lr`` is the rate in force at ``begin_epoch``).
    'cosine' / 'poly': :func:`annealed_rate` from ``base_lr`` (the peak) to 0 over the updates after the warm-up
    until ``end_epoch``; absolute in the update count, so a retrain at any epoch continues the same curve.
    A warm-up of ``warmup_epochs`` (any mode) rises linearly from ``warmup_lr`` to the curve's value.
    Not frozen: MXNet's optimizers write ``base_lr`` (with the same value, the ``learning_rate`` they are given).
    """

    mode: str
    base_lr: float
    epoch_size: int
    end_epoch: int
    step_epochs: tuple[int, ...] = ()
    factor: float = 0.1
    begin_epoch: int = 0
    warmup_epochs: float = 0.0
    warmup_lr: float = 0.0
    power: float = 2.0

    @property
    def warmup_updates(self) -> int:
        return int(round(self.warmup_epochs * self.epoch_size))

    def curve(self, num_update: int) -> float:
        """The rate of update ``num_update`` without the warm-up (what a step-mode retrain continues from)."""
        if self.mode == "step":
            return learning_rate(num_update, self.base_lr, self.step_epochs, self.epoch_size, self.factor,
                                 self.begin_epoch)
        return annealed_rate(num_update, self.base_lr, self.warmup_updates + 1, self.end_epoch * self.epoch_size,
                             self.mode, self.power)

    def __call__(self, num_update: int) -> float:
        warm = self.warmup_updates
        rate = self.curve(num_update)
        return warmup_rate(num_update, rate, warm, self.warmup_lr) if warm else rate
