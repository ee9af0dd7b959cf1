"""The baseline families beside the original's pre-activation ResNet: ResNet-v1b, ResNeXt and ResNet-vd.

Published parameter counts and multiply-adds, Symbol = Gluon, GluonCV's own networks = ours (its random weights
copied into ours), heads with an odd class count, a gradient for every parameter, bad input, and the tools that
rewrite graphs (fastpath, memonger) on these graphs.

How ``bn_data`` is counted: every family reads raw RGB 0..255 and normalises it with ``bn_data`` (as the
original), where torchvision normalises in the data pipeline. Its 3 betas are learned, its 3 gammas fixed at 1:
the Symbol lists both as arguments (6 values), Gluon has 3 learnable ones. The published figures are compared
with everything else; the test checks that ``bn_data`` accounts for exactly that difference.
"""
from __future__ import annotations

import json

import mxnet as mx
import numpy as np
import pytest
from helpers import (
    assert_gluon_training_block_same_step,
    assert_plan_keeps_gradients,
    load_tool,
    random_checkpoint,
    run_train,
)
from helpers import random_params as symbols_random_params

from resnet_toolkit import fastpath
from resnet_toolkit.errors import UserError
from symbols import get_model, get_net, get_spec, get_symbol, memonger, model_names, model_spec
from symbols.complexity import model_complexity
from symbols.gluon_resnet_v2 import load_symbol_params
from symbols.spec import ResNetSpec, last_layer_names

# torchvision's meta["num_params"] for resnet18...152 (v1.5 = v1b), resnext50_32x4d, resnext101_32x8d and
# resnext101_64x4d; equal to GluonCV's, timm's and MegEngine's for the same networks.
PUBLISHED_PARAMS = {
    "resnet18_v1": 11_689_512,
    "resnet34_v1": 21_797_672,
    "resnet50_v1": 25_557_032,
    "resnet101_v1": 44_549_160,
    "resnet152_v1": 60_192_808,
    "resnext50_32x4d": 25_028_904,
    "resnext101_32x8d": 88_791_336,
    "resnext101_64x4d": 83_455_272,
}
# ResNet-vd: computed. resnet50_vd equals GluonCV's resnet50_v1d (the same network: test_against_gluoncv below),
# i.e. resnet50's count + the deep stem's 19,232 (3x3 convs 3->32, 32->32, 32->64 instead of the 7x7 3->64:
# 864 + 9,216 + 18,432 - 9,408 weights, + 2 x 64 gamma/beta of the two added BNs). PaddleClas lists ResNet50_vd as
# 25.63 M: the same network counted with its BN running statistics (+ 53,248).
DEEP_STEM_EXTRA = 19_232
VD_PARAMS = {"resnet50_vd": 25_576_264}
# torchvision's meta["_ops"] ("GFLOPS": 10^9 multiply-adds of conv and FC at 224x224), two decimals.
TORCHVISION_GFLOPS = {"resnet18_v1": 1.81, "resnet34_v1": 3.66, "resnet50_v1": 4.09, "resnet101_v1": 7.80,
                      "resnet152_v1": 11.51, "resnext50_32x4d": 4.23, "resnext101_32x8d": 16.41,
                      "resnext101_64x4d": 15.46}
NEW_FAMILIES = ("resnet_v1", "resnext", "resnet_vd")


def input_shape(name: str, batch: int = 1, size: int | None = None) -> tuple[int, ...]:
    spec = model_spec(name)
    return (batch, 3) + ((size, size) if size else spec.image_shape[1:])


def symbol_counts(sym: mx.sym.Symbol, shape) -> tuple[int, int]:
    """(arguments without data/label and bn_data, bn_data's arguments) of a Symbol."""
    arg_shapes, _, _ = sym.infer_shape(data=shape)
    rest = bn_data = 0
    for name, s in zip(sym.list_arguments(), arg_shapes):
        if name in ("data", "softmax_label"):
            continue
        if name.startswith("bn_data_"):
            bn_data += int(np.prod(s))
        else:
            rest += int(np.prod(s))
    return rest, bn_data


def gluon_counts(net, shape) -> tuple[int, int]:
    """(learnable parameters without bn_data, bn_data's learnable ones) of a Gluon net, from its traced graph
    (no forward pass)."""
    traced = net(mx.sym.var("data"))
    arg_shapes, _, _ = traced.infer_shape(data=shape)
    params = net.collect_params()
    rest = bn_data = 0
    for name, s in zip(traced.list_arguments(), arg_shapes):
        if name == "data" or params[name].grad_req == "null":
            continue
        if name.startswith("bn_data_"):
            bn_data += int(np.prod(s))
        else:
            rest += int(np.prod(s))
    return rest, bn_data


# ------------------------------------------------------------------------------------------- the table

@pytest.mark.parametrize("name", sorted(PUBLISHED_PARAMS) + sorted(VD_PARAMS))
def test_parameter_count_matches_published(name):
    expected = {**PUBLISHED_PARAMS, **VD_PARAMS}[name]
    shape = input_shape(name)
    assert symbol_counts(get_model(name, api="symbol"), shape) == (expected, 6)  # bn_data: 3 gamma + 3 beta
    assert gluon_counts(get_model(name), shape) == (expected, 3)  # bn_data: 3 learned betas
    assert model_complexity(name).params == expected


@pytest.mark.parametrize("depth", [18, 34, 50, 101, 152])
def test_deep_stem_adds_the_same_parameters_at_every_depth(depth):
    v1 = symbol_counts(get_model(f"resnet{depth}_v1", api="symbol"), (1, 3, 224, 224))[0]
    vd = symbol_counts(get_model(f"resnet{depth}_vd", api="symbol"), (1, 3, 224, 224))[0]
    assert vd - v1 == DEEP_STEM_EXTRA  # the avg-pool shortcut has no parameters


@pytest.mark.parametrize("name", sorted(TORCHVISION_GFLOPS))
def test_multiply_adds_match_torchvision(name):
    c = model_complexity(name)
    assert round(c.gflops, 2) == TORCHVISION_GFLOPS[name]
    fc_inputs = 512 if name.startswith(("resnet18", "resnet34")) else 2048
    assert c.macs - c.conv_macs == fc_inputs * 1000  # the convolutions' share: all but the classifier's


def test_spec_table_rows():
    spec = get_spec("imagenet", 50, "resnext", 32, 4)
    assert (spec.units, spec.filters, spec.bottleneck, spec.stem) == ((3, 4, 6, 3), (64, 256, 512, 1024, 2048),
                                                                      True, "imagenet")
    assert spec.mid_widths == (128, 256, 512, 1024)  # 64 * 4/64 * 32, ... (torchvision's width)
    assert get_spec("imagenet", 101, "resnext", 32, 8).mid_widths == (256, 512, 1024, 2048)
    assert get_spec("imagenet", 101, "resnext", 64, 4).mid_widths == (256, 512, 1024, 2048)
    assert get_spec("imagenet", 50, "resnet_v1").mid_widths == (64, 128, 256, 512)
    vd = get_spec("imagenet", 50, "resnet_vd")
    assert vd.stem == "deep" and vd.stem_widths == (32, 32, 64) and vd.avg_down
    cifar = get_spec("cifar10", 29, "resnext", 16, 64)
    assert (cifar.units, cifar.filters, cifar.mid_widths) == ((3, 3, 3), (64, 256, 512, 1024), (1024, 2048, 4096))
    assert get_spec("cifar10", 20, "resnet_v1").filters == get_spec("cifar10", 20).filters
    # projection shortcuts: v1 only where the shape changes; the original's v2 on every stage's first unit
    v1, v2 = get_spec("imagenet", 18, "resnet_v1"), get_spec("imagenet", 18)
    assert [v1.has_projection(s, 0) for s in range(4)] == [False, True, True, True]
    assert [v2.has_projection(s, 0) for s in range(4)] == [True] * 4
    assert get_spec("imagenet", 50, "resnet_v1").has_projection(0, 0)  # 64 -> 256 channels
    # the old positional form still builds the original's spec
    assert ResNetSpec("imagenet", 50, (3, 4, 6, 3), (64, 256, 512, 1024, 2048), True) == get_spec("imagenet", 50)


def test_model_names_round_trip():
    names = model_names()
    for name in ("resnet18_v1", "resnet152_v1", "cifar_resnet20_v1", "resnext50_32x4d", "resnext101_32x8d",
                 "resnext101_64x4d", "cifar_resnext29_16x64d", "resnet50_vd", "resnet50_v2", "cifar_resnet1001_v2"):
        assert name in names
    for name in names:
        assert model_spec(name).name == name
    assert model_spec("resnext152_8x16d").mid_widths[0] == 8 * 16  # any shape that fits the table
    assert names.index("resnet18_v2") == 0 and names.index("cifar_resnet20_v2") == 7  # the original's first


def test_v2_graphs_are_unchanged_by_the_new_arguments():
    from symbols.resnet_v2 import get_symbol as original

    for args in ((1000, 50, "imagenet"), (10, 164, "cifar10")):
        assert get_symbol(*args, network="resnet_v2").tojson() == original(*args).tojson()
    assert get_model("resnet50_v2", api="symbol").tojson() == original(1000, 50, "imagenet").tojson()


# ------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("call,match", [
    (lambda: get_spec("imagenet", 50, "vgg"), "unknown network 'vgg'; valid: resnet_v2, resnet_v1, resnext, resnet_vd"),
    (lambda: get_symbol(10, 50, "imagenet", network="densenet"), "valid: resnet_v2, resnet_v1, resnext"),
    (lambda: get_spec("cifar10", 20, "resnet_vd"), "imagenet only.*valid networks for cifar10: resnet_v2, "
                                                   "resnet_v1, resnext"),
    (lambda: get_spec("imagenet", 18, "resnext"), "no imagenet ResNeXt of depth 18; valid depths: 50, 101, 152"),
    (lambda: get_spec("cifar10", 21, "resnext"), r"valid depths: \(depth-2\)%9==0"),
    (lambda: get_spec("imagenet", 51, "resnet_v1"), "valid depths: 18, 34, 50"),
    (lambda: get_spec("imagenet", 50, "resnet_v1", cardinality=32), "resnext only"),
    (lambda: get_spec("imagenet", 50, "resnet_v2", bottleneck_width=4), "resnext only"),
    (lambda: get_spec("imagenet", 50, "resnext", cardinality=0), "at least 1"),
    (lambda: get_net(10, 50, "imagenet", network="resnext", bottleneck_width=-4), "at least 1"),
    # a hand-made row whose groups would hold half a channel: 16 planes * 2 / 64
    (lambda: ResNetSpec("cifar10", 29, (3, 3, 3), (16, 64, 128, 256), True, "resnext", 32, 2),
     "16\\*2/64 channels per group in stage 1.*multiples of 4"),
    (lambda: model_spec("vgg16"), "unknown model name 'vgg16'; valid: .*resnext<depth>_<groups>x<width>d"),
    (lambda: model_spec("resnext50_32x0d"), "at least 1"),
    (lambda: model_spec("cifar_resnet20_vd"), "imagenet only"),
    (lambda: get_model("resnet50_v1", api="caffe"), "unknown api"),
])
def test_bad_input_is_one_clear_line(call, match):
    with pytest.raises(UserError, match=match) as exc:
        call()
    assert "\n" not in str(exc.value)


# ------------------------------------------------------------------------------------------- builders

ALL_NEW = [n for n in model_names() if model_spec(n).network in NEW_FAMILIES]


@pytest.mark.parametrize("name", ALL_NEW)
def test_output_shape_with_an_odd_class_count(name):
    # 42 classes: a wrong head cannot pass by accident
    shape = input_shape(name, batch=2)
    assert get_model(name, 42, api="symbol").infer_shape(data=shape)[1] == [(2, 42)]
    assert get_model(name, 42)(mx.sym.var("data")).infer_shape(data=shape)[1] == [(2, 42)]


def test_layer_names():
    args = get_model("resnext50_32x4d", api="symbol").list_arguments()
    for name in ["bn_data_beta", "conv0_weight", "bn0_gamma", "stage1_unit1_conv2_weight", "stage1_unit1_sc_weight",
                 "stage1_unit1_sc_bn_gamma", "stage4_unit3_bn3_beta", "fc1_weight", "fc1_bias", "softmax_label"]:
        assert name in args
    assert "bn1_gamma" not in args and "stage1_unit2_sc_weight" not in args
    assert "stage1_unit1_sc_weight" not in get_model("resnet18_v1", api="symbol").list_arguments()
    vd = get_model("resnet50_vd", api="symbol")
    assert {"conv0_1_weight", "bn0_2_beta", "conv0_3_weight", "bn0_3_gamma"} <= set(vd.list_arguments())
    nodes = {n["name"]: n for n in json.loads(vd.tojson())["nodes"]}
    pool = nodes["stage2_unit1_sc_pool"]["attrs"]
    assert (pool["pool_type"], pool["kernel"], pool["pooling_convention"], pool["count_include_pad"]) == (
        "avg", "(2, 2)", "full", "False")
    assert nodes["stage2_unit1_sc"]["attrs"]["stride"] == "(1, 1)"
    assert "stage1_unit1_sc_pool" not in nodes  # stride 1: no pool (PaddleClas's if_first)
    grouped = json.loads(get_model("resnext101_64x4d", api="symbol").tojson())["nodes"]
    conv2 = next(n for n in grouped if n["name"] == "stage3_unit1_conv2")["attrs"]
    assert (conv2["num_group"], conv2["num_filter"], conv2["stride"]) == ("64", "1024", "(2, 2)")
    first = get_net(10, 50, "imagenet", network="resnet_v1")
    assert list(first.collect_params()) == list(get_net(10, 50, "imagenet", network="resnet_v1").collect_params())


def random_params(sym: mx.sym.Symbol, data_shape, seed: int = 0):
    """helpers.random_params, with bn_data's statistics at the raw pixels' scale."""
    args, aux = symbols_random_params(sym, data_shape, seed)
    aux["bn_data_moving_mean"][:] = 120.0
    aux["bn_data_moving_var"][:] = 4000.0
    return args, aux


# (name, input size): small inputs keep the ImageNet nets cheap (global pooling takes any size); 80 puts an odd
# 5x5 map before ResNet-vd's last average-pool shortcut, so its ceil mode is exercised.
FAMILY_CASES = [("cifar_resnet20_v1", 32), ("resnet18_v1", 64), ("resnet50_v1", 64), ("resnext50_32x4d", 64),
                ("resnet50_vd", 80)]


@pytest.mark.parametrize("name,size", FAMILY_CASES)
def test_symbol_equals_gluon(name, size):
    classes = 7
    data_shape = input_shape(name, batch=3, size=size)
    sym = get_model(name, classes, api="symbol")
    args, aux = random_params(sym, data_shape)
    x = mx.nd.array(np.random.RandomState(1).uniform(0, 255, data_shape))
    net = get_model(name, classes)
    load_symbol_params(net, args, aux)
    net.hybridize()
    logits = sym.get_internals()["fc1_output"]
    for is_train in (False, True):
        # a 'null' executor is an inference graph (MKLDNN folds BN there even under is_train=True): bind training
        # as training binds it
        exe = logits.simple_bind(mx.cpu(), data=data_shape, grad_req="write" if is_train else "null")
        exe.copy_params_from(args, aux)
        want = exe.forward(is_train=is_train, data=x)[0].asnumpy()
        with mx.autograd.record(train_mode=is_train):
            got = net(x).asnumpy()
        scale = max(1.0, float(np.abs(want).max()))
        assert np.abs(got - want).max() / scale < 1e-5, f"is_train={is_train}"
        assert np.ptp(want) > 1e-2  # the outputs compared are not constant


@pytest.mark.parametrize("name,size", FAMILY_CASES + [("cifar_resnext29_32x4d", 32)])
def test_every_parameter_receives_a_gradient(name, size):
    net = get_model(name, 42)
    mx.random.seed(3)
    net.initialize(mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2))
    x = mx.nd.array(np.random.RandomState(2).uniform(0, 255, input_shape(name, batch=2, size=size)))
    with mx.autograd.record():
        loss = mx.gluon.loss.SoftmaxCrossEntropyLoss()(net(x), mx.nd.array([3, 41]))
    loss.backward()
    learnable = {k: p for k, p in net.collect_params().items() if p.grad_req != "null"}
    assert "bn_data_gamma" not in learnable  # fixed at 1, as the original
    silent = [k for k, p in learnable.items() if not np.abs(p.grad().asnumpy()).max() > 0]
    assert silent == []


# ------------------------------------------------------------------------------------------- GluonCV

def _randomise(params, seed: int) -> None:
    """GluonCV's parameters with random values: He-normal weights, BN gammas/betas/statistics far from 1/0."""
    rng = np.random.RandomState(seed)
    for name, p in params.items():
        shape = p.shape
        if name.endswith("_weight") and len(shape) > 1:
            value = rng.normal(0, np.sqrt(2.0 / int(np.prod(shape[1:]))), shape)
        elif name.endswith("gamma"):
            value = rng.uniform(0.5, 1.5, shape)
        elif name.endswith("running_var"):
            value = rng.uniform(0.5, 2.0, shape)
        else:  # beta, running mean, FC bias
            value = rng.normal(0, 0.1, shape)
        p.set_data(mx.nd.array(value))


def copy_from_gluoncv(theirs, ours) -> None:
    """Give ``ours`` ``theirs``'s parameters, pairing them in registration order (both register a unit's body
    before its shortcut); every pair must have the same shape. ``bn_data`` becomes the identity (GluonCV's nets
    take normalised input) and our BN variances absorb the epsilon difference (ours 2e-5, GluonCV's 1e-5)."""
    mine = [(k, p) for k, p in ours.collect_params().items() if not k.startswith("bn_data_")]
    their = list(theirs.collect_params().values())
    assert len(mine) == len(their)
    for (name, p), q in zip(mine, their):
        assert p.shape == q.shape, (name, q.name)
        value = q.data()
        if name.endswith("running_var"):
            their_eps = 1e-5
            value = value + their_eps - 2e-5
        p.set_data(value)
    params = ours.collect_params()
    params["bn_data_beta"].set_data(mx.nd.zeros(3))
    params["bn_data_running_mean"].set_data(mx.nd.zeros(3))
    params["bn_data_running_var"].set_data(mx.nd.ones(3) - 2e-5)  # (x - 0) / sqrt(var + eps) = x


# (our name, GluonCV's name, input size)
GLUONCV_SAME = [("resnet18_v1", "resnet18_v1b", 64), ("resnet50_v1", "resnet50_v1b", 64),
                ("resnext50_32x4d", "resnext50_32x4d", 64), ("resnext101_64x4d", "resnext101_64x4d", 64),
                ("resnet50_vd", "resnet50_v1d", 80), ("cifar_resnext29_32x4d", "cifar_resnext29_32x4d", 32)]


@pytest.mark.parametrize("ours_name,theirs_name,size", GLUONCV_SAME)
def test_against_gluoncv(ours_name, theirs_name, size):
    """GluonCV's network with random weights, copied into ours: the same outputs (inference mode)."""
    gluoncv = pytest.importorskip("gluoncv")
    shape = input_shape(ours_name, batch=2, size=size)
    classes = 10 if shape[-1] == 32 else 1000
    theirs = gluoncv.model_zoo.get_model(theirs_name, classes=classes)
    theirs.initialize()
    theirs(mx.nd.zeros(shape))
    _randomise(theirs.collect_params(), seed=5)
    ours = get_model(ours_name, classes)
    ours.initialize()
    ours(mx.nd.zeros(shape))
    copy_from_gluoncv(theirs, ours)
    x = mx.nd.array(np.random.RandomState(6).normal(0, 1, shape))  # normalised images, as GluonCV expects
    want, got = theirs(x).asnumpy(), ours(x).asnumpy()
    assert np.ptp(want) > 1e-2
    assert np.abs(got - want).max() / max(1.0, float(np.abs(want).max())) < 1e-4
    learnable = sum(int(np.prod(p.shape)) for p in theirs.collect_params().values() if p.grad_req != "null")
    assert gluon_counts(ours, shape)[0] == learnable


def test_cifar_resnet20_v1_against_gluoncv():
    """GluonCV's cifar_resnet20_v1 leaves out the ReLU after the stem's BN that He et al. 2015 (and this project)
    have; with a stem BN whose output is positive the ReLU is the identity and the networks agree."""
    gluoncv = pytest.importorskip("gluoncv")
    shape = (2, 3, 32, 32)
    theirs = gluoncv.model_zoo.get_model("cifar_resnet20_v1", classes=10)
    theirs.initialize()
    theirs(mx.nd.zeros(shape))
    _randomise(theirs.collect_params(), seed=7)
    ours = get_model("cifar_resnet20_v1", 10)
    ours.initialize()
    ours(mx.nd.zeros(shape))
    copy_from_gluoncv(theirs, ours)
    x = mx.nd.array(np.random.RandomState(8).normal(0, 1, shape))
    assert np.abs(theirs(x).asnumpy() - ours(x).asnumpy()).max() > 1e-3  # the ReLU matters...
    for net in (theirs, ours):  # ...until the stem BN's output is positive (the first BN after bn_data)
        params = [p for k, p in net.collect_params().items() if not k.startswith("bn_data_")]
        gamma = next(p for p in params if p.name.endswith("gamma"))
        beta = next(p for p in params if p.name.endswith("beta"))
        gamma.set_data(gamma.data() * 1e-3)
        beta.set_data(mx.nd.ones_like(beta.data()) * 2)
    want, got = theirs(x).asnumpy(), ours(x).asnumpy()
    assert np.ptp(want) > 1e-2
    assert np.abs(got - want).max() / max(1.0, float(np.abs(want).max())) < 1e-4


# ------------------------------------------------------------------------------------------- graph tools

def _module_step(sym, args, aux, data, label):
    """Forward, backward and a NAG update through Module (as train_resnet.py): (output, grads, args, aux)."""
    mod = mx.mod.Module(sym, context=mx.cpu())
    mod.bind(data_shapes=[("data", data.shape)], label_shapes=[("softmax_label", label.shape)])
    mod.init_params(arg_params={k: v.copy() for k, v in args.items()}, aux_params={k: v.copy() for k, v in aux.items()})
    mod.init_optimizer(optimizer="nag", optimizer_params={"learning_rate": 0.1, "momentum": 0.9, "wd": 1e-4,
                                                          "rescale_grad": 1.0 / len(label)})
    mod.forward_backward(mx.io.DataBatch([mx.nd.array(data)], [mx.nd.array(label)]))
    out = mod.get_outputs()[0].asnumpy()
    grads = {k: v.asnumpy() for k, v in mod._exec_group.execs[0].grad_dict.items() if v is not None and k in args}
    mod.update()
    mx.nd.waitall()
    new_args, new_aux = mod.get_params()
    return out, grads, {k: v.asnumpy() for k, v in new_args.items()}, {k: v.asnumpy() for k, v in new_aux.items()}


def close(a, b, rtol: float = 1e-4) -> bool:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return a.shape == b.shape and float(np.abs(a - b).max()) <= rtol * max(1.0, float(np.abs(b).max()))


# bn_relu: every BN read only by a ReLU. v1 units: bn1 (basic), bn1 and bn2 (bottleneck); the last BN feeds the
# sum and stays. Stems: CIFAR bn0; ImageNet none (relu0 feeds pool0, left unfused); deep bn0_1 and bn0_2.
# ResNeXt: bn1 feeds and bn2 reads the grouped 3x3; fused only where oneDNN runs that backward correctly, as the
# capability probe finds ("beside" below: the counts either way; with oneDNN 2.4.4 on AVX-512 and AVX2, unfused).
@pytest.mark.parametrize("name,size,counts", [
    ("cifar_resnet20_v1", 32, {"bn_relu": 1 + 9, "mean_pool": 1}),
    ("resnext50_32x4d", 64, "beside"),
    ("resnet50_vd", 80, {"bn_relu": 2 + 2 * 16, "mean_pool": 1}),
])
def test_training_graph_same_step(name, size, counts):
    if counts == "beside":
        from resnet_toolkit.capability import probe

        fused = probe().supports("fused_bn_relu_beside_grouped_conv")
        counts = ({"bn_relu": 2 * 16, "mean_pool": 1} if fused else
                  {"bn_relu": 0, "mean_pool": 1, "bn_relu_beside_grouped_conv": 2 * 16})
    classes = 10
    data = np.random.RandomState(4).uniform(0, 255, input_shape(name, batch=4, size=size)).astype(np.float32)
    label = np.arange(4) % classes
    sym = get_model(name, classes, api="symbol")
    fast, made = fastpath.training_graph(sym)
    assert made == counts
    assert fast.list_arguments() == sym.list_arguments()
    args, aux = random_params(sym, data.shape, seed=7)
    ref, got = _module_step(sym, args, aux, data, label), _module_step(fast, args, aux, data, label)
    assert close(got[0], ref[0])
    assert ref[1].keys() == got[1].keys() and len(ref[1]) == len(args)
    for part in (1, 2, 3):
        for key in ref[part]:
            assert close(got[part][key], ref[part][key]), key


def test_fused_bn_relu_beside_grouped_conv_follows_the_probe():
    """training_graph asks oneDNN (once, in a child process) whether the fused BN+ReLU backward beside a grouped
    convolution runs, and fuses those pairs exactly then; an explicit ``beside_grouped`` overrides the probe."""
    from resnet_toolkit.capability import probe

    sym = get_model("cifar_resnext29_32x4d", 10, api="symbol")
    _, default = fastpath.training_graph(sym)
    _, kept = fastpath.training_graph(sym, beside_grouped=False)
    _, fused = fastpath.training_graph(sym, beside_grouped=True)
    assert default == (fused if probe().supports("fused_bn_relu_beside_grouped_conv") else kept)
    assert kept["bn_relu_beside_grouped_conv"] > 0 and "bn_relu_beside_grouped_conv" not in fused
    assert fused["bn_relu"] == kept["bn_relu"] + kept["bn_relu_beside_grouped_conv"]
    plain = get_model("cifar_resnet20_v2", 10, api="symbol")  # no grouped convolution: the flag changes nothing
    assert fastpath.training_graph(plain, beside_grouped=True)[1] == fastpath.training_graph(plain)[1]


@pytest.mark.parametrize("name,size", [("cifar_resnet20_v1", 32), ("resnext50_32x4d", 64), ("resnet50_vd", 80)])
def test_inference_model_folds_every_bn_after_a_conv(name, size, monkeypatch):
    monkeypatch.setenv("MXNET_SUBGRAPH_BACKEND", "NONE")  # the reference runs the graph as written
    logits = get_model(name, 10, api="symbol").get_internals()["fc1_output"]  # random nets saturate softmax
    data = np.random.RandomState(5).uniform(0, 255, input_shape(name, batch=2, size=size)).astype(np.float32)
    args, aux = random_params(logits, data.shape, seed=8)
    model = fastpath.FusedExecutor(logits, args, aux, data.shape)
    bns = [n["name"] for n in json.loads(logits.tojson())["nodes"] if n["op"] == "BatchNorm"]
    assert sorted(model.folded) == sorted(b for b in bns if b != "bn_data")  # post-activation: all but bn_data
    plain = logits.bind(mx.cpu(), args={**args, "data": mx.nd.array(data)}, aux_states=aux, grad_req="null")
    want = plain.forward(is_train=False)[0].asnumpy()
    assert close(model.forward(mx.nd.array(data)).asnumpy(), want)
    assert np.ptp(want) > 1e-2 * max(1.0, float(np.abs(want).max()))  # the logits differ between classes


@pytest.mark.parametrize("name", ["cifar_resnet20_v1", "cifar_resnext29_32x4d"])
def test_memonger_hints_every_unit_output(name):
    spec = model_spec(name)
    sym = get_model(name, 10, api="symbol", memonger=True)
    graph = memonger._graph(sym, {"data": (2, 3, 32, 32)}, None)
    hinted = [graph.nodes[i]["name"] for i in memonger.candidates(graph)]
    assert hinted == [f"stage{s + 1}_unit{u + 1}_relu" for s, n in enumerate(spec.units) for u in range(n)]


def test_memonger_plan_keeps_the_gradients():
    assert_plan_keeps_gradients(get_model("cifar_resnet20_v1", 10, api="symbol", memonger=True), (8, 3, 32, 32),
                                seed=20)


def test_gluon_training_block_with_grouped_convs_same_step():
    """fastpath.hybridize_for_training on a ResNeXt (CIFAR, one unit a stage, 4 channels per group): trains, and
    its step equals the plain hybridized net's."""
    data = mx.nd.array(np.random.RandomState(9).uniform(0, 255, (4, 3, 32, 32)))
    assert_gluon_training_block_same_step(
        lambda: get_net(10, 11, "cifar10", network="resnext", cardinality=32, bottleneck_width=4), data,
        mx.nd.array([1, 2, 3, 4]))


def test_benchmark_peers_are_the_same_networks():
    """bench/throughput.py's GluonCV peer for each baseline cell has our parameter count (the name mapping picks
    v1b/v1d, not GluonCV's stride-on-the-1x1 v1), and its PyTorch peer is defined for those cells."""
    pytest.importorskip("gluoncv")
    from bench import throughput as bench

    assert bench.gluoncv_name("resnet50_v1") == "resnet50_v1b" and bench.gluoncv_name("resnet50_vd") == "resnet50_v1d"
    for model in bench.FAMILY_MODELS:
        shape = input_shape(model)
        theirs = bench._gluoncv_net(model, 1000)
        theirs.initialize()
        traced = theirs(mx.sym.var("data"))
        arg_shapes = dict(zip(traced.list_arguments(), traced.infer_shape(data=shape)[0]))
        params = theirs.collect_params()
        learnable = sum(int(np.prod(s)) for n, s in arg_shapes.items() if n != "data" and params[n].grad_req != "null")
        assert learnable == PUBLISHED_PARAMS[model]
        units, groups, width = bench.TORCH_V1_ARCH[model]
        assert (units, groups, width) == (model_spec(model).units, model_spec(model).cardinality,
                                          model_spec(model).bottleneck_width)


def test_last_layer_names_per_family():
    v1 = get_model("resnet50_v1", api="symbol").list_arguments()
    assert last_layer_names("resnext", v1) == sorted(f"stage{s}_unit{u}_bn3_gamma"
                                                     for s, n in enumerate((3, 4, 6, 3), 1) for u in range(1, n + 1))
    basic = last_layer_names("resnet_v1", get_model("resnet18_v1", api="symbol").list_arguments())
    assert len(basic) == 8 and all(n.endswith("_bn2_gamma") for n in basic)
    v2 = get_model("resnet50_v2", api="symbol").list_arguments()
    assert all(n.endswith("_conv3_weight") for n in last_layer_names("resnet_v2", v2))
    # zeroed, a v1 unit with an identity shortcut passes its (non-negative) input through unchanged
    net = get_model("resnet18_v1", 10)
    net.initialize(mx.init.Xavier())
    x = mx.nd.array(np.random.RandomState(3).uniform(0, 255, (1, 3, 64, 64)))
    net(x)
    for name in last_layer_names("resnet_v1", net.collect_params()):
        net.collect_params()[name].set_data(mx.nd.zeros(net.collect_params()[name].shape))
    unit = next(b for b in net.features if b.name == "stage1_unit2")
    y = mx.nd.relu(mx.nd.random.normal(shape=(1, 64, 16, 16)))
    assert np.array_equal(unit(y).asnumpy(), y.asnumpy())


@pytest.mark.data
def test_predict_takes_a_resnext_checkpoint(tmp_path, photos_dir, capsys):
    """predict/predict.py reads any family's checkpoint (the graph comes from -symbol.json): its top-5 equals the
    plain saved graph's."""
    from resnet_toolkit.predictor import load_image, load_model

    prefix = random_checkpoint(tmp_path / "model" / "resnext-imagenet-50-0", 50, "imagenet", 1000,
                               network="resnext")
    predict = load_tool("predict/predict.py")
    assert predict.main(["--img", str(photos_dir), "--prefix", prefix, "--epoch", "1", "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    plain = load_model(prefix, 1, batch_size=3, fused=False)
    want = plain.predict(np.stack([load_image(r["image"], (3, 224, 224)) for r in results]))
    for r, p in zip(results, want):
        assert [t["class"] for t in r["top_k"]] == list(np.argsort(-p, kind="stable")[:5])
        np.testing.assert_allclose([t["probability"] for t in r["top_k"]], np.sort(p)[::-1][:5], rtol=1e-3)


def test_the_table_needs_no_mxnet():
    import subprocess
    import sys

    code = ("import sys, symbols.spec, symbols.registry as r; s = r.model_spec('resnext101_64x4d'); "
            "print(s.mid_widths[0], r.model_spec('resnet50_vd').stem, 'mxnet' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["256", "deep", "False"], out.stderr[-500:]


def test_network_flags():
    import argparse

    from symbols.spec import add_network_args

    parser = argparse.ArgumentParser()
    add_network_args(parser)
    args = parser.parse_args(["--network", "resnext", "--cardinality", "64"])
    spec = get_spec("imagenet", 101, args.network, args.cardinality, args.bottleneck_width)
    assert spec.name == "resnext101_64x4d"
    assert parser.parse_args([]).network == "resnet_v2"
    with pytest.raises(SystemExit):
        parser.parse_args(["--network", "vgg"])


@pytest.mark.parametrize("extra", [
    ["--network", "resnet_v1", "--depth", "8", "--last-gamma"],
    ["--network", "resnet_v1", "--depth", "8", "--memonger"],
    ["--network", "resnext", "--depth", "29", "--cardinality", "2", "--bottleneck-width", "8", "--api", "gluon"],
])
def test_train_resnet_trains_every_family_and_the_tools_read_it(extra, digits_dir, tmp_path, capsys):
    """train_resnet.py end to end with the family flags (both engines, --memonger, --last-gamma): the default
    prefix names the family, the checkpoint is the network built from the flags, and tools/score.py reports
    exactly the validation accuracy the training logged."""
    import json
    import re

    from resnet_toolkit.errors import run_cli

    flags = ["--data-type", "digits", "--data-dir", digits_dir, "--batch-size", "32", "--num-examples", "128",
             "--end-epoch", "1", "--preprocess-threads", "1", "--seed", "1", *extra]
    proc = run_train(flags, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [params] = (tmp_path / "model").glob("*-0001.params")
    expected = {"resnet_v1": "resnet8_v1-digits-0", "resnext": "resnext29_2x8d-digits-0"}[extra[1]]
    assert params.name == f"{expected}-0001.params"
    logged = [json.loads(line.split("json_stats:", 1)[1]) for line in proc.stdout.splitlines()
              if "json_stats:" in line][-1]["val-accuracy"]
    with pytest.raises(SystemExit) as exc:
        run_cli(load_tool("tools/score.py").main, ["--prefix", str(tmp_path / "model" / expected), "--rec",
                             str(digits_dir / "digits_val.rec"), "--json", "--no-progress"])
    assert exc.value.code == 0
    out = capsys.readouterr().out
    assert json.loads(out.strip().splitlines()[-1])["top1"] == pytest.approx(logged, abs=1e-6)
    assert re.search(r"training graph: ", proc.stdout)
    from resnet_toolkit.capability import probe  # the log names the CPU and the ISA oneDNN ran (figures need it)

    assert f"oneDNN {probe().onednn} runs {probe().isa_words()}" in proc.stdout
