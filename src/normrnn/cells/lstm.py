"""LSTM cells: :class:`ConvLSTMCell` (1-3-D) and the dense :class:`LSTMCell`, with peepholes and cell norms."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor, nn

from .._checks import Factory, one_of
from ..kernels import FusedLSTMBlock
from ..norms import NormSpec, call_norm, create_norm
from .base import Conv, Dense, make_gate_norm
from .fusion import fused_lstm_block
from .gate_norms import bound
from .gated import GatedCell
from .gates import LSTMState, lstm_gates
from .kinds import register_cell_kind
from .options import ConvLSTMOptions, ConvOptions, LSTMOptions, spelled_out

if TYPE_CHECKING:
    from typing_extensions import Unpack

__all__ = ["NORM_CELL", "PEEPHOLES", "PEEPHOLE_PLACEMENTS", "ConvLSTMCell", "LSTMCell"]

NORM_CELL = ("none", "output", "carried")
PEEPHOLES = (False, True, "channel", "elementwise")  # True is "channel": per-channel weights, any resolution
PEEPHOLE_PLACEMENTS = ("after_norm", "before_norm")
_OPTIONS = tuple(sorted(ConvLSTMOptions.__optional_keys__))  # every option an LSTM cell takes


class _LSTMBase(GatedCell):
    num_gates = 4
    forget_gate = 1  # f
    state_size = 2

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...] = 1, *,
                 peephole: bool | str = False, peephole_size: tuple[int, ...] | None = None,
                 peephole_placement: str = "after_norm", norm_cell: str = "none",
                 **kwargs: Unpack[ConvOptions]) -> None:
        if peephole not in PEEPHOLES:
            raise ValueError(f"expected peephole to be one of {PEEPHOLES}, got {peephole!r}")
        self.norm_cell = one_of("norm_cell", norm_cell, NORM_CELL)
        self.peephole = {True: "channel", False: False}.get(peephole, peephole)  # type: ignore[arg-type]  # str keys too
        self.peephole_placement = one_of("peephole_placement", peephole_placement, PEEPHOLE_PLACEMENTS)
        if (self.peephole == "elementwise") != (peephole_size is not None):
            raise ValueError("expected peephole_size, the state's spatial size, exactly when peephole='elementwise'; "
                             f"got peephole={peephole!r}, peephole_size={peephole_size!r}")
        self.peephole_size = None if peephole_size is None else tuple(int(v) for v in peephole_size)
        super().__init__(in_channels, hidden_channels, kernel_size, **kwargs)
        self.register_load_state_dict_pre_hook(self._renamed_state_norm)  # type: ignore[no-untyped-call]  # torch's
        if self.peephole_placement == "before_norm":
            self._check_peepholes_first()

    def _check_peepholes_first(self) -> None:
        """Peepholes before the norm normalize the output gate apart, after the cell update: the gate norm must
        keep each gate's statistics apart and keep no running statistics (it is called twice a step)."""
        norm = getattr(self, "norm_gates", None)
        if self.normalized and (self.norm_inputs != "joint" or self.norm_scope != "per_gate"
                                or getattr(norm, "track_running_stats", False)):
            raise ValueError("peephole_placement='before_norm' needs a joint, per-gate norm without running "
                             f"statistics; got norm={self.norm_spec!r}, norm_inputs={self.norm_inputs!r}, "
                             f"norm_scope={self.norm_scope!r}")

    @staticmethod
    def _renamed_state_norm(module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        """Checkpoints of normrnn 0.1 call the cell-state norm ``cell_norm``: load them under its new name."""
        old = prefix + "cell_norm."
        for key in [k for k in state_dict if k.startswith(old)]:
            state_dict[prefix + "state_norm." + key[len(old):]] = state_dict.pop(key)

    def _build_extra_params(self, *, bias: bool, factory: Factory) -> None:
        shape = (3, self.hidden_channels, *(self.peephole_size or ()))  # (3, C) or elementwise (3, C, *S)
        self.weight_peephole = nn.Parameter(torch.empty(shape, **factory)) if self.peephole else None

    def _build_norms(self, spec: NormSpec, factory: Factory) -> None:
        super()._build_norms(spec, factory)
        self.norm_gates = None
        if self.norm_inputs == "joint":
            self.norm_gates = make_gate_norm(self, spec, 4, center=True, factory=factory)
        self.state_norm = None
        if self.norm_cell != "none":
            self.state_norm = create_norm(spec, self.hidden_channels, layout=self.layout, **factory,
                                         **self._norm_kwargs)

    def _shift_norm(self) -> nn.Module | None:
        return self.norm_gates

    def reset_parameters(self) -> None:
        """:meth:`GatedCell.reset_parameters`, and zero peepholes."""
        super().reset_parameters()
        if self.weight_peephole is not None:
            nn.init.zeros_(self.weight_peephole)

    def gate_block(self, gx: Tensor, gh: Tensor | None, state: LSTMState, t: int,  # type: ignore[override]  # (h, c)
                   mask: Tensor | None) -> LSTMState:
        """Everything after the projections, eagerly (:func:`lstm_gates`): the part a gate backend replaces.
        ``gh`` is None when ``gx`` already holds both projections."""
        if self.norm_inputs == "separate":
            assert gh is not None  # separate: W_h * h comes apart
            pre = call_norm(self.norm_x, gx, mask, t) + call_norm(self.norm_h, gh, mask, t)
            norm = None
        else:
            pre = gx if gh is None else gx + gh
            norm = bound(self.norm_gates, t, mask) if self.normalized else None
        return lstm_gates(
            pre, state[1], norm=norm, bias=self.gate_bias, peephole=self.weight_peephole,
            state_norm=bound(self.state_norm, t, mask), norm_cell=self.norm_cell, probe=self.gate_probe,
            act=self.act, gate_act=self.gate_act, peephole_before_norm=self.peephole_placement == "before_norm",
        )

    def fused_block(self) -> FusedLSTMBlock | str:
        return fused_lstm_block(self, _OPTIONS, self.norm_gates)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.peephole:
            s += f", peephole={self.peephole!r}"
            if self.peephole_size:
                s += f", peephole_size={self.peephole_size}"
        if self.peephole_placement != "after_norm":
            s += f", peephole_placement={self.peephole_placement!r}"
        if self.norm_cell != "none":
            s += f", norm_cell={self.norm_cell!r}"
        return s


@spelled_out(ConvLSTMOptions)
class ConvLSTMCell(Conv, _LSTMBase):
    r"""One ConvLSTM step (Shi et al. 2015, arXiv:1506.04214), with optional normalization and peepholes.

    .. math::
        [i, f, g, o] = \mathrm{norm}(W_x * x_t + W_h * h_{t-1}) + b, \qquad
        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \qquad
        h_t = \sigma(o) \odot \tanh(c_t)

    Gate order ``i, f, g, o``; see :mod:`normrnn.cells` for the placement options and :func:`lstm_gates`
    for the full gate math.

    Takes every argument of :class:`~normrnn.cells.base.RecurrentCell`; besides:

    Args:
        peephole: ``True``/``"channel"``, per-channel peephole weights (any resolution), or ``"elementwise"``,
            weights per channel and position (the TF1 cell's; needs ``peephole_size``). Default: ``False``.
        peephole_size: the state's spatial size for elementwise peepholes. Default: ``None``.
        peephole_placement: ``"after_norm"`` (Ba et al.) or ``"before_norm"`` (the TF1 cell: the peepholes join
            the pre-activations, and the output gate is normalized after the cell update). Default: ``"after_norm"``.
        norm_cell: ``"none"``, ``"output"`` or ``"carried"``. Default: ``"none"``.

    Shape:
        - Input: ``x`` ``(B, C_in, *S)``; state ``(h, c)``, each ``(B, C, *S)``, zeros when omitted.
        - Output: ``(h, c)``, each ``(B, C, *S)``.

    Example::

        >>> cell = ConvLSTMCell(3, 8, 3, norm="group:2")
        >>> h, c = cell(torch.randn(2, 3, 16, 16))
        >>> h, c = cell(torch.randn(2, 3, 16, 16), (h, c), t=1)
        >>> h.shape
        torch.Size([2, 8, 16, 16])
    """

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...], *,
                 spatial_dims: int = 2, **kwargs: Unpack[ConvLSTMOptions]) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


@spelled_out(LSTMOptions)
class LSTMCell(Dense, _LSTMBase):
    r"""One dense LSTM step (Hochreiter & Schmidhuber 1997) with optional normalization and peepholes.

    The same math as :class:`ConvLSTMCell` with matrix products; with ``norm="none"`` it equals
    ``torch.nn.LSTMCell`` (``weight_x`` = ``weight_ih``, ``weight_h`` = ``weight_hh``, ``bias`` =
    ``bias_ih + bias_hh``). ``norm="layer"`` per gate is the LN-LSTM of Ba et al. 2016.

    It takes the arguments of :class:`ConvLSTMCell` that do not concern convolutions (``in_channels``,
    ``hidden_channels``, ``bias``, ``forget_bias``, the norm options, ``recurrent_init``, ``recurrent_dropout``,
    ``peephole``, ``norm_cell``, ``device``, ``dtype``).

    Shape:
        - Input: ``x`` ``(B, C_in)``; state ``(h, c)``, each ``(B, C)``.
        - Output: ``(h, c)``, each ``(B, C)``.

    Example::

        >>> h, c = LSTMCell(4, 6, norm="layer")(torch.randn(3, 4))
        >>> h.shape
        torch.Size([3, 6])
    """

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs: Unpack[LSTMOptions]) -> None:
        super().__init__(in_channels, hidden_channels, **kwargs)


register_cell_kind("convlstm", ConvLSTMCell, spatial=True)
register_cell_kind("lstm", LSTMCell, spatial=False)
