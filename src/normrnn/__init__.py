"""normrnn: correct, fast and measurable normalization for recurrent and conv-recurrent networks."""

from .auditing import AuditReport, audit
from .cells import ConvGRUCell, ConvLSTMCell, GRUCell, LSTMCell
from .layers import GRU, LSTM, ConvGRU, ConvLSTM
from .norms import (
    BatchNorm,
    GroupNorm,
    Identity,
    InstanceNorm,
    LayerNorm,
    Layout,
    RecurrentBatchNorm,
    RMSNorm,
    create_norm,
    explain,
)

__version__ = "0.2.0"
"""The installed version of normrnn."""

__all__ = [
    "GRU",
    "LSTM",
    "AuditReport",
    "BatchNorm",
    "ConvGRU",
    "ConvGRUCell",
    "ConvLSTM",
    "ConvLSTMCell",
    "GRUCell",
    "GroupNorm",
    "Identity",
    "InstanceNorm",
    "LSTMCell",
    "LayerNorm",
    "Layout",
    "RMSNorm",
    "RecurrentBatchNorm",
    "__version__",
    "audit",
    "create_norm",
    "explain",
]
