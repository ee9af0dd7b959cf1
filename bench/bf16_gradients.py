#!/usr/bin/env python
"""How far bfloat16 training moves the gradients from float32's, and whether the difference averages out.

For the same weights (a checkpoint) and the same training batches (pad-4 crop + mirror, label smoothing 0.1 as the
recipe trains), the float32 training graph and bfloat16 variants of it (``--precision-policy mxnet``, the default;
the same with BatchNorm, or with the residual sums, kept float32; ``--precision-policy fp32-bn``) compute their
gradients. Per parameter group (convolution weights, BN gammas, BN betas, the classifier, all) it prints, with
e_k = g_bf16(batch k) - g_fp32(batch k) over K batches:

- ``err``: median over k of ||e_k|| / ||g_fp32(k)||: the per-step error;
- ``coherence``: ||mean_k e_k|| / mean_k ||e_k||: about 1/sqrt(K) when the error changes direction from batch to
  batch (it averages out over steps), near 1 when it points the same way every batch (a bias that accumulates);
- ``align``: the cosine between mean_k e_k and mean_k g_fp32(k) (-1: bfloat16 only shrinks the gradient, a lower
  learning rate; near 0: it points elsewhere);
- ``bias/signal``: ||mean_k e_k|| / ||mean_k g_fp32(k)||: the bias against the gradient common to all batches;

and for float32 alone ``noise`` (median ||g(k+1) - g(k)|| / ||g(k)||, how far the next batch moves the gradient)
and ``signal`` (||mean_k g(k)|| / mean_k ||g(k)||, the coherence of the gradient itself).

    python bench/bf16_gradients.py --prefix RUN/resnet-cifar10-20 --epoch 50 --data-dir DATA --batches 32 \
        [--json results.jsonl]

A question the 160-epoch bfloat16 runs raised (bench/RESULTS.md, issue 14): they ended 3-4 points under float32
runs of the same recipe, while 2- and 20-epoch pairs had shown no resolved loss.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from resnet_toolkit.checkpoint import load_checkpoint  # noqa: E402
from resnet_toolkit.cluster import Cluster  # noqa: E402
from resnet_toolkit.data import get_layout, make_train_iter  # noqa: E402
from resnet_toolkit.engines import ModuleEngine, TrainSetup  # noqa: E402
from resnet_toolkit.errors import run_cli  # noqa: E402
from resnet_toolkit.fastpath import training_graph  # noqa: E402
from resnet_toolkit.precision import mixed_precision_symbol  # noqa: E402
from resnet_toolkit.recipe import smooth_one_hot  # noqa: E402

BN_OPS = ("_contrib_BatchNormWithReLU", "BatchNorm")
#: name -> (policy, op types kept float32 under it); every variant is compared with the float32 graph
VARIANTS = {
    "bf16 mxnet (default)": ("mxnet", ()),
    "bf16 mxnet, BN fp32": ("mxnet", BN_OPS),
    "bf16 mxnet, sums fp32": ("mxnet", ("elemwise_add",)),
    "bf16 fp32-bn": ("fp32-bn", ()),
}


def group_of(name: str) -> str:
    """The parameter group a name belongs to (the table's rows)."""
    if name.startswith("fc1_"):
        return "classifier"
    if name.endswith("_gamma"):
        return "BN gamma"
    if name.endswith("_beta"):
        return "BN beta"
    return "conv weight"


def batches(data_dir: Path, batch_size: int, count: int, seed: int, smoothing: float) -> list[tuple]:
    """``count`` training batches as (data, soft targets) NDArrays, the recipe's augmentation and smoothing."""
    import mxnet as mx

    it = make_train_iter(data_dir / "cifar10_train.rec", get_layout("cifar10"), batch_size, seed=seed)
    out = []
    for batch in it:
        if len(out) == count:
            break
        labels = batch.label[0].asnumpy().astype(int)
        targets = smooth_one_hot(labels, 10, smoothing).astype(np.float32)
        out.append((batch.data[0].copy(), mx.nd.array(targets)))
    return out


def gradients(training_sym, arg_params, aux_params, data) -> list[dict]:
    """Per batch, {parameter name: gradient} of ``training_sym`` (already in its precision)."""
    import mxnet as mx

    setup = TrainSetup(num_classes=10, soft=True)  # float32: the graph is used as given
    engine = ModuleEngine(training_sym, [mx.cpu()], Cluster(None), data[0][0].shape, arg_params, aux_params, "sgd",
                          {"learning_rate": 0.0}, fast_graph=False, recipe=setup)
    out = []
    for x, targets in data:
        engine.mod.set_params(arg_params, aux_params)  # BN's running statistics as saved, every batch
        engine.forward_backward(x, targets)
        mx.nd.waitall()
        grads = engine.mod._exec_group.execs[0].grad_dict
        out.append({name: grads[name].asnumpy().astype(np.float64) for name in arg_params})
    return out


def _norm(arrays: list) -> float:
    return float(np.sqrt(sum(float((a * a).sum()) for a in arrays)))


def compare(reference: list[dict], other: list[dict]) -> dict:
    """{group: {'err': median per-batch relative error, 'coherence': ||mean error|| / mean ||error||, 'align':
    cosine of the mean error with the mean float32 gradient, 'bias_vs_signal': ||mean error|| / ||mean gradient||}}."""
    groups = sorted({group_of(n) for n in reference[0]})
    result = {}
    for group in groups + ["all"]:
        names = [n for n in reference[0] if group == "all" or group_of(n) == group]
        errs = [_norm([o[n] - r[n] for n in names]) / _norm([r[n] for n in names]) for r, o in zip(reference, other)]
        mean_error = [np.mean([o[n] - r[n] for r, o in zip(reference, other)], axis=0) for n in names]
        sizes = [_norm([o[n] - r[n] for n in names]) for r, o in zip(reference, other)]
        mean_ref = [np.mean([r[n] for r in reference], axis=0) for n in names]
        dot = sum(float((e * g).sum()) for e, g in zip(mean_error, mean_ref))
        result[group] = {"err": float(np.median(errs)), "coherence": _norm(mean_error) / float(np.mean(sizes)),
                         "align": dot / (_norm(mean_error) * _norm(mean_ref)),
                         "bias_vs_signal": _norm(mean_error) / _norm(mean_ref)}
    return result


def batch_noise(reference: list[dict]) -> dict:
    """{group: {'noise': median over k of ||g(k+1) - g(k)|| / ||g(k)||, 'signal': ||mean_k g(k)|| / mean_k
    ||g(k)||}} in float32."""
    groups = sorted({group_of(n) for n in reference[0]}) + ["all"]
    result = {}
    for group in groups:
        names = [n for n in reference[0] if group == "all" or group_of(n) == group]
        ratios = [_norm([b[n] - a[n] for n in names]) / _norm([a[n] for n in names])
                  for a, b in zip(reference, reference[1:])]
        mean = [np.mean([g[n] for g in reference], axis=0) for n in names]
        signal = _norm(mean) / float(np.mean([_norm([g[n] for n in names]) for g in reference]))
        result[group] = {"noise": float(np.median(ratios)), "signal": signal}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--prefix", required=True, help="checkpoint prefix (PREFIX-symbol.json, PREFIX-EPOCH.params)")
    parser.add_argument("--epoch", type=int, required=True)
    parser.add_argument("--data-dir", required=True, help="folder with cifar10_train.rec")
    parser.add_argument("--batches", type=int, default=16, help="training batches (at least 2)")
    parser.add_argument("--batch-size", type=int, default=128)
    parser.add_argument("--label-smoothing", type=float, default=0.1)
    parser.add_argument("--seed", type=int, default=1234, help="seeds the batches' shuffle and crops")
    parser.add_argument("--json", help="append the result as one JSON line to this file")
    args = parser.parse_args(argv)
    if args.batches < 2:
        parser.error("--batches must be at least 2 (the batch-to-batch noise needs a pair)")

    symbol, arg_params, aux_params = load_checkpoint(args.prefix, args.epoch)
    fast, _ = training_graph(symbol)  # the graph training binds (fit.py: fastpath)
    data = batches(Path(args.data_dir), args.batch_size, args.batches, args.seed, args.label_smoothing)
    reference = gradients(fast, arg_params, aux_params, data)
    noise = batch_noise(reference)
    rows = {}
    for name, (policy, kept) in VARIANTS.items():
        sym = mixed_precision_symbol(fast, "bfloat16", policy=policy, float32_ops=kept)
        rows[name] = compare(reference, gradients(sym, arg_params, aux_params, data))

    print(f"{args.prefix} epoch {args.epoch}, {args.batches} batches of {args.batch_size} "
          f"(a random error's coherence: ~{1 / np.sqrt(args.batches):.3f})")
    print(f"{'float32':<22} {'group':<12} {'noise':>7} {'signal':>7}")
    for group, cell in noise.items():
        print(f"{'':<22} {group:<12} {cell['noise']:>7.4f} {cell['signal']:>7.4f}")
    print(f"{'variant':<22} {'group':<12} {'err':>7} {'coherence':>9} {'align':>6} {'bias/signal':>11}")
    for name, groups in rows.items():
        for group, cell in groups.items():
            print(f"{name:<22} {group:<12} {cell['err']:>7.4f} {cell['coherence']:>9.4f} {cell['align']:>6.3f} "
                  f"{cell['bias_vs_signal']:>11.4f}")
    if args.json:
        record = dict(prefix=args.prefix, epoch=args.epoch, batches=args.batches, batch_size=args.batch_size,
                      seed=args.seed, label_smoothing=args.label_smoothing, noise=noise, bf16=rows)
        with open(args.json, "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(run_cli(main))
