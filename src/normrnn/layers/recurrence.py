"""One layer of a recurrent stack, as composition: a cell run over time in one direction, or two.

:func:`run_direction` is the time loop of one cell (the input projection hoisted out of it, or one conv of
``[x; h]`` per step); :class:`Recurrence` holds one cell (unidirectional) or two (bidirectional) and merges
their outputs. Masks and states arrive validated: :class:`normrnn.layers.RecurrentLayer` checks them once.
"""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from .._checks import autocasting
from ..cells import RecurrentCell
from ..cells.base import joint_projection, joint_weight
from ..cells.states import CellState, LayerState, dropout_mask, hidden_of

__all__ = ["MERGES", "Recurrence", "reverse_order", "run_direction"]

MERGES = ("concat", "sum")


def reverse_order(mask: Tensor | None, T: int) -> Tensor | None:
    """Per-sample time indices that read each sequence backwards from its own last valid step.

    Valid steps come first, latest first; padding follows. ``None`` (no mask) means a plain flip.

    Example::

        >>> reverse_order(torch.tensor([[True, True, False]]), 3)
        tensor([[1, 0, 2]])
    """
    if mask is None:
        return None
    t = torch.arange(T, device=mask.device)
    key = torch.where(mask, -t, T + t)  # valid steps descending, then padding ascending
    return torch.argsort(key, dim=1, stable=True)


def _projected_dtype(x: Tensor) -> Tensor:
    """``x``, or an empty tensor of the dtype a projection of ``x`` has under autocast: the state's dtype."""
    device_type = x.device.type
    if x.is_floating_point() and autocasting(x):
        return x.new_empty((x.shape[0], 0, *x.shape[2:]), dtype=torch.get_autocast_dtype(device_type))
    return x


def _take(x: Tensor, order: Tensor | None) -> Tensor:
    """``x[b, order[b, k]]`` for each sample: ``(B, T, ...)`` reordered along T."""
    if order is None:
        return x.flip(1)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], order]


def run_direction(cell: RecurrentCell, x: Tensor, state: CellState | None, mask: Tensor | None, *,
                  reverse: bool = False) -> tuple[Tensor, CellState]:
    """Run ``cell`` over ``x`` ``(B, T, C, *S)``, backwards from each sequence's own end when ``reverse``.

    Returns the outputs ``(B, T, C_h, *S)`` in the input's time order and the final state.
    """
    B, T, C = x.shape[:3]
    spatial = x.shape[3:]
    joint = joint_projection(cell, x.device)
    if joint:  # one conv of [x_t; h] per step; x itself is the per-step input
        seq, weight = x, joint_weight(cell)  # weight: (G·C_h, C + C_h, *k), concatenated once
    else:
        seq = cell.project_input(x.reshape(B * T, C, *spatial))  # (B·T, G·C_h, *S'), one hoisted conv
        seq = seq.reshape(B, T, *seq.shape[1:])  # (B, T, G·C_h, *S'); S' = S unless the input conv resamples
    order = None
    if reverse:
        order = reverse_order(mask, T)
        seq = _take(seq, order)
        if mask is not None and order is not None:  # (no mask: a plain flip)
            mask = mask.gather(1, order)  # valid steps first
    steps = seq.unbind(1)  # T views (B, *, *S); unlike seq[:, t], backward stacks once instead of T scatters
    if state is None:
        state = cell.initial_state(_projected_dtype(steps[0]))
    recurrent_mask = dropout_mask(hidden_of(state), cell.recurrent_dropout, training=cell.training)
    outputs = []
    for t, s_t in enumerate(steps):
        step_mask = None if mask is None else mask[:, t]
        if joint:
            gx_t = cell.project_joint(s_t, hidden_of(state), weight, recurrent_mask)  # (B, G·C_h, *S)
            state = cell.step(gx_t, state, t=t, mask=step_mask, joint=True)
        else:
            state = cell.step(s_t, state, t=t, mask=step_mask, recurrent_mask=recurrent_mask)
        outputs.append(hidden_of(state))
    y = torch.stack(outputs, dim=1)  # (B, T, C_h, *S)
    if reverse:
        y = _take(y, None if order is None else torch.argsort(order, dim=1))
    return y, state


class Recurrence(nn.ModuleList):
    """One layer: a forward cell, and for a bidirectional layer a backward one, merged by ``merge``; or one cell
    that reads the sequence last step first (``go_backwards``, Keras' option, outputs in the order read).

    Its children are the cells themselves (``0`` forward, ``1`` backward), so state dicts read
    ``layers.K.D.weight_x``.

    Shape:
        - Input: ``(B, T, C_in, *S)``; state: the cell's, or a ``(forward, backward)`` pair.
        - Output: ``(B, T, C_out, *S)`` and the final state in the same structure.
    """

    def __init__(self, cells: list[RecurrentCell], *, merge: str = "concat", go_backwards: bool = False) -> None:
        super().__init__(cells)
        self.merge = merge
        self.go_backwards = go_backwards

    @property
    def bidirectional(self) -> bool:
        return len(self) == 2

    @property
    def cells(self) -> list[RecurrentCell]:
        """The forward cell, and the backward one of a bidirectional layer."""
        return cast(list[RecurrentCell], list(self))  # nn.ModuleList types its items as Module

    @property
    def out_channels(self) -> int:
        C = self.cells[0].hidden_channels
        return 2 * C if self.bidirectional and self.merge == "concat" else C

    def forward(self, x: Tensor, state: LayerState | None, mask: Tensor | None) -> tuple[Tensor, LayerState]:
        cells = self.cells
        if self.go_backwards:  # Keras' go_backwards: read the steps last to first, output them in that order
            return run_direction(cells[0], x.flip(1), cast(CellState | None, state),
                                 None if mask is None else mask.flip(1))
        if not self.bidirectional:
            return run_direction(cells[0], x, cast(CellState | None, state), mask)
        states = (None, None) if state is None else cast(tuple[CellState, CellState], state)
        (y_f, s_f), (y_b, s_b) = (run_direction(cell, x, s, mask, reverse=d == 1)
                                  for d, (cell, s) in enumerate(zip(cells, states, strict=True)))
        y = torch.cat([y_f, y_b], dim=2) if self.merge == "concat" else y_f + y_b  # (B, T, C_out, *S)
        return y, (s_f, s_b)
