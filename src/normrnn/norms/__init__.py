"""Normalization with explicit axes: batch, layer, group, instance, RMS and recurrent batch norm.

Every norm is one statistics core (:mod:`normrnn.norms.functional`) plus a choice of axes named by
layout letters (:mod:`normrnn.norms.layout`); :func:`create_norm` turns spec strings into modules,
:func:`explain` says what a spec reduces, and the ``from_*`` converters import other frameworks' layers.
"""

from .create import NORM_SPECS, NormSpec, create_norm, default_groups, parse_spec
from .functional import KernelPlan, NormAxes, compute_stats, norm_forward, normalize, plan_kernel
from .layout import Layout
from .modules import (
    BatchNorm,
    GroupNorm,
    Identity,
    InstanceNorm,
    LayerNorm,
    RecurrentBatchNorm,
    RMSNorm,
    convert_sync_batchnorm,
)

__all__ = [
    "NORM_SPECS",
    "BatchNorm",
    "GroupNorm",
    "Identity",
    "InstanceNorm",
    "KernelPlan",
    "LayerNorm",
    "Layout",
    "NormAxes",
    "NormSpec",
    "RMSNorm",
    "RecurrentBatchNorm",
    "compute_stats",
    "convert_sync_batchnorm",
    "create_norm",
    "default_groups",
    "explain",
    "from_flax",
    "from_keras",
    "from_tf1_layer_norm",
    "from_torch",
    "norm_forward",
    "normalize",
    "parse_spec",
    "plan_kernel",
]

# Imported last: these build on the modules above.
from ..interop import from_flax, from_keras, from_tf1_layer_norm, from_torch
from .explain import explain
