"""The ImageNet path on real photographs: a few hundred of ``imagenette-224-subset.tar.gz``'s ImageNet photos (10
classes, ``classes.txt`` naming them) through the tools as a user runs them: pack with class names, aug levels 2
and 3 at 224, a few training steps of ResNet-18 with the ImageNet stem, score with names, predict on a folder,
and a 5-class subset for fine-tuning."""
from __future__ import annotations

import json
import re
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import IMAGENETTE, load_tool, need, run_train, run_wrapper

from resnet_toolkit.data import get_layout, make_train_iter
from resnet_toolkit.records import read_labels
from resnet_toolkit.synset import read_synset

pytestmark = pytest.mark.data

TRAIN_PER_CLASS, VAL_PER_CLASS = 24, 6  # of 150 and 50: 300 photos in all
NAMES = {"n01440764": "tench", "n03028079": "church", "n03888257": "parachute"}  # three of classes.txt's lines


@pytest.fixture(scope="module")
def photo_tree(tmp_path_factory) -> Path:
    """The first photos of each class (sorted names) of both splits, extracted as the tarball holds them, with
    its classes.txt: imagenette-224/{train,val}/<wnid>/*.jpg."""
    from resnet_toolkit.untrusted import iter_archive_files

    tar = need(IMAGENETTE)
    root = tmp_path_factory.mktemp("imagenette")
    files = {path: data for path, data in iter_archive_files(tar)}
    taken: Counter = Counter()
    for path in sorted(files):
        parts = path.parts  # imagenette-224 / split / wnid / name.jpg, or imagenette-224 / classes.txt
        if parts[-1] == "classes.txt":
            (root / "classes.txt").write_bytes(files[path])
        elif len(parts) == 4 and taken[parts[1:3]] < (TRAIN_PER_CLASS if parts[1] == "train" else VAL_PER_CLASS):
            taken[parts[1:3]] += 1
            target = root.joinpath(*parts[1:])
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(files[path])
    assert len(taken) == 20 and (root / "classes.txt").is_file()
    return root


@pytest.fixture(scope="module")
def packed(photo_tree, tmp_path_factory) -> Path:
    """The photo tree packed by `im2rec_wrapper.py imagenet` (480/256 training records, 256 val records)."""
    from resnet_toolkit.datasets import pack_imagenet

    out = tmp_path_factory.mktemp("imagenette_packed")
    pack_imagenet(photo_tree, out, progress=False)
    return out


def test_packing_carries_the_class_names_from_classes_txt(photo_tree, tmp_path, capsys):
    code, out, err = run_wrapper(["imagenet", photo_tree, "--out", tmp_path / "data", "--quiet"], capsys)
    assert code == 0, err
    synset = read_synset(tmp_path / "data" / "synset.txt")
    wnids = sorted(p.name for p in (photo_tree / "train").iterdir())
    assert [line.split(" ", 1)[0] for line in synset] == wnids  # label order: sorted folders, as before
    for wnid, name in NAMES.items():
        assert f"{wnid} {name}" in synset
    assert synset[1] == "n02102040 English springer"  # a name with a space kept whole
    for rec, count in (("train_480_q90.rec", TRAIN_PER_CLASS), ("train_256_q90.rec", TRAIN_PER_CLASS),
                       ("val_256_q90.rec", VAL_PER_CLASS)):
        labels = Counter(int(label) for _, label in read_labels(tmp_path / "data" / rec))
        assert labels == {k: count for k in range(10)}, rec
        assert f"{rec}: packed {10 * count} images" in out
    # Without classes.txt (and without --names) the folder names are the classes, as before.
    (photo_tree / "classes.txt").rename(photo_tree.parent / "classes.txt.away")
    try:
        code, _, err = run_wrapper(["list", photo_tree / "train", "--out", tmp_path / "plain"], capsys)
    finally:
        (photo_tree.parent / "classes.txt.away").rename(photo_tree / "classes.txt")
    assert code == 0, err
    assert read_synset(tmp_path / "plain" / "synset.txt") == wnids


def test_a_names_file_that_misses_a_class_or_is_malformed_is_one_clear_line(photo_tree, tmp_path, capsys):
    names = tmp_path / "names.txt"
    names.write_text("n01440764\ttench\n")
    code, out, err = run_wrapper(["imagenet", photo_tree, "--out", tmp_path / "a", "--names", names], capsys)
    assert code != 0 and "no name for 9 class folder(s): n02102040" in err
    assert len(err.strip().splitlines()) == 1 and "Traceback" not in err
    names.write_text("n01440764\ttench\nn02102040\n")
    code, out, err = run_wrapper(["imagenet", photo_tree, "--out", tmp_path / "a", "--names", names], capsys)
    assert code != 0 and "names.txt:2: expected 'FOLDER NAME'" in err
    assert not (tmp_path / "a").exists()  # nothing written before the names are checked


@pytest.mark.parametrize("level", [2, 3])
def test_aug_levels_2_and_3_change_the_pixels_and_keep_the_labels(packed, level):
    """The same seed gives the same record order at every level: level 2/3 batches hold the same photos (same
    labels) as the plain center crops of level 0, with other pixels (scale, aspect, colour, and at 3 rotation)."""
    layout = get_layout("imagenet")
    assert layout.train_path(packed, level).name == "train_480_q90.rec"

    def first_batches(aug_level):
        it = make_train_iter(layout.train_path(packed, level), layout, 16, aug_level=aug_level, seed=5,
                             preprocess_threads=1)
        batches = [it.next() for _ in range(3)]
        return (np.concatenate([b.data[0].asnumpy() for b in batches]),
                np.concatenate([b.label[0].asnumpy() for b in batches]))

    plain, plain_labels = first_batches(0)
    augmented, labels = first_batches(level)
    assert augmented.shape == plain.shape == (48, 3, 224, 224)
    np.testing.assert_array_equal(labels, plain_labels)
    assert len(set(labels.tolist())) > 3  # shuffled across classes
    per_image = np.abs(augmented - plain).mean(axis=(1, 2, 3))
    assert (per_image > 5.0).all(), per_image  # every image changed, not only a few flips
    assert 20 < augmented.mean() < 235  # photo pixels, not fill


def test_resnet18_trains_scores_and_predicts_with_class_names(packed, photo_tree, tmp_path, capsys):
    """A few training steps of ResNet-18 (ImageNet stem) at 224 from the 480 records with aug level 3, then
    score.py with --resize 256 --crop (names per class, the confusion PNG) and predict.py on a folder of val
    photos, both printing the names of classes.txt."""
    prefix = tmp_path / "model" / "resnet-imagenette-18"
    proc = run_train(["--data-type", "imagenet", "--data-dir", packed, "--depth", "18", "--num-classes", "10",
                      "--batch-size", "8", "--num-examples", "48", "--end-epoch", "1", "--aug-level", "3",
                      "--lr", "0.05", "--frequent", "2", "--preprocess-threads", "1", "--model-prefix", prefix])
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert re.search(r"Epoch\[0\] Validation-accuracy=", proc.stdout)
    synset = read_synset(packed / "synset.txt")
    assert read_synset(prefix.parent / "synset.txt") == synset  # training copies the names beside the model

    score = load_tool("tools/score.py")
    png = tmp_path / "confusion.png"
    assert score.main(["--prefix", str(prefix), "--epoch", "1", "--rec", str(packed / "val_256_q90.rec"),
                       "--resize", "256", "--crop", "--confusion-png", str(png), "--no-progress", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["images"] == 10 * VAL_PER_CLASS
    assert [c["name"] for c in result["per_class"]] == synset
    per_class = result["per_class"]
    assert [c["images"] for c in per_class] == [VAL_PER_CLASS] * 10
    assert sum(c["top1"] * c["images"] for c in per_class) == pytest.approx(result["top1"] * result["images"])
    assert png.stat().st_size > 10_000

    folder = tmp_path / "val-photos"
    folder.mkdir()
    for wnid in NAMES:
        first = sorted((photo_tree / "val" / wnid).iterdir())[0]
        (folder / f"{wnid}.jpg").write_bytes(first.read_bytes())
    predict = load_tool("predict/predict.py")
    assert predict.main(["--img", str(folder), "--prefix", str(prefix), "--epoch", "1", "--top-k", "3"]) == 0
    out = capsys.readouterr().out
    shown = re.findall(r"\d: class = (.+?)  with probability", out)
    assert len(shown) == 9 and set(shown) <= set(synset)  # names from synset.txt beside the model, not numbers


def test_subset_makes_a_five_class_finetuning_set(packed, tmp_path, capsys):
    wanted = "tench,church,n03888257,English springer,golf ball"
    code, out, err = run_wrapper(["subset", packed, "--classes", wanted, "--out", tmp_path / "five"], capsys)
    assert code == 0, err
    synset = read_synset(tmp_path / "five" / "synset.txt")
    assert synset == ["n01440764 tench", "n02102040 English springer", "n03028079 church", "n03445777 golf ball",
                      "n03888257 parachute"]  # the old label order
    old = read_synset(packed / "synset.txt")
    for rec, per_class in (("train_480_q90.rec", TRAIN_PER_CLASS), ("val_256_q90.rec", VAL_PER_CLASS)):
        labels = Counter(int(label) for _, label in read_labels(tmp_path / "five" / rec))
        assert labels == {k: per_class for k in range(5)}
        assert f"{rec}: {5 * per_class} records" in out
    assert old.index("n03445777 golf ball") == 8  # relabelled 8 -> 3
    code, _, err = run_wrapper(["subset", packed, "--classes", "tench,zebra", "--out", tmp_path / "bad"], capsys)
    assert code != 0 and "'zebra' matches no class" in err and not (tmp_path / "bad").exists()


def test_sizes_packs_a_smaller_crops_records(photo_tree, tmp_path, capsys):
    """--sizes 274,146 (480 and 256 scaled as 128 is to 224): the files a 128 crop trains and validates on."""
    from resnet_toolkit.records import read_records

    code, out, err = run_wrapper(["imagenet", photo_tree, "--out", tmp_path / "d", "--sizes", "274,146", "--quiet"],
                                 capsys)
    assert code == 0, err
    for rec, side in (("train_274_q90.rec", 274), ("train_146_q90.rec", 146), ("val_146_q90.rec", 146)):
        sides = {min(img.shape[:2]) for _, _, img in read_records(tmp_path / "d" / rec)}
        assert sides == {side}, rec
    code, _, err = run_wrapper(["imagenet", photo_tree, "--out", tmp_path / "e", "--sizes", "146,274"], capsys)
    assert code != 0 and "expected 8 <= SMALL <= LARGE" in err and not (tmp_path / "e").exists()
