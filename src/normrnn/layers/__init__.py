r"""Sequence layers: stacked, residual, bidirectional ConvLSTM, ConvGRU, LSTM and GRU.

A layer loops a :mod:`normrnn.cells` cell over time, layer after layer, built by composition:
:func:`~normrnn.layers.recurrence.run_direction` (one cell, one direction) → :class:`Recurrence` (one
layer, one or two directions) → :class:`RecurrentLayer` (the stack):

- the input projection ``W_x * x`` of a whole sequence is one batched convolution (hoisted out of the
  time loop); only ``W_h * h`` and the gate block run per step;
- ``residual=True`` adds each layer's input to its output (through a 1×1 projection when the channels
  differ); ``bidirectional=True`` runs a second cell backwards and merges the two by ``"concat"`` or
  ``"sum"``; ``dropout`` drops between layers, ``recurrent_dropout`` is variational (one mask on ``h``
  per sequence, Gal & Ghahramani 2016);
- ``mask`` ``(B, T)`` (True = valid) or ``lengths`` ``(B,)`` handle variable-length sequences: the
  state is frozen where a step is padding, outputs there are zero, padding never enters batch statistics,
  and the backward direction starts at each sequence's own end;
- ``forward(x, state)`` takes and returns one state per layer, so calling a layer on consecutive chunks
  of a sequence, passing the state along, equals one call on the whole sequence;
- ``layer.cells()`` iterates the cells and ``layer.cell(k, d)`` picks one.

Nothing depends on the spatial size, so one module runs at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TypedDict

import torch
from torch import Tensor, nn

from ..cells import ConvGRUCell, ConvLSTMCell, GRUCell, LSTMCell
from ..cells.options import GRUOptions, LSTMOptions
from .recurrence import Recurrence, reverse_order, run_direction
from .stack import RecurrentLayer

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["GRU", "LSTM", "ConvGRU", "ConvLSTM", "GRULayerOptions", "LSTMLayerOptions", "LayerOptions", "Recurrence",
           "RecurrentLayer", "reverse_order", "run_direction"]


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
    """A (Conv)LSTM layer's keyword options: the layer's and every cell's."""


class GRULayerOptions(LayerOptions, GRUOptions, total=False):
    """A (Conv)GRU layer's keyword options: the layer's and every cell's."""



class ConvLSTM(RecurrentLayer):
    r"""A stack of ConvLSTM layers over ``(B, T, C, *S)`` sequences (Shi et al. 2015, arXiv:1506.04214).

    Each layer runs :class:`normrnn.cells.ConvLSTMCell` over time:
    :math:`(h_t, c_t) = \mathrm{cell}(x_t, (h_{t-1}, c_{t-1}))`. Gate order ``i, f, g, o``.

    Takes the keyword arguments of :class:`RecurrentLayer` (the stack) and of
    :class:`~normrnn.cells.ConvLSTMCell` (each layer's cell); besides:

    Args:
        kernel_size: an int or one per spatial axis, odd or even.
        spatial_dims: 1, 2 or 3. Default: ``2``.

    Shape:
        - Input: ``(B, T, C_in, *S)``; mask ``(B, T)``; state: per layer ``(h, c)``, each ``(B, C, *S)``.
        - Output: ``(B, T, C_out, *S)`` and the per-layer final states.

    Example::

        >>> model = ConvLSTM(1, 16, 3, num_layers=2, norm="group:4", residual=True, bidirectional=True)
        >>> y, states = model(torch.randn(2, 5, 1, 24, 24))
        >>> y.shape, len(states), states[0][0][0].shape
        (torch.Size([2, 5, 32, 24, 24]), 2, torch.Size([2, 16, 24, 24]))
    """

    cell_class = ConvLSTMCell

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int], kernel_size: int | tuple[int, ...],
                 *, spatial_dims: int = 2, **kwargs: Unpack[LSTMLayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class ConvGRU(RecurrentLayer):
    r"""A stack of ConvGRU layers over ``(B, T, C, *S)`` sequences (Ballas et al. 2016, arXiv:1511.06432).

    Each layer runs :class:`normrnn.cells.ConvGRUCell` over time: :math:`h_t = \mathrm{cell}(x_t, h_{t-1})`.
    Gate order ``r, z, n``.

    Takes the keyword arguments of :class:`RecurrentLayer` (the stack) and of
    :class:`~normrnn.cells.ConvGRUCell` (each layer's cell); besides:

    Args:
        kernel_size: an int or one per spatial axis, odd or even.
        spatial_dims: 1, 2 or 3. Default: ``2``.

    Shape:
        - Input: ``(B, T, C_in, *S)``; state: per layer ``h`` ``(B, C, *S)``.
        - Output: ``(B, T, C_out, *S)`` and the per-layer final states.

    Example::

        >>> y, states = ConvGRU(2, 8, 3, spatial_dims=1, norm="layer")(torch.randn(4, 6, 2, 30))
        >>> y.shape, states[0].shape
        (torch.Size([4, 6, 8, 30]), torch.Size([4, 8, 30]))
    """

    cell_class = ConvGRUCell

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int], kernel_size: int | tuple[int, ...],
                 *, spatial_dims: int = 2, **kwargs: Unpack[GRULayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class _TorchRNNKeys:
    """Load ``torch.nn.LSTM``/``GRU`` state dicts: ``weight_ih_l{k}[_reverse]`` etc. → normrnn names."""

    def _load_torch_keys(self, module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
        if prefix + "weight_ih_l0" not in state_dict:
            return
        for k, layer in enumerate(self.layers):
            for d, cell in enumerate(layer):
                src = f"{prefix}%s_l{k}{'_reverse' if d else ''}"
                dst = f"{prefix}layers.{k}.{d}."
                if cell.normalized or getattr(cell, "peephole", False):
                    raise ValueError("a torch.nn.LSTM/GRU state dict fits only norm='none' without peepholes; "
                                     f"got norm={cell.norm_spec!r}")
                state_dict[dst + "weight_x"] = state_dict.pop(src % "weight_ih")
                state_dict[dst + "weight_h"] = state_dict.pop(src % "weight_hh")
                if src % "bias_ih" in state_dict:
                    b_ih, b_hh = state_dict.pop(src % "bias_ih"), state_dict.pop(src % "bias_hh")
                    self._convert_bias(state_dict, dst, b_ih, b_hh)

    @staticmethod
    def _convert_bias(state_dict: dict, dst: str, b_ih: Tensor, b_hh: Tensor) -> None:
        state_dict[dst + "bias"] = b_ih + b_hh


class LSTM(_TorchRNNKeys, RecurrentLayer):
    r"""A stack of LSTM layers over ``(B, T, C)`` sequences with normalization, peepholes, residuals, masks.

    With ``norm="none"`` it computes exactly what ``torch.nn.LSTM`` does, and ``load_state_dict`` accepts
    a ``torch.nn.LSTM`` state dict (``bias = bias_ih + bias_hh``). ``norm="layer"`` gives the LN-LSTM of
    Ba et al. 2016 (arXiv:1607.06450).

    Takes the keyword arguments of :class:`RecurrentLayer` (the stack) and of :class:`~normrnn.cells.LSTMCell`
    (each layer's cell).

    Shape:
        - Input: ``(B, T, C_in)``; state: per layer ``(h, c)``, each ``(B, C)``.
        - Output: ``(B, T, C_out)`` and the per-layer final states.

    Example::

        >>> ref = torch.nn.LSTM(3, 5, num_layers=2, batch_first=True)
        >>> lstm = LSTM(3, 5, num_layers=2)
        >>> _ = lstm.load_state_dict(ref.state_dict())
        >>> x = torch.randn(2, 7, 3)
        >>> torch.allclose(lstm(x)[0], ref(x)[0], atol=1e-6)
        True
    """

    cell_class = LSTMCell

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int],
                 **kwargs: Unpack[LSTMLayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, None, spatial_dims=0, **kwargs)
        self.register_load_state_dict_pre_hook(self._load_torch_keys)


class GRU(_TorchRNNKeys, RecurrentLayer):
    r"""A stack of GRU layers over ``(B, T, C)`` sequences, with normalization, residuals and masks.

    With ``norm="none"`` it equals ``torch.nn.GRU``, and ``load_state_dict`` accepts its state dict.

    Takes the keyword arguments of :class:`RecurrentLayer` (the stack) and of :class:`~normrnn.cells.GRUCell`
    (each layer's cell).

    Shape:
        - Input: ``(B, T, C_in)``; state: per layer ``h`` ``(B, C)``.
        - Output: ``(B, T, C_out)`` and the per-layer final states.

    Example::

        >>> y, (h,) = GRU(3, 5, norm="layer")(torch.randn(2, 7, 3))
        >>> y.shape, h.shape
        (torch.Size([2, 7, 5]), torch.Size([2, 5]))
    """

    cell_class = GRUCell

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int],
                 **kwargs: Unpack[GRULayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, None, spatial_dims=0, **kwargs)
        self.register_load_state_dict_pre_hook(self._load_torch_keys)

    @staticmethod
    def _convert_bias(state_dict: dict, dst: str, b_ih: Tensor, b_hh: Tensor) -> None:
        C = b_ih.shape[0] // 3
        state_dict[dst + "bias"] = torch.cat([b_ih[: 2 * C] + b_hh[: 2 * C], b_ih[2 * C :]])
        state_dict[dst + "bias_hn"] = b_hh[2 * C :]

