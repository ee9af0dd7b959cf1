"""tools/import_weights.py and resnet_toolkit.importer: GluonCV's resnet{50,101,152}_v2 with random weights and random
BN statistics, imported, give GluonCV's outputs through this project's Symbol (as predict loads it) and Gluon net;
the models that cannot be mapped are refused, and shown to differ when mapped naively; bad input is one error line.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import load_tool

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)
from resnet_toolkit.errors import UserError

gluoncv = pytest.importorskip("gluoncv")

ROOT = Path(__file__).resolve().parents[1]
IMPORT = ROOT / "tools" / "import_weights.py"
ENV = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1", PYTHONPATH=str(ROOT))
TOLERANCE = 1e-4


def random_gluoncv(name: str, classes: int, seed: int = 0, eps: float = 1e-5, width: int | None = None):
    """GluonCV's ``name`` with random weights and non-trivial BN statistics, in inference use.

    Weights He-normal, BN gammas U(0.5, 1.5) and betas N(0, 0.1) (the first BN's beta too, which GluonCV keeps at 0:
    the fold into ``bn_data`` must carry it); the running statistics of every BN are those of one batch of
    normalised random images, then perturbed, and a few channels get a variance below GluonCV's epsilon (the clipped
    case of the epsilon conversion). The classifier is scaled so that logits are O(1-10): softmax is not saturated.
    ``width`` builds GluonCV's ResNetV2 class with another first width (a network of the same layers, other shapes).
    """
    import mxnet as mx
    from mxnet import autograd

    norm_kwargs = {"momentum": 0.0, "epsilon": eps}  # momentum 0: the running statistics become the batch's
    if width is None:
        net = gluoncv.model_zoo.get_model(name, classes=classes, norm_kwargs=norm_kwargs)
    else:
        from gluoncv.model_zoo.resnet import BottleneckV2, ResNetV2
        net = ResNetV2(BottleneckV2, [3, 4, 6, 3], [width, width * 4, width * 8, width * 16, width * 32],
                       classes=classes, norm_kwargs=norm_kwargs)
    rng = np.random.RandomState(seed)
    mx.random.seed(seed)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    size = 32 if name.startswith("cifar") else 64
    x = mx.nd.array(rng.normal(0, 1, (2, 3, size, size)))
    net(x)
    params = net._collect_params_with_prefix()
    for key, param in params.items():
        if key.endswith(".gamma") and key != "features.0.gamma":
            param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
        elif key.endswith(".beta"):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, param.shape)))
    with autograd.record(train_mode=True):
        out = net(x)
    out.backward()  # MXNet writes the running statistics in the backward pass
    mx.nd.waitall()
    for key, param in params.items():
        v = param.data().asnumpy()
        if key.endswith(".running_var"):
            param.set_data(mx.nd.array(v * rng.uniform(0.8, 1.25, v.shape)))
        elif key.endswith(".running_mean"):
            param.set_data(mx.nd.array(v + rng.normal(0, 0.05, v.shape)))
    tiny = [k for k in params if k.endswith(".bn2.running_var")][1]
    var = params[tiny].data().asnumpy()
    var[:3] = [0.0, 1e-7, 5e-6]
    params[tiny].set_data(mx.nd.array(var))
    probe = net(mx.nd.array(rng.normal(0, 1, (2, 3, size, size)))).asnumpy()
    weight = params["output.weight"]
    weight.set_data(weight.data() * (5.0 / np.abs(probe).max()))
    return net


def normalise(raw: np.ndarray, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225)) -> np.ndarray:
    """GluonCV's input from raw 0..255 RGB: ``(x / 255 - mean) / std``."""
    return ((raw / 255.0 - np.reshape(mean, (1, 3, 1, 1))) / np.reshape(std, (1, 3, 1, 1))).astype(raw.dtype)


def softmax(logits: np.ndarray) -> np.ndarray:
    e = np.exp(logits - logits.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def close(got: np.ndarray, want: np.ndarray, tolerance: float = TOLERANCE) -> float:
    """Max abs difference, asserted <= ``tolerance`` (relative to the largest value when that exceeds 1)."""
    diff = float(np.abs(got - want).max())
    assert diff <= tolerance * max(1.0, float(np.abs(want).max())), (diff, float(np.abs(want).max()))
    return diff


def images(n: int, size: int, seed: int = 1) -> np.ndarray:
    return np.random.RandomState(seed).uniform(0, 255, (n, 3, size, size)).astype(np.float32)


def fc1_logits(symbol, arg_params, aux_params, raw: np.ndarray, dtype: str = "float32") -> np.ndarray:
    import mxnet as mx

    logits = symbol.get_internals()["fc1_output"]
    exe = logits.simple_bind(mx.cpu(), data=raw.shape, grad_req="null", type_dict={"data": dtype})
    exe.copy_params_from({k: v.astype(dtype) for k, v in arg_params.items()},
                         {k: v.astype(dtype) for k, v in aux_params.items()}, allow_extra_params=True)
    return exe.forward(is_train=False, data=mx.nd.array(raw, dtype=dtype))[0].asnumpy()


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def resnet50(tmp_path_factory):
    """A random GluonCV resnet50_v2 (1000 classes) and its save_parameters file."""
    net = random_gluoncv("resnet50_v2", 1000)
    path = tmp_path_factory.mktemp("gluoncv") / "resnet50_v2.params"
    net.save_parameters(str(path))
    return net, path


# ImageNet size for ResNet-50, ResNet-101 at 64x64 (the same layers, a quarter of the time); ResNet-152 adds only
# more units of the same stages (its layer table is checked against GluonCV's names in test_layer_table_is_gluoncvs).
@pytest.mark.parametrize("name,depth,size", [("resnet50_v2", 50, 224), ("resnet101_v2", 101, 64)])
def test_imported_network_equals_gluoncv(tmp_path, resnet50, name, depth, size):
    import mxnet as mx

    from resnet_toolkit.checkpoint import load_checkpoint
    from resnet_toolkit.importer import import_gluoncv
    from resnet_toolkit.predictor import load_model
    from symbols import get_net
    from symbols.gluon_resnet_v2 import load_symbol_params

    if name == "resnet50_v2":
        net, path = resnet50
    else:
        net = random_gluoncv(name, 1000, seed=depth)
        path = tmp_path / f"{name}.params"
        net.save_parameters(str(path))
    prefix = tmp_path / "model" / "resnet-50"
    check = 1 if name == "resnet50_v2" else 0  # the importer's own check at 224: once is enough
    report = import_gluoncv(name, prefix, params_file=path, check_batch=check)
    assert report.num_classes == 1000 and (report.max_abs_diff is not None) == bool(check)
    assert sorted(p.name for p in prefix.parent.iterdir()) == ["resnet-50-0000.params", "resnet-50-symbol.json"]
    raw = images(3, size)
    want = net(mx.nd.array(normalise(raw))).asnumpy()
    assert np.abs(want).max() > 1.0 and softmax(want).max() < 0.99  # logits neither tiny nor saturating softmax

    # The Symbol as predict loads it: the folded, fused graph and the graph as saved.
    for fast in (True, False):
        model = load_model(prefix, 0, batch_size=3, image_shape=(3, size, size), fused=fast)
        close(model.predict(raw), softmax(want))
    symbol, arg_params, aux_params = load_checkpoint(prefix, 0)
    close(fc1_logits(symbol, arg_params, aux_params, raw), want)
    # The Gluon net of this project with the checkpoint's parameters.
    ours = get_net(1000, depth, "imagenet")
    load_symbol_params(ours, arg_params, aux_params)
    close(ours(mx.nd.array(raw)).asnumpy(), want)


def test_the_mapping_is_exact_in_float64(resnet50):
    """Float rounding is the only difference: with the conversion and both networks in float64 the outputs agree
    to 1e-9 (the epsilon change, the clipped variances and the folded normalisation included)."""
    import mxnet as mx

    from resnet_toolkit.gluoncv_names import convert_params, read_params_file

    net, path = resnet50
    symbol, arg_params, aux_params = convert_params(read_params_file(path), "resnet50_v2", dtype="float64")
    raw = images(2, 64).astype(np.float64)
    ours = fc1_logits(symbol, arg_params, aux_params, raw, dtype="float64")
    reference = gluoncv.model_zoo.get_model("resnet50_v2", classes=1000)
    reference.load_parameters(str(path))
    reference.cast("float64")
    want = reference(mx.nd.array(normalise(raw), dtype="float64")).asnumpy()
    assert np.abs(ours - want).max() < 1e-9 * np.abs(want).max()


def test_bn_epsilon_conversion():
    from resnet_toolkit.gluoncv_names import match_bn_eps

    rng = np.random.RandomState(0)
    gamma, var = rng.uniform(-2, 2, 50), np.concatenate([[0.0, 1e-9, 9.99e-6, 1e-5, 1.01e-5], rng.uniform(0, 3, 45)])
    new_gamma, new_var = match_bn_eps(gamma, var, 1e-5, 2e-5)
    np.testing.assert_allclose(new_gamma / np.sqrt(new_var + 2e-5), gamma / np.sqrt(var + 1e-5), rtol=1e-12)
    assert (new_var >= 0).all()
    unclipped = var >= 1e-5
    assert (new_gamma[unclipped] == gamma[unclipped]).all()  # gamma changes only where the variance clips
    np.testing.assert_allclose(new_var[unclipped], var[unclipped] - 1e-5, rtol=1e-12, atol=1e-18)


def test_legacy_save_params_file_and_net_in_memory(tmp_path, resnet50):
    """The older save_params layout (``stage1_batchnorm0_gamma``...) and a net in memory give the checkpoint the
    save_parameters file gives, bit for bit."""
    import mxnet as mx

    from resnet_toolkit.importer import import_gluoncv

    net, path = resnet50
    legacy = tmp_path / "legacy.params"
    net.collect_params().save(str(legacy), strip_prefix=net.prefix)
    assert not any("." in key for key in mx.nd.load(str(legacy)))
    import_gluoncv("resnet50_v2", tmp_path / "a" / "m", params_file=path, check_batch=0)
    import_gluoncv("resnet50_v2", tmp_path / "b" / "m", params_file=legacy, check_batch=1)
    import_gluoncv("resnet50_v2", tmp_path / "c" / "m", net=net, check_batch=0)
    files = [mx.nd.load(str(tmp_path / d / "m-0000.params")) for d in "abc"]
    assert len(files[0]) == len(net.collect_params().keys()) == 259  # bn_data: gamma, beta, mean, var, as GluonCV's
    for other in files[1:]:
        assert sorted(other) == sorted(files[0])
        for key, value in files[0].items():
            np.testing.assert_array_equal(other[key].asnumpy(), value.asnumpy())
    assert {(tmp_path / d / "m-symbol.json").read_text() for d in "abc"} == {
        (tmp_path / "a" / "m-symbol.json").read_text()}


def test_net_in_memory_with_its_own_epsilon(tmp_path):
    """A GluonCV net built with another BN epsilon: the importer reads each BN's epsilon from the net."""
    import mxnet as mx

    from resnet_toolkit.checkpoint import load_checkpoint
    from resnet_toolkit.importer import import_gluoncv

    net = random_gluoncv("resnet50_v2", 10, seed=5, eps=1e-3)
    report = import_gluoncv("resnet50_v2", tmp_path / "m", net=net, check_batch=1)
    assert report.num_classes == 10
    raw = images(2, 64)
    close(fc1_logits(*load_checkpoint(tmp_path / "m", 0), raw), net(mx.nd.array(normalise(raw))).asnumpy())


def test_other_normalisation_is_folded(tmp_path, resnet50):
    """--mean/--std: a network trained on other normalisation statistics still equals GluonCV's on that input."""
    import mxnet as mx

    from resnet_toolkit.checkpoint import load_checkpoint
    from resnet_toolkit.importer import import_gluoncv

    net, path = resnet50
    mean, std = (0.5, 0.4, 0.3), (0.25, 0.3, 0.2)
    import_gluoncv("resnet50_v2", tmp_path / "m", params_file=path, rgb_mean=mean, rgb_std=std, check_batch=1)
    raw = images(2, 64)
    want = net(mx.nd.array(normalise(raw, mean, std))).asnumpy()
    close(fc1_logits(*load_checkpoint(tmp_path / "m", 0), raw), want)


@pytest.mark.parametrize("name", ["resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2",
                                  "cifar_resnet20_v2", "cifar_resnet56_v2", "cifar_resnet110_v2"])
def test_layer_table_is_gluoncvs(name):
    """Both of Gluon's naming layouts, as GluonCV's own network names its parameters (no forward pass)."""
    from resnet_toolkit.gluoncv_names import gluoncv_layers, parse_gluoncv_model
    from symbols import parse_model_name

    net = gluoncv.model_zoo.get_model(name)
    structural = {id(p): key for key, p in net._collect_params_with_prefix().items()}
    theirs = [(full[len(net.prefix):], structural[id(p)]) for full, p in net.collect_params().items()]
    ours = [(f"{layer.legacy}_{f}", f"{layer.gluon}.{f}") for layer in gluoncv_layers(*parse_model_name(name))
            for f in layer.fields()]
    assert sorted(ours) == sorted(theirs)
    if name in ("resnet50_v2", "resnet101_v2", "resnet152_v2"):
        assert parse_gluoncv_model(name) == parse_model_name(name)
    else:
        with pytest.raises(UserError, match="cannot be mapped exactly"):
            parse_gluoncv_model(name)


@pytest.mark.parametrize("name,depth,net_type", [("resnet18_v2", 18, "imagenet"),
                                                  ("cifar_resnet20_v2", 20, "cifar10")])
def test_refused_models_differ_when_mapped_naively(name, depth, net_type):
    """Why resnet18/34_v2 and the CIFAR v2 networks are refused: the closest mapping (every layer copied, an identity
    matrix for the projection GluonCV lacks, GluonCV's projection of x taken as the projection of relu(bn1(x)))
    does not give GluonCV's outputs, because this network's first unit of a stage cannot see x past the ReLU."""
    import mxnet as mx

    from resnet_toolkit.gluoncv_names import map_arrays
    from symbols import get_symbol

    classes = 10 if net_type == "cifar10" else 1000
    net = random_gluoncv(name, classes)
    mean, std = ((0.4914, 0.4822, 0.4465), (0.2023, 0.1994, 0.2010)) if net_type == "cifar10" else (
        (0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
    params = {k: p.data() for k, p in net._collect_params_with_prefix().items()}
    ours = map_arrays(params, net_type, depth, rgb_mean=mean, rgb_std=std)
    width = ours["stage1_unit1_conv1_weight"].shape[1]
    assert "stage1_unit1_sc_weight" not in ours
    ours["stage1_unit1_sc_weight"] = np.eye(width).reshape(width, width, 1, 1)
    symbol = get_symbol(classes, depth, net_type)
    arg = {k: mx.nd.array(v) for k, v in ours.items() if not k.endswith(("moving_mean", "moving_var"))}
    aux = {k: mx.nd.array(v) for k, v in ours.items() if k.endswith(("moving_mean", "moving_var"))}
    size = 32 if net_type == "cifar10" else 64
    raw = images(4, size)
    want = net(mx.nd.array(normalise(raw, mean, std))).asnumpy()
    got = fc1_logits(symbol, arg, aux, raw)
    assert np.abs(got - want).max() > 0.05 * np.abs(want).max()


# ---- the command line: bad input is one error line, exit status 2, nothing written ----

def run(*args) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(IMPORT), *map(str, args)], capture_output=True, text=True, env=ENV,
                          timeout=300)


def fails_with(proc: subprocess.CompletedProcess, message: str) -> None:
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith("import_weights.py: error: ") and message in lines[0], lines[0]
    assert proc.stdout == ""


@pytest.fixture(scope="module")
def files(tmp_path_factory, resnet50):
    """The resnet50_v2 file, a half-width network's file (same layers, every shape different), a resnet101_v2
    file, a corrupt file and an existing import in ``out/``."""
    import mxnet as mx

    from resnet_toolkit.importer import import_gluoncv

    root = tmp_path_factory.mktemp("import_cli")
    _, good = resnet50
    half = random_gluoncv("resnet50_v2", 1000, width=32)
    half.save_parameters(str(root / "half.params"))
    deeper = gluoncv.model_zoo.get_model("resnet101_v2")
    deeper.initialize()
    deeper(mx.nd.zeros((1, 3, 32, 32)))
    deeper.save_parameters(str(root / "resnet101_v2.params"))
    (root / "corrupt.params").write_bytes(good.read_bytes()[:5000])
    import_gluoncv("resnet50_v2", root / "out" / "resnet-50", params_file=good, check_batch=0)
    return root, good


def test_cli_writes_a_checkpoint_predict_reads(tmp_path, files, capsys):
    root, good = files
    proc = run("--model", "resnet50_v2", "--params", good, "--out", tmp_path / "resnet-50", "--check-batch", "1")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"wrote {tmp_path / 'resnet-50-symbol.json'} and "
                                  f"{tmp_path / 'resnet-50-0000.params'}: GluonCV resnet50_v2, 1000 classes")
    assert "max abs logit diff" in proc.stdout
    import cv2

    cv2.imwrite(str(tmp_path / "cat.png"), np.random.RandomState(0).randint(0, 256, (300, 400, 3), np.uint8))
    predict = load_tool("predict/predict.py")
    assert predict.main(["--prefix", str(tmp_path / "resnet-50"), "--img", str(tmp_path / "cat.png"),
                         "--top-k", "2", "--batch-size", "1"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == str(tmp_path / "cat.png") and out[1].startswith("0: class = ")  # ImageNet names


@pytest.mark.parametrize("case", ["missing file", "corrupt file", "shape mismatch everywhere", "another model",
                                  "unknown model", "refused model", "exists", "num classes", "symbol checkpoint",
                                  "other epochs", "parent is a file"])
def test_cli_bad_input(files, case):
    root, good = files
    out = root / "new" / "resnet-50"
    args = {"missing file": ("resnet50_v2", root / "nope.params", out),
            "corrupt file": ("resnet50_v2", root / "corrupt.params", out),
            "shape mismatch everywhere": ("resnet50_v2", root / "half.params", out),
            "another model": ("resnet50_v2", root / "resnet101_v2.params", out),
            "unknown model": ("resnet51_v2", good, out),
            "refused model": ("cifar_resnet20_v2", good, out),
            "exists": ("resnet50_v2", good, root / "out" / "resnet-50"),
            "num classes": ("resnet50_v2", good, out, "--num-classes", 10),
            "symbol checkpoint": ("resnet50_v2", root / "out" / "resnet-50-0000.params", out),
            "other epochs": ("resnet50_v2", good, root / "trained" / "m", "--force"),
            "parent is a file": ("resnet50_v2", good, root / "half.params" / "m")}[case]
    message = {
        "missing file": f"{root / 'nope.params'}: no such file",
        "corrupt file": f"{root / 'corrupt.params'}: not an MXNet parameter file (truncated or corrupt)",
        "shape mismatch everywhere": f"{root / 'half.params'} is not GluonCV's resnet50_v2: 254 of its 259 "
                                     "parameters have other shapes (first: features.1.weight (32, 3, 7, 7), "
                                     "resnet50_v2 needs (64, 3, 7, 7))",
        "another model": f"{root / 'resnet101_v2.params'} is not GluonCV's resnet50_v2: it has 255 parameters "
                         "resnet50_v2 does not (first: features.7.6.bn1.gamma)",
        "unknown model": "unknown GluonCV model 'resnet51_v2'; models that map onto this project's networks: "
                         "resnet50_v2, resnet101_v2, resnet152_v2",
        "refused model": "GluonCV's cifar_resnet20_v2 cannot be mapped exactly onto this project's network: "
                         "GluonCV's CIFAR v2 units add their input x unchanged",
        "exists": f"{root / 'out' / 'resnet-50-symbol.json'} and {root / 'out' / 'resnet-50-0000.params'} already "
                  "exist; --force replaces them",
        "num classes": f"--num-classes 10 does not match {good}: its classifier has 1000 outputs",
        "symbol checkpoint": "a Symbol checkpoint (arg:/aux: keys), not a Gluon parameter file",
        "other epochs": f"{root / 'trained' / 'm'} already has checkpoints of epochs 3",
        "parent is a file": f"{root / 'half.params'} is not a directory",
    }[case]
    if case == "other epochs":
        (root / "trained").mkdir(exist_ok=True)
        (root / "trained" / "m-0003.params").write_bytes(b"a training's epoch")
    model, params, prefix, *extra = args
    before = snapshot(root)
    fails_with(run("--model", model, "--params", params, "--out", prefix, *extra), message)
    assert snapshot(root) == before
    assert not (root / "new").exists()


def test_cli_force_replaces_an_earlier_import(tmp_path, resnet50):
    import mxnet as mx

    _, good = resnet50
    prefix = tmp_path / "resnet-50"
    (tmp_path / "resnet-50-symbol.json").write_text("old")
    (tmp_path / "resnet-50-0000.params").write_bytes(b"old")
    proc = run("--model", "resnet50_v2", "--params", good, "--out", prefix, "--force", "--check-batch", "0")
    assert proc.returncode == 0, proc.stderr
    assert "max abs" not in proc.stdout
    assert len(mx.nd.load(str(tmp_path / "resnet-50-0000.params"))) == 259
    assert sorted(p.name for p in tmp_path.iterdir()) == ["resnet-50-0000.params", "resnet-50-symbol.json"]


def test_a_failed_check_writes_nothing(tmp_path, resnet50, monkeypatch):
    """The check against GluonCV guards the write: a conversion that went wrong is refused."""
    from resnet_toolkit import gluoncv_names, importer

    _, good = resnet50
    real = gluoncv_names.map_arrays

    def broken(*args, **kwargs):
        arrays = real(*args, **kwargs)
        arrays["stage3_unit2_bn1_beta"] = arrays["stage3_unit2_bn1_beta"] + 0.1
        return arrays

    monkeypatch.setattr(gluoncv_names, "map_arrays", broken)  # convert_params looks it up there
    with pytest.raises(UserError, match=r"logits differ from GluonCV's by .* on random images \(> .*\); nothing "
                                        "written"):
        importer.import_gluoncv("resnet50_v2", tmp_path / "m", params_file=good, check_batch=1)
    assert list(tmp_path.iterdir()) == []


def test_uninitialised_net_is_refused(tmp_path):
    from resnet_toolkit.importer import import_gluoncv

    net = gluoncv.model_zoo.get_model("resnet50_v2")
    with pytest.raises(UserError, match=r"parameter features.0.gamma is not initialised \(run it on a batch first\)"):
        import_gluoncv("resnet50_v2", tmp_path / "m", net=net)
    assert list(tmp_path.iterdir()) == []
