"""How much CIFAR-10 accuracy depends on JPEG loss: the same ResNet-20-v2 training budget on the tarball's images
as packed (quality ~75) and on copies re-encoded at lower qualities, training and test sets alike.

    python -m bench.jpeg_quality --source ../shared/data/cifar10-jpg.tar.gz --work /tmp/jpeg-quality \\
        --qualities 50 30 --epochs 15 --json bench/results/jpeg-quality/results.json \\
        --log-dir bench/results/jpeg-quality

The tarball cannot be un-compressed, so the cost of its own JPEG loss (against the official arrays) cannot be
measured here; what can be measured is the slope: how many points each further step of loss costs. Each quality is
packed with ``tools/im2rec_wrapper.py``'s code (``--reencode --quality Q``; "as-is" = the tarball's bytes passed
through), then trained with ``train_resnet.py`` (the recommended recipe: cosine, 1 warm-up epoch, label smoothing
0.1, no decay on BN/bias, wd 5e-4, batch 128, lr 0.1; all 50,000 training images an epoch unless
``--num-examples``) and validated on all 10,000 test images of the same quality after every epoch. Reports each
copy's entropy-coded bytes an image and its PSNR against the tarball's decoded pixels (first 2,000 test images),
and the last and best epoch's top-1.

    python -m bench.jpeg_quality --photos ../shared/data/photos --qualities 50 30

prints what the tarball cannot show: 32x32 tiles of real photographs (downscaled 4-8x, so clean) encoded once at
quality 75, as the tarball's images were, then re-encoded at each quality: the PSNR of the first step beside the
PSNR of the steps trained on here.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

from bench import grid

RECIPE = ["--lr-mode", "cosine", "--warmup-epochs", "1", "--warmup-lr", "0.01", "--label-smoothing", "0.1",
          "--no-wd", "--wd", "0.0005"]


def pack(source: str, out: Path, quality: int | None) -> dict:
    """Pack ``source`` into ``out`` (skipped when already there); ``quality`` None = pass-through. Returns the
    training record's size: images and bytes an image (record headers included)."""
    from resnet_toolkit.datasets import pack_cifar10

    rec = out / "cifar10_train.rec"
    if not (rec.is_file() and (out / "cifar10_val.rec").is_file()):
        pack_cifar10(source, out, pass_through=quality is None, quality=quality or 95, num_thread=2, progress=False)
    images = sum(1 for line in (out / "cifar10_train.idx").read_text().splitlines() if line.strip())
    return {"images": images, "bytes_per_image": round(rec.stat().st_size / images, 1)}


def test_images(data: Path, count: int) -> tuple[list[np.ndarray], float]:
    """The first ``count`` test images of ``data`` decoded (float, HWC) and their mean entropy-coded size: the
    bytes from the JPEG's start-of-scan marker on (the headers and tables, ~620 bytes, are the same at every
    quality)."""
    import cv2
    import mxnet as mx

    rec = mx.recordio.MXIndexedRecordIO(str(data / "cifar10_val.idx"), str(data / "cifar10_val.rec"), "r")
    images, scan = [], []
    for key in rec.keys[:count]:
        _, payload = mx.recordio.unpack(rec.read_idx(key))
        scan.append(len(payload) - payload.find(b"\xff\xda"))
        images.append(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR).astype(np.float64))
    rec.close()
    return images, float(np.mean(scan))


def psnr(images: list[np.ndarray], reference: list[np.ndarray]) -> float:
    """Peak signal-to-noise ratio (dB) of ``images`` against ``reference`` over all their pixels."""
    mse = np.mean([np.mean((a - b) ** 2) for a, b in zip(images, reference)])
    return float(10 * np.log10(255.0 ** 2 / mse))


def photo_tiles(photos: Path, per_scale: int = 40, seed: int = 0) -> list[np.ndarray]:
    """Lossless-enough 32x32 images to compare with: random windows of every photo in ``photos`` after an
    area-averaging downscale by 4, 6 and 8 (which removes the photos' own JPEG artefacts)."""
    import cv2

    rng = np.random.default_rng(seed)
    tiles = []
    for path in sorted(photos.glob("*.jpg")):
        image = cv2.imread(str(path), cv2.IMREAD_COLOR)
        for scale in (4, 6, 8):
            small = cv2.resize(image, (image.shape[1] // scale, image.shape[0] // scale), interpolation=cv2.INTER_AREA)
            for _ in range(per_scale):
                y, x = rng.integers(0, small.shape[0] - 32), rng.integers(0, small.shape[1] - 32)
                tiles.append(small[y:y + 32, x:x + 32].astype(np.float64))
    return tiles


def reencode(images: list[np.ndarray], quality: int) -> tuple[list[np.ndarray], float]:
    """``images`` through OpenCV's JPEG encoder at ``quality`` (4:2:0, as the packer) and back; with the mean
    entropy-coded bytes an image."""
    import cv2

    out, scan = [], []
    for image in images:
        _, payload = cv2.imencode(".jpg", image.astype(np.uint8), [cv2.IMWRITE_JPEG_QUALITY, quality])
        payload = payload.tobytes()
        scan.append(len(payload) - payload.find(b"\xff\xda"))
        out.append(cv2.imdecode(np.frombuffer(payload, np.uint8), cv2.IMREAD_COLOR).astype(np.float64))
    return out, float(np.mean(scan))


def first_generation(photos: Path, qualities: list[int]) -> list[dict]:
    """What the tarball's own step cannot show: 32x32 tiles of real photographs encoded once at quality 75
    (the tarball's first generation, from clean pixels), then re-encoded at each of ``qualities`` (the steps
    this bench trains on); PSNR of each step against its input."""
    tiles = photo_tiles(photos)
    q75, scan75 = reencode(tiles, 75)
    rows = [{"step": "clean -> q75", "scan_bytes": round(scan75, 1), "psnr_db": round(psnr(q75, tiles), 2)}]
    for quality in qualities:
        again, scan = reencode(q75, quality)
        rows.append({"step": f"q75 -> q{quality}", "scan_bytes": round(scan, 1), "psnr_db": round(psnr(again, q75), 2)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = grid.cifar_parser(__doc__, epochs=15, num_examples=50000, data_dir=False)
    parser.add_argument("--source", help="the CIFAR-10 tarball (or image tree)")
    parser.add_argument("--work", help="folder for the packed copies (one subfolder a quality)")
    parser.add_argument("--qualities", type=int, nargs="+", default=[50, 30],
                        help="JPEG qualities to re-encode at, besides the tarball as-is")
    parser.add_argument("--photos", help="folder of photographs: only print the first-generation comparison "
                                         "(their 32x32 tiles encoded at 75, then at --qualities), no training")
    args = parser.parse_args(argv)
    if any(not 1 <= q <= 100 for q in args.qualities):
        parser.error("--qualities must be between 1 and 100")

    if args.photos:
        for row in first_generation(Path(args.photos), args.qualities):
            print(json.dumps(row))
        return 0
    if not (args.source and args.work):
        parser.error("--source and --work are needed (or --photos alone)")
    work, log_dir = grid.folders(args.work, args.log_dir, "jpeg-quality-")
    table = grid.Table(args.json, {"epochs": args.epochs, "num_examples": args.num_examples, "depth": args.depth,
                                   "seed": args.seed, "recipe": RECIPE},
                       ["JPEG", "scan bytes an image", "PSNR vs as-is, dB", "top-1, last epoch", "best epoch's top-1"])
    reference = None
    for quality in [None, *args.qualities]:  # the grid: one cell a quality, each packed before it trains
        name = "as-is" if quality is None else f"q{quality}"
        data = work / name
        size = pack(args.source, data, quality)
        images, scan_bytes = test_images(data, 2000)
        reference = images if reference is None else reference
        size["scan_bytes"] = round(scan_bytes, 1)
        size["psnr_db"] = None if quality is None else round(psnr(images, reference), 2)
        log = log_dir / f"{name}.log"
        run = grid.train([*grid.cifar_flags(data, epochs=args.epochs, num_examples=args.num_examples, seed=args.seed,
                                            depth=args.depth, prefix=work / f"model-{name}" / "m", log_file=log),
                          *RECIPE], name)
        shown = "–" if size["psnr_db"] is None else f"{size['psnr_db']:.1f}"
        table.add({"jpeg": name, "quality": quality, **size, **run.figures(), "train-accuracy": run.train_accuracy,
                   "log": str(log)},
                  [name, f"{scan_bytes:.0f}", shown, f"{run.last:.4f}", f"{run.best:.4f}"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
