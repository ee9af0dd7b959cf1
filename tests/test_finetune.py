"""Fine-tuning (issue 13): ``train_resnet.py --finetune PREFIX[,EPOCH]`` starts from another run's weights on a new
class count; ``--freeze-stages`` and ``--lr-mult-body``; bad input.

The task is real transfer: a ResNet-8 trained on the handwritten digits 0-4 is fine-tuned on the digits 5-9 (five
classes it never saw, relabelled 0-4, packed as a ``--data-type folder`` data set), against the same network
trained from scratch for the same number of updates.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest
from helpers import run_train

import resnet_toolkit  # noqa: F401
from resnet_toolkit.errors import run_cli
from resnet_toolkit.im2rec import subset_records

FLAGS = ["--data-type", "folder", "--image-shape", "3,32,32", "--num-classes", "5", "--depth", "8",
         "--batch-size", "32", "--preprocess-threads", "1", "--frequent", "10", "--seed", "2", "--lr", "0.1"]


@pytest.fixture(scope="module")
def halves(digits_dir, tmp_path_factory) -> Path:
    """digits 0-4 as ``low_*.rec`` and digits 5-9 relabelled 0-4 as ``high_*.rec`` (train and val each)."""
    out = tmp_path_factory.mktemp("digit_halves")
    for part in ("train", "val"):
        subset_records(digits_dir / f"digits_{part}.rec", out / f"low_{part}.rec", {d: d for d in range(5)})
        subset_records(digits_dir / f"digits_{part}.rec", out / f"high_{part}.rec", {d: d - 5 for d in range(5, 10)})
    return out


def data_flags(folder: Path, half: str) -> list[str]:
    return [*FLAGS, "--data-dir", str(folder), "--train-rec", f"{half}_train.rec", "--val-rec", f"{half}_val.rec"]


def stats_of(stdout: str) -> list[dict]:
    return [json.loads(line.split("json_stats:", 1)[1]) for line in stdout.splitlines() if "json_stats:" in line]


@pytest.fixture(scope="module")
def pretrained(halves, tmp_path_factory) -> str:
    """ResNet-8 trained 8 epochs (cosine) on the digits 0-4."""
    prefix = str(tmp_path_factory.mktemp("pretrained") / "low")
    proc = run_train([*data_flags(halves, "low"), "--end-epoch", "8", "--lr-mode", "cosine", "--model-prefix", prefix])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert stats_of(proc.stdout)[-1]["val-accuracy"] > 0.9
    return prefix


# One epoch (22 updates, cosine) on the digits 5-9, fine-tuned from the 0-4 weights vs from scratch, measured at
# seeds 1-3 natively (AVX-512) and with DNNL_MAX_CPU_ISA=AVX2, Module, and seed 2 Gluon: training accuracy over the
# epoch +0.19 to +0.27 (the steadiest sign: an average over 22 batches); validation accuracy (180 images) +0.03 to
# +0.36, fine-tuned 0.38-0.58 against chance 0.2. The training margin asserted is half the smallest measured.
# (After four epochs both have nearly converged and the gap is seed noise: -0.01 to +0.08; the old +0.04 bound on
# it failed on an AVX2 CPU.)
MIN_TRAIN_GAIN, MIN_TUNED_VAL = 0.1, 0.3


@pytest.mark.parametrize("api", ["module", "gluon"])
def test_finetuning_beats_training_from_scratch(halves, pretrained, tmp_path, api):
    """One epoch on the digits 5-9 from the 0-4 weights learns far faster than from scratch (margins above). The
    log says what was loaded (every array but the classifier) and what was initialised afresh (fc1)."""
    flags = [*data_flags(halves, "high"), "--end-epoch", "1", "--lr-mode", "cosine", "--api", api]
    scratch = run_train([*flags, "--model-prefix", tmp_path / "scratch"])
    tuned = run_train([*flags, "--model-prefix", tmp_path / "tuned", "--finetune", pretrained])
    assert scratch.returncode == 0 and tuned.returncode == 0, tuned.stderr[-3000:]
    assert re.search(rf"--finetune {re.escape(pretrained)}-0008.params: loaded \d+ arrays", tuned.stdout)
    assert "--finetune: initialised afresh 2: fc1_bias, fc1_weight" in tuned.stdout
    from_scratch, finetuned = stats_of(scratch.stdout), stats_of(tuned.stdout)
    assert finetuned[0]["train-accuracy"] > from_scratch[0]["train-accuracy"] + MIN_TRAIN_GAIN, (finetuned,
                                                                                                 from_scratch)
    assert finetuned[-1]["val-accuracy"] > max(MIN_TUNED_VAL, from_scratch[-1]["val-accuracy"])
    # a fresh schedule from --lr, the scratch run's; the pretrained run's cosine had ended at 0
    assert finetuned[0]["lr"] == pytest.approx(from_scratch[0]["lr"]) and finetuned[0]["lr"] > 0


def test_frozen_stages_and_body_rate(halves, pretrained, tmp_path):
    """--freeze-stages 2: the stem and stages 1-2 keep the pretrained values exactly, stage 3 and fc1 train.
    --lr-mult-body 0: nothing but fc1 (and the BN statistics, which follow the new data) changes."""
    import mxnet as mx

    source = mx.nd.load(f"{pretrained}-0004.params")  # --finetune PREFIX,4 below
    for extra, frozen in ((["--freeze-stages", "2"], r"^arg:(bn_data|conv0|stage[12]_)"),
                          (["--lr-mult-body", "0"], r"^arg:(?!fc1_)")):
        prefix = tmp_path / extra[0][2:]
        proc = run_train([*data_flags(halves, "high"), "--end-epoch", "1", "--model-prefix", prefix,
                          "--finetune", f"{pretrained},4", *extra])
        assert proc.returncode == 0, proc.stderr[-3000:]
        tuned = mx.nd.load(f"{prefix}-0001.params")
        for key, value in tuned.items():
            # bn_data's gamma is fixed (fix_gamma: the operator holds it at 1, whatever the file says)
            if key.startswith("aux:") or key.startswith("arg:fc1_") or key == "arg:bn_data_gamma":
                continue
            same = np.array_equal(value.asnumpy(), source[key].asnumpy())
            assert same == bool(re.match(frozen, key)), (extra, key)


def test_finetune_from_an_epoch_and_the_default_newest(halves, pretrained, tmp_path):
    from resnet_toolkit.weights import parse_finetune

    assert parse_finetune("model/x,12") == ("model/x", "12")
    assert parse_finetune("model/x") == ("model/x", None)
    proc = run_train([*data_flags(halves, "high"), "--end-epoch", "1", "--num-examples", "64",
                      "--model-prefix", tmp_path / "e2", "--finetune", f"{pretrained},2"])
    assert proc.returncode == 0 and f"--finetune {pretrained}-0002.params: loaded" in proc.stdout


@pytest.fixture(scope="module")
def other_network(tmp_path_factory) -> str:
    """A checkpoint of another network: ImageNet ResNet-18-v2, 10 classes, fresh weights."""
    from resnet_toolkit import checkpoint as ckpt
    from resnet_toolkit.weights import init_params
    from symbols import get_symbol

    prefix = str(tmp_path_factory.mktemp("other") / "r18")
    sym = get_symbol(10, 18, "imagenet")
    arg, aux = init_params(sym, (1, 3, 224, 224), 0)
    ckpt.save_checkpoint(prefix, 1, sym, arg, aux)
    return prefix


@pytest.mark.parametrize("which, message", [
    ("missing", "--finetune {p}: no checkpoint nothing-NNNN.params (looked for nothing-*.params in "),
    ("epoch", "--finetune {p},9: no checkpoint {p}-0009.params (saved epochs: 1, 2, 3, 4, 5, 6, 7, 8)"),
    ("text", "--finetune {p},x: the epoch after the comma must be a number"),
    ("other", "fit {p}-0001.params by name and shape: it holds another network"),
])
def test_bad_finetune_input_is_one_line_and_writes_nothing(which, message, halves, pretrained, other_network,
                                                           tmp_path, capsys):
    from train_resnet import main

    source = {"missing": str(tmp_path / "nothing"), "epoch": pretrained, "text": pretrained,
              "other": other_network}[which]
    spec = {"missing": source, "epoch": f"{source},9", "text": f"{source},x", "other": source}[which]
    out = tmp_path / "out"
    with pytest.raises(SystemExit) as exc:
        run_cli(main, [*data_flags(halves, "high"), "--end-epoch", "1", "--model-prefix", str(out / "m"),
                       "--finetune", spec])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1, err
    assert message.format(p=source) in err[0], err
    assert not out.exists() or list(out.iterdir()) == []
