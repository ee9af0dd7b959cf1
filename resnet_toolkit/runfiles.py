"""A run's ``PREFIX-args.json``: the resolved flags as flag names -> values (:func:`saved_config`), written with
the run's first checkpoint, read back by a ``--retrain`` (what it continues, what it changes) and by ``--config``."""
from __future__ import annotations

import json
from pathlib import Path

from resnet_toolkit.data import LAYOUTS, resolve_augmentation
from resnet_toolkit.fileio import atomic_write_text
from resnet_toolkit.train_args import RunConfig, build_parser

# Flags that say where a run starts, not what it is: left out of PREFIX-args.json so that ``--config`` of that file
# reproduces the run from scratch.
NOT_SAVED = ("config", "retrain", "model_load_epoch")


def saved_config(cfg: RunConfig) -> dict:
    """The resolved flags of a run (every flag of :func:`build_parser` but :data:`NOT_SAVED`), by flag name, as
    ``PREFIX-args.json`` holds them; ``--config`` reads the file back."""
    config = {}
    for action in build_parser()._actions:
        if action.dest in ("help", *NOT_SAVED) or not action.option_strings:
            continue
        value = getattr(cfg, action.dest)
        if action.dest == "lr_steps":
            value = ",".join(map(str, cfg.lr_step_epochs))
        config[action.option_strings[0][2:]] = value
    # the augmentation as trained: a flag not given has its default filled in (as resnet_toolkit.runplan.plan_run)
    config["aug-level"], config["mirror"], config["pad"] = resolve_augmentation(cfg.layout, cfg.aug_level,
                                                                                cfg.mirror, cfg.pad)
    return config


def network_flags(config: dict) -> dict:
    """The values of a :func:`saved_config` mapping (or a ``PREFIX-args.json``) that shape the network: family,
    depth, cardinality, bottleneck width, classes, and the input image shape as 'C,H,W' (the data type's, or
    ``--image-shape`` for ``--data-type folder``); a value the mapping lacks is left out."""
    shape = config.get("image-shape")
    if config.get("data-type") in LAYOUTS:
        shape = LAYOUTS[config["data-type"]].image_shape
    if isinstance(shape, str):
        try:
            shape = tuple(int(x) for x in shape.split(","))
        except ValueError:
            pass
    values = {flag: config[flag] for flag in ("network", "depth", "cardinality", "bottleneck-width", "num-classes")
              if flag in config}
    if shape is not None:
        values["image-shape"] = ",".join(map(str, shape)) if isinstance(shape, tuple) else shape
    return values


def config_path(prefix: str) -> Path:
    """``PREFIX-args.json`` of a checkpoint prefix."""
    return Path(f"{prefix}-args.json")


def read_saved_config(prefix: str, retrain: bool) -> dict | None:
    """The ``PREFIX-args.json`` mapping of the run a ``--retrain`` continues; None when not a retrain, or when the
    file is absent or unreadable (a run killed before its first checkpoint wrote it, the original's files)."""
    path = config_path(prefix)
    if not (retrain and path.is_file()):
        return None
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return saved if isinstance(saved, dict) else None


def config_changes(cfg: RunConfig) -> list[str]:
    """The flags a retrain changes against the ``PREFIX-args.json`` of the run it continues ('lr 0.1 -> 0.01');
    ``cfg`` as trained (:meth:`resnet_toolkit.runplan.RunPlan.flags_as_trained`)."""
    path = config_path(cfg.model_prefix)
    if not (cfg.retrain and path.is_file()):
        return []
    try:
        before = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return []
    config = saved_config(cfg)
    return [f"{k} {before.get(k)} -> {v}" for k, v in config.items() if isinstance(before, dict)
            and before.get(k, v) != v]


def write_config(cfg: RunConfig) -> None:
    """``PREFIX-args.json``: the flags as trained (:func:`saved_config` of
    :meth:`resnet_toolkit.runplan.RunPlan.flags_as_trained`), written with the run's first checkpoint (a run that
    stops before it leaves no file behind); a retrain keeps the file of the run it continues."""
    path = config_path(cfg.model_prefix)
    if not (cfg.retrain and path.is_file()):
        atomic_write_text(path, json.dumps(saved_config(cfg), indent=1) + "\n")
