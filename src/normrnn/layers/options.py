"""The layers' keyword options as ``TypedDict``s: a layer's own, and with its cells' (``**kwargs: Unpack[...]``), so
IDEs and type checkers see every option by name and type."""

from __future__ import annotations

from typing import TypedDict

import torch

from ..cells.options import ConvGRUOptions, ConvLSTMOptions, GRUOptions, LSTMOptions

__all__ = ["ConvGRULayerOptions", "ConvLSTMLayerOptions", "GRULayerOptions", "LSTMLayerOptions", "LayerOptions"]


class LayerOptions(TypedDict, total=False):
    """A layer's own keyword options (see :class:`RecurrentLayer`)."""

    num_layers: int
    residual: bool
    bidirectional: bool
    merge: str
    go_backwards: bool
    batch_first: bool
    dropout: float
    recurrent_dropout: float
    device: torch.device | str | None
    dtype: torch.dtype | None


class LSTMLayerOptions(LayerOptions, LSTMOptions, total=False):
    """An LSTM layer's keyword options: the layer's and every cell's."""


class GRULayerOptions(LayerOptions, GRUOptions, total=False):
    """A GRU layer's keyword options: the layer's and every cell's."""


class ConvLSTMLayerOptions(LayerOptions, ConvLSTMOptions, total=False):
    """A ConvLSTM layer's keyword options: the layer's and every cell's."""


class ConvGRULayerOptions(LayerOptions, ConvGRUOptions, total=False):
    """A ConvGRU layer's keyword options: the layer's and every cell's."""
