"""``GatedCell``: what the gated families (LSTM, GRU) add to :class:`~normrnn.cells.base.RecurrentCell`: a forget
(or update) gate that starts biased, a probe that observes the sigmoid gates, and the bias after the gate norm."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ..kernels import FusedLSTMBlock
from .base import RecurrentCell
from .gate_norms import shift_of
from .gates import GateProbe
from .init import check_forget_bias

__all__ = ["GatedCell"]


class GatedCell(RecurrentCell):
    """Base of the gated cells: :class:`~normrnn.cells.base.RecurrentCell` with a forget gate.

    Args:
        forget_bias: added to the forget (LSTM) or update (GRU) gate's shift at initialization. Default: ``1.0``.

    Every other argument is :class:`~normrnn.cells.base.RecurrentCell`'s. ``gate_probe``, when set to a function,
    receives each step's sigmoid gates (the study's gate saturation); the step then runs eagerly.
    """

    forget_gate: int  # index of the gate block that receives forget_bias (LSTM: f, GRU: z)

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...] = 1, *,
                 forget_bias: float = 1.0, **kwargs: Any) -> None:
        self.forget_bias = check_forget_bias(forget_bias)
        super().__init__(in_channels, hidden_channels, kernel_size, **kwargs)
        self.gate_probe: GateProbe | None = None  # set to observe the sigmoid gates, e.g. their saturation

    @property
    def gate_bias(self) -> Tensor | None:
        """The bias added after the gate norm; None where the input projection carries it, or β replaces it."""
        return None if self._fold_bias else self.bias

    def reset_parameters(self) -> None:
        """:meth:`RecurrentCell.reset_parameters`, then ``forget_bias`` on the forget (LSTM) or update (GRU) gate's
        shift: the cell's bias, or the joint gate norm's β that replaces it."""
        super().reset_parameters()
        shift = self.bias if self.bias is not None else shift_of(self._shift_norm())
        if shift is not None:
            C = self.hidden_channels
            with torch.no_grad():
                shift[self.forget_gate * C : (self.forget_gate + 1) * C] = self.forget_bias

    def fused_block(self) -> FusedLSTMBlock | str:
        """This cell's gate block as a fused kernel computes it, or why it has none (:mod:`.fusion`)."""
        return f"there is no fused block for {type(self).__name__} yet"

    def extra_repr(self) -> str:
        return super().extra_repr() + (f", forget_bias={self.forget_bias}" if self.forget_bias != 1.0 else "")
