"""PredRNN's stack: :class:`STLSTM`, ST-LSTM layers stepped together with the zigzag spatiotemporal memory."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells import STLSTMCell, STLSTMState
from ..cells.states import freeze
from .stack import RecurrentLayer

__all__ = ["STLSTM"]


class STLSTM(RecurrentLayer):
    r"""A stack of ST-LSTM layers over ``(B, T, C, *S)`` sequences: PredRNN (Wang et al., NeurIPS 2017).

    Unlike the other layers, which run each layer over the whole sequence in turn, the stack steps all its layers
    together, because the spatiotemporal memory ``m`` flows in a zigzag: up through the layers within a step, then
    from the top layer to the bottom one at the next step. Every layer has the same ``hidden_channels`` (``m`` is
    one tensor for all of them).

    Takes the keyword arguments of :class:`RecurrentLayer` (the stack; not ``bidirectional`` or ``go_backwards``,
    which a zigzag forward in time cannot have) and of :class:`~normrnn.cells.STLSTMCell` (each layer's cell).
    ``residual=True`` adds each layer's input to its output, as in the other layers; ``m`` is never skipped.

    Args:
        kernel_size: an int or one per spatial axis.
        spatial_dims: 1, 2 or 3. Default: ``2``.

    Shape:
        - Input: ``(B, T, C_in, *S)``; mask ``(B, T)``; state: per layer ``(h, c, m)``, each ``(B, C, *S)``, of
          which the top layer's ``m`` starts the zigzag.
        - Output: ``(B, T, C, *S)`` and the per-layer final states.

    Example::

        >>> model = STLSTM(1, 16, 3, num_layers=2, norm="layer")
        >>> y, states = model(torch.randn(2, 5, 1, 16, 16))
        >>> y.shape, len(states), len(states[0])
        (torch.Size([2, 5, 16, 16, 16]), 2, 3)
    """

    cell_class = STLSTMCell  # type: ignore[assignment]  # a cell of its own shape: (h, c, m)

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int], kernel_size: int | tuple[int, ...],
                 *, spatial_dims: int = 2, **kwargs: Any) -> None:
        if kwargs.get("bidirectional") or kwargs.get("go_backwards"):
            raise ValueError("expected an ST-LSTM stack to run forward in time (its memory zigzags from the top "
                             "layer at one step to the bottom at the next), got bidirectional or go_backwards")
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)
        if len(set(self.hidden_channels)) != 1:
            raise ValueError("expected one hidden_channels for every ST-LSTM layer (the spatiotemporal memory passes "
                             f"through all of them), got {self.hidden_channels}")

    def stlstm_cells(self) -> list[STLSTMCell]:
        return [cast(STLSTMCell, layer.cells[0]) for layer in self.recurrences]

    def forward(self, x: Tensor, state: Sequence[STLSTMState | None] | None = None,  # type: ignore[override]
                mask: Tensor | None = None, *, lengths: Tensor | Sequence[int] | None = None,
                ) -> tuple[Tensor, list[STLSTMState]]:
        """Run the stack over a sequence, all layers at each step (see the class)."""
        self._check_input(x)
        if not self.batch_first:
            x = x.transpose(0, 1)  # (B, T, C, *S)
        B, T = x.shape[:2]
        mask = self._resolve_mask(mask, lengths, B, T, x.device)
        given = self._check_states(state, B, tuple(x.shape[3:]), x)  # type: ignore[arg-type]  # (h, c, m) each
        if mask is not None:  # padding never enters the graph
            x = x.masked_fill(~mask.view(B, T, *([1] * (x.dim() - 2))), 0)
        cells = self.stlstm_cells()
        gx0 = cells[0].project_input(x.flatten(0, 1))  # (B·T, 7C, *S): the bottom layer's input, hoisted
        gx0 = gx0.unflatten(0, (B, T))  # (B, T, 7C, *S)
        states: list[STLSTMState] = [cast(STLSTMState, s) if s is not None else cell.initial_state(gx0[:, 0])
                                     for s, cell in zip(given, cells, strict=True)]
        outputs = []
        for t in range(T):
            step_mask = None if mask is None else mask[:, t]
            inp, m = x[:, t], states[-1][2]  # the zigzag: the top layer's memory enters the bottom layer
            for k, cell in enumerate(cells):
                if k > 0 and self.dropout:
                    inp = F.dropout(inp, self.dropout, self.training)
                gx = gx0[:, t] if k == 0 else cell.project_input(inp)  # (B, 7C, *S)
                h, c, m = cell.step(gx, (states[k][0], states[k][1], m), t=t, mask=step_mask)
                states[k] = (h, c, freeze(m, states[k][2], step_mask))  # a masked step keeps each layer's own m
                inp = h + self._skip_step(k, inp).to(h.dtype) if self.residual else h
            outputs.append(inp if step_mask is None else inp * step_mask.view(B, *([1] * (inp.dim() - 1))))
        y = torch.stack(outputs, 1)  # (B, T, C, *S)
        return (y if self.batch_first else y.transpose(0, 1)), states

    def _skip_step(self, k: int, x: Tensor) -> Tensor:
        """Layer ``k``'s residual path at one step: ``x`` ``(B, C_in, *S)`` as its identity or 1×1 projection."""
        return self._skip(k, x[:, None])[:, 0]
