#!/usr/bin/env python
"""What several trained checkpoints reach together: each one's top-1 on a record file and the top-1 of their
averaged class probabilities, scored by the same code as ``tools/score.py`` (single view, center crop).

    python bench/ensemble.py --rec DATA/cifar10_val.rec \\
        bench/results/cifar10-resnet20-cosine160-model/resnet-cifar10-20:160 \\
        bench/results/cifar10-resnet20-cosine160-mixup-model/resnet-cifar10-20:160 \\
        bench/results/cifar10-resnet20-cosine160-mixup02-fp32-model/resnet-cifar10-20:160

An ensemble of N networks costs N forward passes an image: it is a bound on what one network of the same size
could learn from them (e.g. by distillation), not a single-network figure.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


class Ensemble:
    """Models bound for the same input, predicting the mean of their probabilities (the attributes
    ``evaluate_record`` reads: ``batch_size``, ``image_shape``, ``num_classes``, ``predict``)."""

    def __init__(self, models):
        first = models[0]
        for model in models[1:]:
            if (model.image_shape, model.num_classes) != (first.image_shape, first.num_classes):
                raise ValueError(f"models differ: input {model.image_shape} / {model.num_classes} classes against "
                                 f"{first.image_shape} / {first.num_classes}")
        self.models = models
        self.batch_size = first.batch_size
        self.image_shape = first.image_shape
        self.num_classes = first.num_classes

    def predict(self, batch: np.ndarray) -> np.ndarray:
        return np.mean([model.predict(batch) for model in self.models], axis=0)


def parse_member(text: str) -> tuple[str, int]:
    prefix, sep, epoch = text.rpartition(":")
    if not sep or not epoch.isdigit():
        raise argparse.ArgumentTypeError(f"{text!r}: expected PREFIX:EPOCH")
    return prefix, int(epoch)


def main(argv: list[str] | None = None) -> int:
    from resnet_toolkit.errors import UserError
    from resnet_toolkit.evaluation import evaluate_record
    from resnet_toolkit.predictor import load_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("members", nargs="+", type=parse_member, help="checkpoints as PREFIX:EPOCH")
    parser.add_argument("--rec", required=True, help="record file to score on (its .idx beside it)")
    parser.add_argument("--batch-size", type=int, default=200)
    args = parser.parse_args(argv)

    try:
        models = [load_model(prefix, epoch, batch_size=args.batch_size) for prefix, epoch in args.members]
        ensemble = Ensemble(models)
        result = {"rec": args.rec, "members": []}
        for (prefix, epoch), model in zip(args.members, models):
            score = evaluate_record(model, args.rec, progress=False).score()
            result["members"].append({"prefix": prefix, "epoch": epoch, "top1": score.top1, "top5": score.top5})
        score = evaluate_record(ensemble, args.rec, progress=False).score()
    except (UserError, ValueError) as exc:
        print(f"ensemble.py: {exc}", file=sys.stderr)
        return 1
    result.update(top1=score.top1, top5=score.top5, images=score.images)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
