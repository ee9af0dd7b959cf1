"""Train a pre-activation ResNet (ResNet-v2) with MXNet, with the original reproduction's flags.

    python train_resnet.py --data-type cifar10 --data-dir data/cifar10 --depth 164 --batch-size 128
    python train_resnet.py --data-type imagenet --data-dir data/imagenet --depth 50 --gpus 0,1,2,3
    python train_resnet.py ... --retrain --model-load-epoch 70 --lr 0.0005 --wd 0.001

Checkpoints go to ``model/resnet-{data_type}-{depth}-{rank}-NNNN.params`` (+ ``-symbol.json``, ``.states``).
"""
from __future__ import annotations

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.distributed import fail_fast_in_job
from resnet_toolkit.errors import run_cli
from resnet_toolkit.train_args import parse_args


def main(argv: list[str] | None = None) -> int:
    from resnet_toolkit import runtime

    runtime.configure()  # process-level speed settings, before MXNet loads (see resnet_toolkit/runtime.py)
    args = parse_args(argv)
    from resnet_toolkit.fit import fit

    with fail_fast_in_job("train_resnet.py"):  # a failed worker of a distributed job exits at once, never hangs
        result = fit(args)
    print(f"final validation accuracy {result.val_accuracy:.4f} after Epoch[{result.end_epoch - 1}]; "
          f"checkpoint {result.prefix}-{result.end_epoch:04d}.params")
    return 0


if __name__ == "__main__":
    run_cli(main)
