"""The LSTM layers: :class:`ConvLSTM` over ``(B, T, C, *S)`` and :class:`LSTM` over ``(B, T, C)``, each a
:class:`~normrnn.layers.stack.RecurrentLayer` of its cell."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch  # noqa: F401  (the examples below use it)

from ..cells import ConvLSTMCell, LSTMCell
from ..cells.options import spelled_out
from .options import ConvLSTMLayerOptions, LSTMLayerOptions
from .stack import RecurrentLayer
from .torch_keys import TorchRNNKeys

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["LSTM", "ConvLSTM"]


@spelled_out(ConvLSTMLayerOptions)
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
                 *, spatial_dims: int = 2, **kwargs: Unpack[ConvLSTMLayerOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


@spelled_out(LSTMLayerOptions)
class LSTM(TorchRNNKeys, RecurrentLayer):
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
        self.register_load_state_dict_pre_hook(self._load_torch_keys)  # type: ignore[no-untyped-call]  # torch's
