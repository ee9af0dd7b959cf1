"""The modern recipe's options (issue 14): schedules, soft targets, per-parameter weight decay, zero-init, checkpoint
retention, the run configuration file, and their bad values. Values are checked against hand computations."""
from __future__ import annotations

import json
import math

import numpy as np
import pytest
from helpers import run_train

import resnet_toolkit  # noqa: F401
from resnet_toolkit.errors import UserError, run_cli
from resnet_toolkit.recipe import (
    TargetRecipe,
    frozen_names,
    is_decayed,
    mix,
    mixup_lambda,
    multipliers,
    random_erasing,
    smooth_one_hot,
    soft_cross_entropy,
)
from resnet_toolkit.runfiles import saved_config
from resnet_toolkit.schedule import Schedule, annealed_rate, warmup_rate
from resnet_toolkit.train_args import build_parser, parse_args, resolve_args

DIGITS_FLAGS = ["--data-type", "digits", "--depth", "8", "--batch-size", "32", "--preprocess-threads", "1",
                "--frequent", "10", "--seed", "3"]


# ------------------------------------------------------------------------------------------------ schedules
def test_cosine_schedule_values():
    """epoch_size 10, 20 epochs, 2 warm-up epochs from 0.01 to 0.1: update 1 at 0.01, update 21 (the first after
    the warm-up) at the peak 0.1, the midpoint of the 180 decay updates at 0.05, the last near 0."""
    s = Schedule("cosine", 0.1, epoch_size=10, end_epoch=20, warmup_epochs=2, warmup_lr=0.01)
    assert s(1) == pytest.approx(0.01)
    assert s(11) == pytest.approx(0.01 + 0.09 * 10 / 20)      # halfway through the warm-up
    assert s(20) == pytest.approx(0.01 + 0.09 * 19 / 20)
    assert s(21) == pytest.approx(0.1)                         # warm-up end: the curve's start
    assert s(21 + 90) == pytest.approx(0.05)                   # cosine midpoint: 90 of 180 decay updates done
    assert s(200) == pytest.approx(0.1 * (1 + math.cos(math.pi * 179 / 180)) / 2)
    assert 0 < s(200) < 1e-5
    assert all(s(u) >= s(u + 1) for u in range(21, 200))       # monotone after the warm-up


def test_poly_and_step_with_warmup():
    assert annealed_rate(1, 0.2, 1, 100, "poly") == pytest.approx(0.2)
    assert annealed_rate(51, 0.2, 1, 100, "poly") == pytest.approx(0.2 * 0.5 ** 2)
    step = Schedule("step", 0.1, epoch_size=10, end_epoch=30, step_epochs=(10, 20), warmup_epochs=1)
    assert step(1) == 0.0 and step(6) == pytest.approx(0.05) and step(11) == pytest.approx(0.1)
    assert step(101) == pytest.approx(0.01) and step(201) == pytest.approx(0.001)
    assert warmup_rate(5, 0.3, 0, 0.0) == 0.3  # no warm-up: the curve itself


def test_schedule_is_the_same_curve_after_a_retrain():
    """A cosine run retrained at any epoch (a new Schedule with begin_epoch set) gives the same rate at every later
    update: the curve is absolute in the update count."""
    full = Schedule("cosine", 0.1, epoch_size=7, end_epoch=12, warmup_epochs=1.5, warmup_lr=0.0)
    for begin in range(12):
        resumed = Schedule("cosine", 0.1, epoch_size=7, end_epoch=12, begin_epoch=begin, warmup_epochs=1.5)
        assert all(resumed(u) == full(u) for u in range(begin * 7 + 1, 12 * 7 + 1))


# -------------------------------------------------------------------------------------------- soft targets
def test_label_smoothing_targets_and_loss_by_hand():
    """K=4, eps=0.2: 0.85 on the label, 0.05 elsewhere; the loss is -sum t log p."""
    targets = smooth_one_hot(np.array([2, 0]), 4, 0.2)
    np.testing.assert_allclose(targets, [[0.05, 0.05, 0.85, 0.05], [0.85, 0.05, 0.05, 0.05]], rtol=1e-6)
    probs = np.array([[0.1, 0.2, 0.6, 0.1], [0.25, 0.25, 0.25, 0.25]])
    by_hand = -(0.05 * math.log(0.1) + 0.05 * math.log(0.2) + 0.85 * math.log(0.6) + 0.05 * math.log(0.1)
                + math.log(0.25)) / 2
    assert soft_cross_entropy(probs, targets) == pytest.approx(by_hand, rel=1e-6)
    assert soft_cross_entropy(probs, np.array([2, 0])) == pytest.approx(-(math.log(0.6) + math.log(0.25)) / 2)


def test_mixup_mixes_images_and_targets_with_the_reversed_batch():
    data = np.arange(3 * 2, dtype=np.float32).reshape(3, 2)
    labels = np.array([0, 1, 2])
    recipe = TargetRecipe(num_classes=3, mixup_alpha=0.4, end_epoch=10, mixup_off_epoch=2, seed=5)
    mixed, targets = recipe.apply(data, labels, epoch=1, nbatch=4)
    lam = mixup_lambda(0.4, 5, 1, 4)
    assert 0 < lam < 1 and lam == mixup_lambda(0.4, 5, 1, 4)   # seeded by (seed, epoch, batch)
    np.testing.assert_allclose(mixed[0], lam * data[0] + (1 - lam) * data[2], rtol=1e-6)
    np.testing.assert_allclose(targets[0], [lam, 0, 1 - lam], rtol=1e-6)
    np.testing.assert_allclose(targets.sum(axis=1), 1, rtol=1e-6)
    # the loss of a mixed batch is the lam-weighted loss of both labels
    probs = np.array([[0.7, 0.1, 0.2]] * 3)
    assert soft_cross_entropy(probs[:1], targets[:1]) == pytest.approx(
        -(lam * math.log(0.7) + (1 - lam) * math.log(0.2)), rel=1e-6)
    # the last mixup_off_epoch epochs train on plain targets
    assert recipe.apply(data, labels, epoch=8, nbatch=0)[0] is None
    np.testing.assert_array_equal(mix(np.array([1.0, 3.0]), 0.25), [0.25 * 1 + 0.75 * 3, 0.25 * 3 + 0.75 * 1])


# ------------------------------------------------------------------------------------------- random erasing
def _erased_boxes(before: np.ndarray, after: np.ndarray) -> list[tuple[int, int, int, int] | None]:
    """Per image, the bounding box (top, left, h, w) of the pixels that changed in any channel, or None."""
    boxes = []
    for changed in (before != after).any(axis=1):
        rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
        boxes.append(None if rows.size == 0 else (rows[0], cols[0], rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1))
    return boxes


def test_random_erasing_replaces_one_rectangle_per_chosen_image():
    """A constant batch (no fill value can equal it by chance): with P=1 every image has exactly one changed
    rectangle, fully changed, of 2-40 % of the image (+ rounding) and height/width within 0.3-3.3 (+ rounding),
    filled with values in [0, 255]; the input is left as it was."""
    data = np.full((64, 3, 32, 32), -1.0, dtype=np.float32)
    out = random_erasing(data, 1.0, seed=3, epoch=2, nbatch=5)
    assert (data == -1).all() and out.dtype == data.dtype
    for image, box in zip(out, _erased_boxes(data, out)):
        assert box is not None
        top, left, h, w = box
        assert ((image[:, top:top + h, left:left + w] != -1).all() and (image[image != -1] >= 0).all()
                and (image <= 255).all())                                           # a full rectangle, in range
        assert (image != -1).sum() == 3 * h * w                                     # and nothing outside it
        assert 0.02 * 1024 - 2 * 32 <= h * w <= 0.4 * 1024 + 2 * 32
        assert 0.3 * 0.8 <= h / w <= (1 / 0.3) * 1.25


def test_random_erasing_probability_and_seeding():
    data = np.zeros((400, 3, 8, 8), dtype=np.float32) - 1
    erased = sum(box is not None for box in _erased_boxes(data, random_erasing(data, 0.5, 0, 0, 0)))
    assert 150 < erased < 250                                                   # ~200 of 400 at P=0.5
    np.testing.assert_array_equal(random_erasing(data, 0.0, 0, 0, 0), data)    # P=0: unchanged
    # seeded by (seed, epoch, batch): a replayed batch erases the same pixels with the same values
    np.testing.assert_array_equal(random_erasing(data, 0.5, 7, 3, 9), random_erasing(data, 0.5, 7, 3, 9))
    assert not np.array_equal(random_erasing(data, 0.5, 7, 3, 9), random_erasing(data, 0.5, 7, 3, 10))
    assert not np.array_equal(random_erasing(data, 0.5, 7, 3, 9), random_erasing(data, 0.5, 8, 3, 9))


def test_random_erasing_mean_fill():
    """--random-erasing-fill mean: the same rectangles as the random fill (same seed), each filled with its
    channel's mean over the batch before erasing; a bad fill name is an error."""
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 255, size=(32, 3, 16, 16)).astype(np.float32)
    data[:, 0] += 1000.0                                     # channel means ~1127, ~127, ~127: no chance equality
    random_fill = random_erasing(data, 1.0, seed=4, epoch=1, nbatch=2)
    mean_fill = random_erasing(data, 1.0, seed=4, epoch=1, nbatch=2, fill="mean")
    channel_mean = data.mean(axis=(0, 2, 3), dtype=np.float64).astype(np.float32)
    for image, before, box_r, box_m in zip(mean_fill, data, _erased_boxes(data, random_fill),
                                           _erased_boxes(data, mean_fill)):
        assert box_r == box_m and box_m is not None
        top, left, h, w = box_m
        np.testing.assert_array_equal(image[:, top:top + h, left:left + w],
                                      np.broadcast_to(channel_mean[:, None, None], (3, h, w)))
        outside = np.ones(before.shape, dtype=bool)
        outside[:, top:top + h, left:left + w] = False
        np.testing.assert_array_equal(image[outside], before[outside])
    with pytest.raises(ValueError, match="fill must be one of"):
        random_erasing(data, 1.0, 0, 0, 0, fill="zero")


def test_both_engines_train_on_soft_targets_alike():
    """One update of each engine on the same label-smoothed and mixed batch from the same weights: the same loss
    (by hand from the engine's own probabilities) and the same updated weights."""
    import mxnet as mx

    from resnet_toolkit.cluster import Cluster
    from resnet_toolkit.engines import GluonEngine, ModuleEngine, TrainSetup
    from resnet_toolkit.weights import init_params
    from symbols import get_net, get_symbol

    shape, k = (8, 3, 32, 32), 10
    rng = np.random.default_rng(0)
    data = rng.uniform(0, 255, shape).astype(np.float32)
    mixed, targets = TargetRecipe(k, smoothing=0.1, mixup_alpha=0.2, end_epoch=5).apply(data, rng.integers(0, k, 8),
                                                                                        0, 0)
    sym = get_symbol(k, 8, "cifar10")
    setup = TrainSetup(k, soft=True, wd_mult={}, lr_mult={})
    results = []
    for build in (lambda a, x: ModuleEngine(sym, *a, recipe=setup),
                  lambda a, x: GluonEngine(get_net(k, 8, "cifar10"), *a, recipe=setup)):
        arg, aux = init_params(sym, shape, 0)
        engine = build(([mx.cpu()], Cluster(None), shape, arg, aux, "sgd",
                        {"learning_rate": 0.1, "rescale_grad": 1 / 8}), None)
        loss = engine.forward_backward(mx.nd.array(mixed), mx.nd.array(targets))
        if isinstance(engine, ModuleEngine):  # the training-mode probabilities of SoftmaxOutput
            probs = engine.mod.get_outputs()[0].asnumpy()
        engine.update(mx.metric.Accuracy(), mx.nd.array(targets.argmax(1)))
        results.append((loss, engine.get_params()[0]))
    # Module: our loss of SoftmaxOutput's probabilities; Gluon: MXNet's SoftmaxCrossEntropyLoss(sparse_label=False)
    # of the logits; both equal -sum t log p written out here.
    assert results[0][0] == pytest.approx(float(-(targets * np.log(probs)).sum(axis=1).mean()), rel=1e-5)
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-4)
    assert 1 < results[0][0] < 10
    for name, value in results[0][1].items():
        np.testing.assert_allclose(value.asnumpy(), results[1][1][name].asnumpy(), rtol=1e-3, atol=1e-5,
                                   err_msg=name)


# ------------------------------------------------------------------------------------------ parameter settings
def test_multipliers_and_frozen_names():
    names = ["bn_data_beta", "conv0_weight", "stage1_unit1_bn1_gamma", "stage1_unit1_bn1_beta",
             "stage2_unit1_conv1_weight", "bn1_gamma", "fc1_weight", "fc1_bias"]
    wd, lr = multipliers(names)
    assert [n for n in names if wd[n]] == ["conv0_weight", "stage1_unit1_bn1_gamma", "stage2_unit1_conv1_weight",
                                           "bn1_gamma", "fc1_weight"]
    wd, lr = multipliers(names, no_wd=True, lr_mult_body=0.1)
    assert [n for n in names if wd[n]] == ["conv0_weight", "stage2_unit1_conv1_weight", "fc1_weight"]
    assert lr["fc1_weight"] == lr["fc1_bias"] == 1.0 and lr["conv0_weight"] == 0.1 and lr["bn1_gamma"] == 0.1
    assert frozen_names(names, 1) == names[:4]
    assert frozen_names(names, 0) == []
    assert not is_decayed("fc1_bias") and is_decayed("bn1_gamma") and not is_decayed("bn1_gamma", no_wd=True)


@pytest.mark.parametrize("api", ["module", "gluon"])
def test_no_wd_leaves_bn_and_biases_undecayed(api):
    """One update from the same weights and batch, weight decay 0 vs a huge 10 with --no-wd's multipliers: every BN
    gamma/beta and bias ends identical (same gradient, no decay); convolution and FC weights differ."""
    import mxnet as mx

    from resnet_toolkit.cluster import Cluster
    from resnet_toolkit.engines import GluonEngine, ModuleEngine, TrainSetup
    from resnet_toolkit.weights import init_params
    from symbols import get_net, get_symbol

    shape = (8, 3, 32, 32)
    sym = get_symbol(10, 8, "cifar10")
    data = mx.nd.array(np.random.default_rng(1).uniform(0, 255, shape))
    labels = mx.nd.array(np.arange(8) % 10)
    ends = {}
    for wd in (0.0, 10.0):
        arg, aux = init_params(sym, shape, 0)
        wd_mult, lr_mult = multipliers(list(arg), no_wd=True)
        setup = TrainSetup(10, False, wd_mult, lr_mult)
        common = ([mx.cpu()], Cluster(None), shape, arg, aux, "sgd",
                  {"learning_rate": 0.01, "wd": wd, "rescale_grad": 1 / 8})
        engine = (ModuleEngine(sym, *common, recipe=setup) if api == "module"
                  else GluonEngine(get_net(10, 8, "cifar10"), *common, recipe=setup))
        engine.forward_backward(data, labels)
        engine.update(mx.metric.Accuracy(), labels)
        ends[wd] = engine.get_params()[0]
    for name in ends[0.0]:
        same = np.allclose(ends[0.0][name].asnumpy(), ends[10.0][name].asnumpy(), rtol=1e-5, atol=1e-7)
        assert same == (not name.endswith("_weight")), name


# ------------------------------------------------------------------------------------------------ end to end
@pytest.fixture(scope="module")
def recipe_run(digits_dir, tmp_path_factory):
    """3 epochs of ResNet-8 on the digits with cosine + warm-up, label smoothing, mixup (off in the last epoch),
    random erasing, --no-wd, --last-gamma, --keep-last 2 --save-best."""
    prefix = tmp_path_factory.mktemp("recipe") / "m"
    flags = [*DIGITS_FLAGS, "--data-dir", digits_dir, "--end-epoch", "3", "--lr-mode", "cosine",
             "--warmup-epochs", "1", "--warmup-lr", "0.01", "--label-smoothing", "0.1", "--mixup", "0.2",
             "--mixup-off-epoch", "1", "--random-erasing", "0.5", "--no-wd", "--last-gamma", "--keep-last", "2",
             "--save-best", "--model-prefix", prefix]
    proc = run_train(flags)
    assert proc.returncode == 0, proc.stderr[-3000:]
    stats = [json.loads(line.split("json_stats:", 1)[1]) for line in proc.stdout.splitlines()
             if "json_stats:" in line]
    return prefix, flags, proc, stats


def test_recipe_run_end_to_end(recipe_run):
    import mxnet as mx

    prefix, _, proc, stats = recipe_run
    epoch_size = 1437 // 32
    schedule = Schedule("cosine", 0.1, epoch_size, 3, warmup_epochs=1, warmup_lr=0.01)
    assert [s["lr"] for s in stats] == [pytest.approx(schedule((e + 1) * epoch_size), rel=1e-9) for e in range(3)]
    assert "--last-gamma: every residual unit starts as the identity" in proc.stdout
    assert stats[-1]["val-accuracy"] > 0.5  # learning happened (10 classes: chance is 0.1)
    best = json.loads(open(f"{prefix}-best.json").read())
    accs = [s["val-accuracy"] for s in stats]
    assert best == {"epoch": int(np.argmax(accs)) + 1, "val-accuracy": max(accs)}
    kept = sorted(int(p.name[-11:-7]) for p in prefix.parent.glob("m-*.params"))
    assert kept == sorted({2, 3, best["epoch"]})  # the newest two (the last is what --retrain loads) and the best
    assert "state:conv0_weight" in mx.nd.load(f"{prefix}-0003.states")


def test_random_erasing_reaches_the_network(digits_dir, tmp_path):
    """One epoch of 160 digits, same seed: twice without erasing gives the same weights, with --random-erasing 1
    different ones, and with its mean fill different again (the training loop feeds the erased batch, not the
    iterator's, filled as --random-erasing-fill says)."""
    import mxnet as mx

    weights = []
    for name, extra in (("a", []), ("b", []), ("c", ["--random-erasing", "1"]),
                        ("d", ["--random-erasing", "1", "--random-erasing-fill", "mean"])):
        proc = run_train([*DIGITS_FLAGS, "--data-dir", digits_dir, "--end-epoch", "1", "--num-examples", "160",
                          "--model-prefix", tmp_path / name, *extra])
        assert proc.returncode == 0, proc.stderr[-2000:]
        weights.append(mx.nd.load(f"{tmp_path / name}-0001.params")["arg:conv0_weight"].asnumpy())
    np.testing.assert_array_equal(weights[0], weights[1])
    assert not np.array_equal(weights[0], weights[2])
    assert not np.array_equal(weights[0], weights[3]) and not np.array_equal(weights[2], weights[3])


def test_args_json_reproduces_the_run_configuration(recipe_run, tmp_path):
    """PREFIX-args.json holds the resolved flags; --config of it resolves to the same configuration, and flags on
    the command line override it."""
    prefix, flags, _, _ = recipe_run
    saved = json.loads(open(f"{prefix}-args.json").read())
    assert saved["lr-mode"] == "cosine" and saved["label-smoothing"] == 0.1 and saved["lr-steps"] == "120,160"
    assert saved["no-wd"] is True and saved["end-epoch"] == 3 and "retrain" not in saved
    assert saved["random-erasing"] == 0.5 and saved["random-erasing-fill"] == "random"
    again = parse_args(["--config", f"{prefix}-args.json"])
    original = resolve_args(build_parser().parse_args([str(f) for f in flags]))
    assert saved_config(again) == saved_config(original)
    override = parse_args(["--config", f"{prefix}-args.json", "--lr-mode", "poly", "--mixup", "0.5"])
    assert override.lr_mode == "poly" and override.mixup == 0.5 and override.label_smoothing == 0.1
    yaml_file = tmp_path / "recipe.yaml"
    yaml_file.write_text("data-type: digits\ndepth: 8\nlr_mode: cosine\nno-wd: true\nlr-steps: [3, 5]\n")
    cfg = parse_args(["--config", str(yaml_file), "--data-dir", "x"])
    assert (cfg.data_type, cfg.depth, cfg.lr_mode, cfg.no_wd, cfg.lr_step_epochs) == ("digits", 8, "cosine", True,
                                                                                      (3, 5))


def test_retrain_continues_the_cosine_curve_exactly(recipe_run, tmp_path):
    """The run stopped after epoch 2 (its epoch-2 files copied, as a kill would leave them) and --retrain for epoch
    3: the same parameters as the uninterrupted run's epoch 3 (mixup, random erasing, smoothing and the
    warm-up/cosine rate are pure functions of seed, epoch and update count)."""
    import shutil

    import mxnet as mx

    full_prefix, flags, _, _ = recipe_run
    prefix = tmp_path / "m"
    for suffix in ("-symbol.json", "-args.json", "-0002.params", "-0002.states"):
        shutil.copyfile(f"{full_prefix}{suffix}", f"{prefix}{suffix}")
    args = [str(f) for f in flags]
    args[args.index("--model-prefix") + 1] = str(prefix)
    resumed = run_train([*args, "--retrain"])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    epoch_size = 1437 // 32
    first = Schedule("cosine", 0.1, epoch_size, 3, warmup_epochs=1, warmup_lr=0.01)(2 * epoch_size + 1)
    assert f"continuing at Epoch[2], lr {float(f'{first:.12g}'):g}" in resumed.stdout  # the rate in force, not 0.1
    a, b = mx.nd.load(f"{prefix}-0003.params"), mx.nd.load(f"{full_prefix}-0003.params")
    for key in a:
        np.testing.assert_array_equal(a[key].asnumpy(), b[key].asnumpy(), err_msg=key)


# ----------------------------------------------------------------------------------------------- retention
def test_prune_never_deletes_the_newest_or_the_kept(tmp_path):
    from resnet_toolkit import checkpoint as ckpt

    prefix = tmp_path / "m"
    for epoch in range(1, 6):
        for ext in ("params", "states"):
            (tmp_path / f"m-{epoch:04d}.{ext}").write_bytes(b"x")
    (tmp_path / "m-0006.states").write_bytes(b"half-written epoch: no .params")
    assert ckpt.prune(prefix, 0) == [] and ckpt.list_epochs(prefix) == [1, 2, 3, 4, 5]
    assert ckpt.prune(prefix, 2, keep=[1]) == [2, 3]
    assert ckpt.list_epochs(prefix) == [1, 4, 5] and (tmp_path / "m-0006.states").exists()
    assert ckpt.prune(prefix, 1) == [1, 4] and ckpt.list_epochs(prefix) == [5]
    assert ckpt.prune(prefix, 1) == [] and ckpt.latest_epoch(prefix) == 5


# --------------------------------------------------------------------------------------------- bad values
@pytest.mark.parametrize("extra, message", [
    (["--label-smoothing", "-0.1"], "--label-smoothing must be a finite number >= 0, got -0.1"),
    (["--label-smoothing", "1"], "--label-smoothing must be below 1"),
    (["--warmup-epochs", "5", "--end-epoch", "5"], "--warmup-epochs 5 must end before --end-epoch 5"),
    (["--warmup-epochs", "3", "--lr-steps", "2"], "--warmup-epochs 3 runs past the first --lr-steps epoch 2"),
    (["--mixup", "nan"], "--mixup must be a finite number >= 0"),
    (["--mixup-off-epoch", "2"], "--mixup-off-epoch needs --mixup ALPHA"),
    (["--random-erasing", "1.5"], "--random-erasing must be a probability in [0, 1], got 1.5"),
    (["--random-erasing", "nan"], "--random-erasing must be a probability in [0, 1], got nan"),
    (["--random-erasing-fill", "mean"], "--random-erasing-fill mean needs --random-erasing P"),
    (["--random-erasing", "1", "--random-erasing-fill", "zero"], "argument --random-erasing-fill: invalid choice"),
    (["--keep-last", "-1"], "--keep-last must be >= 0"),
    (["--lr-mode", "linear"], "argument --lr-mode: invalid choice: 'linear'"),
    (["--aug-level", "5"], "argument --aug-level: invalid choice: 5"),
    (["--finetune", "x", "--retrain"], "--finetune starts a new run from other weights; --retrain continues"),
    (["--freeze-stages", "1"], "--freeze-stages needs --finetune"),
    (["--finetune", "x", "--freeze-stages", "4"], "--freeze-stages 4: the network has 3 stages"),
])
def test_bad_recipe_values_are_one_clear_line(extra, message, digits_dir, tmp_path, capsys):
    from train_resnet import main

    with pytest.raises(SystemExit) as exc:
        run_cli(main, [*map(str, DIGITS_FLAGS), "--data-dir", str(digits_dir), "--model-prefix",
                       str(tmp_path / "m"), *extra])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2 and len(err) == 1 and message in err[0], err
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("text, message", [
    ("[1, 2]", "must hold a mapping of flag names to values"),
    ("{lr: [}", "not valid YAML"),
    ("bogus-flag: 1", "unknown flag 'bogus-flag'"),
    ("no-wd: 3", "no-wd must be true or false"),
    ("!!python/object/apply:os.system ['echo pwned']", "not valid YAML"),
])
def test_bad_config_files(text, message, tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    with pytest.raises(UserError, match=message.replace("[", r"\[")):
        parse_args(["--config", str(path)])
    with pytest.raises(UserError, match="cannot read it"):
        parse_args(["--config", str(tmp_path / "missing.json")])


def test_retrain_keeps_args_json_and_names_the_changed_flags(recipe_run, tmp_path):
    """A retrain does not rewrite the PREFIX-args.json of the run it continues; it reports the flags it changes."""
    import shutil

    from resnet_toolkit.runfiles import config_changes

    full_prefix, flags, _, _ = recipe_run
    shutil.copyfile(f"{full_prefix}-args.json", tmp_path / "m-args.json")
    args = [str(f) for f in flags]
    args[args.index("--model-prefix") + 1] = str(tmp_path / "m")
    args[args.index("--end-epoch") + 1] = "5"
    cfg = parse_args([*args, "--retrain", "--lr", "0.05"])
    assert sorted(config_changes(cfg)) == ["end-epoch 3 -> 5", "lr None -> 0.05",
                                            f"model-prefix {full_prefix} -> {tmp_path / 'm'}"]
    assert config_changes(parse_args(args)) == []  # not a retrain: nothing to compare
