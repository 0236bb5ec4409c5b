"""``RecurrentCell``: the parts every recurrent cell shares. One step; the layers loop over time."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, cast

import torch
from torch import Tensor, nn

from .._checks import Factory, input_like_parameters, one_of, positive_int
from ..kernels import get_backend, resolve_backend
from ..norms import NormLike, NormSpec
from .common import CellCommon
from .gate_norms import NORM_INPUTS, NORM_SCOPES, cell_gate_norm, shift_of
from .gates import activation as activation_fn
from .init import RECURRENT_INITS, check_dropout, init_recurrent_weight
from .projection import Geometry, step_layout
from .states import CellState, checked_state, freeze_state, hidden_of

__all__ = ["PROJECTIONS", "RecurrentCell", "joint_projection", "joint_unsupported", "joint_weight"]

PROJECTIONS = ("auto", "hoisted", "joint")  # how a layer computes W_x * x and W_h * h (see RecurrentCell)


class RecurrentCell(CellCommon):
    """Base of the recurrent cells: projections, norms, initialization, states and the step.

    Subclasses set the class attributes below, build their joint norms in :meth:`_build_norms` and implement
    :meth:`gate_block`, everything after the projections (the gated families extend
    :class:`~normrnn.cells.gated.GatedCell`, which adds the forget bias and the gate probe). :meth:`step` runs
    that block through the backend the registry picks (:func:`normrnn.kernels.resolve_backend`). Every cell takes
    the arguments below; each cell class documents its own besides.

    Args:
        in_channels: C_in, the channels of the input.
        hidden_channels: C, the channels of the state.
        kernel_size: an int or one int per spatial axis; odd or even ("same" padding keeps the size).
        spatial_dims: 1, 2 or 3. Default: ``2``.
        dilation: the convolution dilation. Default: ``1``.
        recurrent_dilation: the dilation of ``W_h * h``; Keras dilates only the input convolution, i.e. ``1``.
            Default: ``dilation``.
        bias: learn a bias (dropped when a joint gate norm learns β). Default: ``True``.
        norm: a norm spec, normrnn norm class or other callable (:mod:`normrnn.cells`). Default: ``"none"``.
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
        padding: of the input convolution, ``"same"`` or ``"valid"`` (Keras' default); the recurrent convolution
            is always "same", so the state has the input convolution's output size. Default: ``"same"``.
        stride: of the input convolution (TensorFlow's "same" rule at a stride). Default: ``1``.
        activation, recurrent_activation: the candidate/output and the gate nonlinearities, from ``"tanh"``,
            ``"sigmoid"``, ``"relu"``, ``"hard_sigmoid"`` (Keras 3: ``relu6(x + 3) / 6``). Default: ``"tanh"``,
            ``"sigmoid"``.
        device, dtype: factory keyword arguments.
    """

    num_gates: int  # channel blocks of the projections (LSTM 4, GRU 3, a plain RNN 1)
    state_size: int  # tensors per state: 2 for (h, c), 1 for h
    hidden_apart: str | None = None  # why W_h * h must stay apart from W_x * x (a GRU's reset gate), if it must

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
        norm: NormLike = "none",
        norm_inputs: str = "joint",
        norm_scope: str = "per_gate",
        norm_kwargs: Mapping[str, Any] | None = None,
        recurrent_init: str = "orthogonal",
        recurrent_dropout: float = 0.0,
        backend: str = "auto",
        projection: str = "auto",
        padding: str = "same",
        stride: int | tuple[int, ...] = 1,
        activation: str = "tanh",
        recurrent_activation: str = "sigmoid",
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.in_channels = positive_int("in_channels", in_channels)
        self.hidden_channels = positive_int("hidden_channels", hidden_channels)
        self.geometry = Geometry.create(spatial_dims, kernel_size, dilation, recurrent_dilation, padding=padding,
                                        stride=stride)
        self.act, self.gate_act = activation_fn(activation), activation_fn(recurrent_activation)
        self.activation, self.recurrent_activation = activation, recurrent_activation
        self.recurrent_dropout = check_dropout(recurrent_dropout)
        spec = NormSpec.parse(norm)  # parsed once: a ValueError for unknown specs
        self.norm_spec, self.normalized = spec.name, not spec.is_identity
        self.norm_inputs = one_of("norm_inputs", norm_inputs, NORM_INPUTS)
        self.norm_scope = one_of("norm_scope", norm_scope, NORM_SCOPES)
        self.recurrent_init = one_of("recurrent_init", recurrent_init, RECURRENT_INITS)
        self.backend = get_backend(backend).name if backend != "auto" else "auto"  # a ValueError for unknown names
        self.projection = one_of("projection", projection, PROJECTIONS)
        self.layout = step_layout(spatial_dims)
        self._norm_kwargs = dict(norm_kwargs or {})
        factory: Factory = {"device": device, "dtype": dtype}
        G, C = self.num_gates, hidden_channels
        self.weight_x = nn.Parameter(torch.empty(G * C, in_channels, *self.kernel_size, **factory))
        self.weight_h = nn.Parameter(torch.empty(G * C, C, *self.kernel_size, **factory))
        self._build_norms(spec, factory)
        has_bias = bias and shift_of(self._shift_norm()) is None  # a joint norm's β is the bias then
        self.bias = nn.Parameter(torch.empty(G * C, **factory)) if has_bias else None
        # with no norm before the bias, it can ride along with the hoisted input projection for free
        self._fold_bias = not self.normalized
        why = joint_unsupported(self) if self.projection == "joint" else None
        if why:
            raise ValueError(f"projection='joint' convolves [x; h] at once, so it {why}")
        self._build_extra_params(bias=bias, factory=factory)
        self.reset_parameters()
        _check_backend(self)

    # -- construction ---------------------------------------------------------------------------------

    def _build_extra_params(self, *, bias: bool, factory: Factory) -> None:
        """Create a subclass's own parameters (LSTM peepholes, the GRU's recurrent candidate bias)."""

    def _build_norms(self, spec: NormSpec, factory: Factory) -> None:
        """Create the norms; subclasses add their joint ones (LSTM: the gates and the cell, GRU: the pair)."""
        if self.norm_inputs == "separate":
            self.norm_x = make_gate_norm(self, spec, self.num_gates, center=False, factory=factory)
            self.norm_h = make_gate_norm(self, spec, self.num_gates, center=False, factory=factory)

    def _shift_norm(self) -> nn.Module | None:
        """The joint norm whose learned shift β replaces the cell's bias (it then holds the gate shifts); None."""
        return None

    def reset_parameters(self) -> None:
        """Uniform(±1/sqrt(fan_in)) input weights; orthogonal (per gate) or uniform recurrent weights; norms reset;
        a zero bias."""
        fan_in = self.in_channels * math.prod(self.kernel_size)
        nn.init.uniform_(self.weight_x, -1 / math.sqrt(fan_in), 1 / math.sqrt(fan_in))
        init_recurrent_weight(self.weight_h, gates=self.num_gates, scheme=self.recurrent_init,
                              kernel_size=self.kernel_size)
        for module in self.children():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()  # type: ignore[operator]  # hasattr: nn.Module types it Tensor | Module
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    # -- projections -----------------------------------------------------------------------------------

    def project_input(self, x: Tensor) -> Tensor:
        """``W_x * x`` (plus the bias when nothing normalizes before it) for any number of frames at once.

        Shape:
            - x: ``(N, C_in, *S)``; output: ``(N, G·C, *S)``.
        """
        return self.geometry.project(x, self.weight_x, self.bias if self._fold_bias else None)

    def project_hidden(self, h: Tensor, recurrent_mask: Tensor | None = None) -> Tensor:
        """``W_h * h``, with the variational recurrent-dropout mask applied to ``h`` first."""
        if recurrent_mask is not None:
            h = h * recurrent_mask
        return self.geometry.project(h, self.weight_h, recurrent=True)

    def project_joint(self, x: Tensor, h: Tensor, weight: Tensor, recurrent_mask: Tensor | None = None) -> Tensor:
        """``W_x * x + W_h * h`` (and the folded bias) as one convolution of ``[x; h]`` with
        ``weight = joint_weight(cell)``; the recurrent-dropout mask applies to ``h`` first.

        Shape:
            - x: ``(B, C_in, *S)``; h: ``(B, C, *S)``; output: ``(B, G·C, *S)``.
        """
        if recurrent_mask is not None:
            h = h * recurrent_mask
        xh = torch.cat([x, h.to(x.dtype)], dim=1)  # (B, C_in + C, *S)
        return self.geometry.project(xh, weight, self.bias if self._fold_bias else None)

    # -- states and checks -----------------------------------------------------------------------------

    def check_input(self, x: Tensor, *, what: str = "input") -> None:
        """Raise ``ValueError`` unless ``x`` is ``(B, C_in, *S)`` for this cell's spatial rank."""
        letters = self.layout
        if not isinstance(x, Tensor) or x.dim() != len(letters):
            shape = f"{self.spatial_dims}-D conv" if self.spatial_dims else "dense"
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected {what} of rank {len(letters)} ({', '.join(letters)}) for a {shape} cell, "
                             f"got {got}")
        if x.shape[1] != self.in_channels:
            raise ValueError(f"expected {what} with C={self.in_channels} channels at dim 1, got shape "
                             f"{tuple(x.shape)}")
        input_like_parameters(x, self, "cell")

    def initial_state(self, like: Tensor) -> CellState:
        """The zero state for a batch shaped like ``like`` ``(B, *, *S)``, in ``like``'s dtype and device."""
        shape = (like.shape[0], self.hidden_channels, *like.shape[2:])
        zeros = [like.new_zeros(shape) for _ in range(self.state_size)]
        return (zeros[0], zeros[1]) if self.state_size > 1 else zeros[0]

    def check_state(self, state: object, batch: int, spatial: tuple[int, ...], *, what: str = "state",
                    like: Tensor | None = None) -> CellState:
        """Raise ``ValueError`` unless ``state`` has this cell's structure and shapes (and, given the input
        ``like``, its dtype); return it. Under autocast the state is cast to the autocast dtype, as every output
        is; outside it a state of another dtype than the input is an error, as in ``torch.nn.LSTM``."""
        return checked_state(state, self.state_size, (batch, self.hidden_channels, *spatial), what=what, like=like)

    # -- the step --------------------------------------------------------------------------------------

    def gate_block(self, gx: Tensor, gh: Tensor | None, state: CellState, t: int,
                   mask: Tensor | None) -> CellState:
        """Everything after the projections, eagerly: the part a gate backend replaces. ``gh`` is None when
        ``gx`` already holds both projections (:meth:`project_joint`)."""
        raise NotImplementedError

    def step(self, gx: Tensor, state: CellState, *, t: int = 0, mask: Tensor | None = None,
             recurrent_mask: Tensor | None = None, joint: bool = False) -> CellState:
        """One step from the projected input and the state to the new state, frozen where ``mask`` is False.

        ``gx`` is ``project_input(x_t)``, ``(B, G·C, *S)``; with ``joint=True`` it is ``project_joint(x_t, h)``,
        which already holds ``W_h * h``. Inputs are not validated here: :meth:`forward` and the layers do it.
        """
        gh = None if joint else self.project_hidden(hidden_of(state), recurrent_mask)  # (B, G·C, *S)
        new = resolve_backend(self.backend, self, gx.device, mask)(self, gx, gh, state, t, mask)
        return freeze_state(cast(CellState, new), state, mask)  # a backend returns the state gate_block does

    def forward(self, x: Tensor, state: CellState | None = None, *, t: int = 0,
                mask: Tensor | None = None) -> CellState:
        """One step: ``x`` ``(B, C_in, *S)`` and the state (zeros when ``None``) to the new state.

        ``t`` is the time-step index (used by ``recurrent_batch`` norms); ``mask`` ``(B,)`` marks valid
        samples: where it is False the state is carried unchanged and the sample is left out of batch
        statistics.
        """
        gx, state = self._checked_step_inputs(x, state, mask)
        return self.step(gx, state, t=t, mask=mask)

    def extra_repr(self) -> str:
        g, conv = self.geometry, bool(self.spatial_dims)
        activations = (self.activation, self.recurrent_activation)
        shown = (  # (differs from the default, text), in a fixed order
            (conv, f"kernel_size={self.kernel_size}, spatial_dims={self.spatial_dims}"),
            (conv and any(d != 1 for d in g.dilation), f"dilation={g.dilation}"),
            (conv and g.recurrent_dilation != g.dilation, f"recurrent_dilation={g.recurrent_dilation}"),
            (True, f"norm={self.norm_spec!r}"),
            (self.normalized, f"norm_inputs={self.norm_inputs!r}, norm_scope={self.norm_scope!r}"),
            (self.recurrent_init != "orthogonal", f"recurrent_init={self.recurrent_init!r}"),
            (bool(self.recurrent_dropout), f"recurrent_dropout={self.recurrent_dropout}"),
            (g.padding != "same", f"padding={g.padding!r}"),
            (any(v != 1 for v in g.stride), f"stride={g.stride}"),
            (activations != ("tanh", "sigmoid"),
             f"activation={activations[0]!r}, recurrent_activation={activations[1]!r}"),
            (self.backend != "auto", f"backend={self.backend!r}"),
            (self.projection != "auto", f"projection={self.projection!r}"),
        )
        return ", ".join([f"{self.in_channels}, {self.hidden_channels}", *(text for on, text in shown if on)])


def make_gate_norm(cell: RecurrentCell, spec: NormSpec, gates: int, *, center: bool, factory: Factory) -> nn.Module:
    """A norm over ``gates`` gate blocks of ``cell`` (its scope, layout and ``norm_kwargs``); ``center`` is the
    cell's default for β, which the user's ``norm_kwargs`` overrides."""
    return cell_gate_norm(spec, cell.hidden_channels, gates, scope=cell.norm_scope, layout=cell.layout,
                          default_center=center, norm_kwargs=cell._norm_kwargs, factory=factory)


def joint_projection(cell: RecurrentCell, device: torch.device) -> bool:
    """Whether a layer computes ``W_x * x + W_h * h`` as one convolution of ``[x; h]`` per step
    (:meth:`RecurrentCell.project_joint`) instead of hoisting ``W_x * x`` over all steps. ``"auto"`` is joint on CPU
    where the cell allows it: there oneDNN runs one 80→256 conv per step faster than a 16→256 conv over all B·T
    frames plus a 64→256 conv per step (docs/performance.md); on GPU, hoisting saves launches."""
    if cell.projection == "auto":
        return device.type == "cpu" and joint_unsupported(cell) is None
    return cell.projection == "joint"


def joint_unsupported(cell: RecurrentCell) -> str | None:
    """Why ``cell`` cannot project ``[x; h]`` at once, or None if it can."""
    g = cell.geometry
    if g.resamples:
        return "needs x and h of one size (padding='same', stride 1)"
    if cell.hidden_apart:
        return f"needs W_h * h added to W_x * x ({cell.hidden_apart})"
    if cell.normalized and cell.norm_inputs != "joint":
        return "needs norm_inputs='joint' (separate norms see W_x * x and W_h * h apart)"
    if g.recurrent_dilation != g.dilation:
        return f"needs recurrent_dilation == dilation, got {g.recurrent_dilation} and {g.dilation}"
    return None


def joint_weight(cell: RecurrentCell) -> Tensor:
    """``[W_x, W_h]`` along the input channels, ``(G·C, C_in + C, *k)``; built once per sequence."""
    return torch.cat([cell.weight_x, cell.weight_h], dim=1)


def _check_backend(cell: RecurrentCell) -> None:
    """A named backend must support ``cell`` (checked once the cell is built)."""
    if cell.backend == "auto":
        return
    why = get_backend(cell.backend).unsupported(cell)
    if why:
        raise ValueError(f"expected a gate backend that can run {type(cell).__name__}(norm={cell.norm_spec!r}), "
                         f"got {cell.backend!r}: {why}")


class Conv(RecurrentCell):
    """Convolutional cells: ``kernel_size`` is required and ``spatial_dims`` is 1, 2 or 3."""

    def __init__(self, in_channels: int, hidden_channels: int, kernel_size: int | tuple[int, ...], *,
                 spatial_dims: int = 2, **kwargs: Any) -> None:
        if spatial_dims not in (1, 2, 3):
            raise ValueError(f"expected spatial_dims 1, 2 or 3 for a {type(self).__name__}, got {spatial_dims!r}")
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class Dense(RecurrentCell):
    """Dense cells: matrix products on ``(B, C)``, no kernel."""

    def __init__(self, in_channels: int, hidden_channels: int, **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, 1, spatial_dims=0, **kwargs)
