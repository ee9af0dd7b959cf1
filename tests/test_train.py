"""train_resnet.py on real CIFAR-10: it learns, its log reads back, its checkpoints are MXNet's, multi-context and
Gluon training agree with the single-context Module path."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
from helpers import load_tool, run_train

import resnet_toolkit  # noqa: F401

pytestmark = pytest.mark.data


def _stats(text: str) -> list[dict]:
    return [json.loads(line.split("json_stats:", 1)[1]) for line in text.splitlines() if "json_stats:" in line]


@pytest.mark.slow
def test_resnet20_learns_cifar10(trained_cifar):
    """2 epochs of 10,000 real CIFAR-10 images: validation accuracy on all 10,000 test images well above the 10 %
    of chance (measured 42-47 % across seeds)."""
    assert trained_cifar.val_accuracy > 0.40
    assert [s["epoch"] for s in trained_cifar.stats] == [0, 1]
    assert trained_cifar.stats[1]["train-accuracy"] > trained_cifar.stats[0]["train-accuracy"]


@pytest.mark.slow
def test_log_reads_back_into_the_same_numbers(trained_cifar):
    """MXNet's own line shapes and the json_stats line carry the same values, and the project's log parser reads
    them back; the first line is the parsed arguments."""
    from resnet_toolkit.logparse import parse_file

    text = trained_cifar.log_file.read_text()
    lines = text.splitlines()
    assert "start with arguments Namespace(" in lines[0] and "depth=20" in lines[0]
    assert re.search(r"Epoch\[0\] Batch \[0-40\]\tSpeed: [\d.]+ samples/sec\taccuracy=[\d.]+\tcross-entropy=[\d.]+",
                     text)
    for stats in trained_cifar.stats:
        k = stats["epoch"]
        for kind, prefix in (("Train", "train"), ("Validation", "val")):
            for metric in ("accuracy", "cross-entropy"):
                logged = float(re.search(rf"Epoch\[{k}\] {kind}-{metric}=([\d.]+)", text).group(1))
                assert logged == pytest.approx(stats[f"{prefix}-{metric}"], abs=1e-6)
        assert float(re.search(rf"Epoch\[{k}\] Time cost=([\d.]+)", text).group(1)) == stats["time"]
        assert stats["lr"] == 0.1
    records = parse_file(trained_cifar.log_file)
    assert [r.val_acc() for r in records] == pytest.approx([s["val-accuracy"] for s in trained_cifar.stats])


@pytest.mark.slow
def test_checkpoint_files_are_mxnet_format(trained_cifar):
    """Files numbered epoch_index+1, params under arg:/aux:, the symbol equal to symbols.get_symbol's, loadable by
    mx.model.load_checkpoint; the synset copied beside; .states is an NDArray file (no pickle)."""
    from pathlib import Path

    import mxnet as mx

    from symbols import get_symbol

    prefix = trained_cifar.prefix
    sym, arg_params, aux_params = mx.model.load_checkpoint(prefix, 2)
    assert sym.tojson() == get_symbol(10, 20, "cifar10").tojson()
    assert arg_params["fc1_weight"].shape == (10, 64) and "bn1_moving_var" in aux_params
    assert sorted(p.name for p in Path(prefix).parent.glob("*.params")) == [
        "resnet-cifar10-20-0-0001.params", "resnet-cifar10-20-0-0002.params"]
    assert (Path(prefix).parent / "synset.txt").read_text() == (trained_cifar.data_dir / "synset.txt").read_text()
    states = mx.nd.load(f"{prefix}-0002.states")
    assert states["state:fc1_weight"].shape == (10, 64)
    assert states["meta:num_update"].asscalar() == 2 * (10000 // 64)
    assert not Path(f"{prefix}-0002.states").read_bytes().startswith(b"\x80")  # not a pickle


def _params(prefix: str, epoch: int) -> dict:
    import mxnet as mx

    return {k: v.asnumpy() for k, v in mx.nd.load(f"{prefix}-{epoch:04d}.params").items()}


def _rel_l2(a: dict, b: dict) -> float:
    """||a - b|| / ||a|| over every learned array (arg:), bn_data_gamma excluded (fixed at 1 in the forward pass,
    so the Symbol optimizer's weight decay on it has no effect while Gluon leaves it alone)."""
    keys = [k for k in a if k.startswith("arg:") and k != "arg:bn_data_gamma"]
    va, vb = (np.concatenate([d[k].ravel() for k in keys]) for d in (a, b))
    return float(np.linalg.norm(va - vb) / np.linalg.norm(va))


@pytest.fixture(scope="module")
def short_runs(small_reference_run, tmp_path_factory):
    """3 updates (--num-examples 96, batch 32) from the same initial weights through: Module on 1 and 2 CPU
    contexts, Gluon on 1 and 2 (all with the default training graph), and Module and Gluon on 1 context with
    --plain-graph; returns each run's parameters and the initial ones."""
    from resnet_toolkit.fit import training_symbol
    from resnet_toolkit.runplan import network_spec
    from resnet_toolkit.train_args import build_parser, resolve_args
    from resnet_toolkit.weights import init_params

    out = tmp_path_factory.mktemp("short_runs")
    runs = {}
    for name, extra in (("module1", []), ("module2", ["--cpus", "2"]), ("gluon1", ["--api", "gluon"]),
                        ("gluon2", ["--api", "gluon", "--cpus", "2"]), ("module1-plain", ["--plain-graph"]),
                        ("gluon1-plain", ["--api", "gluon", "--plain-graph"])):
        proc = run_train([*small_reference_run.flags, "--end-epoch", "1", "--num-examples", "96",
                          "--model-prefix", out / name / "m", *extra])
        assert proc.returncode == 0, proc.stderr
        runs[name] = _params(str(out / name / "m"), 1)
    args = resolve_args(build_parser().parse_args([str(f) for f in small_reference_run.flags]))
    shape = (args.batch_size, 3, 32, 32)
    init_arg, _ = init_params(training_symbol(args, network_spec(args), args.batch_size), shape, args.seed)
    runs["init"] = {f"arg:{k}": v.asnumpy() for k, v in init_arg.items()}
    return runs


@pytest.mark.slow
def test_two_cpu_contexts_match_one(short_runs):
    """--cpus 2 (batch 32 split 16+16, gradients summed by the device kvstore) vs one context with the same batch
    of 32, both from the same weights. The one inherent difference is BatchNorm's batch statistics, computed per
    context over 16 images instead of 32: after 3 updates the two differ by about a third of the distance the
    weights moved (measured 0.36 with Module: 0.80 % apart, 2.2 % moved), bound 0.5."""
    moved = _rel_l2(short_runs["module1"], short_runs["init"])
    assert moved > 0.01
    assert _rel_l2(short_runs["module1"], short_runs["module2"]) < 0.5 * moved
    assert _rel_l2(short_runs["gluon1"], short_runs["gluon2"]) < 0.5 * moved


@pytest.mark.slow
def test_gluon_matches_module(short_runs):
    """Same initial weights, same batches, NAG with weight decay on *_weight/*_gamma only (wd_mult=0 on betas and
    biases in Gluon). With --plain-graph both run the graph as built and agree to float rounding after 3 updates
    (measured 7e-8 relative), bound 1e-5. (Training at lr 0.1 amplifies rounding quickly: after 10 updates they
    are 0.5 % apart, from 7e-8.)

    By default both run resnet_toolkit.fastpath's training graph, whose fused BN+ReLU sums in another order inside the
    Module executor than in Gluon's CachedOp: one step's gradients differ by up to 1.1e-5 relative (bn_data_beta;
    tests/test_fastpath.py bounds one step), which 3 updates at lr 0.1 grow to a measured 6.6e-5. For scale: a
    1e-6 relative change of the initial weights alone moves the weights after 3 updates by 1.8e-4 (measured on
    random images), and a wrong gradient anywhere moves them by a good part of the distance they travel (2.2 %).
    Bound 1e-3."""
    assert _rel_l2(short_runs["module1-plain"], short_runs["gluon1-plain"]) < 1e-5
    assert _rel_l2(short_runs["module1"], short_runs["gluon1"]) < 1e-3
    assert _rel_l2(short_runs["module2"], short_runs["gluon2"]) < 1e-3


@pytest.mark.slow
def test_training_graph_trains_like_the_plain_graph(short_runs):
    """The default training graph vs --plain-graph, each engine, 3 updates: within the float-rounding bound of
    test_gluon_matches_module (measured 6.6e-5 Module, 1.7e-6 Gluon), far below the 2.2 % the weights moved."""
    assert _rel_l2(short_runs["module1"], short_runs["init"]) > 0.01
    assert _rel_l2(short_runs["module1-plain"], short_runs["module1"]) < 1e-3
    assert _rel_l2(short_runs["gluon1-plain"], short_runs["gluon1"]) < 1e-3


@pytest.mark.parametrize("extra,fast", [([], True), (["--plain-graph"], False), (["--memonger"], False),
                                        (["--api", "gluon"], True), (["--api", "gluon", "--plain-graph"], False)])
def test_training_graph_is_the_cpu_default(extra, fast):
    """What each engine binds: the fused BN+ReLU graph on CPU by default; the graph as built with --plain-graph and
    with --memonger (its plan belongs to the graph it was made for)."""
    import mxnet as mx

    from resnet_toolkit.cluster import Cluster
    from resnet_toolkit.engines import GluonEngine, ModuleEngine
    from resnet_toolkit.fit import training_symbol
    from resnet_toolkit.runplan import network_spec
    from resnet_toolkit.train_args import build_parser, resolve_args, uses_training_graph
    from resnet_toolkit.weights import init_params

    args = resolve_args(build_parser().parse_args(["--data-type", "cifar10", "--depth", "20", "--batch-size", "8",
                                                   *extra]))
    assert uses_training_graph(args) == fast
    shape = (8, 3, 32, 32)
    sym = training_symbol(args, network_spec(args), 8)
    arg_params, aux_params = init_params(sym, shape, 0)
    engine_args = ([mx.cpu()], Cluster(None), shape, arg_params, aux_params, "nag", {"learning_rate": 0.1})
    if args.api == "gluon":
        from symbols import get_net

        engine = GluonEngine(get_net(10, 20, "cifar10"), *engine_args, training_graph=uses_training_graph(args))
        engine.forward_backward(mx.nd.zeros(shape), mx.nd.zeros(8))
        bound = engine.block._cached_graph[1].tojson()
    else:
        engine = ModuleEngine(sym, *engine_args, training_graph=uses_training_graph(args))
        bound = engine.mod.symbol.tojson()
    assert ('"_contrib_BatchNormWithReLU"' in bound) == fast
    assert ('"op": "mean"' in bound) == fast


@pytest.mark.parametrize("which", ["-1", "latest", None])
def test_retrain_picks_the_newest_complete_checkpoint(small_reference_run, tmp_path, which):
    """Epochs 1 and 2 complete, epoch 3 only half there (its .states but no .params): the newest complete is 2."""
    import shutil

    from resnet_toolkit.checkpoint import resolve_epoch

    prefix = tmp_path / "m"
    for suffix in ("-0001.params", "-0002.params", "-0002.states", "-0003.states"):
        shutil.copyfile(f"{small_reference_run.prefix}{suffix}", f"{prefix}{suffix}")
    (tmp_path / ".m-0003.params.partial-999999").write_bytes(b"\x00" * 10)
    assert resolve_epoch(prefix, which) == 2


def test_folder_data_type_trains_like_its_known_type(small_reference_run, cifar_small_dir, tmp_path):
    """--data-type folder (any packed image folder) with CIFAR's files and shape: --num-classes comes from
    synset.txt, the net and augmentation are CIFAR's, so epoch 1 equals the reference run's bit for bit."""
    flags = [f for f in small_reference_run.flags]
    flags[flags.index("--data-type") + 1] = "folder"
    proc = run_train([*flags, "--train-rec", "cifar10_train.rec", "--val-rec", "cifar10_val.rec",
                      "--image-shape", "3,32,32", "--end-epoch", "1", "--model-prefix", tmp_path / "m"])
    assert proc.returncode == 0, proc.stderr
    assert "num_classes=10" in proc.stdout
    ours, ref = _params(str(tmp_path / "m"), 1), _params(str(small_reference_run.prefix), 1)
    assert sorted(ours) == sorted(ref)
    for key in ref:
        np.testing.assert_array_equal(ours[key], ref[key], err_msg=key)


def test_train_speed_bench_reads_the_speedometer_lines(small_reference_run):
    """bench/train_speed.py's numbers are the Speedometer's: one per "Speed:" line of a real run, in order."""
    bench = load_tool("bench/train_speed.py")
    lines = [line for line in small_reference_run.stdout.splitlines() if "Speed:" in line]
    want = [float(line.split("Speed:")[1].split()[0]) for line in lines]
    assert len(want) >= 3 and all(v > 0 for v in want)
    assert bench.window_speeds(small_reference_run.stdout) == want
    assert bench.parse_config("gluon=--api,gluon") == ("gluon", ["--api", "gluon"])
    assert bench.parse_config("default=") == ("default", [])
    with pytest.raises(Exception, match="NAME=FLAGS"):
        bench.parse_config("--plain-graph")
