"""Input-pipeline throughput (images/s) of the training iterators, to compare with training throughput.

Two cases, as the original trains them:
- CIFAR-10, aug level 1 (pad 4 + random crop 32 + mirror), from the CIFAR-10 tarball packed pass-through;
- ImageNet size, aug level 2 (scale 0.533-1, aspect 0.25, HSL jitter, crop 224 + mirror), from the photos packed at
  shorter side 480 and quality 90 (repeated to ``--imagenet-records`` records);
- with ``--imagenet-dir`` (a folder ``tools/im2rec_wrapper.py imagenet`` packed, e.g. the Imagenette photos): aug
  levels 1, 2 and 3 at 224 from its own records (level 1 reads train_256_q90.rec, 2-3 train_480_q90.rec).

    python -m bench.data_throughput --cifar-tar ../shared/data/cifar10-jpg.tar.gz --photos ../shared/data/photos
    python -m bench.data_throughput --imagenet-dir DATA_DIR --threads 1 2

Each figure is images delivered per second over ``--seconds`` of iteration after one warm-up batch, with
``preprocess_threads`` = each value of ``--threads``. Prints one line per measurement and a JSON line at the end.
"""
from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.data import get_layout, make_train_iter
from resnet_toolkit.datasets import pack_cifar10
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.im2rec import Item, pack_items
from resnet_toolkit.images import Transform


def measure(it, seconds: float) -> float:
    """Images per second delivered by ``it`` over about ``seconds`` (restarting epochs as needed)."""
    it.next()  # warm-up: threads started, first chunk decoded
    images, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        try:
            batch = it.next()
        except StopIteration:
            it.reset()
            continue
        batch.data[0].wait_to_read()
        images += batch.data[0].shape[0] - batch.pad
    return images / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cifar-tar", type=Path, help="cifar10-jpg.tar.gz (or a packed-data folder holding "
                                                       "cifar10_train.rec)")
    parser.add_argument("--photos", type=Path, help="folder of .jpg photos for the ImageNet-size case")
    parser.add_argument("--imagenet-dir", type=Path, help="packed ImageNet-layout folder: aug levels 1-3 on it")
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2], help="preprocess_threads values")
    parser.add_argument("--seconds", type=float, default=8.0, help="iteration time per measurement, s")
    parser.add_argument("--cifar-batch", type=int, default=128)
    parser.add_argument("--imagenet-batch", type=int, default=32)
    parser.add_argument("--imagenet-records", type=int, default=96)
    args = parser.parse_args(argv)
    if not (args.cifar_tar or args.photos or args.imagenet_dir):
        raise UserError("nothing to measure: give --cifar-tar, --photos and/or --imagenet-dir")
    imagenet = get_layout("imagenet")

    results = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        cases = []
        if args.cifar_tar:
            cifar_dir = args.cifar_tar if args.cifar_tar.is_dir() else tmp / "cifar"
            if not args.cifar_tar.is_dir():
                pack_cifar10(args.cifar_tar, cifar_dir, progress=False)
            cases.append(("cifar10 aug1 32x32", get_layout("cifar10"), cifar_dir, 1, args.cifar_batch))
        if args.photos:
            photos = sorted(args.photos.glob("*.jpg")) if args.photos.is_dir() else []
            if not photos:
                raise UserError(f"{args.photos}: no .jpg photos")
            items = [Item(p.name, i % 2, (lambda p=p: p.read_bytes())) for i, p in
                     enumerate(photos * (args.imagenet_records // len(photos) + 1))][:args.imagenet_records]
            pack_items(items, tmp / "train_480_q90.rec", Transform(resize=480, quality=90), progress=False)
            cases.append(("imagenet aug2 224x224 (480 records)", imagenet, tmp, 2, args.imagenet_batch))
        for level in (1, 2, 3) if args.imagenet_dir else ():
            rec = imagenet.train_path(args.imagenet_dir, level).name
            cases.append((f"{args.imagenet_dir.name} aug{level} 224x224 ({rec})", imagenet, args.imagenet_dir, level,
                          args.imagenet_batch))
        for name, layout, folder, level, batch in cases:
            for threads in args.threads:
                it = make_train_iter(layout.train_path(folder, level), layout, batch, aug_level=level, seed=0,
                                     preprocess_threads=threads)
                rate = measure(it, args.seconds)
                results.append(dict(case=name, batch=batch, preprocess_threads=threads, img_per_s=round(rate, 1)))
                print(f"{name:52s} batch {batch:4d} threads {threads}: {rate:9.1f} img/s", flush=True)
    print("json_stats: " + json.dumps(results))
    return 0


if __name__ == "__main__":
    run_cli(main)
