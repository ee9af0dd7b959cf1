"""Shared logic behind the project's command-line tools (data, training, logs, prediction).

The layers: ``symbols`` (the networks: spec table, Symbol and Gluon builders) knows nothing of this package; this
package builds on it. Importing it first makes MXNet 1.9.1 importable with the numpy this project pins
(:mod:`symbols.compat`).
"""
from symbols import compat  # noqa: F401  (must run before any `import mxnet`)
