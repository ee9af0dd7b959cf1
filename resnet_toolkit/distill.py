"""Knowledge distillation (``--teacher``, ``--hard-weight``): trained networks' predictions as part of each
training batch's targets.

Hinton et al. 2015 at temperature 1, the form GluonCV's ``--teacher``/``--hard-weight`` train with at
``--temperature 1``: every batch trains against

    W x (the recipe's targets: the labels, smoothed and mixed as the other flags say)
    + (1 - W) x the teachers' mean class probabilities on the batch exactly as the student sees it
      (cropped, mirrored, mixed, erased)

with W = ``--hard-weight``. Cross-entropy against that mixture is the weighted sum of the two cross-entropies, so
the loss is the familiar one and both engines train it as they train label smoothing and mixup (soft targets).
Several ``--teacher`` checkpoints form an ensemble (their probabilities averaged). The teachers run in
inference mode (BN running statistics, float32), are deterministic, and so leave ``--retrain`` exact.
"""
from __future__ import annotations

import argparse
import math
from typing import Sequence

import numpy as np

from resnet_toolkit.errors import UserError
from resnet_toolkit.weights import parse_prefix_epoch


class Teacher:
    """Trained models bound for the run's batches; :meth:`probabilities` is their mean prediction."""

    def __init__(self, models: Sequence, names: Sequence[str]):
        self.models = list(models)
        self.names = list(names)

    def probabilities(self, data: np.ndarray) -> np.ndarray:
        """(N, K) mean class probabilities of the teachers for ``data`` (N, C, H, W), raw RGB 0..255 as the
        training iterator yields it."""
        return np.mean([model.predict(data) for model in self.models], axis=0).astype(np.float32)


def distill_targets(targets: np.ndarray, teacher_probs: np.ndarray, hard_weight: float) -> np.ndarray:
    """``hard_weight * targets + (1 - hard_weight) * teacher_probs`` (both (N, K) distributions)."""
    if targets.shape != teacher_probs.shape:
        raise ValueError(f"targets {targets.shape} and teacher probabilities {teacher_probs.shape} differ")
    return (hard_weight * targets + (1.0 - hard_weight) * teacher_probs).astype(np.float32)


def parse_teacher(text: str) -> tuple[str, str | None]:
    """``--teacher PREFIX[,EPOCH]`` -> ``(PREFIX, EPOCH or None)`` (None: the newest), as ``--finetune`` takes it."""
    return parse_prefix_epoch(text, "--teacher")


def load_teacher(specs: Sequence[str], batch_size: int, image_shape: Sequence[int], num_classes: int) -> Teacher:
    """Load every ``--teacher PREFIX[,EPOCH]`` for batches of ``batch_size`` images of ``image_shape``; one clear
    :class:`UserError` for a missing checkpoint or one that was trained for other images or other classes."""
    from resnet_toolkit import checkpoint as ckpt
    from resnet_toolkit.predictor import load_model

    models, names = [], []
    for text in specs:
        prefix, epoch_text = parse_teacher(text)
        epoch = ckpt.resolve_epoch(prefix, epoch_text, flag=f"--teacher {text}")
        model = load_model(prefix, epoch, batch_size=batch_size)
        if tuple(model.image_shape) != tuple(image_shape):
            raise UserError(f"--teacher {text}: its network takes {tuple(model.image_shape)} images, this run "
                            f"trains on {tuple(image_shape)}")
        if model.num_classes != num_classes:
            raise UserError(f"--teacher {text}: it predicts {model.num_classes} classes, this run trains "
                            f"{num_classes}")
        models.append(model)
        names.append(str(ckpt.params_path(prefix, epoch)))
    return Teacher(models, names)


def add_distill_args(parser: argparse.ArgumentParser) -> argparse._ArgumentGroup:
    group = parser.add_argument_group("Distillation (off by default)")
    group.add_argument("--teacher", type=str, nargs="+", default=None, metavar="PREFIX[,EPOCH]",
                       help="train against these trained checkpoints' mean predictions as well as the labels "
                            "(knowledge distillation at temperature 1; epoch omitted: the newest)")
    group.add_argument("--hard-weight", type=float, default=0.5,
                       help="with --teacher: weight W of the labels in the targets, 1-W of the teachers' "
                            "probabilities")
    return group


def check_distill_args(args) -> None:
    """One clear :class:`UserError` for distillation flags out of range."""
    if not math.isfinite(args.hard_weight) or not 0 <= args.hard_weight <= 1:
        raise UserError(f"--hard-weight must be in [0, 1], got {args.hard_weight}")
    if args.hard_weight != 0.5 and not args.teacher:
        raise UserError("--hard-weight needs --teacher PREFIX[,EPOCH]")
