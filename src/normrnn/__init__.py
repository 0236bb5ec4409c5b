"""normrnn: correct, fast and measurable normalization for recurrent and conv-recurrent networks."""

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

__version__ = "0.1.0"

__all__ = [
    "BatchNorm",
    "GroupNorm",
    "Identity",
    "InstanceNorm",
    "LayerNorm",
    "Layout",
    "RMSNorm",
    "RecurrentBatchNorm",
    "__version__",
    "create_norm",
    "explain",
]
