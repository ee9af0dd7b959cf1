"""One image file read and checked, and stored as a record payload: what packing and prediction do to each image.

The header (JPEG segments and PNG IHDR parsed here, other formats through Pillow when it is installed) gives the
size before any pixel is decoded, so :class:`ImageLimits` refuses a likely decompression bomb without allocating it
(:func:`header_size_problem`); a JPEG's EXIF orientation decides whether its bytes can be stored as they are.
Every image goes through :func:`decode_image`: grayscale becomes 3 equal channels, alpha is composited over white,
16-bit is scaled to 8-bit, CMYK JPEGs are converted by OpenCV; empty, corrupt, non-image, too small and too large
files raise :class:`ImageSkipped` with the reason. :class:`Transform` is how one image is stored in a record
(resize, crop, encoding, pass-through of the file's own bytes).

Imports nothing of the packers that build on it (:mod:`resnet_toolkit.im2rec`, :mod:`resnet_toolkit.datasets`).
"""
from __future__ import annotations

import io
import warnings
from dataclasses import dataclass

import numpy as np

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm")
DEFAULT_MIN_SIDE = 8  # pixels: smaller images carry no usable content at the networks' input sizes
DEFAULT_MAX_PIXELS = 100_000_000  # 100 megapixels (~300 MB decoded): beyond it, a likely decompression bomb
_JPEG_MAGIC = b"\xff\xd8\xff"
_PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class ImageLimits:
    """Images with a shorter side below ``min_side`` pixels or more than ``max_pixels`` pixels are skipped."""

    min_side: int = DEFAULT_MIN_SIDE
    max_pixels: int = DEFAULT_MAX_PIXELS

    def too_large(self, width: int, height: int) -> str | None:
        """The reason an image of ``width`` x ``height`` pixels is refused for its size, or None when it fits."""
        if width * height > self.max_pixels:
            return f"too large: {width}x{height} pixels (limit {self.max_pixels / 1e6:g} megapixels)"
        return None


_SOF_MARKERS = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _exif_orientation(segment: bytes) -> int:
    """The EXIF orientation (1-8) in an APP1 segment's payload; 1 (upright) when absent or unreadable."""
    if not segment.startswith(b"Exif\0\0") or len(segment) < 14:
        return 1
    tiff = segment[6:]
    order = {b"II": "little", b"MM": "big"}.get(tiff[:2])
    if order is None:
        return 1
    ifd = int.from_bytes(tiff[4:8], order)
    if ifd + 2 > len(tiff):
        return 1
    for k in range(int.from_bytes(tiff[ifd:ifd + 2], order)):
        entry = tiff[ifd + 2 + 12 * k:ifd + 14 + 12 * k]
        if len(entry) == 12 and int.from_bytes(entry[:2], order) == 0x0112:
            return int.from_bytes(entry[8:10], order)
    return 1


def _jpeg_header(data: bytes) -> tuple[int, int, bool] | None:
    """(width, height, simple) from a JPEG's segments: simple = 8-bit, 3 components and no EXIF rotation
    (MXNet's decoder ignores EXIF orientation, so a rotated photo must be stored upright, re-encoded)."""
    pos, end, upright = 2, len(data), True
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte
            pos += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            pos += 2
            continue
        length = int.from_bytes(data[pos + 2:pos + 4], "big")
        if marker in _SOF_MARKERS and pos + 10 <= end:
            height = int.from_bytes(data[pos + 5:pos + 7], "big")
            width = int.from_bytes(data[pos + 7:pos + 9], "big")
            return width, height, upright and data[pos + 4] == 8 and data[pos + 9] == 3
        if marker == 0xE1:
            upright = upright and _exif_orientation(data[pos + 4:pos + 2 + length]) == 1
        if marker == 0xDA or length < 2:
            return None
        pos += 2 + length
    return None


def _header_info(data: bytes) -> tuple[int, int, bool] | None:
    """``(width, height, simple)`` read from the file header without decoding; None when unknown.

    ``simple``: an 8-bit 3-channel JPEG, or an 8-bit RGB PNG (no alpha, no palette), which every decoder reads
    as the same 3-channel image. JPEG and PNG headers are parsed here (fast); other formats through Pillow
    when it is installed.
    """
    if data.startswith(_PNG_MAGIC) and len(data) >= 26 and data[12:16] == b"IHDR":
        width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
        return width, height, data[24] == 8 and data[25] == 2
    if data.startswith(_JPEG_MAGIC):
        return _jpeg_header(data)
    try:
        from PIL import Image
    except ImportError:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as im:
                return im.size[0], im.size[1], False
    except Image.DecompressionBombError as exc:
        raise ImageSkipped(f"too large ({exc})") from None
    except Exception:  # noqa: BLE001  (Pillow raises many types for files it cannot identify; cv2 decides)
        return None


class ImageSkipped(Exception):
    """An image that cannot be packed; the message is the reason shown in the summary."""


def to_bgr8(img: np.ndarray) -> np.ndarray:
    """A decoded image (any of gray, gray+alpha, BGR, BGRA; 8 or 16 bits) as 3-channel 8-bit BGR.

    16-bit values are scaled by 255/65535 (rounded); alpha is composited over white, as a viewer shows it.
    """
    import cv2

    if img.dtype == np.uint16:
        img = ((img.astype(np.uint32) * 255 + 32767) // 65535).astype(np.uint8)
    elif img.dtype != np.uint8:
        raise ImageSkipped(f"unsupported pixel type {img.dtype}")
    if img.ndim == 2:
        img = img[:, :, None]
    channels = img.shape[2]
    if channels in (2, 4):
        color, alpha = img[:, :, :-1].astype(np.float32), img[:, :, -1:].astype(np.float32) / 255.0
        img = np.rint(color * alpha + 255.0 * (1.0 - alpha)).astype(np.uint8)
        channels -= 1
    if channels == 1:
        return cv2.cvtColor(img, cv2.COLOR_GRAY2BGR)
    if channels == 3:
        return np.ascontiguousarray(img)
    raise ImageSkipped(f"unsupported number of channels ({channels})")


def header_size_problem(data: bytes, limits: ImageLimits = ImageLimits()) -> str | None:
    """The reason the file bytes ``data`` must not be decoded: their header (JPEG and PNG parsed here, other formats
    through Pillow when installed) claims more than ``limits.max_pixels`` pixels, which decoding would allocate
    (3 bytes each: a 100000x100000 header asks for 30 GB). None when the size fits or the header gives none."""
    try:
        info = _header_info(data)
    except ImageSkipped as exc:
        return str(exc)
    return limits.too_large(info[0], info[1]) if info is not None else None


def decode_image(data: bytes, limits: ImageLimits = ImageLimits()) -> tuple[np.ndarray, bool]:
    """Decode file bytes to 3-channel 8-bit BGR. Returns ``(image, as_is)``.

    ``as_is`` is True when the bytes are a JPEG or PNG that any decoder reads as this very image (8-bit RGB,
    no alpha, no palette, no CMYK), i.e. safe to store unchanged (pass-through). Raises ``ImageSkipped`` with the reason
    for an empty, undecodable, too small or too large file.
    """
    import cv2

    if not data:
        raise ImageSkipped("empty file")
    info = _header_info(data)
    if info is not None and (reason := limits.too_large(info[0], info[1])):
        raise ImageSkipped(reason)
    # JPEG: IMREAD_COLOR applies the EXIF orientation and converts gray/CMYK to BGR; others: see every channel
    flags = cv2.IMREAD_COLOR if data.startswith(_JPEG_MAGIC) else cv2.IMREAD_UNCHANGED
    raw = cv2.imdecode(np.frombuffer(data, np.uint8), flags)
    if raw is None or raw.size == 0:
        raise ImageSkipped("not a decodable image")
    height, width = raw.shape[:2]
    if reason := limits.too_large(width, height):
        raise ImageSkipped(reason)
    if min(width, height) < limits.min_side:
        raise ImageSkipped(f"too small: {width}x{height} pixels (shorter side below {limits.min_side})")
    img = to_bgr8(raw)
    simple = raw.dtype == np.uint8 and raw.ndim == 3 and raw.shape[2] == 3
    return img, bool(simple and info is not None and info[2] and data.startswith((_JPEG_MAGIC, _PNG_MAGIC)))


def resize_short(img: np.ndarray, short: int) -> np.ndarray:
    """Resize so the shorter side is ``short`` pixels, keeping the aspect ratio (area filter when shrinking)."""
    import cv2

    height, width = img.shape[:2]
    if min(height, width) == short:
        return img
    scale = short / min(height, width)
    size = (max(1, int(round(width * scale))), max(1, int(round(height * scale))))
    if height <= width:
        size = (size[0], short)
    else:
        size = (short, size[1])
    return cv2.resize(img, size, interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC)


def center_crop_square(img: np.ndarray) -> np.ndarray:
    """The largest centered square of ``img``."""
    height, width = img.shape[:2]
    side = min(height, width)
    top, left = (height - side) // 2, (width - side) // 2
    return img[top:top + side, left:left + side]


@dataclass(frozen=True)
class Transform:
    """How each image is stored: ``resize`` (shorter side, pixels; 0 keeps the size), ``exact_size`` ((w, h):
    center-crop and resize to exactly this, for CIFAR-like data), ``center_crop`` (square first), ``quality``
    (JPEG 1-100, or PNG compression 0-9), ``encoding`` ('.jpg' or '.png'), ``pass_through`` (store the file's
    own bytes whenever they already are the image as stored), ``limits``."""

    resize: int = 0
    exact_size: tuple[int, int] | None = None
    center_crop: bool = False
    quality: int = 90
    encoding: str = ".jpg"
    pass_through: bool = False
    limits: ImageLimits = ImageLimits()

    def record(self, label: float, data: bytes | np.ndarray) -> tuple[bytes, bool]:
        """The packed record payload (IRHeader + image bytes, header id 0) and whether it was re-encoded."""
        import mxnet as mx

        header = mx.recordio.IRHeader(0, float(label), 0, 0)
        if isinstance(data, np.ndarray):
            img, as_is = to_bgr8(data), False
        else:
            img, as_is = decode_image(data, self.limits)
        if self.center_crop:
            img, as_is = center_crop_square(img), False
        if self.exact_size is not None:
            if (img.shape[1], img.shape[0]) != tuple(self.exact_size):
                import cv2

                img = cv2.resize(center_crop_square(img), tuple(self.exact_size), interpolation=cv2.INTER_AREA)
                as_is = False
        elif self.resize and min(img.shape[:2]) != self.resize:
            img, as_is = resize_short(img, self.resize), False
        if self.pass_through and as_is:
            return mx.recordio.pack(header, bytes(data)), False
        quality = self.quality if self.encoding == ".jpg" else min(self.quality, 9)
        return mx.recordio.pack_img(header, img, quality=quality, img_fmt=self.encoding), True
