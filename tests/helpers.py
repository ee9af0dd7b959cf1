"""Helpers the tests share: where the project and the real data live, running its scripts, small training runs,
random-weight checkpoints and parameters, and assertions several test files make. Fixtures stay in conftest.py."""
from __future__ import annotations

import hashlib
import importlib.util
import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

import resnet_toolkit  # noqa: F401  (numpy compatibility before mxnet)

if TYPE_CHECKING:
    import mxnet as mx

#: The project's root folder.
ROOT = Path(__file__).resolve().parents[1]
#: The real data beside the project (``../shared/data``, or ``$RESNETV2_SHARED_DATA``).
SHARED_DATA = Path(os.environ.get("RESNETV2_SHARED_DATA", ROOT.parent / "shared" / "data"))
#: The CIFAR-10 tarball (JPEGs) in the real data.
CIFAR_TAR = SHARED_DATA / "cifar10-jpg.tar.gz"
#: CIFAR-10 in the official python-batch format, every pixel the original arrays' (lossless).
CIFAR_PY = SHARED_DATA / "cifar-10-python.tar.gz"
#: The folder of real photos in the real data.
PHOTOS = SHARED_DATA / "photos"
#: 2,000 ImageNet photographs of 10 classes at 224x224 (Imagenette's split) with classes.txt naming them.
IMAGENETTE = SHARED_DATA / "imagenette-224-subset.tar.gz"


def need(path: Path) -> Path:
    """Skip the calling test, with the reason, when ``path`` is absent."""
    if not path.exists():
        pytest.skip(f"real data not found at {path} (../shared/data beside the project)")
    return path


def need_feature(name: str):
    """Skip the calling test, with oneDNN's reason, when ``name`` (a :data:`resnet_toolkit.capability.FEATURES`
    entry) does not run on this CPU (e.g. 'bfloat16' on an AVX2-only one); returns the capabilities otherwise."""
    from resnet_toolkit.capability import probe

    caps = probe()
    if not caps.supports(name):
        pytest.skip(f"{name} does not run here: oneDNN runs {caps.isa_words()} ({caps.errors.get(name, '')})")
    return caps


def run_wrapper(argv: list, capsys) -> tuple[int, str, str]:
    """Run ``tools/im2rec_wrapper.py`` in-process (argv items may be paths): (exit code, stdout, stderr)."""
    from resnet_toolkit.errors import run_cli

    spec = importlib.util.spec_from_file_location("im2rec_wrapper", ROOT / "tools" / "im2rec_wrapper.py")
    wrapper = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(wrapper)
    with pytest.raises(SystemExit) as exc:
        run_cli(wrapper.main, [str(a) for a in argv])
    captured = capsys.readouterr()
    return exc.value.code, captured.out, captured.err


def load_tool(relpath: str):
    """Import a script of this project (``tools/score.py``, ``log/plot_curve.py``...) as a module."""
    path = ROOT / relpath
    name = f"_tool_{path.stem}"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, path)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up there
        spec.loader.exec_module(module)
    return sys.modules[name]


#: The environment the after-training tools run under in a subprocess: one OpenMP and one engine thread.
ENV = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")


# Settings under which two training runs are bitwise identical (measured on MXNet 1.9.1 CPU + MKLDNN): one OpenMP
# thread (no reduction-order races in MKLDNN's convolution backward), the synchronous NaiveEngine, and
# --preprocess-threads 1 with a per-epoch --seed (the iterator's shuffle and per-image augmentation are seeded).
DETERMINISTIC_ENV = {"OMP_NUM_THREADS": "1", "MXNET_ENGINE_TYPE": "NaiveEngine", "MXNET_CPU_WORKER_NTHREADS": "1"}


def run_train(argv, cwd=None, env=None, timeout: float = 600):
    """Run ``train_resnet.py argv`` in a fresh process with :data:`DETERMINISTIC_ENV`; returns the
    ``subprocess.CompletedProcess`` (text stdout/stderr)."""
    full_env = dict(os.environ, **DETERMINISTIC_ENV, **(env or {}))
    return subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), *map(str, argv)], capture_output=True,
                          text=True, env=full_env, cwd=cwd, timeout=timeout)


#: ResNet-8 on a cut-down CIFAR-10 (add --data-dir): the short runs the resume, kill and bad-input tests make.
SMALL_TRAIN_FLAGS = ["--data-type", "cifar10", "--depth", "8", "--batch-size", "32", "--lr-steps", "2",
                     "--preprocess-threads", "1", "--frequent", "5", "--seed", "1"]

#: The flags of the ``trained_cifar`` fixture's run: ResNet-20, 2 epochs of 10,000 images (add --data-dir).
TRAINED_CIFAR_FLAGS = ["--data-type", "cifar10", "--depth", "20", "--batch-size", "64", "--num-examples", "10000",
                       "--end-epoch", "2", "--lr", "0.1", "--seed", "3", "--frequent", "40"]


def train_digits_model(digits_dir: Path, prefix: Path, epochs: int) -> str:
    """ResNet-8 trained by train_resnet.py on the digits (lr 0.1, x0.1 after epoch 3, seed 0, one thread) into
    ``prefix``; returns the prefix. Measured on the 360 held-out images: 77 % after 2 epochs, 96 % after 4."""
    env = dict(os.environ, OMP_NUM_THREADS="1", MXNET_CPU_WORKER_NTHREADS="1")
    proc = subprocess.run([sys.executable, str(ROOT / "train_resnet.py"), "--data-type", "digits", "--data-dir",
                           str(digits_dir), "--depth", "8", "--batch-size", "32", "--end-epoch", str(epochs),
                           "--lr", "0.1", "--lr-steps", "3", "--preprocess-threads", "1", "--seed", "0",
                           "--frequent", "1000", "--model-prefix", str(prefix)],
                          capture_output=True, text=True, env=env, cwd=prefix.parent, timeout=600)
    if proc.returncode != 0:
        raise RuntimeError(f"train_resnet.py failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return str(prefix)


def copy_records(src_rec: Path, dst_rec: Path, count: int) -> None:
    """Write the first ``count`` records of ``src_rec`` (and an ``.idx``) to ``dst_rec``, unchanged."""
    import mxnet as mx

    reader = mx.recordio.MXIndexedRecordIO(str(src_rec.with_suffix(".idx")), str(src_rec), "r")
    writer = mx.recordio.MXIndexedRecordIO(str(dst_rec.with_suffix(".idx")), str(dst_rec), "w")
    for i, key in enumerate(reader.keys[:count]):
        writer.write_idx(i, reader.read_idx(key))
    writer.close()
    reader.close()


def held_out_subset(val_rec: Path, out: Path, count: int, stride: int) -> tuple[Path, Path, list[int]]:
    """Copy every ``stride``-th record of ``val_rec`` (up to ``count``) unchanged into ``out/subset.rec`` (+ .idx)
    and its JPEG bytes into ``out/images/NNNN.jpg``; return (rec, image folder, labels)."""
    import mxnet as mx

    src = mx.recordio.MXIndexedRecordIO(str(val_rec.with_suffix(".idx")), str(val_rec), "r")
    images = out / "images"
    images.mkdir(parents=True)
    dst = mx.recordio.MXIndexedRecordIO(str(out / "subset.idx"), str(out / "subset.rec"), "w")
    labels = []
    for i, key in enumerate(src.keys[::stride][:count]):
        item = src.read_idx(key)
        header, jpeg = mx.recordio.unpack(item)
        dst.write_idx(i, item)
        (images / f"{i:04d}.jpg").write_bytes(jpeg)
        labels.append(int(header.label))
    src.close()
    dst.close()
    return out / "subset.rec", images, labels


def random_checkpoint(prefix: Path, depth: int, net_type: str, num_classes: int, epoch: int = 1,
                      seed: int = 0, calibrate: bool = True, **network) -> str:
    """Save a checkpoint ``prefix``/``epoch`` of a random-weight ResNet-v2 (or the family ``network`` names:
    ``network='resnext', cardinality=32``, ...) as training would (Symbol ending in SoftmaxOutput,
    ``arg:``/``aux:`` params) and return the prefix.

    With ``calibrate`` the BN running statistics are those of one batch of random images (then perturbed), with
    random BN gammas and betas: nonzero, non-trivial statistics whose outputs are not saturated, so that
    comparing two engines' probabilities means something. Without, MXNet's default init (mean 0, var 1).
    """
    import mxnet as mx

    from symbols import get_symbol

    size = 112 if net_type == "imagenet" else 32  # statistics of half-size images: 4x cheaper, close enough
    rng = np.random.RandomState(seed)
    # bn_mom 0: the running statistics become exactly this batch's (MXNet updates them in backward).
    exe = get_symbol(num_classes, depth, net_type, bn_mom=0.0, **network).simple_bind(
        mx.cpu(), data=(2, 3, size, size), softmax_label=(2,), grad_req="write" if calibrate else "null")
    init = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    mx.random.seed(seed)
    for name, arr in exe.arg_dict.items():
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_gamma"):
            arr[:] = rng.uniform(0.5, 1.5, arr.shape) if calibrate and name != "bn_data_gamma" else 1.0
        elif name.endswith(("_beta", "_bias")):
            arr[:] = rng.normal(0, 0.1, arr.shape) if calibrate else 0.0
        else:
            init(mx.init.InitDesc(name), arr)
    for name, arr in exe.aux_dict.items():
        arr[:] = 1.0 if name.endswith("_var") else 0.0
    if calibrate:
        exe.arg_dict["data"][:] = rng.uniform(0, 255, (2, 3, size, size))
        exe.forward(is_train=True)
        exe.backward()
        mx.nd.waitall()  # the running statistics are written in backward, outside the dependency tracking
    arg = {k: v.copy() for k, v in exe.arg_dict.items() if k not in ("data", "softmax_label")}
    aux = {}
    for name, arr in exe.aux_dict.items():
        v = arr.asnumpy()
        if calibrate:
            v = v * rng.uniform(0.8, 1.25, v.shape) if name.endswith("_var") else v + rng.normal(0, 0.05, v.shape)
        aux[name] = mx.nd.array(v)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    mx.model.save_checkpoint(str(prefix), epoch, get_symbol(num_classes, depth, net_type, **network), arg, aux)
    return str(prefix)


def random_params(sym: mx.sym.Symbol, data_shape, seed: int = 0):
    """Random arg/aux params for ``sym``; BN running statistics away from 0/1 so inference mode is exercised."""
    import mxnet as mx

    rng = np.random.RandomState(seed)
    arg_shapes, _, aux_shapes = sym.infer_shape(data=data_shape)
    args = {}
    for name, shape in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        if name.endswith("_weight"):
            fan_in = int(np.prod(shape[1:]))
            args[name] = mx.nd.array(rng.normal(0, np.sqrt(2.0 / fan_in), shape))
        elif name.endswith("_gamma"):
            args[name] = mx.nd.array(rng.uniform(0.5, 1.5, shape))
        else:
            args[name] = mx.nd.array(rng.normal(0, 0.1, shape))
    aux = {}
    for name, shape in zip(sym.list_auxiliary_states(), aux_shapes):
        aux[name] = mx.nd.array(rng.uniform(0.5, 2.0, shape) if name.endswith("_var") else rng.normal(0, 0.2, shape))
    return args, aux


def snapshot(*folders: Path) -> dict[str, str]:
    """sha256 of every file under ``folders`` (a partial file left behind would show up too)."""
    return {str(p): hashlib.sha256(p.read_bytes()).hexdigest()
            for folder in folders for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_same_params(a: dict, b: dict) -> None:
    """``a`` and ``b`` (name -> NDArray) hold the same names and bit-identical values."""
    assert sorted(a) == sorted(b)
    for key in a:
        np.testing.assert_array_equal(a[key].asnumpy(), b[key].asnumpy(), err_msg=key)


#: The relative tolerance of :func:`close`.
RTOL = 1e-4


def close(a, b, rtol: float = RTOL) -> bool:
    """``a`` equals ``b`` within ``rtol`` of ``b``'s largest magnitude (elementwise)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rtol * max(1.0, float(np.abs(b).max()))


def assert_gluon_training_block_same_step(make_net, data, label) -> None:
    """One NAG step of ``make_net()`` (fresh, Xavier-initialised from the same seed) through
    ``fastpath.hybridize_for_training`` and through the plain hybridized net: the same loss, gradients, and
    parameters after the update (weights and running statistics, through the shared Parameters)."""
    import mxnet as mx
    from mxnet import autograd, gluon

    from resnet_toolkit import fastpath

    results = []
    for fast in (False, True):
        mx.random.seed(11)
        net = make_net()
        net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
        block = fastpath.hybridize_for_training(net, data.shape) if fast else net
        if not fast:
            net.hybridize()
        trainer = gluon.Trainer(net.collect_params(), "nag", {"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4})
        with autograd.record():
            loss = gluon.loss.SoftmaxCrossEntropyLoss()(block(data), label)
        loss.backward()
        grads = {k: p.grad().asnumpy() for k, p in net.collect_params().items() if p.grad_req != "null"}
        trainer.step(data.shape[0])
        params = {k: p.data().asnumpy() for k, p in net.collect_params().items()}
        results.append((loss.asnumpy(), grads, params))
    (loss0, grads0, params0), (loss1, grads1, params1) = results
    assert close(loss1, loss0)
    assert grads0.keys() == grads1.keys()
    for name in grads0:
        assert close(grads1[name], grads0[name]), name
    for name in params0:
        assert close(params1[name], params0[name]), name


def assert_plan_keeps_gradients(sym, shape: tuple, seed: int) -> None:
    """``memonger.search_plan(sym)`` saves planned memory, and one forward/backward on the same random inputs gives
    the same outputs (1e-6) and gradients (1e-5) as ``sym`` itself; the gradients compared are not all zero."""
    import mxnet as mx

    from symbols import memonger

    plan = memonger.search_plan(sym, data=shape)
    assert memonger.planned_memory_mb(plan, data=shape) < memonger.planned_memory_mb(sym, data=shape)
    rng = np.random.RandomState(seed)
    plain = sym.simple_bind(mx.cpu(), grad_req="write", data=shape)
    mirrored = plan.simple_bind(mx.cpu(), grad_req="write", data=shape)
    for name, array in plain.arg_dict.items():
        if name == "softmax_label":
            array[:] = rng.randint(0, 10, array.shape)
        elif name == "data":
            array[:] = rng.uniform(0, 255, array.shape)
        else:
            array[:] = rng.normal(0, 0.1, array.shape)
        mirrored.arg_dict[name][:] = array
    for name, array in plain.aux_dict.items():
        array[:] = rng.uniform(0.5, 1.5, array.shape)
        mirrored.aux_dict[name][:] = array
    for executor in (plain, mirrored):
        executor.forward(is_train=True)
        executor.backward()
    mx.nd.waitall()
    np.testing.assert_allclose(mirrored.outputs[0].asnumpy(), plain.outputs[0].asnumpy(), rtol=0, atol=1e-6)
    largest = 0.0
    for name, grad in plain.grad_dict.items():
        diff = np.abs(mirrored.grad_dict[name].asnumpy() - grad.asnumpy()).max()
        assert diff < 1e-5, name
        largest = max(largest, float(np.abs(grad.asnumpy()).max()))
    assert largest > 1e-3


# The original's format (MXNet 2016): per-batch lines carry Train-accuracy, "INFO:root:" prefix. The run is killed
# during epoch 2, then restarted from the epoch-1 checkpoint (Epoch[1] again) and appended to the same log.
CLASSIC_WITH_RESTART = """\
INFO:root:Start training with [gpu(0), gpu(1)]
INFO:root:Epoch[0] Batch [50]\tSpeed: 707.55 samples/sec\tTrain-accuracy=0.198750
INFO:root:Epoch[0] Batch [100]\tSpeed: 710.01 samples/sec\tTrain-accuracy=0.281250
INFO:root:Epoch[0] Resetting Data Iterator
INFO:root:Epoch[0] Time cost=70.421
INFO:root:Saved checkpoint to "model/resnet-cifar10-164-0-0001.params"
INFO:root:Epoch[0] Validation-accuracy=0.402670
INFO:root:Epoch[1] Batch [50]\tSpeed: 705.00 samples/sec\tTrain-accuracy=0.401250
INFO:root:Epoch[1] Batch [100]\tSpeed: 706.00 samples/sec\tTrain-accuracy=0.451250
INFO:root:Epoch[1] Time cost=69.900
INFO:root:Epoch[1] Validation-accuracy=0.502670
INFO:root:Epoch[2] Batch [50]\tSpeed: 704.00 samples/sec\tTrain-accuracy=0.551250
INFO:root:Start training with [gpu(0), gpu(1)]
INFO:root:Epoch[1] Batch [50]\tSpeed: 600.00 samples/sec\tTrain-accuracy=0.411250
INFO:root:Epoch[1] Batch [100]\tSpeed: 601.00 samples/sec\tTrain-accuracy=0.461250
INFO:root:Epoch[1] Time cost=80.000
INFO:root:Epoch[1] Validation-accuracy=0.512670
INFO:root:Epoch[2] Batch [50]\tSpeed: 602.00 samples/sec\tTrain-accuracy=0.561250
INFO:root:Epoch[2] Batch [100]\tSpeed: 603.00 samples/sec\tTrain-accuracy=0.571250
INFO:root:Epoch[2] Time cost=81.000
INFO:root:Epoch[2] Validation-accuracy=0.602670
"""


def train_fails(argv, capsys) -> str:
    """Run ``train_resnet.py`` in-process with ``argv``; assert exit 2 and exactly one ``error:`` line on stderr;
    return the message after ``error: ``."""
    from resnet_toolkit.errors import run_cli
    from train_resnet import main

    with pytest.raises(SystemExit) as exc:
        run_cli(main, [str(a) for a in argv])
    err = capsys.readouterr().err.strip().splitlines()
    assert exc.value.code == 2
    assert len(err) == 1 and ": error: " in err[0] and "Traceback" not in err[0], err
    return err[0].split(": error: ", 1)[1]
