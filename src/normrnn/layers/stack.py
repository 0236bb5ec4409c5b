"""The stack: layers of :class:`Recurrence` with residual connections, dropout between layers, and the one
place where inputs, masks and states are validated."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import Factory, input_like_parameters, one_of, positive_int
from ..cells import RecurrentCell, step_layout
from ..cells.states import LayerState
from ..norms.functional import check_mask
from .recurrence import MERGES, Recurrence

__all__ = ["RecurrentLayer", "layer_for"]


def _channels_list(hidden_channels: int | Sequence[int], num_layers: int) -> list[int]:
    if isinstance(hidden_channels, int) and not isinstance(hidden_channels, bool):
        return [hidden_channels] * num_layers
    out = list(hidden_channels)  # type: ignore[arg-type]  # a bool is refused below: not a list of ints
    if len(out) != num_layers:
        raise ValueError(f"expected hidden_channels to be an int or {num_layers} ints (one per layer), "
                         f"got {hidden_channels!r}")
    return out


_LAYERS: dict[type[RecurrentCell], type[RecurrentLayer]] = {}  # cell class -> its layer class


class RecurrentLayer(nn.Module):
    """Base of the sequence layers; subclasses pick the cell class and whether it is convolutional. Every layer
    takes the arguments below; each layer class documents its own besides.

    Args:
        in_channels: C_in.
        hidden_channels: C, an int or one int per layer.
        num_layers: the number of stacked layers. Default: ``1``.
        residual: add each layer's input to its output, through a 1×1 projection if the channels differ.
            Default: ``False``.
        bidirectional: add a backward direction per layer. Default: ``False``.
        merge: how the two directions combine, ``"concat"`` (2C channels) or ``"sum"``. Default: ``"concat"``.
        go_backwards: run the sequence last step first and return the outputs in that order (Keras'
            ``go_backwards``); not with ``bidirectional`` or ``residual``. Default: ``False``.
        batch_first: ``(B, T, …)`` input and output; ``False`` for ``(T, B, …)``. Default: ``True``.
        dropout: dropout on the input of every layer after the first. Default: ``0.0``.
        recurrent_dropout: variational dropout on ``h``, one mask per sequence. Default: ``0.0``.
        device: the parameters' device. Default: ``None``.
        dtype: the parameters' dtype. Default: ``None``.
        **cell_kwargs: the cell's options (``norm``, ``norm_inputs``, ``norm_scope``, ``forget_bias``, ``bias``,
            ``norm_kwargs``, ``recurrent_init``, and the cell class's own), passed to every cell
            (:class:`~normrnn.cells.base.RecurrentCell`).
    """

    cell_class: type[RecurrentCell]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if "cell_class" in cls.__dict__:  # the layer of one cell type, found from it by layer_for
            _LAYERS[cls.cell_class] = cls

    def __init__(
        self,
        in_channels: int,
        hidden_channels: int | Sequence[int],
        kernel_size: int | tuple[int, ...] | None,
        *,
        spatial_dims: int,
        num_layers: int = 1,
        residual: bool = False,
        bidirectional: bool = False,
        merge: str = "concat",
        go_backwards: bool = False,
        batch_first: bool = True,
        dropout: float = 0.0,
        recurrent_dropout: float = 0.0,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
        **cell_kwargs: Any,
    ) -> None:
        super().__init__()
        positive_int("num_layers", num_layers)
        one_of("merge", merge, MERGES)
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"expected dropout in [0, 1), got {dropout!r}")
        hidden = _channels_list(hidden_channels, num_layers)
        self.in_channels = in_channels
        self.hidden_channels = hidden
        self.num_layers = num_layers
        self.spatial_dims = spatial_dims
        self.residual = bool(residual)
        self.bidirectional = bool(bidirectional)
        self.go_backwards = bool(go_backwards)
        if self.go_backwards and (self.bidirectional or self.residual):
            raise ValueError("expected go_backwards without bidirectional or residual: its outputs run last step "
                             "first, so they line up with neither a forward direction nor the layer's input")
        self.merge = merge
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        factory: Factory = {"device": device, "dtype": dtype}
        conv: dict[str, Any] = {} if kernel_size is None else {"kernel_size": kernel_size, "spatial_dims": spatial_dims}
        self.layers = nn.ModuleList()
        self.skips = nn.ModuleList()
        c_in = in_channels
        for c in hidden:
            cells = [self.cell_class(c_in, c, **conv, recurrent_dropout=recurrent_dropout, **factory, **cell_kwargs)
                     for _ in range(2 if bidirectional else 1)]
            if residual and cells[0].geometry.resamples:
                raise ValueError("expected padding='same' and stride 1 with residual=True: the residual path "
                                 "adds each layer's input to its output, so their sizes must match")
            layer = Recurrence(cells, merge=merge, go_backwards=self.go_backwards)
            self.layers.append(layer)
            c_out = layer.out_channels
            self.skips.append(self._projection(c_in, c_out, factory) if residual else nn.Identity())
            c_in = c_out
        self.out_channels = c_in

    def _projection(self, c_in: int, c_out: int, factory: Factory) -> nn.Module:
        """The residual path: identity when the channels match, else a 1×1 projection without bias."""
        if c_in == c_out:
            return nn.Identity()
        if self.spatial_dims == 0:
            return nn.Linear(c_in, c_out, bias=False, **factory)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.spatial_dims - 1]
        return conv(c_in, c_out, 1, bias=False, **factory)

    @property
    def recurrences(self) -> list[Recurrence]:
        """The layers, first to last (``self.layers``, typed: nn.ModuleList types its items as Module)."""
        return cast(list[Recurrence], list(self.layers))

    def cells(self) -> Iterator[RecurrentCell]:
        """Every cell, layer by layer, the forward cell of a layer before its backward one."""
        for layer in self.recurrences:
            yield from layer.cells

    def cell(self, layer: int, direction: int = 0) -> RecurrentCell:
        """The cell of layer ``layer`` (0-based), ``direction`` 0 forward or 1 backward."""
        if not 0 <= layer < self.num_layers or direction not in range(len(self.recurrences[layer].cells)):
            raise ValueError(f"expected layer in [0, {self.num_layers}) and direction in "
                             f"[0, {2 if self.bidirectional else 1}), got layer={layer}, direction={direction}")
        return self.recurrences[layer].cells[direction]

    def reset_parameters(self) -> None:
        """Re-initialize every cell (which resets its norms, then writes the forget bias) and projection."""
        for cell in self.cells():
            cell.reset_parameters()
        for skip in self.skips:
            if hasattr(skip, "reset_parameters"):
                skip.reset_parameters()  # type: ignore[operator]  # hasattr: nn.Module types it Tensor | Module

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every batch norm."""
        for cell in self.cells():
            cell.reset_running_stats()

    # -- checks ---------------------------------------------------------------------------------------

    def _check_input(self, x: Tensor) -> None:
        rank = 3 + self.spatial_dims
        letters = ", ".join("BT" + step_layout(self.spatial_dims)[1:])  # e.g. "B, T, C, H, W"
        if not self.batch_first:
            letters = "T, B" + letters[4:]
        if not isinstance(x, Tensor) or x.dim() != rank:
            got = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
            raise ValueError(f"expected input of rank {rank} ({letters}), got {got}")
        if x.shape[2] != self.in_channels:
            raise ValueError(f"expected input with C={self.in_channels} channels at dim 2 ({letters}), "
                             f"got shape {tuple(x.shape)}")
        if any(s == 0 for s in x.shape):
            raise ValueError(f"expected a non-empty input, got shape {tuple(x.shape)}")
        input_like_parameters(x, self, "layer")

    @staticmethod
    def _resolve_mask(mask: Tensor | None, lengths: Tensor | Sequence[int] | None, B: int, T: int,
                      device: torch.device) -> Tensor | None:
        if mask is not None and lengths is not None:
            raise ValueError("expected mask or lengths, not both")
        if lengths is not None:
            if getattr(torch.compiler, "is_exporting", lambda: False)():
                raise ValueError("expected mask= under torch.export, got lengths=: their values are checked, which "
                                 "export cannot trace; pass mask=torch.arange(T) < lengths[:, None] instead")
            lengths = torch.as_tensor(lengths, device=device)
            if lengths.shape != (B,) or lengths.is_floating_point() or lengths.dtype == torch.bool:
                raise ValueError(f"expected lengths to be {B} integers in [0, {T}] (B,), got {lengths.tolist()}")
            # the range check reads values back; torch.compile (fullgraph=True too) traces past it instead of
            # breaking the graph, and the mask below is the same for any length outside [0, T]
            if not torch.compiler.is_compiling() and bool(((lengths < 0) | (lengths > T)).any()):
                raise ValueError(f"expected lengths to be {B} integers in [0, {T}] (B,), got {lengths.tolist()}")
            return torch.arange(T, device=device) < lengths[:, None]  # (B, T)
        if mask is None:
            return None
        return check_mask(mask, f"(B, T) = ({B}, {T})", (B, T))

    def _check_states(self, state: Sequence[LayerState | None] | None, B: int, spatial: tuple[int, ...],
                      like: Tensor) -> list[LayerState | None]:
        if state is None:
            return [None] * self.num_layers
        if not isinstance(state, (list, tuple)) or len(state) != self.num_layers:
            got = f"{len(state)} entries" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"expected state to be a list with one entry per layer ({self.num_layers}), got {got}")
        out: list[LayerState | None] = []
        for k, (entry, layer) in enumerate(zip(state, self.recurrences, strict=True)):
            cells = layer.cells
            spatial = cells[0].geometry.output_size(spatial) if self.spatial_dims else spatial  # the state's size
            if entry is None:
                out.append(None)
                continue
            if self.bidirectional:
                if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                    raise ValueError(f"expected state[{k}] to be a (forward, backward) pair for a bidirectional "
                                     f"layer, got {type(entry).__name__}")
                forward, backward = (cell.check_state(s, B, spatial, what=f"state[{k}][{d}]", like=like)
                                     for d, (s, cell) in enumerate(zip(entry, cells, strict=True)))
                out.append((forward, backward))
            else:
                out.append(cells[0].check_state(entry, B, spatial, what=f"state[{k}]", like=like))
        return out

    def _skip(self, k: int, x: Tensor) -> Tensor:
        proj = self.skips[k]
        if isinstance(proj, nn.Identity) or self.spatial_dims == 0:
            same: Tensor = proj(x)
            return same
        B, T, C = x.shape[:3]
        y: Tensor = proj(x.reshape(B * T, C, *x.shape[3:]))  # (B·T, C_out, *S)
        return y.reshape(B, T, -1, *x.shape[3:])  # (B, T, C_out, *S)

    def forward(
        self,
        x: Tensor,
        state: Sequence[LayerState | None] | None = None,
        mask: Tensor | None = None,
        *,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, list[LayerState]]:
        """Run the stack over a sequence.

        Args:
            x: ``(B, T, C_in, *S)``, or ``(T, B, C_in, *S)`` when ``batch_first=False``.
            state: one initial state per layer (``None`` entries, or ``None``, mean zeros); each is the
                cell's state, or a ``(forward, backward)`` pair for bidirectional layers.
            mask: ``(B, T)`` boolean, True where the step is valid.
            lengths: ``(B,)`` valid lengths, an alternative to ``mask``.

        Returns:
            ``(outputs, states)``: the last layer's output at every step, ``(B, T, C_out, *S)`` (zero at
            padded steps), and the final state of every layer, in the structure ``state`` takes.
        """
        self._check_input(x)
        if not self.batch_first:
            x = x.transpose(0, 1)  # (B, T, C, *S)
        B, T = x.shape[:2]
        spatial = tuple(x.shape[3:])
        mask = self._resolve_mask(mask, lengths, B, T, x.device)
        states = self._check_states(state, B, spatial, x)
        valid = None if mask is None else mask.view(B, T, *([1] * (x.dim() - 2)))  # (B, T, 1, ...)
        if valid is not None:  # padding never enters the graph: NaN there would poison every gradient
            x = x.masked_fill(~valid, 0)
        finals: list[LayerState] = []
        for k, layer in enumerate(self.layers):
            inp = x
            if k > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            y, final = layer(x, states[k], mask)  # (B, T, C_out, *S)
            if self.go_backwards and mask is not None and valid is not None:  # y runs last step first: so do
                mask, valid = mask.flip(1), valid.flip(1)  # its mask and padding
            if self.residual:
                y = y + self._skip(k, inp).to(y.dtype)
            if valid is not None:
                y = y.masked_fill(~valid, 0)  # padded steps output zero
            x = y
            finals.append(final)
        return (x if self.batch_first else x.transpose(0, 1)), finals

    def extra_repr(self) -> str:
        hidden = self.hidden_channels[0] if len(set(self.hidden_channels)) == 1 else self.hidden_channels
        s = f"{self.in_channels}, {hidden}, num_layers={self.num_layers}"
        if self.residual:
            s += ", residual=True"
        if self.bidirectional:
            s += f", bidirectional=True, merge={self.merge!r}"
        if self.go_backwards:
            s += ", go_backwards=True"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


def layer_for(cell: type[RecurrentCell]) -> type[RecurrentLayer]:
    """The layer class that stacks ``cell`` over time (the subclass of :class:`RecurrentLayer` whose ``cell_class``
    it is), e.g. ``layer_for(ConvLSTMCell)`` is :class:`~normrnn.layers.ConvLSTM`."""
    if cell not in _LAYERS:
        raise ValueError(f"expected a cell class with a layer ({', '.join(c.__name__ for c in _LAYERS)}), got "
                         f"{getattr(cell, '__name__', cell)!r}")
    return _LAYERS[cell]
