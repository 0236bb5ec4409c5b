"""Import normalization layers from PyTorch, Keras, TF1 and Flax as equivalent normrnn modules.

Each converter maps the framework's axis convention to layout letters, converts momentum and the
running-variance estimator, and copies parameters and buffers where the source has them. The table in
``docs/norm-semantics`` (shared) lists what each framework computes:

- Keras/Flax ``momentum`` weights the old average: ``m_torch = 1 - m_keras``; their running variance is
  biased (Keras 3, Flax), PyTorch's unbiased.
- TF1 ``layer_norm`` reduces ``begin_norm_axis..R-1`` (default 1: every non-batch axis, T included) with
  ``eps=1e-12`` and parameters over ``begin_params_axis..R-1``.
- Keras 3 ``GroupNormalization`` and Flax ``GroupNorm`` reduce every non-batch axis but the groups, T
  included.

Flax's ``use_fast_variance`` (``E[x^2] - E[x]^2``) is deliberately not reproduced: normrnn always uses the
two-pass variance, which agrees with Flax wherever Flax's formula is accurate.
"""

from __future__ import annotations

from ._common import load_arrays
from .flax import from_flax
from .pytorch import from_torch
from .tensorflow import from_keras, from_tf1_layer_norm

__all__ = ["from_flax", "from_keras", "from_tf1_layer_norm", "from_torch", "load_arrays"]
