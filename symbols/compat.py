"""Make MXNet 1.9.1 importable beside a current numpy.

MXNet 1.9.1 (the last release) refers to ``np.bool``, which numpy removed in 1.24. On Python <= 3.11 the
requirements pin numpy 1.23.5 and this module does nothing; on Python 3.12 (numpy 1.26.x) it restores the alias.
Import it before the first ``import mxnet`` in every entry point; ``symbols`` imports it on its own, and the
library (``resnet_toolkit``) imports ``symbols`` first, so ``import resnet_toolkit`` (or ``import symbols``) first
is enough.
"""
import warnings

import numpy as np

if "bool" not in np.__dict__:
    np.bool = bool  # type: ignore[attr-defined]

# MXNet 1.9.1 still calls a few numpy APIs that numpy 1.2x deprecates; the warnings are noise to a user.
warnings.filterwarnings("ignore", category=DeprecationWarning, module=r"mxnet(\.|$)")
