"""tools/score.py's deeper evaluation (resnet_toolkit.evaluation): the confusion matrix, per-class accuracy and the
misclassified list equal what numpy counts from the same model's own predictions on the held-out digits; the CSV,
PNG and JSON-lines files hold them; --resize/--crop feed the network the documented pixels; bad input is one
line, exit 2, and nothing written."""
from __future__ import annotations

import csv
import json
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool, snapshot, train_digits_model

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

ROOT = Path(__file__).resolve().parents[1]
WORDS = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine"]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def trained(digits_dir, tmp_path_factory):
    """ResNet-8 trained by train_resnet.py for 2 epochs on the digits (about 15 s on 2 busy cores; measured 77 % on
    the 360 held-out images): right and wrong answers in most classes. The synset.txt training copies beside the
    checkpoint is removed, so class names come from the record file's folder."""
    out = tmp_path_factory.mktemp("evaluation_model")
    (out / "model").mkdir()
    prefix = Path(train_digits_model(digits_dir, out / "model" / "resnet-digits-8-0", epochs=2))
    (prefix.parent / "synset.txt").unlink()
    return str(prefix), 2


def read_images(rec: Path) -> tuple[np.ndarray, np.ndarray]:
    """Every record of ``rec`` in file order, decoded with OpenCV: (RGB images NHWC uint8, int labels)."""
    import cv2
    import mxnet as mx

    reader = mx.recordio.MXRecordIO(str(rec), "r")
    images, labels = [], []
    while (item := reader.read()) is not None:
        header, data = mx.recordio.unpack(item)
        images.append(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)[:, :, ::-1])
        labels.append(int(header.label))
    reader.close()
    return np.stack(images), np.array(labels)


def pack(rec: Path, images: np.ndarray, labels: np.ndarray, keys) -> None:
    """Write RGB ``images`` as lossless PNG records with ``labels`` under ``.idx`` ``keys``, in this order."""
    import cv2
    import mxnet as mx

    writer = mx.recordio.MXIndexedRecordIO(str(rec.with_suffix(".idx")), str(rec), "w")
    for img, label, key in zip(images, labels, keys):
        header = mx.recordio.IRHeader(0, float(label), int(key), 0)
        writer.write_idx(int(key), mx.recordio.pack(header, cv2.imencode(".png", img[:, :, ::-1])[1].tobytes()))
    writer.close()


@pytest.fixture(scope="module")
def keyed(digits_dir, tmp_path_factory):
    """The 360 held-out digits re-packed unchanged under ids 5000, 4997, 4994, ... (decreasing: an id is not a
    position; the ``.idx`` lines shuffled), a ``.lst`` beside naming each id's file ``digit_<id>.png`` and a
    synset.txt of words.
    Returns (rec, RGB images, labels, ids in file order)."""
    out = tmp_path_factory.mktemp("keyed")
    images, labels = read_images(digits_dir / "digits_val.rec")
    keys = [5000 - 3 * i for i in range(len(labels))]
    pack(out / "held_out.rec", images, labels, keys)
    idx = out / "held_out.idx"  # its lines shuffled: the order of the .idx is not the order of the records
    lines = idx.read_text().splitlines(keepends=True)
    idx.write_text("".join(lines[i] for i in np.random.RandomState(0).permutation(len(lines))))
    (out / "held_out.lst").write_text("".join(f"{k}\t{y:f}\tdigit_{k}.png\n" for k, y in zip(keys, labels)))
    (out / "synset.txt").write_text("".join(f"{w}\n" for w in WORDS))
    return out / "held_out.rec", images, labels, keys


def reference(model, images: np.ndarray, labels: np.ndarray) -> dict:
    """What the counts must be, from the model's probabilities on ``images`` (RGB NHWC uint8) fed directly."""
    step = model.batch_size
    probs = np.concatenate([model.predict(images[i:i + step].transpose(0, 3, 1, 2).astype(np.float32))
                            for i in range(0, len(images), step)])
    top5 = np.argsort(-probs, axis=1, kind="stable")[:, :5]
    pred = top5[:, 0]
    present = [labels == c for c in range(10)]
    per_class = np.array([(pred[m] == c).mean() if m.any() else np.nan for c, m in enumerate(present)])
    per_class5 = np.array([(top5[m] == c).any(axis=1).mean() if m.any() else np.nan for c, m in enumerate(present)])
    return dict(probs=probs, top5=top5, pred=pred, per_class=per_class, per_class5=per_class5,
                confusion=np.bincount(labels * 10 + pred, minlength=100).reshape(10, 10))


@pytest.fixture(scope="module")
def expected(trained, keyed):
    from resnet_toolkit.predictor import load_model

    prefix, epoch = trained
    rec, images, labels, _ = keyed
    return reference(load_model(prefix, epoch, batch_size=64), images, labels)


def test_counts_equal_numpy_on_the_models_own_predictions(trained, keyed, expected):
    from resnet_toolkit.evaluation import evaluate_record, score_record
    from resnet_toolkit.predictor import load_model

    prefix, epoch = trained
    rec, _, labels, keys = keyed
    model = load_model(prefix, epoch, batch_size=64)
    result = evaluate_record(model, rec, progress=False, preprocess_threads=2, misclassified=True)
    np.testing.assert_array_equal(result.confusion, expected["confusion"])
    assert result.confusion.sum() == result.images == 360
    correct = int((expected["pred"] == labels).sum())
    assert np.trace(result.confusion) == result.correct == correct
    score = result.score()
    assert score.top1 == correct / 360 == np.trace(result.confusion) / result.confusion.sum()
    assert score.top5 == (expected["top5"] == labels[:, None]).any(axis=1).mean()
    np.testing.assert_array_equal(result.class_images, np.bincount(labels, minlength=10))
    np.testing.assert_allclose(result.per_class_top1(), expected["per_class"], rtol=0, atol=1e-12)
    np.testing.assert_allclose(result.per_class_topk(), expected["per_class5"], rtol=0, atol=1e-12)
    assert result.mean_class_top1() == pytest.approx(expected["per_class"].mean(), abs=1e-12)
    assert 0.5 < score.top1 < 0.95 and (expected["per_class"] < 1).sum() >= 3  # informative: errors in many classes

    wrong = np.flatnonzero(expected["pred"] != labels)
    assert len(result.misclassified) == 360 - correct == len(wrong)
    assert [row.record for row in result.misclassified] == wrong.tolist()
    for row in result.misclassified:
        assert row.key == keys[row.record] and row.label == labels[row.record]
        assert row.classes == expected["top5"][row.record].tolist() and row.classes[0] != row.label
        np.testing.assert_allclose(row.probabilities, expected["probs"][row.record, row.classes], rtol=1e-5)
    again = score_record(model, rec, progress=False)  # the summary is the same pass
    assert (again.images, again.top1, again.top5) == (360, score.top1, score.top5)


def test_flip_averages_the_image_and_its_mirror(trained, keyed, expected, capsys):
    """--flip: each image's probabilities are the mean of the image's and its left-right mirror's, computed here
    from the model fed directly; the counts differ from the unflipped ones (a flip that did nothing would fail)."""
    from resnet_toolkit.evaluation import evaluate_record
    from resnet_toolkit.predictor import load_model

    prefix, epoch = trained
    rec, images, labels, _ = keyed
    model = load_model(prefix, epoch, batch_size=64)
    mirrored = reference(model, np.ascontiguousarray(images[:, :, ::-1]), labels)  # NHWC: axis 2 is the width
    probs = (expected["probs"] + mirrored["probs"]) / 2
    pred = probs.argmax(axis=1)
    result = evaluate_record(model, rec, progress=False, flip=True, misclassified=True)
    np.testing.assert_array_equal(result.confusion, np.bincount(labels * 10 + pred, minlength=100).reshape(10, 10))
    assert not np.array_equal(result.confusion, expected["confusion"])
    for row in result.misclassified:
        np.testing.assert_allclose(row.probabilities, probs[row.record, row.classes], rtol=1e-5)

    score = load_tool("tools/score.py")
    assert score.main(["--prefix", prefix, "--epoch", str(epoch), "--rec", str(rec), "--flip", "--json",
                       "--no-progress"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["flip"] is True and out["top1"] == (pred == labels).mean()


@pytest.mark.parametrize("listing", ["wrong.jsonl", "wrong.csv"])
def test_score_writes_the_matrix_the_picture_and_the_list(trained, keyed, expected, tmp_path, capsys, listing):
    import matplotlib.image

    prefix, epoch = trained
    rec, _, labels, keys = keyed
    out = tmp_path / "reports"
    out.mkdir()
    score = load_tool("tools/score.py")
    assert score.main(["--prefix", prefix, "--epoch", str(epoch), "--rec", str(rec), "--json", "--no-progress",
                       "--confusion-csv", str(out / "confusion.csv"), "--confusion-png", str(out / "confusion.png"),
                       "--misclassified", str(out / listing)]) == 0
    result = json.loads(capsys.readouterr().out)
    correct = int((expected["pred"] == labels).sum())
    assert result["images"] == 360 and result["top1"] == correct / 360 and result["resize"] is None
    assert result["misclassified"] == 360 - correct
    assert [c["name"] for c in result["per_class"]] == WORDS  # synset.txt beside the .rec
    assert [c["images"] for c in result["per_class"]] == np.bincount(labels, minlength=10).tolist()
    np.testing.assert_allclose([c["top1"] for c in result["per_class"]], expected["per_class"], atol=1e-12)
    np.testing.assert_allclose([c["top5"] for c in result["per_class"]], expected["per_class5"], atol=1e-12)
    assert result["mean_class_top1"] == pytest.approx(expected["per_class"].mean(), abs=1e-12)
    assert sorted(p.name for p in out.iterdir()) == sorted(["confusion.csv", "confusion.png", listing])

    rows = list(csv.reader((out / "confusion.csv").read_text().splitlines()))
    assert rows[0] == ["true \\ predicted", *WORDS] and [r[0] for r in rows[1:]] == WORDS
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), expected["confusion"])

    png = (out / "confusion.png").read_bytes()
    assert png.startswith(PNG_MAGIC)
    pixels = matplotlib.image.imread(str(out / "confusion.png"))
    assert pixels.ndim == 3 and min(pixels.shape[:2]) >= 400 and pixels.std() > 0.05

    if listing.endswith(".jsonl"):
        items = [json.loads(line) for line in (out / listing).read_text().splitlines()]
        parsed = [(r["record"], r["id"], r["path"], r["label"], r["name"], [t["class"] for t in r["top_k"]],
                   [t["name"] for t in r["top_k"]], [t["probability"] for t in r["top_k"]]) for r in items]
        assert all([t["rank"] for t in r["top_k"]] == [0, 1, 2, 3, 4] for r in items)
    else:
        table = list(csv.DictReader((out / listing).read_text().splitlines()))
        parsed = [(int(r["record"]), int(r["id"]), r["path"], int(r["label"]), r["name"],
                   [int(r[f"top{i}_class"]) for i in range(1, 6)], [r[f"top{i}_name"] for i in range(1, 6)],
                   [float(r[f"top{i}_probability"]) for i in range(1, 6)]) for r in table]
    assert len(parsed) == 360 - correct
    for record, key, path, label, name, classes, names, probs in parsed:
        assert key == keys[record] and path == f"digit_{key}.png"  # the id from the .idx, the path from the .lst
        assert label == labels[record] and name == WORDS[label] and classes[0] != label
        assert classes == expected["top5"][record].tolist() and names == [WORDS[c] for c in classes]
        np.testing.assert_allclose(probs, expected["probs"][record, classes], atol=2e-6)


def test_text_output(trained, keyed, expected, capsys):
    prefix, epoch = trained
    rec, _, labels, _ = keyed
    score = load_tool("tools/score.py")
    assert score.main(["--prefix", prefix, "--epoch", str(epoch), "--rec", str(rec), "--no-progress"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{rec}: 360 images"
    assert lines[1] == f"top-1 accuracy = {(expected['pred'] == labels).mean():.4f}"
    assert lines[2].startswith("top-5 accuracy = 0.") and lines[3].startswith("speed = ")
    assert lines[4] == f"mean per-class top-1 accuracy = {expected['per_class'].mean():.4f}"
    assert lines[5] == "per-class accuracy (class, name, images, top-1, top-5):"
    table = [line.split() for line in lines[6:16]]
    assert [(int(r[0]), r[1], int(r[2]), float(r[3])) for r in table] == [
        (c, WORDS[c], int((labels == c).sum()), round(expected["per_class"][c], 4)) for c in range(10)]
    assert len(lines) == 16


# --------------------------------------------------------------------------------------------- --resize / --crop
@pytest.fixture(scope="module")
def big(keyed, tmp_path_factory):
    """24 held-out digits enlarged to 48 high x 64 wide (bilinear, a non-square image), packed losslessly."""
    import cv2

    _, images, labels, _ = keyed
    out = tmp_path_factory.mktemp("big")
    enlarged = np.stack([cv2.resize(img, (64, 48), interpolation=cv2.INTER_LINEAR) for img in images[:24]])
    pack(out / "big.rec", enlarged, labels[:24], range(24))
    return out / "big.rec", enlarged, labels[:24]


def resized_then_cropped(images: np.ndarray) -> np.ndarray:
    """--resize 32 on 48x64 images as documented: shorter side to 32 (64*32/48 = 42 wide, bilinear), then the
    center 32x32 (columns 5..36)."""
    import cv2

    return np.stack([cv2.resize(img, (42, 32), interpolation=cv2.INTER_LINEAR)[:, 5:37] for img in images])


def test_resize_gives_the_documented_pixels(big):
    from resnet_toolkit.data import get_layout, make_val_iter
    from resnet_toolkit.evaluation import eval_resize

    rec, images, _ = big
    for resize, want in ((32, resized_then_cropped(images)), (None, images[:, 8:40, 16:48])):  # as packed: crop
        batch = next(iter(make_val_iter(rec, get_layout("digits"), 24, preprocess_threads=1, resize=resize)))
        np.testing.assert_array_equal(batch.data[0].asnumpy(), want.transpose(0, 3, 1, 2).astype(np.float32))
    assert eval_resize(None, False, (3, 32, 32)) is None  # the default: the images as packed
    assert eval_resize(None, True, (3, 32, 32)) == 32 and eval_resize(None, True, (3, 224, 224)) == 256
    assert eval_resize(300, True, (3, 224, 224)) == eval_resize(300, False, (3, 224, 224)) == 300


@pytest.mark.parametrize("flags", [["--resize", "32"], ["--crop"], ["--resize", "32", "--crop"], []])
def test_resize_and_crop_change_what_is_scored(trained, big, tmp_path, capsys, flags):
    from resnet_toolkit.predictor import load_model

    prefix, epoch = trained
    rec, images, labels = big
    model = load_model(prefix, epoch, batch_size=8)
    want = reference(model, resized_then_cropped(images) if flags else images[:, 8:40, 16:48], labels)
    other = reference(model, images[:, 8:40, 16:48] if flags else resized_then_cropped(images), labels)
    assert (want["pred"] != other["pred"]).any()  # the two preprocessings can be told apart
    score = load_tool("tools/score.py")
    csv_file = tmp_path / "confusion.csv"
    assert score.main(["--prefix", prefix, "--epoch", str(epoch), "--rec", str(rec), "--batch-size", "8", "--json",
                       "--no-progress", "--preprocess-threads", "1", "--confusion-csv", str(csv_file), *flags]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["resize"] == (32 if flags else None)
    rows = list(csv.reader(csv_file.read_text().splitlines()))[1:]
    np.testing.assert_array_equal(np.array([r[1:] for r in rows], dtype=int), want["confusion"])
    assert result["top1"] == (want["pred"] == labels).mean()
    absent = [c for c in result["per_class"] if c["images"] == 0]  # 24 images: maybe not every class
    assert all(c["top1"] is None and c["top5"] is None for c in absent)


# -------------------------------------------------------------------------------------------------- bad input
def _run(argv: list, capsys, monkeypatch) -> tuple[int, str, str]:
    """tools/score.py's command line in-process: (exit status, stdout, stderr)."""
    from resnet_toolkit.errors import run_cli

    module = load_tool("tools/score.py")
    monkeypatch.setattr(sys, "argv", ["score.py"])
    with pytest.raises(SystemExit) as exc:
        run_cli(module.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


@pytest.mark.parametrize("case", ["png parent is a file", "csv folder missing", "list is a folder", "resize negative",
                                  "resize zero", "resize below the input", "png suffix", "list suffix", "same file",
                                  "missing lst", "synset size"])
def test_bad_input_is_one_line_and_writes_nothing(trained, keyed, tmp_path, capsys, monkeypatch, case):
    prefix, epoch = trained
    rec = keyed[0]
    (tmp_path / "afile").write_text("keep me")
    (tmp_path / "taken.csv").mkdir()
    (tmp_path / "three.txt").write_text("a\nb\nc\n")
    argv, message = {
        "png parent is a file": (["--confusion-png", tmp_path / "afile" / "m.png"],
                                 f"--confusion-png: cannot write {tmp_path / 'afile' / 'm.png'}: "
                                 f"{tmp_path / 'afile'} is not a directory"),
        "csv folder missing": (["--confusion-csv", tmp_path / "nope" / "m.csv"],
                               f"--confusion-csv: cannot write {tmp_path / 'nope' / 'm.csv'}: directory "
                               f"{tmp_path / 'nope'} does not exist"),
        "list is a folder": (["--misclassified", tmp_path / "taken.csv"],
                             f"--misclassified: cannot write {tmp_path / 'taken.csv'}: Is a directory"),
        "resize negative": (["--resize", "-256"], "--resize must be a positive number of pixels, got -256"),
        "resize zero": (["--resize", "0"], "--resize must be a positive number of pixels, got 0"),
        "resize below the input": (["--resize", "24"], "--resize 24 is smaller than the network input 32x32: the "
                                                       "center crop needs a shorter side of at least 32"),
        "png suffix": (["--confusion-png", tmp_path / "m.jpg"], f"--confusion-png {tmp_path / 'm.jpg'}: the name "
                                                                "must end in .png"),
        "list suffix": (["--misclassified", tmp_path / "m.txt"], f"--misclassified {tmp_path / 'm.txt'}: the name "
                                                                 "must end in .csv, .jsonl, .json, .ndjson (CSV, "
                                                                 "or JSON lines for the others)"),
        "same file": (["--confusion-csv", tmp_path / "m.csv", "--misclassified", tmp_path / "m.csv"],
                      "--confusion-csv and --misclassified name the same file; give each its own"),
        "missing lst": (["--misclassified", tmp_path / "m.csv", "--lst", tmp_path / "nope.lst"],
                        f"{tmp_path / 'nope.lst'}: no such .lst file"),
        "synset size": (["--synset", tmp_path / "three.txt", "--confusion-csv", tmp_path / "m.csv"],
                        f"{tmp_path / 'three.txt'}: 3 class names, but the checkpoint's fc1 has 10 outputs"),
    }[case]
    before = snapshot(tmp_path, rec.parent)
    code, out, err = _run(["--prefix", prefix, "--epoch", epoch, "--rec", rec, "--no-progress", *argv], capsys,
                          monkeypatch)
    lines = err.strip().splitlines()
    assert code == 2 and out == "" and "Traceback" not in err, err
    assert len(lines) == 1 and lines[0] == f"score.py: error: {message}", err
    assert snapshot(tmp_path, rec.parent) == before  # nothing written, no partial file left


def test_a_list_that_does_not_match_the_records_gives_no_paths(trained, keyed, tmp_path, capsys, monkeypatch):
    prefix, epoch = trained
    rec, _, labels, keys = keyed
    (tmp_path / "other.lst").write_text("".join(f"{k}\t{(y + 1) % 10:f}\tx_{k}.png\n" for k, y in zip(keys, labels)))
    code, _, err = _run(["--prefix", prefix, "--epoch", epoch, "--rec", rec, "--no-progress", "--misclassified",
                         tmp_path / "wrong.csv", "--lst", tmp_path / "other.lst"], capsys, monkeypatch)
    assert code == 0
    assert err.strip().splitlines() == [f"score.py: warning: {tmp_path / 'other.lst'} does not match {rec} (ids "
                                        f"missing or other labels); paths left out of {tmp_path / 'wrong.csv'}"]
    rows = list(csv.DictReader((tmp_path / "wrong.csv").read_text().splitlines()))
    assert rows and all(r["path"] == "" for r in rows)


# ------------------------------------------------------------------------------------------ many classes, names
def test_a_thousand_classes(tmp_path):
    """ImageNet-size reports: the text lists the 20 lowest classes, the PNG stays readable and small, names with
    commas survive the CSV, and a class without images has no accuracy."""
    from resnet_toolkit.evaluation import (
        Evaluation,
        confusion_csv,
        confusion_figure,
        per_class_json,
        per_class_lines,
        write_figure,
    )

    rng = np.random.RandomState(0)
    labels = rng.randint(1, 1000, 20000)  # class 0 has no image
    pred = np.where(rng.rand(20000) < 0.7, labels, rng.randint(0, 1000, 20000))
    confusion = np.bincount(labels * 1000 + pred, minlength=10 ** 6).reshape(1000, 1000)
    result = Evaluation(confusion, np.bincount(labels, minlength=1000), 5, 1.0)
    names = [f"n{c:08d} class {c}, a name with a comma" for c in range(1000)]
    lines = per_class_lines(result, names)
    assert len(lines) == 21 and lines[0].startswith("the 20 classes with the lowest top-1 of 1000")
    worst = [int(line.split()[0]) for line in lines[1:]]
    acc = result.per_class_top1()
    assert worst == sorted(np.flatnonzero(~np.isnan(acc)), key=lambda c: (acc[c], c))[:20] and 0 not in worst
    assert per_class_json(result, names)[0] == {"class": 0, "name": names[0], "images": 0, "top1": None,
                                                "top5": None}
    rows = list(csv.reader(confusion_csv(confusion, names).splitlines()))
    assert rows[0][1:] == names and [r[0] for r in rows[1:]] == names
    np.testing.assert_array_equal(np.array([r[1:] for r in rows[1:]], dtype=int), confusion)
    write_figure(tmp_path / "big.png", confusion_figure(result, names, "imagenet val"))
    data = (tmp_path / "big.png").read_bytes()
    assert data.startswith(PNG_MAGIC) and len(data) < 5_000_000
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.png"]


def test_axis_labels_are_short():
    from resnet_toolkit.evaluation import short_label

    assert short_label("n01440764 tench, Tinca tinca") == "tench"
    assert short_label("airplane") == "airplane" and short_label("7") == "7"
    assert short_label("a very long class name indeed") == "a very long class n…"


def test_class_names_are_found_as_predict_finds_them(tmp_path):
    from resnet_toolkit.errors import UserError
    from resnet_toolkit.predictor import class_names

    model_dir, rec_dir = tmp_path / "model", tmp_path / "data"
    model_dir.mkdir()
    rec_dir.mkdir()
    (rec_dir / "synset.txt").write_text("a\nb\nc\n")
    imagenet = ROOT / "predict" / "synset.txt"
    assert class_names(3, None, [model_dir, rec_dir]) == (["a", "b", "c"], rec_dir / "synset.txt")
    (model_dir / "synset.txt").write_text("x\ny\nz\n")
    assert class_names(3, None, [model_dir, rec_dir]) == (["x", "y", "z"], model_dir / "synset.txt")
    assert class_names(3, rec_dir / "synset.txt", [model_dir]) == (["a", "b", "c"], rec_dir / "synset.txt")
    assert class_names(4, None, [tmp_path], imagenet) == (["0", "1", "2", "3"], None)
    names, source = class_names(1000, None, [tmp_path], imagenet)
    assert source == imagenet and names[287] == "lynx"
    with pytest.raises(UserError, match=r"synset.txt: 3 class names, but the checkpoint's fc1 has 10 outputs$"):
        class_names(10, None, [model_dir])
