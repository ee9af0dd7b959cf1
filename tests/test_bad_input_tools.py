"""Bad input to the after-training tools (plot_curve, predict, score, export_onnx): one clear line on stderr, a
non-zero exit (2), no traceback, and every good file that was there before left byte-for-byte unchanged.

predict's choice for images that do not decode: each is reported on stderr and skipped, the others are
classified; the exit status is 0 when at least one image was classified, 2 when none was.
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import CLASSIC_WITH_RESTART, ENV, random_checkpoint, snapshot

ROOT = Path(__file__).resolve().parents[1]
PLOT, PREDICT = ROOT / "log" / "plot_curve.py", ROOT / "predict" / "predict.py"
SCORE, EXPORT = ROOT / "tools" / "score.py", ROOT / "tools" / "export_onnx.py"


def run(script: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=300)


def fails_with(proc: subprocess.CompletedProcess, script: Path, message: str) -> None:
    """Exit 2 and exactly one stderr line, ``<script>: error: ...`` containing ``message``."""
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"{script.name}: error: ") and message in lines[0], lines[0]


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """A random CIFAR ResNet-20 checkpoint with its synset, 3 good images, a small .rec/.idx, a good log and a
    good previous curve.png and model.onnx in an output folder."""
    import cv2
    import mxnet as mx

    root = tmp_path_factory.mktemp("bad_input_tools")
    prefix = random_checkpoint(root / "model" / "resnet-cifar10-20-0", 20, "cifar10", 10, calibrate=False)
    (root / "model" / "synset.txt").write_text("".join(f"class{i}\n" for i in range(10)))
    images = root / "images"
    images.mkdir()
    rng = np.random.RandomState(0)
    (root / "data").mkdir()
    writer = mx.recordio.MXIndexedRecordIO(str(root / "data" / "val.idx"), str(root / "data" / "val.rec"), "w")
    for i in range(3):
        img = rng.randint(0, 256, (32, 32, 3), dtype=np.uint8)
        cv2.imwrite(str(images / f"good{i}.png"), img)
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0),
                                             cv2.imencode(".png", img)[1].tobytes()))
    writer.close()
    out = root / "out"
    out.mkdir()
    (out / "curve.png").write_bytes(b"\x89PNG good old curve")
    (out / "model.onnx").write_bytes(b"good old onnx")
    (root / "good.log").write_text(CLASSIC_WITH_RESTART)
    return root, prefix


def unwritable_outputs(folder, suffix: str) -> dict:
    """The three unwritable --out cases for an output file ending in ``suffix``: case -> (path, the folder that
    stops it). Makes ``folder/afile`` (a file) and ``folder/taken{suffix}`` (a folder)."""
    (folder / "afile").write_text("keep me")
    (folder / f"taken{suffix}").mkdir()
    return {"parent is a file": (folder / "afile" / f"m{suffix}", folder / "afile"),
            "no such folder": (folder / "missing" / f"m{suffix}", folder / "missing"),
            "target is a folder": (folder / f"taken{suffix}", folder / f"taken{suffix}")}


def test_plot_curve_missing_log(work):
    root, _ = work
    before = snapshot(root)
    proc = run(PLOT, "--logs", f"{root / 'good.log'},{root / 'nope.log'}", "--out", root / "out" / "curve.png")
    fails_with(proc, PLOT, f"{root / 'nope.log'}: no such log file")
    assert snapshot(root) == before


def test_plot_curve_log_is_a_directory(work):
    root, _ = work
    before = snapshot(root)
    fails_with(run(PLOT, "--logs", root / "images", "--out", root / "out" / "curve.png"), PLOT,
               f"{root / 'images'}: is a directory, not a log file")
    assert snapshot(root) == before


def test_plot_curve_empty_log(work, tmp_path):
    root, _ = work
    (tmp_path / "empty.log").write_text("\n\n")
    before = snapshot(root, tmp_path)
    fails_with(run(PLOT, "--logs", tmp_path / "empty.log", "--out", root / "out" / "curve.png"), PLOT,
               f"{tmp_path / 'empty.log'}: log file is empty")
    assert snapshot(root, tmp_path) == before


def test_plot_curve_unparsable_log(work, tmp_path):
    root, _ = work
    (tmp_path / "notes.log").write_text("this is not a training log\nEpoch 3 went well\n")
    before = snapshot(root, tmp_path)
    fails_with(run(PLOT, "--logs", tmp_path / "notes.log", "--out", root / "out" / "curve.png"), PLOT,
               f"{tmp_path / 'notes.log'}: no MXNet training lines found")
    assert snapshot(root, tmp_path) == before


def test_plot_curve_no_top5_in_any_log(work):
    root, _ = work
    before = snapshot(root)
    fails_with(run(PLOT, "--logs", root / "good.log", "--out", root / "out" / "curve.png", "--metric", "top5"),
               PLOT, f"no top5 accuracy in {root / 'good.log'}")
    assert snapshot(root) == before


@pytest.mark.parametrize("case", ["parent is a file", "no such folder", "target is a folder"])
def test_plot_curve_output_not_writable(work, tmp_path, case):
    root, _ = work
    out, where = unwritable_outputs(tmp_path, ".png")[case]
    message = {"parent is a file": f"{where} is not a directory", "no such folder": f"directory {where} does not exist",
               "target is a folder": f"cannot write {where}: Is a directory"}[case]
    before = snapshot(root, tmp_path)
    fails_with(run(PLOT, "--logs", root / "good.log", "--out", out), PLOT, message)
    assert snapshot(root, tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "taken.png"]  # no partial file left


def test_predict_undecodable_image_is_skipped_and_the_others_run(work, tmp_path):
    root, prefix = work
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 truncated")
    before = snapshot(root, tmp_path)
    proc = run(PREDICT, "--img", root / "images" / "good0.png", bad, root / "images" / "good1.png",
               "--prefix", prefix, "--epoch", 1, "--top-k", 2)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"predict.py: warning: {bad}: cannot decode image (skipped)"]
    heads = [line for line in proc.stdout.splitlines() if not line[0].isdigit()]
    assert heads == [str(root / "images" / "good0.png"), str(root / "images" / "good1.png")]
    assert snapshot(root, tmp_path) == before

    proc = run(PREDICT, "--img", bad, "--prefix", prefix, "--epoch", 1)
    assert proc.returncode == 2 and proc.stdout == ""
    assert proc.stderr.strip().splitlines() == [f"predict.py: warning: {bad}: cannot decode image (skipped)",
                                                "predict.py: error: none of the 1 image(s) could be classified"]
    assert snapshot(root, tmp_path) == before


# The three tools that read a checkpoint: script, what each needs besides --prefix/--epoch, and a --prefix that
# does not exist (a missing file in an existing folder, a missing folder, a missing file beside the folder).
CHECKPOINT_READERS = {"predict.py": (PREDICT, lambda root: ["--img", root / "images"], "model/resnet-oops"),
                      "score.py": (SCORE, lambda root: ["--rec", root / "data" / "val.rec"], "nowhere/resnet"),
                      "export_onnx.py": (EXPORT, lambda root: ["--out", root / "out" / "model.onnx"], "resnet-none")}


@pytest.mark.parametrize("tool", CHECKPOINT_READERS)
def test_missing_checkpoint_epoch(work, tool):
    root, prefix = work
    script, inputs, _ = CHECKPOINT_READERS[tool]
    before = snapshot(root)
    fails_with(run(script, *inputs(root), "--prefix", prefix, "--epoch", 7), script,
               f"no checkpoint {prefix}-0007.params (saved epochs: 1)")
    assert snapshot(root) == before


@pytest.mark.parametrize("tool", CHECKPOINT_READERS)
def test_missing_prefix(work, tool):
    root, _ = work
    script, inputs, missing = CHECKPOINT_READERS[tool]
    before = snapshot(root)
    fails_with(run(script, *inputs(root), "--prefix", root / missing, "--epoch", 1), script,
               f"{root / missing}-symbol.json: no such checkpoint symbol file")
    assert snapshot(root) == before


def test_predict_num_classes_not_matching_the_checkpoint(work):
    root, prefix = work
    before = snapshot(root)
    fails_with(run(PREDICT, "--img", root / "images", "--prefix", prefix, "--epoch", 1, "--num-classes", 1000),
               PREDICT, "--num-classes 1000 does not match the checkpoint: its fc1 has 10 outputs")
    assert snapshot(root) == before


def test_predict_synset_size_not_matching_the_checkpoint(work, tmp_path):
    root, prefix = work
    (tmp_path / "synset.txt").write_text("cat\ndog\n")
    before = snapshot(root, tmp_path)
    fails_with(run(PREDICT, "--img", root / "images", "--prefix", prefix, "--epoch", 1, "--synset",
                   tmp_path / "synset.txt"), PREDICT,
               f"{tmp_path / 'synset.txt'}: 2 class names, but the checkpoint's fc1 has 10 outputs")
    assert snapshot(root, tmp_path) == before


def test_score_missing_rec(work):
    root, prefix = work
    before = snapshot(root)
    fails_with(run(SCORE, "--prefix", prefix, "--epoch", 1, "--rec", root / "data" / "train.rec"), SCORE,
               f"{root / 'data' / 'train.rec'}: no such file")
    assert snapshot(root) == before


def test_score_missing_idx(work, tmp_path):
    root, prefix = work
    (tmp_path / "val.rec").write_bytes((root / "data" / "val.rec").read_bytes())
    before = snapshot(root, tmp_path)
    fails_with(run(SCORE, "--prefix", prefix, "--epoch", 1, "--rec", tmp_path / "val.rec"), SCORE,
               f"{tmp_path / 'val.idx'}: no such file")
    assert snapshot(root, tmp_path) == before


@pytest.mark.parametrize("case", ["parent is a file", "no such folder", "target is a folder"])
def test_export_output_not_writable(work, tmp_path, case):
    root, prefix = work
    out, where = unwritable_outputs(tmp_path, ".onnx")[case]
    message = {"parent is a file": f"{where} is not a directory", "no such folder": f"{where} does not exist",
               "target is a folder": f"cannot write {where}: Is a directory"}[case]
    before = snapshot(root, tmp_path)
    fails_with(run(EXPORT, "--prefix", prefix, "--epoch", 1, "--out", out, "--check-batch", 1), EXPORT, message)
    assert snapshot(root, tmp_path) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["afile", "taken.onnx"]
