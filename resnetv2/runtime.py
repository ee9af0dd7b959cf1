"""Process-level MXNet settings for speed on CPU; call :func:`configure` before the first ``import mxnet``."""
from __future__ import annotations

import os

SETTINGS: dict[str, str] = {}


def configure(overrides: dict[str, str] | None = None) -> dict[str, str]:
    """Set each speed setting in ``os.environ`` unless the user already set it; returns what was set."""
    applied = {}
    for key, value in {**SETTINGS, **(overrides or {})}.items():
        if key not in os.environ:
            os.environ[key] = value
            applied[key] = value
    return applied
