"""The cells' keyword options as ``TypedDict``s. Cell subclasses and layers take them as ``**options:
Unpack[...]``, so IDEs and type checkers see every option by name and type (:class:`~normrnn.cells.base.RecurrentCell`
documents what each does)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, TypedDict

import torch

from ..norms import NormLike

__all__ = ["CellOptions", "GRUOptions", "LSTMOptions"]


class CellOptions(TypedDict, total=False):
    """Every cell's keyword options (see :class:`~normrnn.cells.base.RecurrentCell`)."""

    dilation: int | tuple[int, ...]
    recurrent_dilation: int | tuple[int, ...] | None
    bias: bool
    forget_bias: float
    norm: NormLike
    norm_inputs: str
    norm_scope: str
    norm_kwargs: Mapping[str, Any] | None
    recurrent_init: str
    recurrent_dropout: float
    backend: str
    projection: str
    padding: str
    stride: int | tuple[int, ...]
    activation: str
    recurrent_activation: str
    device: torch.device | str | None
    dtype: torch.dtype | None


class LSTMOptions(CellOptions, total=False):
    """An LSTM cell's options: every cell's, and the peepholes and the cell-state norm."""

    peephole: bool | str
    peephole_size: tuple[int, ...] | None
    peephole_placement: str
    norm_cell: str


class GRUOptions(CellOptions, total=False):
    """A GRU cell's options: every cell's, and where the reset gate applies."""

    reset_after: bool
