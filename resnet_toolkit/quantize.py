"""INT8 post-training quantization of a checkpoint with MXNet 1.9.1's oneDNN (MKLDNN) backend.

:func:`quantize_checkpoint` reads checkpoint ``PREFIX``/``EPOCH`` (float32), runs its inference graph (softmax of
``fc1``) over the first ``num_batches`` batches of a record file preprocessed as validation, derives one range per
layer output (``naive``: the observed min/max; ``entropy``: the threshold that minimises the KL divergence of the
8-bit histogram, MXNet's TensorRT-style calibration), and writes the quantized model beside the checkpoint as
``PREFIX-int8-symbol.json`` and ``PREFIX-int8-EPOCH.params`` (the epoch of the float32 checkpoint it came from;
``mx.model.load_checkpoint(PREFIX + '-int8', EPOCH)`` reads the pair). Both files are written in full beside their
names before either is renamed into place: a failure leaves no new file and never touches an existing good one.

What runs in INT8 (MKLDNN_QUANTIZE fusion, then quantization, ``quantized_dtype='auto'``: uint8 after a ReLU,
int8 elsewhere): every convolution with its BN/ReLU/sum fused, the fully connected layer, the pre-activation
``bn1``+ReLU of each unit and the pooling; ``bn_data`` (the input normaliser on raw 0..255 pixels) and the final
softmax stay float32. Inference only: the quantized graph cannot be trained.

Beside them, when ONNX Runtime is installed, ``PREFIX-int8-EPOCH.onnx``: the same network exported to ONNX and
quantized by ONNX Runtime's static quantization from the same calibration images and mode
(:func:`resnet_toolkit.backends.quantize_onnx_file`), which ``--int8 --backend onnxruntime|openvino`` runs (and
``--backend auto`` where it is measured faster, bench/pages/precision.md). A model that does not export is
quantized for MXNet alone, with the reason in :attr:`QuantizeResult.onnx_note`.

Calibrate on images the model will not be scored on (e.g. a slice of the training file read as validation) to
keep the test accuracy honest; the ranges come only from ``num_batches * batch_size`` images.
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

from resnet_toolkit.checkpoint import check_checkpoint, load_checkpoint, params_path, symbol_path
from resnet_toolkit.errors import UserError, clear_failed_ops
from resnet_toolkit.fileio import atomic_path, check_writable_dir, write_ndarrays
from resnet_toolkit.model_facts import default_image_shape, default_resize, inference_symbol
from symbols.spec import net_type_for_input

CALIB_MODES = ("naive", "entropy")
INT8_SUFFIX = "-int8"


def int8_prefix(prefix: str | os.PathLike) -> str:
    """The prefix of the INT8 files of checkpoint ``prefix``: ``PREFIX-int8``."""
    return f"{prefix}{INT8_SUFFIX}"


def int8_files(prefix: str | os.PathLike, epoch: int) -> tuple[Path, Path]:
    """``(PREFIX-int8-symbol.json, PREFIX-int8-EPOCH.params)``."""
    return symbol_path(int8_prefix(prefix)), params_path(int8_prefix(prefix), epoch)


def int8_onnx_file(prefix: str | os.PathLike, epoch: int) -> Path:
    """``PREFIX-int8-EPOCH.onnx``: the INT8 model for ONNX Runtime and OpenVINO."""
    return Path(f"{int8_prefix(prefix)}-{epoch:04d}.onnx")


def has_int8(prefix: str | os.PathLike, epoch: int) -> bool:
    """Whether :func:`quantize_checkpoint` wrote both INT8 files for ``prefix``/``epoch``."""
    return all(p.is_file() for p in int8_files(prefix, epoch))


def is_quantized(symbol) -> bool:
    """Whether a Symbol holds quantized operators (a graph this module wrote)."""
    nodes = json.loads(symbol.tojson())["nodes"]
    return any(n["op"].startswith(("_contrib_quantize", "_contrib_quantized", "_contrib_requantize"))
               or n.get("attrs", {}).get("quantized") in ("true", "True", "1") for n in nodes)


@dataclass
class QuantizeResult:
    """What :func:`quantize_checkpoint` did: the files written, the calibration images used, the operator count
    by type of the quantized graph and the wall time in seconds."""

    symbol_file: Path
    params_file: Path
    calib_images: int
    calib_mode: str
    op_counts: dict
    seconds: float
    onnx_file: Path | None = None  # PREFIX-int8-EPOCH.onnx, or None (onnx_note says why)
    onnx_note: str = ""


def _data_only(inner, num_batches: int):
    """A data iterator without labels over the first ``num_batches`` batches of ``inner`` (MXNet's calibration
    binds a label-free Module; the record iterator always yields labels). ``.images`` counts the images read."""
    import mxnet as mx

    class DataOnly(mx.io.DataIter):
        def __init__(self):
            super().__init__(inner.batch_size)
            self.seen = 0
            self.images = 0

        @property
        def provide_data(self):
            return inner.provide_data

        @property
        def provide_label(self):
            return []

        def reset(self):
            inner.reset()
            self.seen = 0

        def next(self):
            if self.seen >= num_batches:
                raise StopIteration
            batch = inner.next()
            self.seen += 1
            self.images += batch.data[0].shape[0] - (batch.pad or 0)
            return mx.io.DataBatch(data=batch.data, pad=batch.pad)

    return DataOnly()


def check_quantize_args(prefix, epoch: int, calib_rec, num_batches: int, batch_size: int, calib_mode: str) -> None:
    """Every input check that needs no MXNet run, each one :class:`UserError` line (nothing is written before)."""
    from resnet_toolkit.records import check_record_file, count_records

    if num_batches <= 0:
        raise UserError(f"--num-calib-batches must be at least 1, got {num_batches}")
    if batch_size <= 0:
        raise UserError(f"--batch-size must be positive, got {batch_size}")
    if calib_mode not in CALIB_MODES:
        raise UserError(f"--calib-mode must be one of {', '.join(CALIB_MODES)}, got {calib_mode!r}")
    if Path(str(prefix)).name.endswith(INT8_SUFFIX):
        raise UserError(f"--prefix {prefix} is already an INT8 model; give the float32 checkpoint's prefix")
    check_checkpoint(prefix, epoch)
    check_record_file(calib_rec)
    records = count_records(calib_rec)
    if records < batch_size:
        raise UserError(f"{calib_rec}: {records} images is fewer than one batch of {batch_size}; use a smaller "
                        f"--batch-size")
    check_writable_dir(Path(str(prefix)).parent, "INT8 output (beside --prefix)")


def check_calibration_sizes(calib_rec: str | os.PathLike, image_shape: Sequence[int]) -> None:
    """A :class:`UserError` when the images of ``calib_rec`` (the sample :func:`resnet_toolkit.records.decode_records`
    decodes: its first records and some spread over the file) are not at the scale the model is scored at.

    Scoring center-crops the network input ``image_shape`` (3, H, W) out of images whose shorter side is from the
    input's side up to validation's :func:`resnet_toolkit.predictor.default_resize` (32 for a 32x32 input, 224 to
    256 for 224x224). Calibrating on another scale (crops of 480-pixel training images, or 28-pixel images
    upscaled to 32) sets each layer's INT8 range from activations the scored images never produce."""
    from resnet_toolkit.records import decode_records

    height, width = image_shape[1:]
    low, high = min(height, width), default_resize(image_shape)
    for key, h, w in decode_records(calib_rec).sizes:
        if not low <= min(h, w) <= high:
            sides = str(low) if low == high else f"{low} to {high}"
            raise UserError(f"{calib_rec}: record {key} is a {w}x{h} image, but this model takes {width}x{height} "
                            f"inputs cropped from images with a shorter side of {sides} pixels: INT8 ranges "
                            f"calibrated on it would not fit; calibrate on a .rec packed at that size (python "
                            f"tools/im2rec_wrapper.py pack LIST.lst --resize {high} ...), or pass the "
                            f"--image-shape the model was trained with")


def quantize_checkpoint(prefix: str | os.PathLike, epoch: int, calib_rec: str | os.PathLike, num_batches: int,
                        batch_size: int = 32, calib_mode: str = "naive",
                        image_shape: Sequence[int] | None = None, exclude: Sequence[str] = (),
                        preprocess_threads: int = 2, logger=None) -> QuantizeResult:
    """Quantize checkpoint ``prefix``/``epoch`` to INT8, calibrated on the first ``num_batches`` batches of
    ``batch_size`` images of ``calib_rec``; write ``PREFIX-int8-symbol.json`` and ``PREFIX-int8-EPOCH.params``.

    ``image_shape`` (3, H, W) defaults to the network's stem (224 or 32 square); ``exclude`` names layers to keep
    in float32 (e.g. ``conv0``, ``fc1``). Raises :class:`UserError` for bad inputs before anything is written,
    calibration images at another scale than the model's included (:func:`check_calibration_sizes`).
    """
    check_quantize_args(prefix, epoch, calib_rec, num_batches, batch_size, calib_mode)
    import mxnet as mx
    from mxnet.contrib.quantization import quantize_model_mkldnn

    from resnet_toolkit.capability import probe
    from resnet_toolkit.data import get_layout, make_val_iter

    if not mx.runtime.Features().is_enabled("MKLDNN"):
        raise UserError("INT8 quantization needs MXNet built with oneDNN (MKLDNN); this build has none")
    probe().require("int8", "INT8 quantization")
    start = time.perf_counter()
    symbol, arg_params, aux_params = load_checkpoint(prefix, epoch)
    if is_quantized(symbol):
        raise UserError(f"{symbol_path(prefix)}: already a quantized graph")
    net = inference_symbol(symbol)
    shape = tuple(image_shape) if image_shape else default_image_shape(symbol)
    layout = get_layout(net_type_for_input(shape))
    unknown = sorted(set(exclude) - {n["name"] for n in json.loads(net.tojson())["nodes"]})
    if unknown:
        raise UserError(f"--exclude {', '.join(unknown)}: no such layer in the network")
    check_calibration_sizes(calib_rec, shape)
    try:
        records = make_val_iter(calib_rec, layout, batch_size, data_shape=shape,
                                preprocess_threads=preprocess_threads)
        calib = _data_only(records, num_batches)
        qsym, qarg, qaux = quantize_model_mkldnn(
            net, arg_params, aux_params, data_names=("data",), label_names=(), ctx=mx.cpu(),
            excluded_sym_names=list(exclude), calib_mode=calib_mode, calib_data=calib,
            num_calib_examples=num_batches * batch_size, quantized_dtype="auto", quantize_mode="smart",
            logger=logger)
    except mx.base.MXNetError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise UserError(f"quantization failed: {detail}") from None
    symbol_file, params_file = int8_files(prefix, epoch)
    blob = {f"arg:{k}": v for k, v in qarg.items()}
    blob.update({f"aux:{k}": v for k, v in qaux.items()})
    with atomic_path(symbol_file) as sym_tmp, atomic_path(params_file) as params_tmp:
        sym_tmp.write_text(qsym.tojson(), encoding="utf-8")
        write_ndarrays(params_tmp, blob)
    counts: dict[str, int] = {}
    for node in json.loads(qsym.tojson())["nodes"]:
        if node["op"] != "null":
            counts[node["op"]] = counts.get(node["op"], 0) + 1
    onnx_file, note = _quantize_onnx(prefix, epoch, net, arg_params, aux_params, shape, calib_mode, exclude,
                                     lambda: make_val_iter(calib_rec, layout, batch_size, data_shape=shape,
                                                           preprocess_threads=preprocess_threads), num_batches)
    return QuantizeResult(symbol_file, params_file, calib.images, calib_mode, counts, time.perf_counter() - start,
                          onnx_file, note)


def _quantize_onnx(prefix, epoch: int, net, arg_params: dict, aux_params: dict, shape: Sequence[int],
                   calib_mode: str, exclude: Sequence[str], records, num_batches: int) -> tuple[Path | None, str]:
    """Write ``PREFIX-int8-EPOCH.onnx`` from the float32 network ``net``, calibrated on the first ``num_batches``
    batches of ``records()`` (the images MXNet's calibration saw); ``(path, '')``, or ``(None, reason)`` where
    ONNX Runtime is missing or the network does not export (MXNet's INT8 files stand either way)."""
    import tempfile

    from resnet_toolkit.backends import export_onnx_file, installed, quantize_onnx_file

    out = int8_onnx_file(prefix, epoch)
    if not installed("onnxruntime"):
        note = "ONNX Runtime is not installed (pip install onnxruntime)"
    else:
        batches = [batch.data[0].asnumpy() for _, batch in zip(range(num_batches), records())]
        with tempfile.TemporaryDirectory(prefix="resnet-int8-") as tmp:
            fp32 = Path(tmp) / "fp32.onnx"
            try:
                export_onnx_file(net, arg_params, aux_params, shape, fp32)
                with atomic_path(out) as tmp_out:
                    quantize_onnx_file(fp32, tmp_out, batches, calib_mode, exclude)
                return out, ""
            except UserError:
                raise
            except Exception as exc:  # noqa: BLE001  (the exporter and quantizer raise many kinds; one line)
                detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else type(exc).__name__
                note = f"the network does not export to ONNX INT8 ({detail})"
    # An older PREFIX-int8-EPOCH.onnx was calibrated apart from the MXNet files just written: not kept beside them.
    if out.is_file():
        out.unlink()
        note += f"; removed the older {out.name}"
    return None, note + ": MXNet INT8 only"


class Int8Executor:
    """An INT8 graph bound once for ``data_shape``: ``forward(batch)`` -> class probabilities (NDArray).

    Same interface as :class:`resnet_toolkit.fastpath.FusedExecutor`, so :class:`resnet_toolkit.predictor.Predictor`
    runs either.
    """

    def __init__(self, qsym, arg_params: dict, aux_params: dict, data_shape: tuple, ctx=None):
        import mxnet as mx

        clear_failed_ops()  # an earlier failed operation in this process must not surface in this model
        self.ctx = ctx or mx.cpu()
        self.data_shape = tuple(data_shape)
        self.symbol = qsym
        args = {n: arg_params[n].as_in_context(self.ctx) for n in qsym.list_arguments() if n != "data"}
        args["data"] = mx.nd.zeros(self.data_shape, ctx=self.ctx)
        aux = {n: aux_params[n].as_in_context(self.ctx) for n in qsym.list_auxiliary_states()}
        self.executor = qsym.bind(self.ctx, args=args, aux_states=aux, grad_req="null")

    def forward(self, data):
        """One batch of ``data_shape`` (raw RGB 0..255) -> the output NDArray (shared buffer)."""
        if tuple(data.shape) != self.data_shape:
            raise ValueError(f"input shape {tuple(data.shape)} != bound shape {self.data_shape}")
        self.executor.arg_dict["data"][:] = data
        return self.executor.forward(is_train=False)[0]
