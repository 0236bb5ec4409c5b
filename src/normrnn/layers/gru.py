"""The GRU layers: :class:`ConvGRU` over ``(B, T, C, *S)`` and :class:`GRU` over ``(B, T, C)``, each a
:class:`~normrnn.layers.stack.RecurrentLayer` of its cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from ..cells import ConvGRUCell, GRUCell
from ..cells.options import spelled_out
from .options import ConvGRULayerOptions, GRULayerOptions
from .stack import RecurrentLayer
from .torch_keys import TorchRNNKeys

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["GRU", "ConvGRU"]


@spelled_out(ConvGRULayerOptions)
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
                 *, spatial_dims: int = 2, **kwargs: Unpack[ConvGRULayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


@spelled_out(GRULayerOptions)
class GRU(TorchRNNKeys, RecurrentLayer):
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
        self.register_load_state_dict_pre_hook(self._load_torch_keys)  # type: ignore[no-untyped-call]  # torch's

    @staticmethod
    def _convert_bias(state_dict: dict[str, Any], dst: str, b_ih: Tensor, b_hh: Tensor) -> None:
        C = b_ih.shape[0] // 3
        state_dict[dst + "bias"] = torch.cat([b_ih[: 2 * C] + b_hh[: 2 * C], b_ih[2 * C :]])
        state_dict[dst + "bias_hn"] = b_hh[2 * C :]
