r"""A fused, memory-light LSTM gate block with a per-gate group norm: one ``torch.autograd.Function``.

:func:`fused_lstm_gates` computes exactly :func:`normrnn.cells.lstm_gates` with a per-gate group norm
(``layer`` or ``group:G`` over the channel-first gate tensor) and no peepholes or cell norm, but as one
``torch.autograd.Function`` that saves only its inputs and the norm's mean and rstd, and recomputes the
normalized gates in backward (Chen et al. 2016, arXiv:1604.06174). The eager block saves every
intermediate: the normalized tensor, four activations and the new cell state.

.. math::
    a = \mathrm{GN}_G(\text{pre}; \gamma, \beta), \quad [i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](a), \quad
    c' = f c + i g, \quad h' = o \tanh(c')

Backward, with :math:`\bar x` the upstream gradients:

.. math::
    \bar c_{tot} = \bar c' + \bar h' o (1 - \tanh^2 c'), \quad
    \bar a = [\bar c_{tot} g \, i(1-i),\ \bar c_{tot} c \, f(1-f),\ \bar c_{tot} i (1-g^2),\ \bar h' \tanh c' \, o(1-o)]

then the native group-norm backward maps :math:`\bar a` to the gradients of pre, γ and β, and
:math:`\bar c = \bar c_{tot} f`.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from .cell import GateCell, State, fused_block
from .registry import GateBackend, register_backend

__all__ = ["FusedBackend", "fused_lstm_gates"]


def _flat(x: Tensor) -> tuple[int, int, int]:
    """``(N, C, HxW)`` of a channel-first tensor ``(B, C, *S)``."""
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def _gates(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    i, f, g, o = a.chunk(4, dim=1)  # each (B, C, *S)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    return i, f, g, o, c_new, torch.tanh(c_new)


class _FusedLSTMGates(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, c: Tensor, weight: Tensor, bias: Tensor, groups: int,
                eps: float) -> tuple[Tensor, Tensor]:
        N, C, HxW = _flat(pre)
        a, mean, rstd = torch.native_group_norm(pre, weight, bias, N, C, HxW, groups, eps)
        _, _, _, o, c_new, tanh_c = _gates(a, c)
        ctx.save_for_backward(pre, c, weight, bias, mean, rstd)
        ctx.groups = groups
        return o * tanh_c, c_new

    @staticmethod
    def backward(ctx: Any, dh: Tensor, dc_new: Tensor) -> tuple[Tensor | None, ...]:
        pre, c, weight, bias, mean, rstd = ctx.saved_tensors
        N, C, HxW = _flat(pre)
        G = ctx.groups
        # recompute the normalized gates from the saved statistics
        xg = pre.reshape(N, G, -1)  # (N, G, C/G·HxW)
        xhat = ((xg - mean[..., None]) * rstd[..., None]).reshape(pre.shape)
        shape = (1, C) + (1,) * (pre.dim() - 2)
        a = xhat.to(pre.dtype) * weight.view(shape).to(pre.dtype) + bias.view(shape).to(pre.dtype)  # as forward
        i, f, g, o, _, tanh_c = _gates(a, c)
        dc_total = dh * o * (1 - tanh_c * tanh_c)
        if dc_new is not None:
            dc_total = dc_total + dc_new
        da = torch.cat([dc_total * g * i * (1 - i), dc_total * c * f * (1 - f), dc_total * i * (1 - g * g),
                        dh * tanh_c * o * (1 - o)], dim=1).to(pre.dtype)  # (B, 4C, *S)
        dpre, dweight, dbias = torch.ops.aten.native_group_norm_backward(
            da, pre, mean, rstd, weight, N, C, HxW, G, [True, True, True])
        return dpre, (dc_total * f).to(c.dtype), dweight.to(weight.dtype), dbias.to(bias.dtype), None, None


def fused_lstm_gates(pre: Tensor, c: Tensor, weight: Tensor, bias: Tensor, *, groups: int,
                     eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """The LSTM gate block with a per-gate group norm as one memory-light autograd op.

    Args:
        pre: the gate pre-activations, ``(B, 4C, *S)``, channels first.
        c: the previous cell state, ``(B, C, *S)``.
        weight, bias: the norm's γ and β, ``(4C,)`` each.
        groups: the number of norm groups over the 4C channels (4 for per-gate layer norm).
        eps: added to the variance. Default: ``1e-5``.

    Returns:
        ``(h, c)``, each ``(B, C, *S)``.

    Example::

        >>> pre, c = torch.randn(2, 8, 3, 3), torch.randn(2, 2, 3, 3)
        >>> h, c1 = fused_lstm_gates(pre, c, torch.ones(8), torch.zeros(8), groups=4)
        >>> h.shape
        torch.Size([2, 2, 3, 3])
    """
    if pre.shape[1] % groups or pre.shape[1] != 4 * c.shape[1]:
        raise ValueError(f"expected pre (B, 4C, *S) for c (B, C, *S) and groups dividing 4C, got "
                         f"{tuple(pre.shape)}, {tuple(c.shape)}, groups={groups}")
    h, c_new = _FusedLSTMGates.apply(pre, c, weight, bias, groups, eps)  # type: ignore[no-untyped-call]  # torch's apply
    return h, c_new


class FusedBackend(GateBackend):
    """One autograd op for the LSTM gate block with a per-gate group or layer norm (:func:`fused_lstm_gates`): it
    saves only the inputs and the statistics, about half the activation memory of eager. Opt-in: never ``"auto"``."""

    name = "fused"
    priority = -1

    def prefers(self, device: torch.device) -> bool:
        return False

    def unsupported(self, cell: GateCell) -> str | None:
        block = fused_block(cell)
        if isinstance(block, str):
            return block
        if block.group_norm is None:
            return (f"it needs a joint group or layer gate norm with a per-channel scale and shift, "
                    f"got norm={cell.norm_spec!r}")
        return None

    def __call__(self, cell: GateCell, gx: Tensor, gh: Tensor | None, state: State, t: int,
                 mask: Tensor | None) -> State:
        block = fused_block(cell)
        assert not isinstance(block, str)  # unsupported() said so at construction
        g = block.group_norm
        assert g is not None  # as above
        pre = gx if gh is None else gx + gh
        return fused_lstm_gates(pre, state[1], g.weight, g.bias, groups=g.groups, eps=g.eps)


register_backend(FusedBackend())
