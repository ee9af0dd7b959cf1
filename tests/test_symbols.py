"""The spec table, the Symbol and Gluon builders, and their agreement with published figures and GluonCV."""
from __future__ import annotations

import mxnet as mx
import numpy as np
import pytest
from helpers import random_params

from resnet_toolkit.errors import UserError
from symbols import get_model, get_net, get_spec, get_symbol, model_names, parse_model_name
from symbols.gluon_resnet_v2 import load_symbol_params, symbol_name, symbol_params
from symbols.spec import CIFAR_NAMED_DEPTHS, IMAGENET_UNITS

# Learnable arguments of the original's Symbol (all of list_arguments() but data/label; BN gamma and beta
# included, BN running statistics excluded), measured with MXNet 1.9.1. They round to the papers' figures:
# 0.27M, 1.7M, 1.7M, 10.2M (the paper counts 10.2M without BN gamma/beta), 25.5M, 44.5M, 60.2M.
PUBLISHED_PARAMS = {
    ("cifar10", 20): 272_544,
    ("cifar10", 110): 1_730_784,
    ("cifar10", 164): 1_703_264,
    ("cifar10", 1001): 10_327_712,
    ("imagenet", 50): 25_549_486,
    ("imagenet", 101): 44_541_614,
    ("imagenet", 152): 60_185_262,
}


def shape_of(net_type: str, batch: int = 1) -> tuple[int, ...]:
    return (batch,) + get_spec(net_type, 20 if net_type == "cifar10" else 18).image_shape


def learnable_count(sym: mx.sym.Symbol, data_shape) -> int:
    arg_shapes, _, _ = sym.infer_shape(data=data_shape)
    return sum(int(np.prod(s)) for n, s in zip(sym.list_arguments(), arg_shapes) if n not in ("data", "softmax_label"))


@pytest.mark.parametrize("key", sorted(PUBLISHED_PARAMS))
def test_parameter_count_matches_published(key):
    net_type, depth = key
    classes = 10 if net_type == "cifar10" else 1000
    assert learnable_count(get_symbol(classes, depth, net_type), shape_of(net_type)) == PUBLISHED_PARAMS[key]


def test_spec_table_is_the_originals():
    assert get_spec("imagenet", 50).units == (3, 4, 6, 3)
    assert get_spec("imagenet", 269).units == (3, 30, 48, 8)
    assert get_spec("imagenet", 34).filters == (64, 64, 128, 256, 512)
    assert not get_spec("imagenet", 34).bottleneck and get_spec("imagenet", 50).bottleneck
    assert get_spec("cifar10", 164).units == (18, 18, 18) and get_spec("cifar10", 164).bottleneck
    assert get_spec("cifar10", 110).units == (18, 18, 18) and not get_spec("cifar10", 110).bottleneck
    assert get_spec("cifar10", 1001).filters == (16, 64, 128, 256)
    assert get_spec("cifar10", 20).filters == (16, 16, 32, 64)


@pytest.mark.parametrize("net_type,depth", [("imagenet", 51), ("imagenet", 20), ("cifar10", 21),
                                             ("cifar10", 170), ("cifar10", 4), ("mnist", 20)])
def test_invalid_depth_is_a_clear_error(net_type, depth):
    with pytest.raises(UserError, match="valid"):
        get_symbol(10, depth, net_type)
    with pytest.raises(UserError, match="valid"):
        get_net(10, depth, net_type)


ALL_DEPTHS = [("imagenet", d) for d in IMAGENET_UNITS] + [("cifar10", d) for d in CIFAR_NAMED_DEPTHS]


@pytest.mark.parametrize("net_type,depth", ALL_DEPTHS)
def test_output_shape_every_depth(net_type, depth):
    # 42 classes: a wrong head cannot pass by accident.
    data_shape = shape_of(net_type, batch=2)
    _, out_shapes, _ = get_symbol(42, depth, net_type).infer_shape(data=data_shape)
    assert out_shapes == [(2, 42)]
    gluon_out = get_net(42, depth, net_type)(mx.sym.var("data"))
    assert gluon_out.infer_shape(data=data_shape)[1] == [(2, 42)]


def test_original_layer_names():
    args = get_symbol(1000, 50, "imagenet").list_arguments()
    for name in ["bn_data_gamma", "bn_data_beta", "conv0_weight", "bn0_gamma", "stage1_unit1_bn1_gamma",
                 "stage1_unit1_conv1_weight", "stage1_unit1_conv3_weight", "stage1_unit1_sc_weight",
                 "stage4_unit3_bn3_beta", "bn1_gamma", "fc1_weight", "fc1_bias", "softmax_label"]:
        assert name in args
    assert "stage1_unit2_sc_weight" not in args
    assert "stage3_unit1_sc_weight" in get_symbol(10, 20, "cifar10").list_arguments()


def test_model_names():
    assert parse_model_name("resnet50_v2") == ("imagenet", 50)
    assert parse_model_name("cifar_resnet1001_v2") == ("cifar10", 1001)
    assert "cifar_resnet164_v2" in model_names()
    with pytest.raises(UserError):
        parse_model_name("resnet51_v2")
    with pytest.raises(UserError):
        parse_model_name("vgg16")
    assert isinstance(get_model("cifar_resnet20_v2", api="symbol"), mx.sym.Symbol)


def test_gluon_names_do_not_drift():
    first = list(get_net(10, 20, "cifar10").collect_params())
    second = list(get_net(10, 20, "cifar10").collect_params())
    assert first == second
    sym = get_symbol(10, 20, "cifar10")
    assert {symbol_name(n) for n in first} == set(sym.list_arguments() + sym.list_auxiliary_states()) - {
        "data", "softmax_label"}


@pytest.mark.parametrize("net_type,depth", [("cifar10", 20), ("cifar10", 164), ("imagenet", 18), ("imagenet", 50)])
def test_symbol_equals_gluon(net_type, depth):
    classes = 7
    data_shape = shape_of(net_type, batch=4)
    sym = get_symbol(classes, depth, net_type)
    args, aux = random_params(sym, data_shape)
    x = mx.nd.array(np.random.RandomState(1).uniform(0, 255, data_shape))

    net = get_net(classes, depth, net_type)
    load_symbol_params(net, args, aux)
    net.hybridize()
    logits = sym.get_internals()["fc1_output"]

    def bind(symbol, is_train):
        # An executor bound with grad_req='null' is an inference graph: MXNet 1.9's MKLDNN subgraph pass folds
        # BN into the preceding conv there, using the running statistics even under forward(is_train=True).
        # Training-mode outputs are therefore compared on a 'write' executor, as training binds it.
        exe = symbol.simple_bind(mx.cpu(), data=data_shape, grad_req="write" if is_train else "null")
        exe.copy_params_from({k: v for k, v in args.items() if k in symbol.list_arguments()}, aux)
        return exe

    for is_train in (False, True):
        sym_logits = bind(logits, is_train).forward(is_train=is_train, data=x)[0].asnumpy()
        sym_prob = bind(sym, is_train).forward(is_train=is_train, data=x)[0].asnumpy()
        with mx.autograd.record(train_mode=is_train):
            gluon_logits = net(x)
        gluon_logits = gluon_logits.asnumpy()
        scale = max(1.0, float(np.abs(sym_logits).max()))
        assert np.abs(sym_logits - gluon_logits).max() / scale < 1e-5, f"is_train={is_train}"
        gluon_prob = mx.nd.softmax(mx.nd.array(gluon_logits)).asnumpy()
        assert np.abs(sym_prob - gluon_prob).max() < 1e-5


def test_gluon_params_round_trip_to_symbol_checkpoint():
    sym = get_symbol(10, 20, "cifar10")
    args, aux = random_params(sym, shape_of("cifar10"))
    net = get_net(10, 20, "cifar10")
    load_symbol_params(net, args, aux)
    back_args, back_aux = symbol_params(net)
    assert set(back_args) == set(args) and set(back_aux) == set(aux)
    for k in args:
        np.testing.assert_array_equal(back_args[k].asnumpy(), args[k].asnumpy())
    for k in aux:
        np.testing.assert_array_equal(back_aux[k].asnumpy(), aux[k].asnumpy())


def _conv_fc_weights(params) -> list[tuple[str, tuple[int, ...]]]:
    return [(n, tuple(p.shape)) for n, p in params.items()
            if n.endswith("_weight") and len(p.shape) in (2, 4)]


@pytest.mark.parametrize("name", ["resnet18_v2", "resnet34_v2", "resnet50_v2", "resnet101_v2", "resnet152_v2",
                                  "cifar_resnet20_v2", "cifar_resnet110_v2"])
def test_against_gluoncv(name):
    """Same architecture as GluonCV's, except the two places where this project follows the original:
    a projection shortcut on the first unit of every stage even when channels match, and a learned
    bn_data beta (GluonCV's first BN has neither gamma nor beta)."""
    gluoncv = pytest.importorskip("gluoncv")
    net_type, depth = parse_model_name(name)
    classes = 10 if net_type == "cifar10" else 1000
    shape = shape_of(net_type)
    theirs = gluoncv.model_zoo.get_model(name, classes=classes)
    theirs.initialize()
    theirs(mx.nd.zeros(shape))
    ours = get_net(classes, depth, net_type)
    ours.initialize()
    ours(mx.nd.zeros(shape))

    our_weights = _conv_fc_weights(ours.collect_params())
    their_shapes = [s for _, s in _conv_fc_weights(theirs.collect_params())]
    extra_sc = [(n, s) for n, s in our_weights
                if n.endswith("_sc_weight") and s[0] == s[1] and n.startswith("stage1_")]
    our_shapes = [s for n, s in our_weights if (n, s) not in extra_sc]
    assert sorted(our_shapes) == sorted(their_shapes)
    extra = sum(int(np.prod(s)) for _, s in extra_sc)
    expected_extra = {"resnet18_v2": 4096, "resnet34_v2": 4096, "cifar_resnet20_v2": 256,
                      "cifar_resnet110_v2": 256}.get(name, 0)
    assert extra == expected_extra

    def learnable(params):
        return sum(int(np.prod(p.shape)) for p in params.values() if p.grad_req != "null")

    # bn_data: 3 learned betas here; GluonCV's first BN learns nothing.
    assert learnable(ours.collect_params()) - learnable(theirs.collect_params()) == expected_extra + 3
