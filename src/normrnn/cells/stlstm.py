"""PredRNN's spatiotemporal LSTM: :class:`STLSTMCell`, one step with normrnn's norms, and its gate math."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import Factory, one_of, positive_int
from ..norms import NormLike, NormSpec
from .common import CellCommon
from .gate_norms import NORM_INPUTS, NORM_SCOPES, bound, cell_gate_norm
from .gates import GateProbe, NormFn
from .init import RECURRENT_INITS, check_forget_bias, init_recurrent_weight
from .kinds import register_cell_kind
from .projection import Geometry, step_layout
from .states import checked_state, freeze

__all__ = ["STLSTMCell", "STLSTMState", "stlstm_gates"]

STLSTMState = tuple[Tensor, Tensor, Tensor]
"""An ST-LSTM state: ``(h, c, m)``, each ``(B, C, *S)``."""

_CONVS = (F.conv1d, F.conv2d, F.conv3d)  # the 1×1 fusion, by spatial rank
_X_GATES, _H_GATES, _M_GATES = 7, 4, 3  # i f g i' f' g' o from x; i f g o from h; i' f' g' from m


def stlstm_gates(gx: Tensor, gh: Tensor, gm: Tensor, c: Tensor, m: Tensor, *, norm_x: NormFn | None = None,
                 norm_h: NormFn | None = None, norm_m: NormFn | None = None, norm_joint: NormFn | None = None,
                 bias: Tensor | None = None, fuse_output: Callable[[Tensor], Tensor],
                 fuse_hidden: Callable[[Tensor], Tensor], probe: GateProbe | None = None) -> STLSTMState:
    r"""The ST-LSTM gate block: the three projections and the two memories in, ``(h, c, m)`` out.

    .. math::
        a = N_x(g_x) + [N_h(g_h)_{i,f,g};\ N_m(g_m);\ N_h(g_h)_o] \ (\text{then } N(a) \text{ if joint}) + b

        c' = \sigma(a_f) \odot c + \sigma(a_i) \odot \tanh(a_g), \qquad
        m' = \sigma(a_{f'}) \odot m + \sigma(a_{i'}) \odot \tanh(a_{g'})

        h' = \sigma(a_o + \mathrm{fuse\_output}([c'; m'])) \odot \tanh(\mathrm{fuse\_hidden}([c'; m']))

    Args:
        gx, gh, gm: ``W_x * x`` ``(B, 7C, *S)`` (gates i f g i' f' g' o), ``W_h * h`` ``(B, 4C, *S)`` (i f g o) and
            ``W_m * m`` ``(B, 3C, *S)`` (i' f' g').
        c, m: the temporal and the spatiotemporal memory, ``(B, C, *S)``.
        norm_x, norm_h, norm_m: the separate input norms; norm_joint: the norm of the summed pre-activations.
            Default: none.
        bias: ``(7C,)`` added last. Default: none.
        fuse_output: ``W_o * [c'; m']`` (with its norm), into the output gate. fuse_hidden: the 1×1 convolution of
            ``[c'; m']`` that ``h`` reads.
        probe: called with the sigmoid gates ``(i, f, i', f', o)``. Default: none.
    """
    C = c.shape[1]
    x7 = norm_x(gx) if norm_x is not None else gx
    h4 = norm_h(gh) if norm_h is not None else gh
    m3 = norm_m(gm) if norm_m is not None else gm
    pre = x7 + torch.cat([h4[:, : 3 * C], m3, h4[:, 3 * C :]], dim=1)  # (B, 7C, *S) in the order of x's gates
    if norm_joint is not None:
        pre = norm_joint(pre)
    if bias is not None:
        pre = pre + bias.view(1, -1, *([1] * (pre.dim() - 2))).to(pre.dtype)
    a_i, a_f, a_g, a_i2, a_f2, a_g2, a_o = pre.chunk(_X_GATES, dim=1)
    i, f, i2, f2 = torch.sigmoid(a_i), torch.sigmoid(a_f), torch.sigmoid(a_i2), torch.sigmoid(a_f2)
    c_new = f * c + i * torch.tanh(a_g)
    m_new = f2 * m + i2 * torch.tanh(a_g2)
    memory = torch.cat([c_new, m_new], dim=1)  # (B, 2C, *S)
    o = torch.sigmoid(a_o + fuse_output(memory))
    if probe is not None:
        probe((i, f, i2, f2, o))
    return o * torch.tanh(fuse_hidden(memory)), c_new, m_new


class STLSTMCell(CellCommon):
    r"""One spatiotemporal LSTM (ST-LSTM) step, PredRNN's cell (Wang et al., NeurIPS 2017; PredRNN-V2, TPAMI 2022),
    with normrnn's norms.

    .. math::
        [i, f, g, i', f', g', o]_x = N_x(W_x * x_t), \quad [i, f, g, o]_h = N_h(W_h * h_{t-1}), \quad
        [i', f', g']_m = N_m(W_m * m)

        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \qquad
        m_t = \sigma(f') \odot m + \sigma(i') \odot \tanh(g')

        h_t = \sigma(o + N_o(W_o * [c_t; m_t])) \odot \tanh(W_{1 \times 1} * [c_t; m_t])

    each gate the sum of its terms plus the bias (:func:`stlstm_gates`). ``m`` is the spatiotemporal memory: the
    layer (:class:`~normrnn.layers.STLSTM`) passes it up through the layers within a step and from the top layer to
    the bottom one at the next step, PredRNN's zigzag.

    Args:
        in_channels: C_in. hidden_channels: C, of ``h``, ``c`` and ``m``.
        kernel_size: an int or one int per spatial axis, of every convolution but the 1×1 one ("same" padding).
        spatial_dims: 1, 2 or 3. Default: ``2``.
        bias: learn a bias on the seven gates. Default: ``True``.
        forget_bias: the bias of ``f`` and ``f'`` at initialization (PredRNN adds 1.0). Default: ``1.0``.
        norm: a norm spec, normrnn norm class or other callable (:mod:`normrnn.cells`). Default: ``"none"``.
        norm_inputs: ``"separate"``: ``N_x``, ``N_h`` and ``N_m`` apart, as PredRNN; ``"joint"``: one norm of the
            summed pre-activations. Default: ``"separate"``.
        norm_scope: ``"per_gate"`` or ``"all_gates"`` (PredRNN's ``LayerNorm([7C, H, W])`` pools the seven).
            Default: ``"per_gate"``.
        norm_output: normalize ``W_o * [c; m]`` too, as PredRNN's ``conv_o``. Default: ``False``.
        norm_kwargs: passed to every norm; the norms learn no shift where the bias is one, unless ``center`` says
            so here. Default: none.
        recurrent_init: ``"orthogonal"`` (per gate, for ``W_h`` and ``W_m``) or ``"default"``. Default:
            ``"orthogonal"``.
        recurrent_dropout: must be ``0.0`` (not implemented for this cell). Default: ``0.0``.
        backend: ``"auto"`` or ``"eager"``: the gate math runs as PyTorch ops. Default: ``"auto"``.
        device, dtype: factory keyword arguments.

    Shape:
        - Input: ``x`` ``(B, C_in, *S)``; state ``(h, c, m)``, each ``(B, C, *S)``, zeros when omitted.
        - Output: ``(h, c, m)``, each ``(B, C, *S)``.

    Example::

        >>> cell = STLSTMCell(1, 8, 3, norm="layer")
        >>> h, c, m = cell(torch.randn(2, 1, 16, 16))
        >>> h.shape, m.shape
        (torch.Size([2, 8, 16, 16]), torch.Size([2, 8, 16, 16]))
    """

    num_gates = _X_GATES
    state_size = 3

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...], *,
                 spatial_dims: int = 2, bias: bool = True, forget_bias: float = 1.0, norm: NormLike = "none",
                 norm_inputs: str = "separate", norm_scope: str = "per_gate", norm_output: bool = False,
                 norm_kwargs: Mapping[str, Any] | None = None, recurrent_init: str = "orthogonal",
                 recurrent_dropout: float = 0.0, backend: str = "auto", device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"expected spatial_dims 1, 2 or 3 for an STLSTMCell, got {spatial_dims!r}")
        if backend not in ("auto", "eager"):
            raise ValueError(f"expected backend 'auto' or 'eager' for an STLSTMCell (its gate math runs as PyTorch "
                             f"ops), got {backend!r}")
        if recurrent_dropout:
            raise ValueError(f"expected recurrent_dropout=0 for an STLSTMCell (not implemented), got "
                             f"{recurrent_dropout!r}")
        self.in_channels = positive_int("in_channels", in_channels)
        self.hidden_channels = C = positive_int("hidden_channels", hidden_channels)
        self.geometry = Geometry.create(spatial_dims, kernel_size)
        self.forget_bias = check_forget_bias(forget_bias)
        spec = NormSpec.parse(norm)
        self.norm_spec, self.normalized = spec.name, not spec.is_identity
        self.norm_inputs = one_of("norm_inputs", norm_inputs, NORM_INPUTS)
        self.norm_scope = one_of("norm_scope", norm_scope, NORM_SCOPES)
        self.norm_output = bool(norm_output)
        self.recurrent_init = one_of("recurrent_init", recurrent_init, RECURRENT_INITS)
        self.backend = backend
        self.layout = step_layout(spatial_dims)
        self.gate_probe: GateProbe | None = None  # set to observe the sigmoid gates, e.g. their saturation
        self._norm_kwargs = dict(norm_kwargs or {})
        factory: Factory = {"device": device, "dtype": dtype}
        k = self.geometry.kernel_size
        self.weight_x = nn.Parameter(torch.empty(_X_GATES * C, in_channels, *k, **factory))
        self.weight_h = nn.Parameter(torch.empty(_H_GATES * C, C, *k, **factory))
        self.weight_m = nn.Parameter(torch.empty(_M_GATES * C, C, *k, **factory))
        self.weight_o = nn.Parameter(torch.empty(C, 2 * C, *k, **factory))  # W_o * [c; m], into the output gate
        self.weight_fuse = nn.Parameter(torch.empty(C, 2 * C, *(1,) * spatial_dims, **factory))  # the 1×1 to h
        self.bias = nn.Parameter(torch.empty(_X_GATES * C, **factory)) if bias else None
        self._build_norms(spec, factory)
        self.reset_parameters()

    def _build_norms(self, spec: NormSpec, factory: Factory) -> None:
        def make(gates: int) -> nn.Module | None:
            if not self.normalized:
                return None
            return cell_gate_norm(spec, self.hidden_channels, gates, scope=self.norm_scope, layout=self.layout,
                                  default_center=self.bias is None, norm_kwargs=self._norm_kwargs, factory=factory)

        separate = self.norm_inputs == "separate"
        self.norm_x = make(_X_GATES) if separate else None
        self.norm_h = make(_H_GATES) if separate else None
        self.norm_m = make(_M_GATES) if separate else None
        self.norm_gates = None if separate else make(_X_GATES)
        self.norm_o = make(1) if self.norm_output else None

    def reset_parameters(self) -> None:
        """Uniform(±1/sqrt(fan_in)) input and fusion weights; orthogonal (per gate) or uniform ``W_h`` and ``W_m``;
        zero biases with ``forget_bias`` on ``f`` and ``f'``; norms reset."""
        for weight in (self.weight_x, self.weight_o, self.weight_fuse):
            bound = 1 / math.sqrt(weight.shape[1] * math.prod(weight.shape[2:]))
            nn.init.uniform_(weight, -bound, bound)
        for weight, gates in ((self.weight_h, _H_GATES), (self.weight_m, _M_GATES)):
            init_recurrent_weight(weight, gates=gates, scheme=self.recurrent_init, kernel_size=self.kernel_size)
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # type: ignore[operator]  # hasattr: nn.Module types it Tensor | Module
        if self.bias is not None:
            C = self.hidden_channels
            with torch.no_grad():
                self.bias.zero_()
                self.bias[C : 2 * C] = self.forget_bias  # f
                self.bias[4 * C : 5 * C] = self.forget_bias  # f'

    # -- states and checks -----------------------------------------------------------------------------

    def check_input(self, x: Tensor, *, what: str = "input") -> None:
        if not isinstance(x, Tensor) or x.dim() != len(self.layout) or x.shape[1] != self.in_channels:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {what} ({', '.join(self.layout)}) with C={self.in_channels} for a "
                             f"{self.spatial_dims}-D STLSTMCell, got {got}")

    def initial_state(self, like: Tensor) -> STLSTMState:
        """Zeros ``(h, c, m)`` for a batch shaped like ``like`` ``(B, *, *S)``."""
        shape = (like.shape[0], self.hidden_channels, *like.shape[2:])
        return like.new_zeros(shape), like.new_zeros(shape), like.new_zeros(shape)

    def check_state(self, state: object, batch: int, spatial: tuple[int, ...], *, what: str = "state",
                    like: Tensor | None = None) -> STLSTMState:
        """``state`` checked to be ``(h, c, m)`` of ``(batch, C, *spatial)`` (and ``like``'s dtype)."""
        shape = (batch, self.hidden_channels, *spatial)
        return cast(STLSTMState, checked_state(state, 3, shape, what=what, like=like))

    # -- the step --------------------------------------------------------------------------------------

    def project_input(self, x: Tensor) -> Tensor:
        """``W_x * x`` for any number of frames at once: ``(N, C_in, *S)`` → ``(N, 7C, *S)``."""
        return self.geometry.project(x, self.weight_x)

    def step(self, gx: Tensor, state: STLSTMState, *, t: int = 0, mask: Tensor | None = None) -> STLSTMState:
        """One step from ``gx = project_input(x_t)`` and ``(h, c, m)``, frozen where ``mask`` is False."""
        h, c, m = state
        g = self.geometry
        norm_o = bound(self.norm_o, t, mask)

        def fuse_output(memory: Tensor) -> Tensor:
            out = g.project(memory, self.weight_o, recurrent=True)  # (B, C, *S)
            return norm_o(out) if norm_o is not None else out

        new = stlstm_gates(gx, g.project(h, self.weight_h, recurrent=True), g.project(m, self.weight_m, recurrent=True),
                           c, m, norm_x=bound(self.norm_x, t, mask), norm_h=bound(self.norm_h, t, mask),
                           norm_m=bound(self.norm_m, t, mask), norm_joint=bound(self.norm_gates, t, mask),
                           bias=self.bias, fuse_output=fuse_output,
                           fuse_hidden=lambda memory: _CONVS[g.spatial_dims - 1](memory, self.weight_fuse),
                           probe=self.gate_probe)
        return freeze(new[0], h, mask), freeze(new[1], c, mask), freeze(new[2], m, mask)

    def forward(self, x: Tensor, state: STLSTMState | None = None, *, t: int = 0,
                mask: Tensor | None = None) -> STLSTMState:
        """One step: ``x`` ``(B, C_in, *S)`` and ``(h, c, m)`` (zeros when ``None``) to the new state; ``mask``
        ``(B,)`` keeps the old state where it is False, and ``t`` is the step index (``recurrent_batch``)."""
        gx, state = self._checked_step_inputs(x, state, mask)  # gx: (B, 7C, *S)
        return self.step(gx, state, t=t, mask=mask)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.hidden_channels}, kernel_size={self.kernel_size}, norm={self.norm_spec!r}"
        if self.normalized:
            s += f", norm_inputs={self.norm_inputs!r}, norm_scope={self.norm_scope!r}"
        if self.norm_output:
            s += ", norm_output=True"
        if self.bias is None:
            s += ", bias=False"
        if self.forget_bias != 1.0:
            s += f", forget_bias={self.forget_bias}"
        if self.recurrent_init != "orthogonal":
            s += f", recurrent_init={self.recurrent_init!r}"
        return s


register_cell_kind("stlstm", STLSTMCell, spatial=True)  # type: ignore[arg-type]  # a cell of its own shape
