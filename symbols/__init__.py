"""ResNet definitions: one spec table, Symbol and Gluon builders for every family.

``get_symbol`` / ``get_net`` build a network from (data type, depth, network); ``get_model`` takes GluonCV-style
names (``resnet50_v2``, ``cifar_resnet164_v2``, ``resnet50_v1``, ``resnext50_32x4d``, ``resnet50_vd``).
"""
from . import compat  # noqa: F401  (before mxnet)
from .registry import build_net, build_symbol, get_model, get_net, get_symbol, model_names, model_spec, parse_model_name
from .spec import NETWORKS, ResNetSpec, add_network_args, get_spec, valid_depths

__all__ = ["NETWORKS", "ResNetSpec", "add_network_args", "build_net", "build_symbol", "get_model", "get_net",
           "get_spec", "get_symbol", "model_names", "model_spec", "parse_model_name", "valid_depths"]
