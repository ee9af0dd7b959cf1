"""Deeper evaluation over a record file in one pass: the confusion matrix, per-class top-1 and top-k accuracy, and
the misclassified images with their top-k; writers for the matrix (CSV, PNG) and the list (CSV or JSON lines).

Memory: the (classes x classes) count matrix, per-class top-k counts and one row per misclassified image; every
other probability is dropped batch by batch (ImageNet's 50,000 validation images: an 8 MB matrix).

Images are read in file order by the validation iterator (no shuffle, center crop to the input, no random flips),
so the n-th image scored is the n-th record of the ``.rec``; its image id is that record's key in the ``.idx`` (the
packers write 0, 1, 2, ...; MXNet's ``im2rec.py`` the index column of the ``.lst`` it packed).
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from resnet_toolkit.errors import UserError
from resnet_toolkit.fileio import atomic_path, atomic_write_text
from resnet_toolkit.model_facts import default_resize
from resnet_toolkit.predictor import Predictor

MISCLASSIFIED_FORMATS = {".csv": "csv", ".jsonl": "jsonl", ".json": "jsonl", ".ndjson": "jsonl"}
LABELLED_CLASSES = 60    # the PNG names every class up to this count (ticks), and only the axes above it
ANNOTATED_CLASSES = 30   # ... and writes the count into every non-empty cell up to this count


@dataclass
class Score:
    """Accuracy over a record file: ``images`` scored, ``top1``/``top5`` correct fractions (0..1), ``top_k`` the k
    of ``top5`` (5, or the class count when smaller), ``seconds`` wall time of the pass (decode included)."""

    images: int
    top1: float
    top5: float
    top_k: int
    seconds: float

    @property
    def images_per_second(self) -> float:
        return self.images / self.seconds if self.seconds > 0 else float("nan")


@dataclass
class Misclassified:
    """An image whose top-1 class is not its label: ``record`` its 0-based position in the ``.rec`` (file
    order), ``key`` its ``.idx`` key (the image id), ``label`` the true class, ``classes`` and ``probabilities``
    (0..1) the top-k, best first."""

    record: int
    key: int
    label: int
    classes: list[int]
    probabilities: list[float]


@dataclass
class Evaluation:
    """Counts of one pass over a record file.

    ``confusion`` (classes x classes, int64): row = true class, column = top-1 prediction, so it sums to the image
    count and its trace is the top-1 count. ``topk_hits`` (classes,): images of each true class whose label is
    among the top ``k`` (5, or the class count when smaller). ``seconds``: wall time of the pass, decode included.
    ``misclassified``: one row per image whose top-1 is wrong, in file order (empty unless asked for).
    """

    confusion: np.ndarray
    topk_hits: np.ndarray
    k: int
    seconds: float
    misclassified: list[Misclassified] = field(default_factory=list)

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def correct(self) -> int:
        return int(np.trace(self.confusion))

    @property
    def class_images(self) -> np.ndarray:
        """Images of each true class (row sums of the matrix)."""
        return self.confusion.sum(axis=1)

    def per_class_top1(self) -> np.ndarray:
        """Top-1 accuracy (0..1) of each true class: diagonal / row sum; NaN for a class with no image."""
        return _ratio(np.diag(self.confusion), self.class_images)

    def per_class_topk(self) -> np.ndarray:
        """Top-k accuracy (0..1) of each true class; NaN for a class with no image."""
        return _ratio(self.topk_hits, self.class_images)

    def mean_class_top1(self) -> float:
        """Mean of the per-class top-1 accuracies over the classes that have images (balanced accuracy)."""
        return float(np.nanmean(self.per_class_top1()))

    def score(self) -> Score:
        """The summary :func:`score_record` returns."""
        n = self.images
        return Score(n, self.correct / n, int(self.topk_hits.sum()) / n, self.k, self.seconds)


def _ratio(counts: np.ndarray, totals: np.ndarray) -> np.ndarray:
    out = np.full(counts.shape, np.nan)
    np.divide(counts, totals, out=out, where=totals > 0)
    return out


class Counts:
    """The running counts of one pass, batch by batch: the confusion matrix, per-class top-k hits and the summed
    cross-entropy. The one definition of top-1, top-k and cross-entropy: ``tools/score.py`` and the training log's
    ``Validation-*`` lines both count through it (the latter's values are those of MXNet's ``Accuracy``,
    ``TopKAccuracy`` and ``CrossEntropy`` metrics, which the original logged)."""

    EPS = 1e-12  # added to the label's probability before the log, as mx.metric.CrossEntropy

    def __init__(self, classes: int, k: int = 5):
        self.k = min(k, classes)
        self.confusion = np.zeros((classes, classes), dtype=np.int64)
        self.topk_hits = np.zeros(classes, dtype=np.int64)
        self.nll = 0.0  # summed -log p(label), nats

    def add(self, probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
        """Count a batch: ``probs`` (n, classes) float32 probabilities, ``labels`` (n,) int64 classes. Returns the
        top-k classes of each image (n, k), best first (ties: the lower class)."""
        best = np.argsort(-probs, axis=1, kind="stable")[:, :self.k]
        np.add.at(self.confusion, (labels, best[:, 0]), 1)
        np.add.at(self.topk_hits, labels, (best == labels[:, None]).any(axis=1).astype(np.int64))
        # float32 per batch, summed across batches in float64: mx.metric.CrossEntropy's arithmetic
        self.nll += float((-np.log(probs[np.arange(len(labels)), labels] + self.EPS)).sum())
        return best

    @property
    def images(self) -> int:
        return int(self.confusion.sum())

    @property
    def top1(self) -> float:
        """Fraction (0..1) of images whose best class is the label."""
        return float(np.trace(self.confusion)) / self.images

    @property
    def topk(self) -> float:
        """Fraction (0..1) of images whose label is among the best ``k``."""
        return float(self.topk_hits.sum()) / self.images

    @property
    def cross_entropy(self) -> float:
        """Mean -log p(label), nats."""
        return self.nll / self.images


def eval_resize(resize: int | None, crop: bool, image_shape: Sequence[int]) -> int | None:
    """The shorter side (pixels) every image is resized to before the center crop to ``image_shape`` (3, H, W):
    ``resize`` when given; with ``crop`` alone validation's standard scale (:func:`default_resize`: 256 for a
    224 input, the input size for inputs up to 64); None (the images as packed) otherwise. A :class:`UserError`
    for a size that is not positive or smaller than the input (the crop would not fit)."""
    if resize is None:
        return default_resize(image_shape) if crop else None
    if resize <= 0:
        raise UserError(f"--resize must be a positive number of pixels, got {resize}")
    need = max(image_shape[1:])
    if resize < need:
        raise UserError(f"--resize {resize} is smaller than the network input {image_shape[1]}x{image_shape[2]}: "
                        f"the center crop needs a shorter side of at least {need}")
    return resize


def record_keys(rec: str | os.PathLike) -> list[int]:
    """The ``.idx`` keys of ``rec``'s records in file order (sorted by offset): the image id of each position."""
    idx = Path(rec).with_suffix(".idx")
    rows = []
    with open(idx, "rb") as fh:
        for line in fh:
            if line.strip():
                key, offset = line.split(b"\t")
                rows.append((int(offset), int(key)))
    return [key for _, key in sorted(rows)]


def read_lst_index(path: str | os.PathLike) -> dict[int, tuple[str, int]]:
    """``index -> (relative path, label)`` of a ``.lst`` file (:func:`resnet_toolkit.im2rec.read_lst_rows`)."""
    from resnet_toolkit.im2rec import read_lst_rows

    return {index: (rel, label) for index, rel, label in read_lst_rows(path)}


def evaluate_record(model: Predictor, rec: str | os.PathLike, progress: bool = True, preprocess_threads: int = 2,
                    resize: int | None = None, misclassified: bool = False, flip: bool = False) -> Evaluation:
    """Score ``model`` over every image of ``rec`` (its ``.idx`` beside it), preprocessed as validation: the
    shorter side to ``resize`` pixels first when given (else the image as packed), then the center crop to the
    model's input. Counts the confusion matrix and per-class top-k; with ``misclassified`` also keeps a
    :class:`Misclassified` row for each image whose top-1 is wrong. ``flip``: test-time augmentation, each
    image's probabilities are the mean of the image's and its left-right mirror's (two forward passes)."""
    import mxnet as mx
    from tqdm import tqdm

    from resnet_toolkit.data import get_layout, make_val_iter
    from resnet_toolkit.records import check_record_file
    from symbols.spec import net_type_for_input

    check_record_file(rec)
    keys = record_keys(rec)
    layout = get_layout(net_type_for_input(model.image_shape))
    classes = model.num_classes
    counts = Counts(classes)
    wrong: list[Misclassified] = []
    seen = 0
    start = time.perf_counter()
    try:
        it = make_val_iter(rec, layout, model.batch_size, data_shape=model.image_shape,
                           preprocess_threads=preprocess_threads, resize=resize)
        with tqdm(total=len(keys), unit="img", disable=not progress, desc="score", leave=False) as bar:
            for batch in it:
                n = model.batch_size - batch.pad
                images = batch.data[0].asnumpy()[:n]
                probs = model.predict(images)
                if flip:  # NCHW: the last axis is the width
                    probs = (probs + model.predict(np.ascontiguousarray(images[..., ::-1]))) / 2
                labels = batch.label[0].asnumpy()[:n].astype(np.int64)
                if labels.max() >= classes or labels.min() < 0:
                    raise UserError(f"{rec}: label {int(labels.max())} is outside the network's "
                                    f"{classes} classes (a record file of another data set?)")
                best = counts.add(probs, labels)
                if misclassified:
                    for i in np.flatnonzero(best[:, 0] != labels):
                        record = seen + int(i)
                        wrong.append(Misclassified(record, keys[record] if record < len(keys) else -1,
                                                   int(labels[i]), [int(c) for c in best[i]],
                                                   [float(probs[i, c]) for c in best[i]]))
                seen += n
                bar.update(n)
    except mx.base.MXNetError as exc:
        detail = str(exc).strip().splitlines()[-1] if str(exc).strip() else "unknown error"
        raise UserError(f"{rec}: cannot read records ({detail})") from None
    if seen == 0:
        raise UserError(f"{rec}: no images")
    return Evaluation(counts.confusion, counts.topk_hits, counts.k, time.perf_counter() - start, wrong)


# ------------------------------------------------------------------------------------------------ reports
def per_class_json(evaluation: Evaluation, names: Sequence[str]) -> list[dict]:
    """``[{"class", "name", "images", "top1", "top<k>"}]``, one per class in index order; accuracies 0..1, None
    for a class with no image."""
    top1, topk = evaluation.per_class_top1(), evaluation.per_class_topk()
    return [{"class": c, "name": names[c], "images": int(n), "top1": None if np.isnan(a) else float(a),
             f"top{evaluation.k}": None if np.isnan(b) else float(b)}
            for c, (n, a, b) in enumerate(zip(evaluation.class_images, top1, topk))]


def per_class_lines(evaluation: Evaluation, names: Sequence[str], limit: int = 100, worst: int = 20) -> list[str]:
    """Text table of per-class accuracy: every class up to ``limit`` classes, else the ``worst`` lowest top-1."""
    top1, topk = evaluation.per_class_top1(), evaluation.per_class_topk()
    order = list(range(len(names)))
    head = f"per-class accuracy (class, name, images, top-1, top-{evaluation.k}):"
    if len(names) > limit:
        order = sorted((c for c in order if evaluation.class_images[c]), key=lambda c: (top1[c], c))[:worst]
        head = f"the {len(order)} classes with the lowest top-1 of {len(names)} (class, name, images, top-1, " \
               f"top-{evaluation.k}; --json or --confusion-csv for all):"
    width = min(max((len(names[c]) for c in order), default=4), 32)
    lines = [head]
    for c in order:
        n = int(evaluation.class_images[c])
        acc = "     -        -" if n == 0 else f"{top1[c]:.4f}   {topk[c]:.4f}"
        lines.append(f"{c:6d}  {names[c][:32]:<{width}}  {n:6d}  {acc}")
    return lines


def confusion_csv(confusion: np.ndarray, names: Sequence[str]) -> str:
    """The matrix as CSV text: a header row of predicted class names, then one row per true class (its name,
    then the counts)."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["true \\ predicted", *names])
    for name, row in zip(names, confusion):
        writer.writerow([name, *(int(v) for v in row)])
    return out.getvalue()


def confusion_figure(evaluation: Evaluation, names: Sequence[str], title: str):
    """A matplotlib Figure of the confusion matrix: colours are each row normalised (the fraction of a true
    class's images given each top-1 class, 0..1), counts written in the cells (up to 30 classes), class names on
    the axes (up to 60 classes); ``title`` above the image count and top-1 accuracy."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    confusion = evaluation.confusion
    n = len(names)
    rows = confusion.sum(axis=1, keepdims=True)
    fraction = np.divide(confusion, rows, out=np.zeros(confusion.shape), where=rows > 0)
    side = min(max(5.0, 0.4 * n + 2.5), 24.0)
    fig = Figure(figsize=(side + 1.5, side), dpi=100)
    ax = fig.add_subplot(1, 1, 1)
    image = ax.imshow(fraction, cmap="Blues", vmin=0.0, vmax=1.0, interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04).set_label("fraction of the true class's images")
    if n <= LABELLED_CLASSES:
        labels = [short_label(name) for name in names]
        size = 9 if n <= 20 else 7
        ax.set_xticks(range(n))
        ax.set_xticklabels(labels, rotation=90 if max(map(len, labels)) > 2 else 0, fontsize=size)
        ax.set_yticks(range(n))
        ax.set_yticklabels(labels, fontsize=size)
    if n <= ANNOTATED_CLASSES:
        for i, j in zip(*np.nonzero(confusion)):
            ax.text(j, i, str(int(confusion[i, j])), ha="center", va="center", fontsize=8 if n <= 15 else 6,
                    color="white" if fraction[i, j] > 0.5 else "black")
    index = "" if n <= LABELLED_CLASSES else " (index)"
    ax.set_xlabel(f"predicted class{index} (top-1)")
    ax.set_ylabel(f"true class{index}")
    ax.set_title(f"{title}\n{evaluation.images} images, top-1 accuracy {evaluation.correct / evaluation.images:.4f}")
    fig.tight_layout()
    return fig


def short_label(name: str, width: int = 20) -> str:
    """A class name for an axis: without a leading WordNet id, the first of comma-separated synonyms, at most
    ``width`` characters (``'n01440764 tench, Tinca tinca'`` -> ``'tench'``)."""
    words = name.split(" ", 1)
    if len(words) == 2 and re.fullmatch(r"n\d{8}", words[0]):
        name = words[1]
    name = name.split(",")[0].strip() or name
    return name if len(name) <= width else name[:width - 1] + "…"


def misclassified_format(path: str | os.PathLike) -> str:
    """``'csv'`` or ``'jsonl'`` from the file name's suffix; a :class:`UserError` listing the accepted ones."""
    kind = MISCLASSIFIED_FORMATS.get(Path(path).suffix.lower())
    if kind is None:
        raise UserError(f"--misclassified {path}: the name must end in {', '.join(MISCLASSIFIED_FORMATS)} "
                        f"(CSV, or JSON lines for the others)")
    return kind


def misclassified_text(rows: Sequence[Misclassified], names: Sequence[str], kind: str, k: int,
                       lst: dict[int, tuple[str, int]] | None = None) -> str:
    """The misclassified list as ``kind`` ('csv' or 'jsonl') text, one row per image in file order.

    Fields: ``record`` (position in the .rec), ``id`` (its .idx key), ``path`` (from the ``lst`` rows, matched
    by id; empty without one), ``label`` and ``name`` (the true class), then the top-k classes, names and
    probabilities (0..1) best first: CSV columns ``top1_class, top1_name, top1_probability, ...``; in JSON lines a
    ``top_k`` list of ``{"rank", "class", "name", "probability"}`` as ``predict.py --json`` prints."""
    def path_of(row: Misclassified) -> str:
        return lst[row.key][0] if lst and row.key in lst else ""

    if kind == "jsonl":
        return "".join(json.dumps({"record": r.record, "id": r.key, "path": path_of(r), "label": r.label,
                                   "name": names[r.label],
                                   "top_k": [{"rank": i, "class": c, "name": names[c], "probability": round(p, 6)}
                                             for i, (c, p) in enumerate(zip(r.classes, r.probabilities))]}) + "\n"
                       for r in rows)
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["record", "id", "path", "label", "name",
                     *(f"top{i}_{what}" for i in range(1, k + 1) for what in ("class", "name", "probability"))])
    for r in rows:
        writer.writerow([r.record, r.key, path_of(r), r.label, names[r.label],
                         *(v for c, p in zip(r.classes, r.probabilities) for v in (c, names[c], f"{p:.6f}"))])
    return out.getvalue()


def lst_disagreements(rows: Sequence[Misclassified], lst: dict[int, tuple[str, int]]) -> int:
    """How many ``rows`` have no ``.lst`` row with their id, or one whose label differs from the record's (a list
    that is not the one the records were packed from)."""
    return sum(1 for r in rows if r.key not in lst or lst[r.key][1] != r.label)


def write_text(path: str | os.PathLike, text: str) -> None:
    """``text`` to ``path`` atomically; an OS error becomes one line naming ``path``."""
    try:
        atomic_write_text(path, text)
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def write_figure(path: str | os.PathLike, fig) -> None:
    """``fig`` as a PNG at ``path`` atomically; an OS error becomes one line naming ``path``."""
    try:
        with atomic_path(path) as tmp:
            fig.savefig(tmp, format="png")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror}") from None


def score_record(model: Predictor, rec: str | os.PathLike, progress: bool = True, preprocess_threads: int = 2,
                 resize: int | None = None) -> Score:
    """Top-1 and top-5 accuracy of ``model`` over every image of ``rec`` (its ``.idx`` beside it), preprocessed as
    validation: the record's image (its shorter side first resized to ``resize`` pixels when given)
    center-cropped to the model's input (CIFAR: the whole 32x32 image). The counts of
    :func:`evaluate_record`, which also gives the confusion matrix and per-class accuracy."""
    return evaluate_record(model, rec, progress, preprocess_threads, resize).score()
