"""What a fused gate kernel may compute for a cell: a small frozen description of the cell's gate block, or the
reason it cannot have one. The cell owns the decision through a whitelist of its options (:data:`LSTM_FUSABLE`):
an option it does not list is refused, so a new cell option never reaches a fused kernel unnoticed
(``tests/test_cells.py`` checks that every option of :class:`~normrnn.cells.ConvLSTMOptions` is listed).

The block a fused kernel computes, with ``pre = W_x * x + W_h * h``:

.. math::
    a = \\mathrm{norm}(\\text{pre}) + b, \\quad [i, f, g, o] = [\\sigma, \\sigma, \\tanh, \\sigma](a), \\quad
    c' = f c + i g, \\quad h' = o \\tanh c'
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from torch import nn

from ..kernels import FusedLSTMBlock
from .gated import GatedCell

__all__ = ["LSTM_FUSABLE", "fused_lstm_block"]


_ANY = None  # outside the gate block (projections, initialization, dispatch), or in it through the norm's view
_Rule = tuple[str, Callable[[Any], bool]] | None

# Every LSTM cell option: None where any value is fine, else (what a fused block needs, whether the cell's value
# is that). An option missing here makes fused_lstm_block refuse every cell.
LSTM_FUSABLE: dict[str, _Rule] = {
    "norm_inputs": ("norm_inputs='joint'", lambda v: v == "joint"),
    "activation": ("activation='tanh'", lambda v: v == "tanh"),
    "recurrent_activation": ("recurrent_activation='sigmoid'", lambda v: v == "sigmoid"),
    "peephole": ("no peepholes or cell norm", lambda v: v is False),
    "norm_cell": ("no peepholes or cell norm", lambda v: v == "none"),
    "peephole_size": _ANY, "peephole_placement": _ANY,  # used only with peepholes, which are refused
    "norm": _ANY, "norm_scope": _ANY, "norm_kwargs": _ANY,  # the gate norm's view says what it computes
    "bias": _ANY, "forget_bias": _ANY,  # the gate bias
    "dilation": _ANY, "recurrent_dilation": _ANY, "padding": _ANY, "stride": _ANY, "projection": _ANY,
    "recurrent_init": _ANY, "recurrent_dropout": _ANY, "backend": _ANY, "device": _ANY, "dtype": _ANY,
}


def fused_lstm_block(cell: GatedCell, options: tuple[str, ...], norm: nn.Module | None) -> FusedLSTMBlock | str:
    """``cell``'s gate block for a fused kernel (with ``norm``, its joint gate norm), or why it has none: an option
    (of ``options``, the cell's) that the whitelist does not list, or a value it refuses."""
    for name in options:
        if name not in LSTM_FUSABLE:
            return f"the fused blocks do not know the option {name!r}"
        rule = LSTM_FUSABLE[name]
        if rule is not None and not rule[1](getattr(cell, name)):
            return _refusal(cell, name, rule[0])
    return FusedLSTMBlock(norm=norm if cell.normalized else None, bias=cell.gate_bias)


def _refusal(cell: GatedCell, name: str, needs: str) -> str:
    if name in ("activation", "recurrent_activation"):
        return (f"it computes tanh and sigmoid only, got activation={cell.activation!r}, "
                f"recurrent_activation={cell.recurrent_activation!r}")
    if name in ("peephole", "norm_cell"):
        peephole, norm_cell = getattr(cell, "peephole", None), getattr(cell, "norm_cell", None)
        return f"it has {needs}, got peephole={peephole}, norm_cell={norm_cell!r}"
    return f"it needs {needs}, got {name}={getattr(cell, name)!r}"
