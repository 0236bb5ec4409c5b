"""normrnn: correct, fast and measurable normalization for recurrent and conv-recurrent networks."""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._loader import lazy_exports

if TYPE_CHECKING:  # what type checkers and the docs see; at run time each name loads on first use (below)
    from .auditing import AuditReport as AuditReport, audit as audit
    from .cells import (
        ConvGRUCell as ConvGRUCell,
        ConvLSTMCell as ConvLSTMCell,
        GRUCell as GRUCell,
        LSTMCell as LSTMCell,
        STLSTMCell as STLSTMCell,
    )
    from .layers import GRU as GRU, LSTM as LSTM, STLSTM as STLSTM, ConvGRU as ConvGRU, ConvLSTM as ConvLSTM
    from .norms import (
        BatchNorm as BatchNorm,
        GroupNorm as GroupNorm,
        Identity as Identity,
        InstanceNorm as InstanceNorm,
        LayerNorm as LayerNorm,
        Layout as Layout,
        RecurrentBatchNorm as RecurrentBatchNorm,
        RMSNorm as RMSNorm,
        create_norm as create_norm,
        explain as explain,
    )

# Importing normrnn does not import torch: the ``normrnn`` command decides OpenMP's wait policy before torch loads
# (normrnn.cli.entry), and "normrnn --help" stays fast. Each name is imported from its subpackage on first use.
_EXPORTS = {  # the one list of the package's names, by the subpackage each is loaded from
    "auditing": ("AuditReport", "audit"),
    "cells": ("ConvGRUCell", "ConvLSTMCell", "GRUCell", "LSTMCell", "STLSTMCell"),
    "layers": ("GRU", "LSTM", "STLSTM", "ConvGRU", "ConvLSTM"),
    "norms": ("BatchNorm", "GroupNorm", "Identity", "InstanceNorm", "LayerNorm", "Layout", "RecurrentBatchNorm",
              "RMSNorm", "create_norm", "explain"),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())

__version__ = "0.2.0"
"""The installed version of normrnn."""

__all__ = sorted([*(name for names in _EXPORTS.values() for name in names), "__version__"])
