"""A ``--config`` file (JSON or YAML, e.g. a ``PREFIX-args.json`` a run wrote) read as data and turned into
command-line words that the real flags then override."""
from __future__ import annotations

import argparse
import os
from pathlib import Path

from resnet_toolkit.errors import UserError


def load_config(path: str | os.PathLike) -> dict:
    """Flag values from a JSON or YAML file (a mapping of flag names to values); read as data only (YAML's safe
    loader: no tags, no objects)."""
    import json

    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"--config {path}: cannot read it ({getattr(exc, 'strerror', None) or exc})") from None
    try:
        config = json.loads(text) if path.suffix.lower() == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else "parse error"
        raise UserError(f"--config {path}: not valid {'JSON' if path.suffix.lower() == '.json' else 'YAML'} "
                        f"({first})") from None
    if not isinstance(config, dict):
        raise UserError(f"--config {path}: must hold a mapping of flag names to values, got a "
                        f"{type(config).__name__}")
    return config


def config_argv(config: dict, parser: argparse.ArgumentParser, where: str) -> list[str]:
    """``config`` as command-line words for ``parser`` (placed before the real ones, which then override)."""
    actions = {opt[2:]: a for a in parser._actions for opt in a.option_strings if opt.startswith("--")}
    argv: list[str] = []
    for key, value in config.items():
        flag = str(key).replace("_", "-")
        action = actions.get(flag)
        if action is None or action.dest in ("help", "config"):
            known = ", ".join(sorted(k for k in actions if k not in ("help", "config")))
            raise UserError(f"--config {where}: unknown flag {key!r}; known: {known}")
        if value is None:
            continue
        if isinstance(action, argparse._StoreTrueAction):
            if not isinstance(value, bool):
                raise UserError(f"--config {where}: {key} must be true or false, got {value!r}")
            argv += [f"--{flag}"] if value else []
        elif isinstance(action, argparse.BooleanOptionalAction):  # --mirror / --no-mirror
            if not isinstance(value, bool):
                raise UserError(f"--config {where}: {key} must be true or false, got {value!r}")
            argv += [f"--{flag}" if value else f"--no-{flag}"]
        elif isinstance(value, (dict, bool)):
            raise UserError(f"--config {where}: {key} must be a number, a string or a list, got {value!r}")
        elif isinstance(value, list) and action.nargs in ("+", "*"):
            argv += [f"--{flag}", *map(str, value)]  # one word an item (--teacher A,160 B,160)
        elif isinstance(value, list):
            argv += [f"--{flag}", ",".join(map(str, value))]
        else:
            argv += [f"--{flag}", str(value)]
    return argv
