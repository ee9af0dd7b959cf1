"""Learning rate as a pure function of the global update count.

The original (tornadomeet/ResNet) built ``MultiFactorScheduler(step=[epoch_size * (s - begin_epoch) for s in
steps if s > begin_epoch])`` afresh on every (re)start, with MXNet's update counter restarting at zero. Counted
globally that is: the update number ``u`` (1-based, as MXNet's ``num_update``) is multiplied by ``factor`` once for
every step epoch ``s`` with ``s > begin_epoch`` and ``u > s * epoch_size``; ``--lr`` is the rate in force when the
run begins. This module keeps exactly that meaning, so a resumed run continues on the same curve.
"""
from __future__ import annotations

from typing import Sequence

# By network type (the stem: 'cifar10' for 32x32-style data, digits and small folders included; 'imagenet').
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


class StepSchedule:
    """An MXNet ``lr_scheduler`` (any callable of ``num_update`` works) over :func:`learning_rate`.

    ``base_lr`` mirrors the attribute MXNet's optimizers read and overwrite; it is the ``lr`` of
    :func:`learning_rate`.
    """

    def __init__(self, lr: float, step_epochs: Sequence[int], epoch_size: int, factor: float = 0.1,
                 begin_epoch: int = 0):
        self.base_lr = lr
        self.step_epochs = tuple(step_epochs)
        self.epoch_size = epoch_size
        self.factor = factor
        self.begin_epoch = begin_epoch

    def __call__(self, num_update: int) -> float:
        return learning_rate(num_update, self.base_lr, self.step_epochs, self.epoch_size, self.factor,
                             self.begin_epoch)
