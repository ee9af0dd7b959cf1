"""Shared logic behind the project's command-line tools (data, training, logs, prediction).

Importing the package first makes MXNet 1.9.1 importable with the numpy this project pins (see ``compat``).
"""
from . import compat  # noqa: F401  (must run before any `import mxnet`)
