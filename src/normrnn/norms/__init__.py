"""Normalization with explicit axes: batch, layer, group, instance, RMS and recurrent batch norm.

Every norm is one statistics core (:mod:`normrnn.norms.functional`) plus a choice of axes named by
layout letters (:mod:`normrnn.norms.layout`), behind one call protocol (:mod:`normrnn.norms.base`).
:func:`create_norm` turns spec strings into modules through one registry (:mod:`normrnn.norms.create`),
:func:`explain` says what a spec reduces, and the ``from_*`` converters (:mod:`normrnn.norms.convert`)
import other frameworks' layers. This package imports nothing else from normrnn.
"""

from . import modules as _per_sample  # noqa: F401  first, so the per-sample norms lead every list of spec names
from .base import Description, GroupedStatsView, GroupNormView, Norm, call_norm
from .batch import DEFAULT_MAX_STEPS, BatchNorm, RecurrentBatchNorm
from .convert import from_flax, from_keras, from_tf1_layer_norm, from_torch
from .create import (
    NORM_SPECS,
    NormEntry,
    NormLike,
    NormSpec,
    create_norm,
    default_groups,
    find_norm,
    norm_entries,
    norm_spec_names,
    register_norm,
    registered_norm,
    unregister_norm,
)
from .explaining import explain
from .functional import KernelChoice, NormAxes, choose_kernel, compute_stats, grouped_view, norm_forward, normalize
from .layout import Layout
from .modules import AxisNorm, GroupNorm, Identity, InstanceNorm, LayerNorm, RMSNorm
from .sync import convert_sync_batchnorm

__all__ = [
    "DEFAULT_MAX_STEPS",
    "NORM_SPECS",
    "AxisNorm",
    "BatchNorm",
    "Description",
    "GroupNorm",
    "GroupNormView",
    "GroupedStatsView",
    "Identity",
    "InstanceNorm",
    "KernelChoice",
    "LayerNorm",
    "Layout",
    "Norm",
    "NormAxes",
    "NormEntry",
    "NormLike",
    "NormSpec",
    "RMSNorm",
    "RecurrentBatchNorm",
    "call_norm",
    "choose_kernel",
    "compute_stats",
    "convert_sync_batchnorm",
    "create_norm",
    "default_groups",
    "explain",
    "find_norm",
    "from_flax",
    "from_keras",
    "from_tf1_layer_norm",
    "from_torch",
    "grouped_view",
    "norm_entries",
    "norm_forward",
    "norm_spec_names",
    "normalize",
    "register_norm",
    "registered_norm",
    "unregister_norm",
]
