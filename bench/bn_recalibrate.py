#!/usr/bin/env python
"""Does a checkpoint's BatchNorm running statistics cost it accuracy? Score it on the test set as saved, then with
every BN layer's moving mean and variance recomputed as the exact average over N clean training batches (the
original's pad-4 crop + mirror; no mixup, no erasing), and print both.

    python bench/bn_recalibrate.py --prefix RUN/resnet-cifar10-20 --epoch 160 --data-dir DATA --batches 100

A diagnostic for recipes that train on images unlike the test images (random erasing's noise rectangles): if the
statistics gathered on such batches were what hurt, the recomputed ones score higher. MXNet updates a BN layer's
moving statistics in its backward pass, with ``moving = momentum * moving + (1 - momentum) * batch``; starting each
batch from zeros gives ``(1 - momentum) * batch`` exactly, so the batch statistics can be read back and averaged.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_toolkit.checkpoint import load_checkpoint  # noqa: E402
from resnet_toolkit.data import get_layout, make_train_iter, make_val_iter  # noqa: E402
from resnet_toolkit.errors import run_cli  # noqa: E402


def score(mx, symbol, arg_params, aux_params, val_rec: Path, batch_size: int) -> float:
    """Top-1 on every image of ``val_rec`` (batch_size must divide its count: the iterator pads the last batch)."""
    it = make_val_iter(val_rec, get_layout("cifar10"), batch_size)
    mod = mx.mod.Module(symbol, context=mx.cpu())
    mod.bind(it.provide_data, it.provide_label, for_training=False)
    mod.set_params(arg_params, aux_params)
    metric = mx.metric.Accuracy()
    mod.score(it, metric)
    return metric.get()[1]


def recomputed_statistics(mx, symbol, arg_params, aux_params, train_rec: Path, batches: int, batch_size: int,
                          seed: int) -> dict:
    """Every BN layer's moving mean/variance as the average of its batch statistics over ``batches`` training
    batches (batch statistics as training computes them: each layer normalizes with its own batch's)."""
    momentum = {node["name"]: float(node.get("attrs", {}).get("momentum", 0.9))
                for node in json.loads(symbol.tojson())["nodes"] if node["op"] == "BatchNorm"}
    it = make_train_iter(train_rec, get_layout("cifar10"), batch_size, seed=seed)
    mod = mx.mod.Module(symbol, context=mx.cpu())
    mod.bind(it.provide_data, it.provide_label, for_training=True)
    sums = {name: np.zeros(value.shape) for name, value in aux_params.items()}
    zeros = {name: mx.nd.zeros_like(value) for name, value in aux_params.items()}
    done = 0
    for batch in it:
        if done == batches:
            break
        mod.set_params(arg_params, zeros)
        mod.forward(batch, is_train=True)
        mod.backward()  # the moving statistics are written here,
        mx.nd.waitall()  # by an operator the engine does not order before reads of them: wait for it
        for name, value in mod._exec_group.execs[0].aux_dict.items():
            layer = name.rsplit("_moving_", 1)[0]
            sums[name] += value.asnumpy() / (1.0 - momentum[layer])
        done += 1
    return {name: mx.nd.array(total / done, dtype="float32") for name, total in sums.items()}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True, help="checkpoint prefix (PREFIX-symbol.json, PREFIX-EPOCH.params)")
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--data-dir", required=True, help="folder with cifar10_train.rec / cifar10_val.rec")
    parser.add_argument("--batches", type=int, default=100, help="training batches to average over")
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--seed", type=int, default=1234, help="seeds the training batches' shuffle and crops")
    args = parser.parse_args(argv)

    import mxnet as mx

    data = Path(args.data_dir)
    symbol, arg_params, aux_params = load_checkpoint(args.prefix, args.epoch)
    before = score(mx, symbol, arg_params, aux_params, data / "cifar10_val.rec", args.batch_size)
    recomputed = recomputed_statistics(mx, symbol, arg_params, aux_params, data / "cifar10_train.rec", args.batches,
                                       args.batch_size, args.seed)
    after = score(mx, symbol, arg_params, recomputed, data / "cifar10_val.rec", args.batch_size)
    print(json.dumps({"prefix": args.prefix, "epoch": args.epoch, "batches": args.batches,
                      "batch_size": args.batch_size, "top1_saved_statistics": before,
                      "top1_recomputed_statistics": after}))
    return 0


if __name__ == "__main__":
    run_cli(main)
