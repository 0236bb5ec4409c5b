"""What a gate backend sees of a cell: a narrow protocol, so the kernels never depend on the cells' classes.

A backend calls ``cell.gate_block(...)`` (the eager block) and reads ``cell.norm_spec`` (for messages),
``cell.training`` and ``cell.modules()`` (for the compile key and whether the block traces). A fused kernel also
asks a :class:`FusableCell` for ``fused_block()``: a frozen :class:`FusedLSTMBlock`, or the reason it has none.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol, Union, runtime_checkable

from torch import Tensor, nn

from ..norms import Norm
from ..norms.base import GroupedStatsView, GroupNormView

__all__ = ["FusableCell", "FusedLSTMBlock", "GateCell", "State", "fused_block", "traceable"]

State = Union[Tensor, tuple[Tensor, ...]]
"""A cell's state as a backend passes it on: ``h``, or ``(h, c)``."""


@runtime_checkable
class GateCell(Protocol):
    """A cell whose gate block a backend runs."""

    norm_spec: str
    training: bool

    def gate_block(self, gx: Tensor, gh: Tensor | None, state: Any, t: int, mask: Tensor | None) -> Any:
        """Everything after the projections, eagerly: pre-activations and state in, new state out."""

    def modules(self) -> Iterator[nn.Module]:
        """The cell and its submodules (``nn.Module.modules``)."""


@runtime_checkable
class FusableCell(GateCell, Protocol):
    """A cell that can describe its gate block to a fused kernel."""

    def fused_block(self) -> FusedLSTMBlock | str:
        """The gate block as a fused kernel computes it, or why it has none."""


@dataclass(frozen=True)
class FusedLSTMBlock:
    """A plain LSTM update after one joint gate norm, as a fused kernel reads it. A kernel takes the view of the norm
    it computes (each built when asked for, so a step builds only the one its kernel uses)."""

    norm: nn.Module | None  # the joint gate norm; None: the cell has none
    bias: Tensor | None  # the cell's gate bias, added after the norm (None: the norm's shift is the bias)

    @property
    def normalized(self) -> bool:
        return self.norm is not None

    @property
    def stats(self) -> GroupedStatsView | None:
        """The gate norm as per-(sample, group) statistics; None: no norm, or another kind (a foreign one, say)."""
        return self.norm.as_grouped_stats() if isinstance(self.norm, Norm) else None

    @property
    def group_norm(self) -> GroupNormView | None:
        """The gate norm as ``F.group_norm``'s arguments, where it is one."""
        return self.norm.as_group_norm() if isinstance(self.norm, Norm) else None


def fused_block(cell: GateCell) -> FusedLSTMBlock | str:
    """``cell``'s fused block, or why it has none (a cell that cannot describe one, or its own reason)."""
    if isinstance(cell, FusableCell):
        return cell.fused_block()
    return f"{type(cell).__name__} has no fused gate block"


def traceable(cell: GateCell, *, masked: bool) -> bool:
    """Whether ``torch.compile`` can trace ``cell``'s gate block: every normrnn norm in it agrees."""
    return all(m.traceable(masked=masked) for m in cell.modules() if isinstance(m, Norm))
