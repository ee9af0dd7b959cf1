"""The memory planner: same arithmetic, less memory, on every depth of the table."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import cv2
import mxnet as mx
import numpy as np
import pytest
from helpers import assert_plan_keeps_gradients

from resnet_toolkit.errors import UserError
from symbols import get_symbol, memonger
from symbols.spec import CIFAR_NAMED_DEPTHS, IMAGENET_UNITS, get_spec

CIFAR_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def _mirroring(sym: mx.sym.Symbol) -> dict[str, str]:
    """node name -> its force_mirroring value, for nodes that have one."""
    nodes = json.loads(sym.tojson())["nodes"]
    return {n["name"]: n["attrs"]["__force_mirroring__"] for n in nodes if "__force_mirroring__" in n.get("attrs", {})}


def _cifar_batches(tar_path, count: int, batch: int) -> list[mx.io.DataBatch]:
    """``count`` batches of real CIFAR-10 training images (raw RGB 0..255, NCHW) with their labels."""
    images, labels = [], []
    with tarfile.open(tar_path) as tar:
        for member in tar:
            if member.isfile() and member.name.startswith("train/") and member.name.endswith(".jpg"):
                raw = np.frombuffer(tar.extractfile(member).read(), np.uint8)
                images.append(cv2.cvtColor(cv2.imdecode(raw, cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB).transpose(2, 0, 1))
                labels.append(CIFAR_CLASSES.index(member.name.split("/")[1]))
                if len(images) == count * batch:
                    break
    data = np.stack(images).astype(np.float32)
    return [mx.io.DataBatch([mx.nd.array(data[i * batch:(i + 1) * batch])],
                            [mx.nd.array(labels[i * batch:(i + 1) * batch])]) for i in range(count)]


@pytest.mark.parametrize("depth,batch", [(20, 8), (164, 4)])
def test_gradients_equal_with_and_without_plan(depth, batch):
    assert_plan_keeps_gradients(get_symbol(10, depth, "cifar10", memonger=True), (batch, 3, 32, 32), seed=depth)


_NO_MKLDNN_SCRIPT = r"""
import json, resnet_toolkit, mxnet as mx, numpy as np
from symbols import get_symbol, memonger
shape = (4, 3, 32, 32)
sym = get_symbol(10, 56, "cifar10", memonger=True)
plan = memonger.search_plan(sym, data=shape)
rng = np.random.RandomState(0)
grads = []
for network in (sym, plan):
    ex = network.simple_bind(mx.cpu(), grad_req="write", data=shape)
    for name, array in ex.arg_dict.items():
        array[:] = (rng.randint(0, 10, array.shape) if name == "softmax_label" else rng.normal(0, 0.1, array.shape))
    rng = np.random.RandomState(0)
    ex.forward(is_train=True)
    ex.backward()
    mx.nd.waitall()
    grads.append({k: v.asnumpy() for k, v in ex.grad_dict.items()})
print(json.dumps({"mkldnn": memonger.mkldnn_active(),
                  "diff": max(float(np.abs(grads[0][k] - grads[1][k]).max()) for k in grads[0]),
                  "planned": [memonger.planned_memory_mb(s, data=shape) for s in (sym, plan)]}))
"""


def test_plan_runs_without_mkldnn():
    """MXNet's own convolution (as on GPU builds) rejects a recomputation nobody reads: the plan avoids it."""
    env = {**os.environ, "MXNET_MKLDNN_ENABLED": "0", "MXNET_STORAGE_FALLBACK_LOG_VERBOSE": "0"}
    out = subprocess.run([sys.executable, "-c", _NO_MKLDNN_SCRIPT], capture_output=True, text=True, env=env,
                         timeout=300)
    assert out.returncode == 0, out.stderr[-1500:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["mkldnn"] is False
    assert result["diff"] < 1e-5
    assert result["planned"][1] < result["planned"][0]


def test_short_training_reaches_same_parameters(cifar_tar):
    """Three NAG steps of CIFAR ResNet-164 on real images: parameters and BN statistics identical."""
    batch = 8
    shape = (batch, 3, 32, 32)
    batches = _cifar_batches(cifar_tar, 3, batch)
    sym = get_symbol(10, 164, "cifar10", memonger=True)
    results = []
    for network in (sym, memonger.search_plan(sym, data=shape)):
        mx.random.seed(7)
        module = mx.mod.Module(network, context=mx.cpu())
        module.bind(data_shapes=[("data", shape)], label_shapes=[("softmax_label", (batch,))])
        module.init_params(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
        start = {k: v.asnumpy().copy() for k, v in module.get_params()[0].items()}
        module.init_optimizer(optimizer="nag", optimizer_params={
            "learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4, "rescale_grad": 1.0 / batch})
        for data_batch in batches:
            module.forward_backward(data_batch)
            module.update()
        mx.nd.waitall()  # BatchNorm's moving statistics are written behind the engine's back: wait for them
        args, aux = module.get_params()
        results.append(({k: v.asnumpy() for k, v in args.items()}, {k: v.asnumpy() for k, v in aux.items()}, start))
    (args0, aux0, start0), (args1, aux1, start1) = results
    assert all(np.array_equal(start0[k], start1[k]) for k in start0)
    assert max(np.abs(args0[k] - start0[k]).max() for k in args0) > 1e-3  # training moved the weights
    for name in args0:
        assert np.abs(args1[name] - args0[name]).max() < 1e-5, name
    for name in aux0:
        assert np.abs(aux1[name] - aux0[name]).max() < 1e-5, name


def _every_depth():
    return ([("imagenet", d, (2, 3, 224, 224)) for d in IMAGENET_UNITS]
            + [("cifar10", d, (2, 3, 32, 32)) for d in CIFAR_NAMED_DEPTHS])


@pytest.mark.parametrize("net_type,depth,shape", _every_depth())
def test_planner_on_every_depth(net_type, depth, shape):
    """Shape inference only (no bind): the hinted split points are exactly the sums that end a unit followed by
    an identity unit, and every budget gives a valid plan."""
    spec = get_spec(net_type, depth)
    sym = get_symbol(10, depth, net_type, memonger=True)
    graph = memonger._graph(sym, {"data": shape}, None)
    split = memonger.candidates(graph)
    names = [graph.nodes[i]["name"] for i in split]
    expected = [f"stage{s + 1}_unit{u + 1}_plus" for s, n in enumerate(spec.units) for u in range(n - 1)]
    assert names == expected
    total_mb = sum(graph.nbytes) / memonger.MB
    keep_all = memonger.plan_for_budget(graph, split, 0.0)
    keep_none = memonger.plan_for_budget(graph, split, total_mb)
    assert keep_all.kept == tuple(expected) and keep_none.kept == ()
    assert keep_none.max_segment_mb == pytest.approx(total_mb)
    middle = memonger.plan_for_budget(graph, split, (keep_all.kept_mb * keep_all.max_segment_mb) ** 0.5)
    assert set(middle.kept) <= set(expected)
    assert keep_all.max_segment_mb <= middle.max_segment_mb <= total_mb
    mirroring = _mirroring(memonger.apply_plan(sym, middle.kept, mirror_unread=True))
    ops = [n["name"] for n in graph.nodes if n["op"] != "null"]
    assert sorted(mirroring) == sorted(ops)
    assert sorted(k for k, v in mirroring.items() if v == "False") == sorted(middle.kept)
    # Without MKLDNN a kept sum's operands that nothing else reads are not mirrored: the body's last conv, and
    # on a stage's first unit the projection shortcut (an identity shortcut is read by the unit's bn1 too).
    safe = _mirroring(memonger.apply_plan(sym, middle.kept, mirror_unread=False))
    last_conv = "conv3" if spec.bottleneck else "conv2"
    expected_false = set(middle.kept)
    for kept in middle.kept:
        unit = kept[: -len("_plus")]
        expected_false |= {f"{unit}_{last_conv}"} | ({f"{unit}_sc"} if unit.endswith("_unit1") else set())
    assert sorted(k for k, v in safe.items() if v == "False") == sorted(expected_false)


def test_tiny_depth_returns_a_plan_that_saves_nothing():
    """CIFAR ResNet-8 has one unit per stage: no hinted split point, so no mirroring and the same memory."""
    shape = (4, 3, 32, 32)
    sym = get_symbol(10, 8, "cifar10", memonger=True)
    plan = memonger.search_plan(sym, data=shape)
    assert _mirroring(plan) == {}
    assert plan.tojson() == sym.tojson()
    assert memonger.planned_memory_mb(plan, data=shape) == memonger.planned_memory_mb(sym, data=shape)


def test_resnet164_planned_memory_drops_at_least_4x():
    """Planned memory is deterministic: CIFAR ResNet-164, batch 16 (measured 391 MB -> 87 MB)."""
    shape = (16, 3, 32, 32)
    sym = get_symbol(10, 164, "cifar10", memonger=True)
    plan = memonger.search_plan(sym, data=shape)
    before = memonger.planned_memory_mb(sym, data=shape)
    after = memonger.planned_memory_mb(plan, data=shape)
    assert before >= 4 * after
    assert _mirroring(sym) == {}  # the input Symbol is left as it was


def test_unhinted_network_uses_cut_points():
    """Without mirror_stage hints every cut point is a candidate, and the plan still saves memory."""
    shape = (8, 3, 32, 32)
    sym = get_symbol(10, 20, "cifar10")
    graph = memonger._graph(sym, {"data": shape}, None)
    names = [graph.nodes[i]["name"] for i in memonger.cut_points(graph)]
    assert [n for n in names if n.endswith("_plus")] == [f"stage{s}_unit{u}_plus" for s in (1, 2, 3) for u in (1, 2, 3)]
    assert "stage1_unit1_relu1" in names  # every path passes through it: the body and the projection shortcut
    assert "stage1_unit1_conv1" not in names  # the projection shortcut bypasses it
    plan = memonger.search_plan(sym, data=shape)
    assert memonger.planned_memory_mb(plan, data=shape) < memonger.planned_memory_mb(sym, data=shape)


def test_cut_points_of_a_hand_built_graph():
    """a -> b -> c with a skip a -> c: b is no cut point; a and c are."""
    data = mx.sym.Variable("data")
    a = mx.sym.relu(data, name="a")
    b = mx.sym.relu(a, name="b")
    c = mx.sym.elemwise_add(a, b, name="c")
    d = mx.sym.relu(c, name="d")
    graph = memonger._graph(d, {"data": (2, 3)}, None)
    assert [graph.nodes[i]["name"] for i in memonger.cut_points(graph)] == ["a", "c"]
    assert graph.nbytes[[n["name"] for n in graph.nodes].index("b")] == 2 * 3 * 4


def test_planned_memory_is_the_executors_activation_pool():
    """Two 32 MB fully connected layers: the pool holds three 32 MB outputs; the 2x64 MB weights are not in it."""
    data = mx.sym.Variable("data")
    hidden = mx.sym.FullyConnected(data, num_hidden=4096, name="fc1")
    sym = mx.sym.SoftmaxOutput(mx.sym.FullyConnected(hidden, num_hidden=4096, name="fc2"), name="softmax")
    shape = (2048, 4096)
    assert memonger.planned_memory_mb(sym, data=shape) == 3 * 32
    report = memonger.memory_report(sym, data=shape)
    params = 2 * (4096 * 4096 + 4096)
    inputs = 2048 * 4096 + 2048
    assert report.arrays_mb == pytest.approx(2 * (params + inputs) * 4 / memonger.MB)


def test_shapes_that_do_not_fit_are_one_clear_error():
    sym = get_symbol(10, 20, "cifar10", memonger=True)
    with pytest.raises(UserError, match="do not fit the network"):
        memonger.search_plan(sym, data=(8, 3))
