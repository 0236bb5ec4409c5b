"""GRU cells: :class:`ConvGRUCell` (1-3-D) and the dense :class:`GRUCell`, in the "reset after" form of
PyTorch/cuDNN, or "reset before" (``reset_after=False``: Keras' option, the TF1 ConvGRU cell)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import torch
from torch import Tensor, nn

from .._checks import Factory
from ..norms import NormSpec, call_norm
from .base import Conv, Dense, make_gate_norm
from .gate_norms import bound
from .gated import GatedCell
from .gates import gru_gates
from .kinds import register_cell_kind
from .options import ConvGRUOptions, ConvOptions, GRUOptions, spelled_out

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["ConvGRUCell", "GRUCell"]


class _GRUBase(GatedCell):
    num_gates = 3
    forget_gate = 1  # z: a positive bias starts the cell remembering, like an LSTM forget bias
    state_size = 1
    hidden_apart = "a GRU's reset gate multiplies W_h * h alone"

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...] = 1, *,
                 reset_after: bool = True, **kwargs: Unpack[ConvOptions]) -> None:
        self.reset_after = bool(reset_after)
        if not self.reset_after and kwargs.get("recurrent_dropout", 0.0):
            raise ValueError("expected recurrent_dropout=0 with reset_after=False (not implemented for that form)")
        super().__init__(in_channels, hidden_channels, kernel_size, **kwargs)

    def _build_extra_params(self, *, bias: bool, factory: Factory) -> None:
        has = bias and self.reset_after  # reset before: the candidate has one bias, in the input projection
        self.bias_hn = nn.Parameter(torch.empty(self.hidden_channels, **factory)) if has else None

    def project_hidden(self, h: Tensor, recurrent_mask: Tensor | None = None) -> Tensor:
        """``W_h * h`` for all three gates; reset before (``reset_after=False``), for ``[r, z]`` only: the
        candidate's ``W_hn * (r ⊙ h)`` runs inside the gate block."""
        if self.reset_after:
            return super().project_hidden(h, recurrent_mask)
        return self.geometry.project(h, self.weight_h[: 2 * self.hidden_channels], recurrent=True)

    def _hidden_n(self, rh: Tensor) -> Tensor:
        return self.geometry.project(rh, self.weight_h[2 * self.hidden_channels :], recurrent=True)

    def _build_norms(self, spec: NormSpec, factory: Factory) -> None:
        super()._build_norms(spec, factory)
        self.norm_rz = self.norm_n = None
        if self.norm_inputs == "joint":
            self.norm_rz = make_gate_norm(self, spec, 2, center=True, factory=factory)
            self.norm_n = make_gate_norm(self, spec, 1, center=True, factory=factory)

    def _shift_norm(self) -> nn.Module | None:
        return self.norm_rz

    def reset_parameters(self) -> None:
        """:meth:`GatedCell.reset_parameters`, and a zero recurrent candidate bias."""
        super().reset_parameters()
        if self.bias_hn is not None:
            nn.init.zeros_(self.bias_hn)

    def gate_block(self, gx: Tensor, gh: Tensor | None, state: Tensor, t: int,  # type: ignore[override]  # h alone
                   mask: Tensor | None) -> Tensor:
        """Everything after the two projections, eagerly (:func:`gru_gates`): the part a gate backend replaces."""
        norm_rz = norm_n = None
        assert gh is not None  # a GRU's reset gate multiplies W_h * h alone: it is never projected jointly
        if self.norm_inputs == "separate":
            gx, gh = call_norm(self.norm_x, gx, mask, t), call_norm(self.norm_h, gh, mask, t)
        elif self.normalized:
            norm_rz, norm_n = bound(self.norm_rz, t, mask), bound(self.norm_n, t, mask)
        return gru_gates(gx, gh, state, norm_rz=norm_rz, norm_n=norm_n, bias=self.gate_bias,
                         bias_hn=self.bias_hn, probe=self.gate_probe, act=self.act, gate_act=self.gate_act,
                         hidden_n=None if self.reset_after else self._hidden_n)

    def extra_repr(self) -> str:
        return super().extra_repr() + ("" if self.reset_after else ", reset_after=False")


@spelled_out(ConvGRUOptions)
class ConvGRUCell(Conv, _GRUBase):
    r"""One ConvGRU step (Ballas et al. 2016, arXiv:1511.06432) in the "reset after" form of PyTorch/cuDNN.

    .. math::
        [r, z] = \sigma(\mathrm{norm}(W_{x,rz} * x_t + W_{h,rz} * h_{t-1}) + b_{rz}), \qquad
        n = \tanh(\mathrm{norm}(W_{x,n} * x_t + r \odot (W_{h,n} * h_{t-1} + b_{hn})) + b_n)

        h_t = (1 - z) \odot n + z \odot h_{t-1}

    Gate order ``r, z, n``; see :func:`gru_gates`. ``forget_bias`` goes to the update gate ``z``.

    Takes every argument of :class:`~normrnn.cells.base.RecurrentCell`; besides:

    Args:
        reset_after: ``False`` computes the candidate from ``W_xn * x + W_hn * (r ⊙ h)`` ("reset before", Keras
            ``reset_after=False``, the TF1 ConvGRU cell), with no separate ``bias_hn``. Default: ``True``.

    Shape:
        - Input: ``x`` ``(B, C_in, *S)``; state ``h`` ``(B, C, *S)``, zeros when omitted.
        - Output: ``h`` ``(B, C, *S)``.

    Example::

        >>> cell = ConvGRUCell(3, 8, (3, 3), norm="layer")
        >>> cell(torch.randn(2, 3, 10, 12)).shape
        torch.Size([2, 8, 10, 12])
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...], *,
                 spatial_dims: int = 2, **kwargs: Unpack[ConvGRUOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


@spelled_out(GRUOptions)
class GRUCell(Dense, _GRUBase):
    r"""One dense GRU step (Cho et al. 2014), equal to ``torch.nn.GRUCell`` with ``norm="none"``.

    ``weight_x`` = ``weight_ih``, ``weight_h`` = ``weight_hh``, ``bias`` = ``bias_ih`` plus the ``r, z``
    part of ``bias_hh``, and ``bias_hn`` = its ``n`` part.

    It takes the arguments of :class:`ConvGRUCell` that do not concern convolutions (``in_channels``,
    ``hidden_channels``, ``bias``, ``forget_bias``, the norm options, ``recurrent_init``, ``recurrent_dropout``,
    ``reset_after``, ``device``, ``dtype``).

    Shape:
        - Input: ``x`` ``(B, C_in)``; state ``h`` ``(B, C)``.
        - Output: ``h`` ``(B, C)``.

    Example::

        >>> GRUCell(4, 6)(torch.randn(3, 4)).shape
        torch.Size([3, 6])
    """

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs: Unpack[GRUOptions]) -> None:
        super().__init__(in_channels, hidden_channels, **kwargs)


register_cell_kind("convgru", ConvGRUCell, spatial=True)
register_cell_kind("gru", GRUCell, spatial=False)
