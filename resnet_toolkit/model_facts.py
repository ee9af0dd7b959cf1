"""What a checkpoint's graph says about its model, for inference: the classifier (``fc1``), the class count, the
input size its stem implies, validation's resize for that size, and the ``--image-shape`` text every tool parses."""
from __future__ import annotations

import os
from typing import Sequence

from resnet_toolkit.errors import UserError
from symbols.spec import CLASSIFIER, NET_TYPE_FACTS, net_type_for_side


def inference_symbol(symbol):
    """The network without its training head: ``softmax`` of the classifier's output (``fc1_output``).

    A checkpoint's symbol ends in ``SoftmaxOutput``, which needs a label input; its forward equals this one's.
    """
    import mxnet as mx

    internals = symbol.get_internals()
    outputs = internals.list_outputs()
    if f"{CLASSIFIER}_output" in outputs:
        logits = internals[f"{CLASSIFIER}_output"]
    else:
        children = symbol.get_children()
        if children is None:
            raise UserError("the checkpoint's symbol has no classifier layer (fc1) before its output")
        logits = children[0]
    return mx.sym.softmax(logits, axis=1, name="softmax")


def num_classes_of(arg_params: dict, params_file: str | os.PathLike = "checkpoint") -> int:
    """Output count of the classifier ``fc1`` (rows of ``fc1_weight``)."""
    weight = arg_params.get(f"{CLASSIFIER}_weight")
    if weight is None:
        raise UserError(f"{params_file}: has no {CLASSIFIER}_weight; not a checkpoint of this project's networks")
    return int(weight.shape[0])


def default_image_shape(symbol) -> tuple[int, int, int]:
    """The default input of the network's stem (:data:`symbols.spec.NET_TYPE_FACTS`): ImageNet's (3, 224, 224)
    when the graph has the ImageNet stem's max pool (``pool0``; ``quantized_pool0`` in an INT8 graph), else
    CIFAR's (3, 32, 32)."""
    outputs = set(symbol.get_internals().list_outputs())
    net_type = "imagenet" if outputs & {"pool0_output", "quantized_pool0_output"} else "cifar10"
    return NET_TYPE_FACTS[net_type].image_shape


def default_resize(image_shape: Sequence[int]) -> int:
    """Validation's shorter side for an input size (:meth:`symbols.spec.NetTypeFacts.eval_resize` of the net type
    its shorter side means): 256 for 224 (the 256-short-side val records), a CIFAR-like size itself."""
    size = min(image_shape[1:])
    return NET_TYPE_FACTS[net_type_for_side(size)].eval_resize(size)


def parse_image_shape(text: str, min_size: int = 1) -> tuple[int, int, int]:
    """``'3,224,224'`` -> ``(3, 224, 224)``, height and width at least ``min_size``; a clear error otherwise (the
    tools' text by default, training's naming ``min_size`` when it is above 1)."""
    try:
        shape = tuple(int(v) for v in text.split(","))
    except ValueError:
        shape = ()
    if len(shape) != 3 or shape[0] != 3 or min(shape[1:]) < max(min_size, 1):
        rule = "3,HEIGHT,WIDTH (e.g. 3,224,224)" if min_size <= 1 else f"'3,H,W' with H, W >= {min_size}"
        raise UserError(f"--image-shape must be {rule}, got {text!r}")
    return shape  # type: ignore[return-value]
