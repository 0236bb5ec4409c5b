r"""Recurrent cells with first-class normalization: ConvLSTM and ConvGRU (1-D, 2-D, 3-D), LSTM and GRU.

A cell computes **one step**; :mod:`normrnn.layers` loops over time. Every cell has the same parts:

- an input projection ``W_x * x`` (a convolution, or a matrix product for the dense cells), which layers
  hoist out of the time loop: :meth:`project_input` runs it on all steps at once;
- a recurrent projection ``W_h * h`` per step, with no bias;
- the **gate function** (:func:`lstm_gates`, :func:`gru_gates`): pre-activations and state in, new state
  out, with the gate normalization, the nonlinearities and the state update. It is the one seam a fused
  kernel replaces.

Gate order (the order of the channel blocks of ``W_x``, ``W_h`` and the bias), the same as PyTorch,
Keras and cuDNN:

- LSTM: ``i`` (input), ``f`` (forget), ``g`` (candidate, Keras' ``c``), ``o`` (output);
- GRU: ``r`` (reset), ``z`` (update), ``n`` (candidate).

Normalization placement
-----------------------
``norm`` is a spec string (``"layer"``, ``"group:8"``, ``"recurrent_batch:10"``, ...; see
:func:`normrnn.norms.create_norm`) or a callable ``f(num_channels, **kwargs) -> module``.

``norm_inputs`` says what is normalized:

- ``"joint"`` (default): ``norm(W_x*x + W_h*h)``, the normalization of the summed pre-activations of
  the TF1 ConvLSTM cell (carlthome/tensorflow-convlstm-cell, 2017-2022). It is one call per step. The GRU
  candidate's pre-activation ``W_xn*x + r ⊙ W_hn*h`` depends on ``r``, so a joint GRU normalizes
  ``[r, z]`` in one call and ``n`` in a second.
- ``"separate"``: ``norm(W_x*x) + norm(W_h*h) + b``, as in layer-normalized LSTMs (Ba, Kiros & Hinton
  2016, arXiv:1607.06450, eq. 20) and recurrent batch normalization (Cooijmans et al. 2016,
  arXiv:1603.09025, eq. 6). Both norms are built with ``center=False``: the bias ``b`` is the one shift,
  as in Cooijmans et al.

``norm_scope`` says which channels share a statistic:

- ``"per_gate"`` (default): each gate's channels are normalized on their own, as Ba et al. and the TF1
  cell do, in **one grouped call**: per-gate ``layer`` over ``(C, H, W)`` is ``GroupNorm`` with one group
  per gate on the gate tensor, per-gate ``group:G`` is ``GroupNorm`` with ``gates·G`` groups, per-gate
  ``rms`` is ``RMSNorm`` with one group per gate. ``batch``, ``recurrent_batch`` and ``instance`` are
  per-channel already.
- ``"all_gates"``: the gates are pooled into one statistic, as OpenSTL's ``LayerNorm([4C, H, W])`` does
  (with per-channel parameters here, so any resolution works).

``norm_cell`` (LSTM only) normalizes the cell state:

- ``"none"`` (default);
- ``"output"``: ``h = o ⊙ tanh(norm(c))`` while the carried ``c`` stays unnormalized (Ba et al., eq. 22);
- ``"carried"``: ``c = norm(c)`` is what the next step receives (TF contrib ``LayerNormBasicLSTMCell``).

When the gate norm learns a shift (β), the cell has no bias of its own, so the shift is never
duplicated; the forget bias is then written into β. ``recurrent_batch`` norms receive the time-step
index. Peepholes (Gers & Schmidhuber 2000) are per-channel weights added after the gate norm:
``i += w_ci ⊙ c_{t-1}``, ``f += w_cf ⊙ c_{t-1}``, ``o += w_co ⊙ c_t``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import one_of, positive_int
from .kernels import BACKENDS, CompiledBlock, auto_backend, fused_lstm_gates
from .norms.create import NormSpec, create_norm, default_groups, parse_spec
from .norms.modules import BatchNorm, GroupNorm, Identity, InstanceNorm, LayerNorm, RecurrentBatchNorm, RMSNorm

__all__ = [
    "ConvGRUCell",
    "ConvLSTMCell",
    "GRUCell",
    "LSTMCell",
    "LSTMState",
    "RecurrentCell",
    "gate_norm",
    "gru_gates",
    "lstm_gates",
    "step_layout",
]

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (B, C, *spatial)
NormFn = Callable[[Tensor], Tensor]
GateProbe = Callable[[tuple[Tensor, ...]], None]  # receives the sigmoid gates of one step

NORM_INPUTS = ("joint", "separate")
NORM_SCOPES = ("per_gate", "all_gates")
NORM_CELL = ("none", "output", "carried")
RECURRENT_INITS = ("orthogonal", "default")
PROJECTIONS = ("auto", "hoisted", "joint")  # how a layer computes W_x * x and W_h * h (see RecurrentCell)
_SPATIAL_LETTERS = {0: "", 1: "L", 2: "HW", 3: "DHW"}


def step_layout(spatial_dims: int) -> str:
    """The layout of one step's tensors: ``"BC"``, ``"BCL"``, ``"BCHW"`` or ``"BCDHW"``."""
    return "BC" + _SPATIAL_LETTERS[spatial_dims]


def _tuple(name: str, value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    """Expand an int to ``n`` ints and check that every entry is a positive int."""
    out = (value,) * n if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    if len(out) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"expected {name} to be a positive int or {n} positive ints, got {value!r}")
    return out


def _same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Zeros before and after each spatial axis that keep its size: ``d·(k-1)`` in all, the odd one after."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)


def _shift(module: nn.Module) -> nn.Parameter | None:
    """The module's learned per-channel shift β, if it has one."""
    b = getattr(module, "bias", None)
    return b if isinstance(b, nn.Parameter) and b.dim() == 1 else None


def gate_norm(
    spec: NormSpec,
    hidden_channels: int,
    num_gates: int,
    *,
    scope: str,
    layout: str,
    center: bool = True,
    **norm_kwargs: Any,
) -> nn.Module:
    """One module that normalizes a ``(B, num_gates·C, *S)`` gate tensor, per gate or pooled, in one call.

    Per gate, ``layer`` and ``rms`` get one group per gate and ``group:G`` gets ``num_gates·G`` groups, so
    no statistic ever spans two gates. ``center=False`` drops β where the norm has one.

    Example::

        >>> gate_norm("layer", 16, 4, scope="per_gate", layout="BCHW")
        GroupNorm(64, layout='BCHW', reduce='CHW', num_groups=4, eps=1e-05)
    """
    one_of("norm_scope", scope, NORM_SCOPES)
    channels = num_gates * hidden_channels
    kwargs = dict(norm_kwargs)
    if not center:
        kwargs["center"] = False
    if not isinstance(spec, str):
        return create_norm(spec, channels, layout=layout, **kwargs)
    cls, arg = parse_spec(spec)
    if cls is RMSNorm:
        kwargs.pop("center", None)  # RMS has no shift to drop
    if scope == "per_gate" and cls is RMSNorm:
        return create_norm("rms", channels, layout=layout, num_groups=num_gates, **kwargs)
    if scope == "per_gate" and cls in (LayerNorm, GroupNorm):
        per_gate = 1 if cls is LayerNorm else (arg if arg is not None else default_groups(hidden_channels))
        if hidden_channels % per_gate:
            raise ValueError(f"norm {spec!r}: expected the groups to divide hidden_channels={hidden_channels}, "
                             f"got {per_gate} groups per gate")
        return create_norm(f"group:{num_gates * per_gate}", channels, layout=layout, **kwargs)
    return create_norm(spec, channels, layout=layout, **kwargs)


def _bind(module: nn.Module | None, t: int, mask: Tensor | None) -> NormFn | None:
    """``module`` as a one-argument function of the tensor, given the step index and the (B,) mask."""
    if module is None:
        return None
    if isinstance(module, RecurrentBatchNorm):
        return lambda x: module(x, t, mask)
    if isinstance(module, BatchNorm):
        return lambda x: module(x, mask)
    return module  # per-sample norms: padding cannot reach their statistics


def _channel_view(p: Tensor, like: Tensor) -> Tensor:
    """A ``(C,)`` parameter shaped ``(1, C, 1, ...)`` in ``like``'s dtype (autocast), to broadcast over it."""
    return p.view(1, -1, *([1] * (like.dim() - 2))).to(like.dtype)


def lstm_gates(
    pre: Tensor,
    c: Tensor,
    *,
    norm: NormFn | None = None,
    bias: Tensor | None = None,
    peephole: Tensor | None = None,
    cell_norm: NormFn | None = None,
    norm_cell: str = "none",
    probe: GateProbe | None = None,
) -> LSTMState:
    r"""The LSTM gate block: pre-activations and cell state in, new ``(h, c)`` out.

    .. math::
        [a_i, a_f, a_g, a_o] = \mathrm{norm}(\text{pre}) + b, \quad
        i = \sigma(a_i + w_{ci} c), \quad f = \sigma(a_f + w_{cf} c), \quad g = \tanh(a_g)

        c' = f \odot c + i \odot g, \quad o = \sigma(a_o + w_{co} c'), \quad
        h' = o \odot \tanh(c')

    with ``c' = norm_c(c')`` when ``norm_cell="carried"`` and ``tanh(norm_c(c'))`` when ``"output"``.

    Args:
        pre: the gate pre-activations, ``W_x*x + W_h*h`` (or the sum of the separately normalized terms).
        c: the previous cell state.
        norm: the gate norm, applied first. Default: none.
        bias: ``(4C,)`` added after the norm. Default: none.
        peephole: ``(3, C)`` weights for ``i``, ``f``, ``o``. Default: none.
        cell_norm, norm_cell: the cell-state norm and where it applies. Default: none.
        probe: called with the sigmoid gates ``(i, f, o)``, e.g. to measure saturation. Default: none.

    Shape:
        - pre: ``(B, 4C, *S)``; c: ``(B, C, *S)``.
        - Output: ``h``, ``c``: ``(B, C, *S)``.
    """
    if norm is not None:
        pre = norm(pre)
    if bias is not None:
        pre = pre + _channel_view(bias, pre)
    i, f, g, o = pre.chunk(4, dim=1)  # each (B, C, *S)
    if peephole is not None:
        w_ci, w_cf, w_co = (_channel_view(w, c) for w in peephole)
        i = i + w_ci * c
        f = f + w_cf * c
    i, f = torch.sigmoid(i), torch.sigmoid(f)
    c_new = f * c + i * torch.tanh(g)
    if norm_cell == "carried" and cell_norm is not None:
        c_new = cell_norm(c_new)
    if peephole is not None:
        o = o + w_co * c_new
    o = torch.sigmoid(o)
    if probe is not None:
        probe((i, f, o))
    shown = cell_norm(c_new) if norm_cell == "output" and cell_norm is not None else c_new
    return o * torch.tanh(shown), c_new


def gru_gates(
    gx: Tensor,
    gh: Tensor,
    h: Tensor,
    *,
    norm_rz: NormFn | None = None,
    norm_n: NormFn | None = None,
    bias: Tensor | None = None,
    bias_hn: Tensor | None = None,
    probe: GateProbe | None = None,
) -> Tensor:
    r"""The GRU gate block (PyTorch/cuDNN "reset after" form): projections and state in, new ``h`` out.

    .. math::
        [r, z] = \sigma(\mathrm{norm}_{rz}(x_{rz} + h_{rz}) + b_{rz}), \quad
        n = \tanh(\mathrm{norm}_n(x_n + r \odot (h_n + b_{hn})) + b_n), \quad
        h' = (1 - z) \odot n + z \odot h

    Args:
        gx: ``W_x * x``, the input projection.
        gh: ``W_h * h``, the recurrent projection.
        h: the previous hidden state.
        norm_rz, norm_n: the joint norms of the ``[r, z]`` and ``n`` pre-activations. Default: none.
        bias: ``(3C,)``, ``[b_r, b_z, b_n]``. Default: none.
        bias_hn: ``(C,)``, the recurrent candidate bias inside ``r ⊙ (…)``. Default: none.
        probe: called with the sigmoid gates ``(r, z)``. Default: none.

    Shape:
        - gx, gh: ``(B, 3C, *S)``; h: ``(B, C, *S)``.
        - Output: ``(B, C, *S)``.
    """
    C = h.shape[1]
    a_rz = gx[:, : 2 * C] + gh[:, : 2 * C]  # (B, 2C, *S)
    if norm_rz is not None:
        a_rz = norm_rz(a_rz)
    if bias is not None:
        a_rz = a_rz + _channel_view(bias[: 2 * C], a_rz)
    r, z = torch.sigmoid(a_rz).chunk(2, dim=1)  # each (B, C, *S)
    if probe is not None:
        probe((r, z))
    h_n = gh[:, 2 * C :]
    if bias_hn is not None:
        h_n = h_n + _channel_view(bias_hn, h_n)
    a_n = gx[:, 2 * C :] + r * h_n  # (B, C, *S)
    if norm_n is not None:
        a_n = norm_n(a_n)
    if bias is not None:
        a_n = a_n + _channel_view(bias[2 * C :], a_n)
    n = torch.tanh(a_n)
    return n + z * (h - n)  # (1 - z) * n + z * h


class RecurrentCell(nn.Module):
    """Base of the gated cells: projections, gate norms, initialization, checks and state handling.

    Subclasses set the class attributes below, build their joint norms in :meth:`_build_norms` and
    implement :meth:`step`.
    """

    num_gates: int
    forget_gate: int  # index of the gate block that receives forget_bias (LSTM: f, GRU: z)
    forget_norm: str  # the joint norm whose β then holds the forget gate's shift
    zero_init: tuple[str, ...]  # parameters that start at zero (biases, peepholes)
    state_size: int  # tensors per state: 2 for (h, c), 1 for h

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int,
        kernel_size: int | tuple[int, ...] = 1,
        *,
        spatial_dims: int = 2,
        dilation: int | tuple[int, ...] = 1,
        recurrent_dilation: int | tuple[int, ...] | None = None,
        bias: bool = True,
        forget_bias: float = 1.0,
        norm: NormSpec = "none",
        norm_inputs: str = "joint",
        norm_scope: str = "per_gate",
        norm_kwargs: Mapping[str, Any] | None = None,
        recurrent_init: str = "orthogonal",
        recurrent_dropout: float = 0.0,
        backend: str = "auto",
        projection: str = "auto",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        positive_int("in_channels", in_channels)
        positive_int("hidden_channels", hidden_channels)
        if spatial_dims not in _SPATIAL_LETTERS:
            raise ValueError(f"expected spatial_dims to be 0 (dense), 1, 2 or 3, got {spatial_dims!r}")
        if not 0.0 <= recurrent_dropout < 1.0:
            raise ValueError(f"expected recurrent_dropout in [0, 1), got {recurrent_dropout!r}")
        self.in_channels = in_channels
        self.hidden_channels = hidden_channels
        self.spatial_dims = spatial_dims
        self.kernel_size = _tuple("kernel_size", kernel_size, spatial_dims)
        self.dilation = _tuple("dilation", dilation, spatial_dims)
        self.recurrent_dilation = (self.dilation if recurrent_dilation is None
                                   else _tuple("recurrent_dilation", recurrent_dilation, spatial_dims))
        self._padding_x = _same_padding(self.kernel_size, self.dilation)  # computed once, not per step
        self._padding_h = _same_padding(self.kernel_size, self.recurrent_dilation)
        self.forget_bias = float(forget_bias)
        self.norm_spec = norm if isinstance(norm, str) else getattr(norm, "__name__", repr(norm))
        self.norm_inputs = one_of("norm_inputs", norm_inputs, NORM_INPUTS)
        self.norm_scope = one_of("norm_scope", norm_scope, NORM_SCOPES)
        self.recurrent_init = one_of("recurrent_init", recurrent_init, RECURRENT_INITS)
        self.recurrent_dropout = float(recurrent_dropout)
        self.backend = one_of("backend", backend, BACKENDS)
        self.projection = one_of("projection", projection, PROJECTIONS)
        self.layout = step_layout(spatial_dims)
        self.gate_probe: GateProbe | None = None  # set to observe the sigmoid gates, e.g. their saturation
        self._norm_kwargs = dict(norm_kwargs or {})
        factory = {"device": device, "dtype": dtype}
        G, C = self.num_gates, hidden_channels
        self.weight_x = nn.Parameter(torch.empty(G * C, in_channels, *self.kernel_size, **factory))
        self.weight_h = nn.Parameter(torch.empty(G * C, C, *self.kernel_size, **factory))
        norm_class = parse_spec(norm)[0] if isinstance(norm, str) else None  # a ValueError for unknown specs
        self.normalized = norm_class is not Identity
        if norm_class is InstanceNorm and spatial_dims == 0:
            raise ValueError(f"norm {norm!r} normalizes each channel over the spatial axes, which a dense cell "
                             "does not have; expected a conv cell, or another norm")
        self._build_norms(norm, factory)
        self.bias = nn.Parameter(torch.empty(G * C, **factory)) if bias and self._joint_shift() is None else None
        # with no norm before the bias, it can ride along with the hoisted input projection for free
        self._fold_bias = not self.normalized
        why = self._joint_unsupported() if self.projection == "joint" else None
        if why:
            raise ValueError(f"projection='joint' convolves [x; h] at once, so it {why}")

    # -- construction ---------------------------------------------------------------------------------

    def _make_norm(self, spec: NormSpec, gates: int, *, center: bool, factory: dict) -> nn.Module:
        return gate_norm(spec, self.hidden_channels, gates, scope=self.norm_scope, layout=self.layout,
                         center=center, **factory, **self._norm_kwargs)

    def _build_norms(self, norm: NormSpec, factory: dict) -> None:
        """Create the gate norms; subclasses add their own (LSTM: the cell norm, GRU: the joint pair)."""
        if self.norm_inputs == "separate":
            self.norm_x = self._make_norm(norm, self.num_gates, center=False, factory=factory)
            self.norm_h = self._make_norm(norm, self.num_gates, center=False, factory=factory)

    def _joint_shift(self) -> Tensor | None:
        """β of the joint gate norm, which then replaces the cell's bias; None when there is none."""
        return _shift(getattr(self, self.forget_norm)) if self.norm_inputs == "joint" else None

    def _forget_shift(self) -> Tensor | None:
        """The parameter holding the gate shifts: the cell's bias, or the joint gate norm's β."""
        return self.bias if self.bias is not None else self._joint_shift()

    def reset_parameters(self) -> None:
        """Uniform(±1/sqrt(fan_in)) input weights; orthogonal (per gate) or uniform recurrent weights;
        zero biases with ``forget_bias`` on the forget (LSTM) or update (GRU) gate; norms reset."""
        fan_in = self.in_channels * math.prod(self.kernel_size)
        nn.init.uniform_(self.weight_x, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        C = self.hidden_channels
        if self.recurrent_init == "orthogonal":
            for g in range(self.num_gates):
                nn.init.orthogonal_(self.weight_h[g * C : (g + 1) * C])  # (C, C·k^d) rows orthonormal
        else:
            bound = 1 / math.sqrt(C * math.prod(self.kernel_size))
            nn.init.uniform_(self.weight_h, -bound, bound)
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
        for name in self.zero_init:
            if getattr(self, name, None) is not None:
                nn.init.zeros_(getattr(self, name))
        shift = self._forget_shift()
        if shift is not None:
            with torch.no_grad():
                shift[self.forget_gate * C : (self.forget_gate + 1) * C] = self.forget_bias

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every batch norm in the cell."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_running_stats"):
                module.reset_running_stats()

    # -- projections and checks ----------------------------------------------------------------------

    def _project(self, x: Tensor, weight: Tensor, bias: Tensor | None, dilation: tuple[int, ...],
                 padding: tuple[tuple[int, ...], tuple[int, ...]]) -> Tensor:
        """``weight * x``: a 'same'-padded convolution, or a matrix product for the dense cells."""
        if self.spatial_dims == 0:
            return F.linear(x, weight, bias)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
        before, after = padding
        if before != after:  # an even span: the extra row/column of zeros goes after, as in TF and Keras
            x = F.pad(x, [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)])
            before = (0,) * self.spatial_dims
        return conv(x, weight, bias, padding=before, dilation=dilation)

    def project_input(self, x: Tensor) -> Tensor:
        """``W_x * x`` (plus the bias when nothing normalizes before it) for any number of frames at once.

        Shape:
            - x: ``(N, C_in, *S)``; output: ``(N, G·C, *S)``.
        """
        return self._project(x, self.weight_x, self.bias if self._fold_bias else None, self.dilation, self._padding_x)

    def joint_projection(self, device: torch.device) -> bool:
        """Whether a layer computes ``W_x * x + W_h * h`` as one convolution of ``[x; h]`` per step
        (:meth:`project_joint`) instead of hoisting ``W_x * x`` over all steps. ``"auto"`` is joint on CPU where
        the cell allows it: there oneDNN runs one 80→256 conv per step faster than a 16→256 conv over all
        B·T frames plus a 64→256 conv per step (docs/performance.md); on GPU, hoisting saves launches."""
        if self.projection == "auto":
            return device.type == "cpu" and self._joint_unsupported() is None
        return self.projection == "joint"

    def _joint_unsupported(self) -> str | None:
        """Why this cell cannot project ``[x; h]`` at once, or None if it can."""
        if self.num_gates != 4:
            return "needs an LSTM cell (a GRU's reset gate multiplies W_h * h alone)"
        if self.normalized and self.norm_inputs != "joint":
            return "needs norm_inputs='joint' (separate norms see W_x * x and W_h * h apart)"
        if self.recurrent_dilation != self.dilation:
            return f"needs recurrent_dilation == dilation, got {self.recurrent_dilation} and {self.dilation}"
        return None

    def joint_weight(self) -> Tensor:
        """``[W_x, W_h]`` along the input channels, ``(G·C, C_in + C, *k)``; built once per sequence."""
        return torch.cat([self.weight_x, self.weight_h], dim=1)

    def project_joint(self, x: Tensor, h: Tensor, weight: Tensor, recurrent_mask: Tensor | None = None) -> Tensor:
        """``W_x * x + W_h * h`` (and the folded bias) as one convolution of ``[x; h]`` with
        ``weight = joint_weight()``; the recurrent-dropout mask applies to ``h`` first.

        Shape:
            - x: ``(B, C_in, *S)``; h: ``(B, C, *S)``; output: ``(B, G·C, *S)``.
        """
        if recurrent_mask is not None:
            h = h * recurrent_mask
        xh = torch.cat([x, h.to(x.dtype)], dim=1)  # (B, C_in + C, *S)
        return self._project(xh, weight, self.bias if self._fold_bias else None, self.dilation, self._padding_x)

    def project_hidden(self, h: Tensor, recurrent_mask: Tensor | None = None) -> Tensor:
        """``W_h * h``, with the variational recurrent-dropout mask applied to ``h`` first."""
        if recurrent_mask is not None:
            h = h * recurrent_mask
        return self._project(h, self.weight_h, None, self.recurrent_dilation, self._padding_h)

    def check_input(self, x: Tensor, *, what: str = "input") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, C_in, *S)`` for this cell's spatial rank."""
        letters = self.layout
        if x.dim() != len(letters):
            kind = f"{self.spatial_dims}-D conv" if self.spatial_dims else "dense"
            raise ValueError(f"expected {what} of rank {len(letters)} ({', '.join(letters)}) for a {kind} cell, "
                             f"got shape {tuple(x.shape)}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {what} with C={self.in_channels} channels at dim 1, got shape "
                             f"{tuple(x.shape)}")

    def initial_state(self, like: Tensor) -> Any:
        """The zero state for a batch shaped like ``like`` ``(B, *, *S)``, in ``like``'s dtype and device."""
        shape = (like.shape[0], self.hidden_channels, *like.shape[2:])
        zeros = [like.new_zeros(shape) for _ in range(self.state_size)]
        return tuple(zeros) if self.state_size > 1 else zeros[0]

    def check_state(self, state: Any, batch: int, spatial: tuple[int, ...], *, what: str = "state") -> Any:
        """Raise ``ValueError`` unless ``state`` has this cell's structure and shapes; return it."""
        expected = (batch, self.hidden_channels, *spatial)
        tensors = state if self.state_size > 1 else (state,)
        if self.state_size > 1 and (not isinstance(state, (tuple, list)) or len(state) != self.state_size):
            raise ValueError(f"expected {what} to be a tuple (h, c), got {type(state).__name__}"
                             + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))
        for name, s in zip("hc", tensors, strict=False):
            if not isinstance(s, Tensor) or tuple(s.shape) != expected:
                got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
                raise ValueError(f"expected {what} {name} of shape {expected} (B, C, *S), got {got}")
        return tuple(state) if self.state_size > 1 else state

    def recurrent_dropout_mask(self, like: Tensor) -> Tensor | None:
        """One variational dropout mask on ``h`` for a whole sequence (Gal & Ghahramani 2016), or None."""
        if not self.training or self.recurrent_dropout == 0.0:
            return None
        keep = 1.0 - self.recurrent_dropout
        return torch.bernoulli(torch.full_like(like, keep)) / keep

    @staticmethod
    def _freeze(new: Tensor, old: Tensor, mask: Tensor | None) -> Tensor:
        """Keep ``old`` where the (B,) mask is False, in the state's own dtype."""
        new = new.to(old.dtype)
        if mask is None:
            return new
        return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)

    def output(self, state: Any) -> Tensor:
        """The hidden state ``h`` of a state."""
        return state[0] if self.state_size > 1 else state

    def step(self, gx: Tensor, state: Any, *, t: int = 0, mask: Tensor | None = None,
             recurrent_mask: Tensor | None = None) -> Any:
        """One step from the projected input ``gx = project_input(x_t)``; see the subclasses."""
        raise NotImplementedError

    def forward(self, x: Tensor, state: Any = None, *, t: int = 0, mask: Tensor | None = None) -> Any:
        """One step: ``x`` ``(B, C_in, *S)`` and the state (zeros when ``None``) to the new state.

        ``t`` is the time-step index (used by ``recurrent_batch`` norms); ``mask`` ``(B,)`` marks valid
        samples: where it is False the state is carried unchanged and the sample is left out of batch
        statistics.
        """
        self.check_input(x)
        gx = self.project_input(x)  # (B, G·C, *S)
        B, spatial = x.shape[0], tuple(x.shape[2:])
        state = self.initial_state(gx) if state is None else self.check_state(state, B, spatial)
        if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (B,)):
            raise ValueError(f"expected a boolean mask of shape ({B},) (B,), got {mask.dtype} {tuple(mask.shape)}")
        return self.step(gx, state, t=t, mask=mask)

    def extra_repr(self) -> str:
        s = f"{self.in_channels}, {self.hidden_channels}"
        if self.spatial_dims:
            s += f", kernel_size={self.kernel_size}, spatial_dims={self.spatial_dims}"
            if any(d != 1 for d in self.dilation):
                s += f", dilation={self.dilation}"
            if self.recurrent_dilation != self.dilation:
                s += f", recurrent_dilation={self.recurrent_dilation}"
        s += f", norm={self.norm_spec!r}"
        if self.normalized:
            s += f", norm_inputs={self.norm_inputs!r}, norm_scope={self.norm_scope!r}"
        if self.forget_bias != 1.0:
            s += f", forget_bias={self.forget_bias}"
        if self.recurrent_init != "orthogonal":
            s += f", recurrent_init={self.recurrent_init!r}"
        if self.recurrent_dropout:
            s += f", recurrent_dropout={self.recurrent_dropout}"
        if self.backend != "auto":
            s += f", backend={self.backend!r}"
        if self.projection != "auto":
            s += f", projection={self.projection!r}"
        return s

    def _compile_key(self) -> str:
        """Cells that print alike trace alike: they share a compiled gate block."""
        return f"{type(self).__name__}({self.extra_repr()})"

    def gate_backend(self, device: torch.device, mask: Tensor | None = None) -> str:
        """The gate block that runs for inputs on ``device``: ``backend``, with ``"auto"`` resolved
        (:func:`normrnn.kernels.auto_backend`). Eager instead of compiled where the block depends on data or
        other processes: a gate probe, or batch statistics that are masked (their count is data) or synced."""
        backend = auto_backend(device) if self.backend == "auto" else self.backend
        if self.gate_probe is not None:
            return "eager"
        if backend == "compiled" and self.training and any(
                isinstance(m, BatchNorm) and (mask is not None or m.sync) for m in self.modules()):
            return "eager"
        return backend


class _LSTMBase(RecurrentCell):
    num_gates = 4
    forget_gate = 1  # f
    forget_norm = "norm_gates"
    zero_init = ("bias", "weight_peephole")
    state_size = 2

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...] = 1, *,
                 peephole: bool = False, norm_cell: str = "none", **kwargs: Any) -> None:
        self.norm_cell = one_of("norm_cell", norm_cell, NORM_CELL)
        self.peephole = bool(peephole)
        super().__init__(in_channels, hidden_channels, kernel_size, **kwargs)
        factory = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        self.weight_peephole = (nn.Parameter(torch.empty(3, hidden_channels, **factory)) if peephole else None)
        self.reset_parameters()
        why = self._fused_unsupported() if self.backend == "fused" else None
        if why:
            raise ValueError(f"backend='fused' needs a joint, per-channel-affine group or layer gate norm "
                             f"without peepholes or cell norm; {why}")

    def _fused_unsupported(self) -> str | None:
        """Why :func:`normrnn.kernels.fused_lstm_gates` cannot run this cell, or None if it can."""
        norm = getattr(self, "norm_gates", None)
        if self.norm_inputs != "joint":
            return f"got norm_inputs={self.norm_inputs!r}"
        if not isinstance(norm, GroupNorm) or norm.plan.kernel != "group_norm" or norm.plan.permute is not None:
            return f"got norm={self.norm_spec!r}"
        if norm.weight is None or norm.bias is None or norm.param_axes != "C":
            return "got a gate norm without a per-channel scale and shift"
        if self.peephole or self.norm_cell != "none":
            return f"got peephole={self.peephole}, norm_cell={self.norm_cell!r}"
        return None

    def _build_norms(self, norm: NormSpec, factory: dict) -> None:
        super()._build_norms(norm, factory)
        if self.norm_inputs == "joint":
            self.norm_gates = self._make_norm(norm, 4, center=True, factory=factory)
        self.cell_norm = None
        if self.norm_cell != "none":
            self.cell_norm = create_norm(norm, self.hidden_channels, layout=self.layout, **factory,
                                         **self._norm_kwargs)

    def step(self, gx: Tensor, state: LSTMState, *, t: int = 0, mask: Tensor | None = None,
             recurrent_mask: Tensor | None = None, joint: bool = False) -> LSTMState:
        """One LSTM step: ``gx`` ``(B, 4C, *S)``, state ``(h, c)`` → new ``(h, c)``, frozen where ``mask`` is False.

        ``joint=True`` says that ``gx`` already holds ``W_x * x + W_h * h`` (:meth:`project_joint`).
        """
        h, c = state
        gh = None if joint else self.project_hidden(h, recurrent_mask)  # (B, 4C, *S)
        backend = self.gate_backend(gx.device, mask)
        if backend == "fused":
            g = self.norm_gates
            pre = gx if gh is None else gx + gh
            h_new, c_new = fused_lstm_gates(pre, c, g.weight, g.bias, groups=g.axes.groups, eps=g.eps)
        elif backend == "compiled":
            h_new, c_new = _compiled_lstm_block(self._compile_key(), self, gx, gh, c, t, mask)
        else:
            h_new, c_new = self.gate_block(gx, gh, c, t, mask)
        return self._freeze(h_new, h, mask), self._freeze(c_new, c, mask)

    def gate_block(self, gx: Tensor, gh: Tensor | None, c: Tensor, t: int, mask: Tensor | None) -> LSTMState:
        """Everything after the projections, eagerly: the part a compiled or fused block replaces. ``gh`` is
        None when ``gx`` already holds both projections."""
        if self.norm_inputs == "separate":
            pre = _bind(self.norm_x, t, mask)(gx) + _bind(self.norm_h, t, mask)(gh)
            norm = None
        else:
            pre = gx if gh is None else gx + gh
            norm = _bind(self.norm_gates, t, mask) if self.normalized else None
        return lstm_gates(
            pre, c, norm=norm, bias=None if self._fold_bias else self.bias, peephole=self.weight_peephole,
            cell_norm=_bind(self.cell_norm, t, mask), norm_cell=self.norm_cell, probe=self.gate_probe,
        )

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.peephole:
            s += ", peephole=True"
        if self.norm_cell != "none":
            s += f", norm_cell={self.norm_cell!r}"
        return s


class _GRUBase(RecurrentCell):
    num_gates = 3
    forget_gate = 1  # z: a positive bias starts the cell remembering, like an LSTM forget bias
    forget_norm = "norm_rz"
    zero_init = ("bias", "bias_hn")
    state_size = 1

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...] = 1,
                 **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, **kwargs)
        factory = {"device": kwargs.get("device"), "dtype": kwargs.get("dtype")}
        if self.backend == "fused":
            raise ValueError("expected backend 'auto', 'eager' or 'compiled' for a GRU cell (no fused GRU block "
                             "yet), got 'fused'")
        has_bias = kwargs.get("bias", True)
        self.bias_hn = nn.Parameter(torch.empty(hidden_channels, **factory)) if has_bias else None
        self.reset_parameters()

    def _build_norms(self, norm: NormSpec, factory: dict) -> None:
        super()._build_norms(norm, factory)
        if self.norm_inputs == "joint":
            self.norm_rz = self._make_norm(norm, 2, center=True, factory=factory)
            self.norm_n = self._make_norm(norm, 1, center=True, factory=factory)

    def step(self, gx: Tensor, state: Tensor, *, t: int = 0, mask: Tensor | None = None,
             recurrent_mask: Tensor | None = None) -> Tensor:
        """One GRU step: ``gx`` ``(B, 3C, *S)``, ``h`` → new ``h``, frozen where ``mask`` is False."""
        h = state
        gh = self.project_hidden(h, recurrent_mask)  # (B, 3C, *S)
        if self.gate_backend(gx.device, mask) == "compiled":
            h_new = _compiled_gru_block(self._compile_key(), self, gx, gh, h, t, mask)
        else:
            h_new = self.gate_block(gx, gh, h, t, mask)
        return self._freeze(h_new, h, mask)

    def gate_block(self, gx: Tensor, gh: Tensor, h: Tensor, t: int, mask: Tensor | None) -> Tensor:
        """Everything after the two projections, eagerly: the part a compiled block replaces."""
        norm_rz = norm_n = None
        if self.norm_inputs == "separate":
            gx, gh = _bind(self.norm_x, t, mask)(gx), _bind(self.norm_h, t, mask)(gh)
        elif self.normalized:
            norm_rz, norm_n = _bind(self.norm_rz, t, mask), _bind(self.norm_n, t, mask)
        return gru_gates(gx, gh, h, norm_rz=norm_rz, norm_n=norm_n, bias=None if self._fold_bias else self.bias,
                         bias_hn=self.bias_hn, probe=self.gate_probe)


def _gate_block(cell: RecurrentCell, *args: Any) -> Any:
    return cell.gate_block(*args)


# Cells with the same configuration share a compiled graph; dynamo guards on configuration and shapes.
_compiled_lstm_block = CompiledBlock(_gate_block, name="LSTM")
_compiled_gru_block = CompiledBlock(_gate_block, name="GRU")


class _Conv(RecurrentCell):
    """Convolutional cells: ``kernel_size`` is required and ``spatial_dims`` is 1, 2 or 3."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...], *,
                 spatial_dims: int = 2, **kwargs: Any) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"expected spatial_dims 1, 2 or 3 for a {type(self).__name__}, got {spatial_dims!r}")
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class _Dense(RecurrentCell):
    """Dense cells: matrix products on ``(B, C)``, no kernel."""

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, 1, spatial_dims=0, **kwargs)


_CELL_DOC_ARGS = """
    Args:
        in_channels: C_in, the channels of the input.
        hidden_channels: C, the channels of the state.
        kernel_size: an int or one int per spatial axis; odd or even ("same" padding keeps the size).
        spatial_dims: 1, 2 or 3. Default: ``2``.
        dilation: the convolution dilation. Default: ``1``.
        recurrent_dilation: the dilation of ``W_h * h``; Keras dilates only the input convolution, i.e. ``1``.
            Default: ``dilation``.
        bias: learn a bias (dropped when a joint gate norm learns β). Default: ``True``.
        forget_bias: added to the forget (LSTM) or update (GRU) gate's shift at initialization. Default: ``1.0``.
        norm: a norm spec or callable (module docstring). Default: ``"none"``.
        norm_inputs: ``"joint"`` or ``"separate"``. Default: ``"joint"``.
        norm_scope: ``"per_gate"`` or ``"all_gates"``. Default: ``"per_gate"``.
        norm_kwargs: passed to every norm, e.g. ``{"eps": 1e-3, "sync": True}``. Default: none.
        backend: how the gate block runs (:mod:`normrnn.kernels`): ``"eager"`` PyTorch ops; ``"compiled"``,
            ``torch.compile`` of the block, forward and backward, warning once if it cannot stay compiled;
            ``"fused"`` (LSTM with a joint group/layer gate norm), one autograd op that saves about half the
            activation memory; ``"auto"``, compiled on CUDA with Triton and eager elsewhere. Default: ``"auto"``.
        projection: how a layer computes ``W_x * x`` and ``W_h * h``: ``"hoisted"``, ``W_x * x`` for all steps in
            one batched conv; ``"joint"`` (LSTM with joint norm inputs), one conv of ``[x; h]`` per step;
            ``"auto"``, joint on CPU where possible, else hoisted. Default: ``"auto"``.
        recurrent_init: ``"orthogonal"`` (per gate, as Keras) or ``"default"`` (uniform). Default: ``"orthogonal"``.
        recurrent_dropout: the probability of the variational dropout on ``h``. Default: ``0.0``.
        device, dtype: factory keyword arguments."""


class ConvLSTMCell(_Conv, _LSTMBase):
    __doc__ = r"""One ConvLSTM step (Shi et al. 2015, arXiv:1506.04214), with optional normalization and peepholes.

    .. math::
        [i, f, g, o] = \mathrm{norm}(W_x * x_t + W_h * h_{t-1}) + b, \qquad
        c_t = \sigma(f) \odot c_{t-1} + \sigma(i) \odot \tanh(g), \qquad
        h_t = \sigma(o) \odot \tanh(c_t)

    Gate order ``i, f, g, o``; see :mod:`normrnn.cells` for the placement options and :func:`lstm_gates`
    for the full gate math.
""" + _CELL_DOC_ARGS + r"""
        peephole: learn per-channel peephole weights (any resolution). Default: ``False``.
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



class ConvGRUCell(_Conv, _GRUBase):
    __doc__ = r"""One ConvGRU step (Ballas et al. 2016, arXiv:1511.06432) in the "reset after" form of PyTorch/cuDNN.

    .. math::
        [r, z] = \sigma(\mathrm{norm}(W_{x,rz} * x_t + W_{h,rz} * h_{t-1}) + b_{rz}), \qquad
        n = \tanh(\mathrm{norm}(W_{x,n} * x_t + r \odot (W_{h,n} * h_{t-1} + b_{hn})) + b_n)

        h_t = (1 - z) \odot n + z \odot h_{t-1}

    Gate order ``r, z, n``; see :func:`gru_gates`. ``forget_bias`` goes to the update gate ``z``.
""" + _CELL_DOC_ARGS + r"""

    Shape:
        - Input: ``x`` ``(B, C_in, *S)``; state ``h`` ``(B, C, *S)``, zeros when omitted.
        - Output: ``h`` ``(B, C, *S)``.

    Example::

        >>> cell = ConvGRUCell(3, 8, (3, 3), norm="layer")
        >>> cell(torch.randn(2, 3, 10, 12)).shape
        torch.Size([2, 8, 10, 12])
    """



class LSTMCell(_Dense, _LSTMBase):
    r"""One dense LSTM step (Hochreiter & Schmidhuber 1997) with optional normalization and peepholes.

    The same math as :class:`ConvLSTMCell` with matrix products; with ``norm="none"`` it equals
    ``torch.nn.LSTMCell`` (``weight_x`` = ``weight_ih``, ``weight_h`` = ``weight_hh``, ``bias`` =
    ``bias_ih + bias_hh``). ``norm="layer"`` per gate is the LN-LSTM of Ba et al. 2016.

    Args:
        in_channels, hidden_channels, bias, forget_bias, norm, norm_inputs, norm_scope, norm_kwargs,
        recurrent_init, recurrent_dropout, peephole, norm_cell, device, dtype: as in :class:`ConvLSTMCell`.

    Shape:
        - Input: ``x`` ``(B, C_in)``; state ``(h, c)``, each ``(B, C)``.
        - Output: ``(h, c)``, each ``(B, C)``.

    Example::

        >>> h, c = LSTMCell(4, 6, norm="layer")(torch.randn(3, 4))
        >>> h.shape
        torch.Size([3, 6])
    """



class GRUCell(_Dense, _GRUBase):
    r"""One dense GRU step (Cho et al. 2014), equal to ``torch.nn.GRUCell`` with ``norm="none"``.

    ``weight_x`` = ``weight_ih``, ``weight_h`` = ``weight_hh``, ``bias`` = ``bias_ih`` plus the ``r, z``
    part of ``bias_hh``, and ``bias_hn`` = its ``n`` part.

    Args:
        in_channels, hidden_channels, bias, forget_bias, norm, norm_inputs, norm_scope, norm_kwargs,
        recurrent_init, recurrent_dropout, device, dtype: as in :class:`ConvGRUCell`.

    Shape:
        - Input: ``x`` ``(B, C_in)``; state ``h`` ``(B, C)``.
        - Output: ``h`` ``(B, C)``.

    Example::

        >>> GRUCell(4, 6)(torch.randn(3, 4)).shape
        torch.Size([3, 6])
    """

