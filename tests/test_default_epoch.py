"""predict.py, score.py and export_onnx.py without --epoch: the newest complete checkpoint, as the original's
``predict.py --prefix resnet-50`` (its published ``resnet-50-0000.params``); a clear error naming the files looked
for when there is none."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool, random_checkpoint

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError

ROOT = Path(__file__).resolve().parents[1]
PREDICT, SCORE = ROOT / "predict" / "predict.py", ROOT / "tools" / "score.py"
EXPORT = ROOT / "tools" / "export_onnx.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1", PYTHONPATH=str(ROOT))


def write_image(path: Path, size: tuple[int, int], seed: int = 0) -> Path:
    import cv2

    cv2.imwrite(str(path), np.random.RandomState(seed).randint(0, 256, (*size, 3), dtype=np.uint8))
    return path


def test_original_checkpoint_loads_unchanged(tmp_path, monkeypatch, capsys):
    """``resnet-50-symbol.json`` + ``resnet-50-0000.params`` as MXNet's save_checkpoint writes them (the original
    project's files, arg:/aux: keys): ``predict.py --prefix resnet-50 --img ...`` reads epoch 0 with no --epoch."""
    import mxnet as mx

    from resnet_toolkit.predictor import load_image, load_model

    random_checkpoint(tmp_path / "resnet-50", 50, "imagenet", 1000, epoch=0, calibrate=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet-50-0000.params", "resnet-50-symbol.json"]
    assert all(k.split(":")[0] in ("arg", "aux") for k in mx.nd.load(str(tmp_path / "resnet-50-0000.params")))
    image = write_image(tmp_path / "cat.png", (300, 400))
    monkeypatch.chdir(tmp_path)
    predict = load_tool("predict/predict.py")
    assert predict.main(["--prefix", "resnet-50", "--img", "cat.png", "--json", "--batch-size", "1"]) == 0
    [result] = json.loads(capsys.readouterr().out)
    want = load_model(tmp_path / "resnet-50", 0, batch_size=1).predict(load_image(image, (3, 224, 224))[None])[0]
    assert [t["class"] for t in result["top_k"]] == list(np.argsort(-want, kind="stable")[:5])
    np.testing.assert_allclose([t["probability"] for t in result["top_k"]], np.sort(want)[::-1][:5], rtol=1e-6)


@pytest.fixture(scope="module")
def epochs(tmp_path_factory):
    """A CIFAR ResNet-20 prefix with complete epochs 1, 2, 3 (different classifiers), a half-written epoch 4 (its
    partial file) and an epoch 5 with only a ``.states`` file, a synset, 3 images and a 3-record ``.rec``."""
    import cv2
    import mxnet as mx

    root = tmp_path_factory.mktemp("default_epoch")
    prefix = root / "model" / "m"
    random_checkpoint(prefix, 20, "cifar10", 10)
    params = mx.nd.load(f"{prefix}-0001.params")
    rng = np.random.RandomState(1)
    for epoch in (2, 3):
        changed = dict(params, **{"arg:fc1_weight": mx.nd.array(rng.normal(0, 0.5, params["arg:fc1_weight"].shape))})
        mx.nd.save(f"{prefix}-{epoch:04d}.params", changed)
    (root / "model" / ".m-0004.params.partial-999999").write_bytes(b"half")
    (root / "model" / "m-0005.states").write_bytes(b"states without params: not a complete epoch")
    (root / "model" / "synset.txt").write_text("".join(f"c{i}\n" for i in range(10)))
    (root / "images").mkdir()
    (root / "data").mkdir()
    writer = mx.recordio.MXIndexedRecordIO(str(root / "data" / "val.idx"), str(root / "data" / "val.rec"), "w")
    for i in range(3):
        img = write_image(root / "images" / f"{i}.png", (32, 32), seed=i)
        writer.write_idx(i, mx.recordio.pack(mx.recordio.IRHeader(0, float(i), i, 0), img.read_bytes()))
    writer.close()
    cv2.setNumThreads(1)
    return root, str(prefix)


def test_newest_complete_epoch_is_loaded(epochs, capsys):
    from resnet_toolkit.checkpoint import resolve_epoch
    from resnet_toolkit.predictor import load_image, load_model

    root, prefix = epochs
    assert resolve_epoch(prefix, need_symbol=True) == 3
    assert resolve_epoch(prefix, 1, need_symbol=True) == 1
    predict = load_tool("predict/predict.py")
    assert predict.main(["--prefix", prefix, "--img", str(root / "images"), "--json", "--top-k", "10"]) == 0
    results = json.loads(capsys.readouterr().out)
    batch = np.stack([load_image(root / "images" / f"{i}.png", (3, 32, 32)) for i in range(3)])
    newest, first = (load_model(prefix, e, batch_size=3).predict(batch) for e in (3, 1))
    assert np.abs(newest - first).max() > 0.05  # the epochs can be told apart
    for r, p in zip(results, newest):
        np.testing.assert_allclose(sorted(t["probability"] for t in r["top_k"]), np.sort(p), rtol=1e-5)
        assert r["top_k"][0]["class"] == int(np.argmax(p))


def test_score_and_export_use_the_newest_epoch(epochs, tmp_path, capsys):
    root, prefix = epochs
    score = load_tool("tools/score.py")
    results = []
    for epoch in ([], ["--epoch", "3"]):
        assert score.main(["--prefix", prefix, *epoch, "--rec", str(root / "data" / "val.rec"), "--json",
                           "--no-progress", "--preprocess-threads", "1", "--batch-size", "3"]) == 0
        results.append(json.loads(capsys.readouterr().out))
    assert results[0]["images"] == 3
    assert {k: v for k, v in results[0].items() if "second" not in k} == {
        k: v for k, v in results[1].items() if "second" not in k}
    export = load_tool("tools/export_onnx.py")
    assert export.main(["--prefix", prefix, "--check-batch", "1"]) == 0
    assert capsys.readouterr().out.startswith(f"wrote {prefix}-0003.onnx: ")
    Path(f"{prefix}-0003.onnx").unlink()


def run(script: Path, cwd: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(script), *map(str, args)], capture_output=True, text=True, env=ENV,
                          cwd=cwd, timeout=300)


@pytest.mark.parametrize("case", ["empty folder", "symbol only", "missing folder"])
def test_no_checkpoint_names_the_files_looked_for(tmp_path, case):
    import mxnet as mx

    from symbols import get_symbol

    (tmp_path / "images").mkdir()
    write_image(tmp_path / "images" / "a.png", (32, 32))
    prefix, folder = "resnet-50", tmp_path
    if case == "symbol only":
        get_symbol(10, 20, "cifar10").save(str(tmp_path / "resnet-50-symbol.json"))
        mx.nd.save(str(tmp_path / "resnet-50-0001.params.partial-1"), {})  # not a complete epoch
    if case == "missing folder":
        prefix, folder = "model/resnet-50", tmp_path / "model"
    before = sorted(p.name for p in tmp_path.rglob("*"))
    where = f"{folder}" + (", a folder that does not exist" if case == "missing folder" else "")
    message = f"error: no checkpoint resnet-50-NNNN.params (looked for resnet-50-symbol.json and resnet-50-*.params " \
              f"in {where})"
    for script, args in ((PREDICT, ("--img", "images")), (SCORE, ("--rec", "val.rec")), (EXPORT, ())):
        proc = run(script, tmp_path, "--prefix", prefix, *args)
        lines = proc.stderr.strip().splitlines()
        assert proc.returncode == 2 and len(lines) == 1, proc.stderr
        assert lines[0] == f"{script.name}: {message}"
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_params_without_symbol_names_the_symbol_file(tmp_path):
    from resnet_toolkit.checkpoint import resolve_epoch

    (tmp_path / "m-0002.params").write_bytes(b"x")
    with pytest.raises(UserError, match=r"m-symbol.json: no such checkpoint symbol file \(check --prefix\)$"):
        resolve_epoch(tmp_path / "m", need_symbol=True)
