"""Issue 35, items 3, 4 and 10: a retrain keeps its network and symbol file; mirroring, padding and the aug level
are the user's choice for every data type (saved, restored on --retrain, reaching the ImageRecordIter); the
smaller flag defects (--data-type choices, --config errors naming the file, --help defaults, stratified lists,
one OpenCV).

Runs on scikit-learn's digits (``digits_dir``), packed as an image folder would be: no ../shared/data needed.
"""
from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from helpers import ROOT, run_train, run_wrapper, snapshot, train_fails

import resnet_toolkit  # noqa: F401
from resnet_toolkit.errors import UserError, run_cli
from train_resnet import main


def folder_flags(digits_dir: Path) -> list[str]:
    """The digits trained as ``--data-type folder`` (32x32: the CIFAR-size defaults pad 4 + mirror apply)."""
    return ["--data-type", "folder", "--data-dir", str(digits_dir), "--train-rec", "digits_train.rec",
            "--val-rec", "digits_val.rec", "--image-shape", "3,32,32", "--batch-size", "32", "--num-examples", "64",
            "--preprocess-threads", "1", "--frequent", "1000", "--seed", "0"]


@pytest.fixture(scope="module")
def folder_run(digits_dir, tmp_path_factory):
    """One epoch of ResNet-14 on 64 digits with --no-mirror --pad 2 --aug-level 1: its checkpoint folder."""
    prefix = tmp_path_factory.mktemp("folder_run") / "m"
    flags = [*folder_flags(digits_dir), "--depth", "14"]
    proc = run_train([*flags, "--end-epoch", "1", "--model-prefix", prefix, "--no-mirror", "--pad", "2",
                      "--aug-level", "1"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    return prefix, flags


@pytest.fixture
def copied(folder_run, tmp_path):
    """The run's checkpoint files copied into a fresh folder: (prefix, flags continuing it)."""
    prefix, flags = folder_run
    folder = tmp_path / "model"
    folder.mkdir()
    for path in prefix.parent.iterdir():
        shutil.copyfile(path, folder / path.name)
    return folder / "m", [*flags, "--model-prefix", str(folder / "m"), "--retrain", "--end-epoch", "2"]


# ------------------------------------------------------------------------------- item 3: --retrain's network
@pytest.mark.parametrize("extra, change", [
    (["--depth", "8"], "--depth 14 -> 8"),
    (["--network", "resnet_v1"], "--network resnet_v2 -> resnet_v1"),
    (["--image-shape", "3,28,28"], "--image-shape 3,32,32 -> 3,28,28"),
    (["--num-classes", "12", "--depth", "20"], "--depth 14 -> 20, --num-classes 10 -> 12"),
])
def test_retrain_refuses_another_network(copied, capsys, extra, change):
    """Any change of network shape is refused in one line naming saved and requested values; no file changes."""
    prefix, flags = copied
    before = snapshot(prefix.parent)
    assert train_fails([*flags, *extra], capsys) == (
        f"--retrain cannot change the network saved in {prefix}-args.json: {change} (saved -> requested); start "
        f"a new run with another --model-prefix (--finetune {prefix} starts one from its weights)")
    assert snapshot(prefix.parent) == before


def test_retrain_without_args_json_refuses_a_shallower_network(copied, capsys):
    """No PREFIX-args.json (a run killed before writing it, the original's files): the checkpoint's own arrays
    refuse a network that would drop some of them (depth 14 -> 8 used to train on, rewriting the symbol)."""
    prefix, flags = copied
    Path(f"{prefix}-args.json").unlink()
    before = snapshot(prefix.parent)
    assert train_fails([*flags, "--depth", "8"], capsys) == (
        f"checkpoint {prefix}-0001.params has parameter 'stage1_unit2_bn1_beta' (30 in all) that the network "
        f"built from the flags lacks: it was trained with another --depth, --network or --data-type")
    assert snapshot(prefix.parent) == before


def test_symbol_file_check(tmp_path):
    """check_symbol_file: the same graph passes (BatchNorm momentum aside), another one is named, a damaged file
    too."""
    from resnet_toolkit.weights import check_symbol_file
    from symbols import get_symbol

    path = tmp_path / "m-symbol.json"
    path.write_text(get_symbol(10, 8, "cifar10").tojson())
    shape = (2, 3, 32, 32)
    check_symbol_file(get_symbol(10, 8, "cifar10"), shape, path)
    check_symbol_file(get_symbol(10, 8, "cifar10", bn_mom=0.5), shape, path)
    hint = ("a retrain cannot change the network (another --depth, --network, --num-classes or --image-shape?); "
            "start a new run with another --model-prefix")
    with pytest.raises(UserError) as exc:
        check_symbol_file(get_symbol(12, 8, "cifar10"), shape, path)
    assert str(exc.value) == (f"--retrain: the flags build another network than {path} holds (fc1_weight has "
                              f"shape (10, 64) there, (12, 64) from the flags); {hint}")
    with pytest.raises(UserError) as exc:
        check_symbol_file(get_symbol(10, 8, "cifar10", network="resnet_v1"), shape, path)
    assert str(exc.value).startswith(f"--retrain: the flags build another network than {path} holds (layer ")
    path.write_text('{"nodes": [')
    with pytest.raises(UserError) as exc:
        check_symbol_file(get_symbol(10, 8, "cifar10"), shape, path)
    assert str(exc.value) == f"{path}: not an MXNet symbol file (damaged?); {hint}"


def test_retrain_restores_augmentation_and_keeps_the_symbol_file(copied):
    """A retrain without the aug flags trains with the saved ones (level 1, no mirror, pad 2), and a graph
    attribute it changes (--bn-mom) does not rewrite the symbol file, nor PREFIX-args.json."""
    prefix, flags = copied
    kept = {p: h for p, h in snapshot(prefix.parent).items() if p.endswith(("-symbol.json", "-args.json"))}
    assert len(kept) == 2
    proc = run_train([*flags, "--bn-mom", "0.8"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    start = next(line for line in proc.stdout.splitlines() if "start with arguments" in line)
    assert "aug_level=1," in start and "mirror=False," in start and "pad=2," in start
    assert Path(f"{prefix}-0002.params").is_file()
    assert {p: h for p, h in snapshot(prefix.parent).items() if p in kept} == kept


# ------------------------------------------------------------------------------- item 4: augmentation flags
def test_augmentation_is_saved_and_restored(folder_run, digits_dir, tmp_path):
    """PREFIX-args.json holds the choices; --retrain takes each flag not given from it, a flag given wins; a new
    run gets the data type's defaults (folder of 32 px: level 2, mirror, pad 4)."""
    from resnet_toolkit.runplan import plan_run
    from resnet_toolkit.train_args import parse_args

    prefix, flags = folder_run
    saved = json.loads(Path(f"{prefix}-args.json").read_text())
    assert (saved["aug-level"], saved["mirror"], saved["pad"]) == (1, False, 2)
    again = parse_args(["--config", f"{prefix}-args.json"])  # the file as a --config: --no-mirror comes back
    assert (again.aug_level, again.mirror, again.pad) == (1, False, 2)

    def resolved(*extra):
        aug = plan_run(parse_args([*flags, "--model-prefix", str(prefix), *extra])).augmentation
        return aug.level, aug.mirror, aug.pad

    assert resolved("--retrain") == (1, False, 2)
    assert resolved("--retrain", "--mirror") == (1, True, 2)
    assert resolved("--retrain", "--pad", "0", "--aug-level", "3") == (3, False, 0)
    assert resolved("--model-prefix", str(tmp_path / "new")) == (2, True, 4)
    assert resolved("--model-prefix", str(tmp_path / "new"), "--aug-level", "0") == (0, False, 0)


def test_train_aug_kwargs_follow_the_flags():
    """What the factory passes to ImageRecordIter: CIFAR-10 and ImageNet defaults unchanged, every choice
    overridable for every layout, level 0 no augmentation at all."""
    from resnet_toolkit.data import LAYOUTS, train_aug
    from resnet_toolkit.train_args import data_layout, parse_args

    cifar, imagenet = LAYOUTS["cifar10"], LAYOUTS["imagenet"]
    assert train_aug(cifar, 2) == dict(rand_crop=True, rand_mirror=True, pad=4, fill_value=127)
    assert train_aug(cifar, 2, mirror=False) == dict(rand_crop=True, rand_mirror=False, pad=4, fill_value=127)
    assert train_aug(cifar, 2, pad=0) == dict(rand_crop=True, rand_mirror=True)
    assert train_aug(cifar, 0) == train_aug(imagenet, 0) == dict(rand_crop=False, rand_mirror=False)
    assert train_aug(imagenet, 1) == dict(rand_crop=True, rand_mirror=True)
    assert train_aug(imagenet, 1, mirror=False, pad=8) == dict(rand_crop=True, rand_mirror=False, pad=8,
                                                               fill_value=127)
    small = data_layout(parse_args(["--data-type", "folder", "--train-rec", "a.rec", "--val-rec", "b.rec",
                                    "--image-shape", "3,28,28", "--num-classes", "10", "--depth", "8"]))
    assert train_aug(small, 2)["rand_mirror"] is True
    assert train_aug(small, 2, mirror=False) == dict(rand_crop=True, rand_mirror=False, pad=4, fill_value=127)


def test_no_mirror_reaches_the_record_iterator(digits_dir):
    """Batches read with --no-mirror (pad 0, so crops are whole images) under two seeds hold only the stored
    images as they are; with mirroring some are flipped (the iterator really receives the choice)."""
    from resnet_toolkit.data import make_train_iter
    from resnet_toolkit.records import read_records
    from resnet_toolkit.train_args import data_layout, parse_args

    layout = data_layout(parse_args(folder_flags(digits_dir)))
    rec = digits_dir / "digits_train.rec"
    stored = {img[:, :, ::-1].transpose(2, 0, 1).tobytes() for _, _, img in read_records(rec)}

    def images(seed: int, mirror: bool) -> list[np.ndarray]:
        it = make_train_iter(rec, layout, 64, aug_level=2, seed=seed, preprocess_threads=1, mirror=mirror, pad=0)
        return list(it.next().data[0].asnumpy().astype(np.uint8))

    for seed in (0, 1):
        assert all(x.tobytes() in stored for x in images(seed, mirror=False))
    flipped = [x for x in images(0, mirror=True) if x.tobytes() not in stored]
    assert flipped and all(np.ascontiguousarray(x[:, :, ::-1]).tobytes() in stored for x in flipped)


@pytest.mark.parametrize("extra, message", [
    (["--pad", "-1"], "--pad must be 0..32 pixels (the input's size), got -1"),
    (["--pad", "33"], "--pad must be 0..32 pixels (the input's size), got 33"),
])
def test_bad_augmentation_flags(digits_dir, tmp_path, capsys, extra, message):
    assert train_fails([*folder_flags(digits_dir), "--depth", "8", "--model-prefix", tmp_path / "m", *extra],
                 capsys) == message
    assert not (tmp_path / "m-symbol.json").exists()


# ------------------------------------------------------------------------------- item 10: smaller defects
def test_unknown_data_type_lists_folder(capsys):
    assert train_fails(["--data-type", "mnist"], capsys) == (
        "argument --data-type: invalid choice: 'mnist' (choose from 'cifar10', 'imagenet', 'digits', 'folder') "
        "(see --help)")


@pytest.mark.parametrize("text, message", [
    ("depth: twenty\n", "argument --depth: invalid int value: 'twenty' (see --help)"),
    ("aug-level: 9\n", "argument --aug-level: invalid choice: 9 (choose from 0, 1, 2, 3, 4) (see --help)"),
    ("data-type: mnist\n", "argument --data-type: invalid choice: 'mnist' (choose from 'cifar10', 'imagenet', "
                           "'digits', 'folder') (see --help)"),
])
def test_config_value_errors_name_the_file(tmp_path, capsys, text, message):
    config = tmp_path / "run.yaml"
    config.write_text(text)
    assert train_fails(["--config", config], capsys) == f"--config {config}: {message}"


def test_help_states_each_default_once_and_every_aug_level(capsys):
    with pytest.raises(SystemExit) as exc:
        run_cli(main, ["--help"])
    assert exc.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: None)" not in text and "(default: False)" not in text and "(default: )" not in text
    assert "(default 200 CIFAR, 120 ImageNet)" in text
    blocks = re.split(r" (?=--[a-z])", text.split("options:", 1)[1])
    assert all(len(re.findall(r"\(default\b", block)) <= 1 for block in blocks)
    aug = text.split("--aug-level {0,1,2,3,4}", 2)[2].split("--mirror, --no-mirror")[0]
    for level in ("0 none", "1 random crop", "2 +scale", "3 +rotation", "4 RandomResizedCrop", "1-4 pad 4"):
        assert level in aug
    assert "--mirror, --no-mirror" in text and "--pad PAD" in text


def test_list_split_is_stratified_by_class(tmp_path, capsys):
    """`list --train-ratio 0.9` on classes of 50, 30, 20 and 10 images: exactly 5, 3, 2 and 1 validation
    images per class, the same lists for the same seed; --no-stratify splits the shuffle as a whole."""
    from resnet_toolkit.im2rec import read_lst

    sizes = {"a": 50, "b": 30, "c": 20, "d": 10}
    for cls, n in sizes.items():
        (tmp_path / "src" / cls).mkdir(parents=True)
        for i in range(n):
            cv2.imwrite(str(tmp_path / "src" / cls / f"{i}.png"), np.full((8, 8, 3), i, np.uint8))
    args = ["list", tmp_path / "src", "--name", "s", "--train-ratio", "0.9"]
    for out, seed in (("o1", "0"), ("o2", "0"), ("o3", "7")):
        assert run_wrapper([*args, "--out", tmp_path / out, "--seed", seed], capsys)[0] == 0
        val = read_lst(tmp_path / out / "s_val.lst")
        train = read_lst(tmp_path / out / "s_train.lst")
        assert [sum(1 for _, lab in val if lab == k) for k in range(4)] == [5, 3, 2, 1]
        assert len(train) + len(val) == 110 and not set(train) & set(val)
    assert (tmp_path / "o1" / "s_val.lst").read_text() == (tmp_path / "o2" / "s_val.lst").read_text()
    assert (tmp_path / "o3" / "s_val.lst").read_text() != (tmp_path / "o1" / "s_val.lst").read_text()
    assert run_wrapper([*args, "--out", tmp_path / "o4", "--no-stratify"], capsys)[0] == 0
    assert len(read_lst(tmp_path / "o4" / "s_val.lst")) == 11


def test_one_opencv_is_installed():
    """gluoncv comes with --no-deps (requirements-nodeps.txt, installed by the Makefile) so its unpinned
    opencv-python never lands beside the pinned opencv-python-headless; the requirements name gluoncv's real
    dependencies instead."""
    makefile = (ROOT / "Makefile").read_text()
    assert "--no-deps -r requirements-nodeps.txt" in makefile
    nodeps = [line for line in (ROOT / "requirements-nodeps.txt").read_text().splitlines()
              if line.strip() and not line.startswith("#")]
    assert nodeps == ["gluoncv==0.10.5.post0"]
    for name in ("requirements.txt", "requirements-gpu.txt"):
        lines = [line.split(";")[0].strip() for line in (ROOT / name).read_text().splitlines()
                 if line.strip() and not line.startswith("#")]
        packages = {re.split(r"[<>=!~ ]", line)[0].lower() for line in lines}
        assert "gluoncv" not in packages and "opencv-python" not in packages
        assert {"opencv-python-headless", "autocfg", "portalocker", "yacs", "pyyaml", "requests", "pillow",
                "matplotlib", "pandas", "scipy", "tqdm"} <= packages
    # and what `make` installed: the headless OpenCV alone, which cv2 is, with gluoncv importable beside it
    import importlib.metadata as md

    import cv2

    installed = {d.metadata["Name"].lower() for d in md.distributions()}
    assert "opencv-python" not in installed and "opencv-python-headless" in installed
    assert cv2.__version__ == md.version("opencv-python-headless").rsplit(".", 1)[0]
