"""Pre-activation ResNet (ResNet-v2) definitions: one spec table, a Symbol builder and a Gluon builder.

``get_symbol`` / ``get_net`` build a network from (data type, depth); ``get_model`` takes GluonCV-style names
(``resnet50_v2``, ``cifar_resnet164_v2``).
"""
from resnetv2 import compat  # noqa: F401  (before mxnet)

from .registry import get_model, get_net, get_symbol, model_names, parse_model_name  # noqa: F401
from .spec import ResNetSpec, get_spec, valid_depths  # noqa: F401
