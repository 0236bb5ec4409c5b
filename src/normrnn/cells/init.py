"""A cell's initial values: the recurrent-weight schemes (orthogonal per gate, or uniform), and the checks of the
two rates that set its start (recurrent dropout, forget-gate bias)."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

__all__ = ["RECURRENT_INITS", "check_dropout", "check_forget_bias", "init_recurrent_weight", "orthogonal_"]

RECURRENT_INITS = ("orthogonal", "default")


def check_dropout(rate: float) -> float:
    """A recurrent-dropout rate, in [0, 1), as a float."""
    if not 0.0 <= rate < 1.0:
        raise ValueError(f"expected recurrent_dropout in [0, 1), got {rate!r}")
    return float(rate)


def check_forget_bias(value: float) -> float:
    """A finite forget-gate bias, as a float."""
    if not math.isfinite(float(value)):
        raise ValueError(f"expected forget_bias to be a finite number, got {value!r}")
    return float(value)


def orthogonal_(block: Tensor) -> None:
    """``nn.init.orthogonal_``, computed in float32 for half-precision weights (its QR has no bf16/fp16 kernel on
    the CPU), then rounded: the same draws, so a half-precision cell starts as the float32 one rounded."""
    if block.dtype not in (torch.float16, torch.bfloat16):
        nn.init.orthogonal_(block)
        return
    full = torch.empty(block.shape, dtype=torch.float32, device=block.device)
    nn.init.orthogonal_(full)
    with torch.no_grad():
        block.copy_(full)


def init_recurrent_weight(weight_h: Tensor, *, gates: int, scheme: str, kernel_size: tuple[int, ...]) -> None:
    """``W_h`` of ``gates`` blocks of ``C`` rows: each block orthogonal, or all uniform(±1/sqrt(C·k^d))."""
    C = weight_h.shape[0] // gates
    if scheme == "orthogonal":
        for g in range(gates):
            orthogonal_(weight_h[g * C : (g + 1) * C])  # (C, C·k^d) rows orthonormal
    else:
        bound = 1 / math.sqrt(C * math.prod(kernel_size))
        nn.init.uniform_(weight_h, -bound, bound)
