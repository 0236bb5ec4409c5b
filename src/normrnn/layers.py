r"""Sequence layers: stacked, residual, bidirectional ConvLSTM, ConvGRU, LSTM and GRU.

A layer loops a :mod:`normrnn.cells` cell over time, layer after layer:

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
  of a sequence, passing the state along, equals one call on the whole sequence.

Nothing depends on the spatial size, so one module runs at any resolution.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import one_of, positive_int
from .cells import ConvGRUCell, ConvLSTMCell, GRUCell, LSTMCell, RecurrentCell, step_layout

__all__ = ["GRU", "LSTM", "ConvGRU", "ConvLSTM", "RecurrentLayer"]

MERGES = ("concat", "sum")


def _channels_list(hidden_channels: int | Sequence[int], num_layers: int) -> list[int]:
    if isinstance(hidden_channels, int) and not isinstance(hidden_channels, bool):
        return [hidden_channels] * num_layers
    out = list(hidden_channels)
    if len(out) != num_layers:
        raise ValueError(f"expected hidden_channels to be an int or {num_layers} ints (one per layer), "
                         f"got {hidden_channels!r}")
    return out


def reverse_order(mask: Tensor | None, T: int) -> Tensor | None:
    """Per-sample time indices that read each sequence backwards from its own last valid step.

    Valid steps come first, latest first; padding follows. ``None`` (no mask) means a plain flip.

    Example::

        >>> reverse_order(torch.tensor([[True, True, False]]), 3)
        tensor([[1, 0, 2]])
    """
    if mask is None:
        return None
    t = torch.arange(T, device=mask.device)
    key = torch.where(mask, -t, T + t)  # valid steps descending, then padding ascending
    return torch.argsort(key, dim=1, stable=True)


def _projected_dtype(x: Tensor) -> Tensor:
    """``x``, or an empty tensor of the dtype a projection of ``x`` has under autocast: the state's dtype."""
    kind = x.device.type
    if x.is_floating_point() and torch.is_autocast_enabled(kind):
        return x.new_empty((x.shape[0], 0, *x.shape[2:]), dtype=torch.get_autocast_dtype(kind))
    return x


def _take(x: Tensor, order: Tensor | None) -> Tensor:
    """``x[b, order[b, k]]`` for each sample: ``(B, T, ...)`` reordered along T."""
    if order is None:
        return x.flip(1)
    return x[torch.arange(x.shape[0], device=x.device)[:, None], order]


class RecurrentLayer(nn.Module):
    """Base of the sequence layers; subclasses pick the cell class and whether it is convolutional."""

    cell_class: type[RecurrentCell]

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
        self.merge = merge
        self.batch_first = bool(batch_first)
        self.dropout = float(dropout)
        factory = {"device": device, "dtype": dtype}
        conv = {} if kernel_size is None else {"kernel_size": kernel_size, "spatial_dims": spatial_dims}
        self.layers = nn.ModuleList()
        self.skips = nn.ModuleList()
        c_in = in_channels
        for c in hidden:
            cells = [self.cell_class(c_in, c, **conv, recurrent_dropout=recurrent_dropout, **factory, **cell_kwargs)
                     for _ in range(2 if bidirectional else 1)]
            self.layers.append(nn.ModuleList(cells))
            c_out = c * (2 if bidirectional and merge == "concat" else 1)
            self.skips.append(self._projection(c_in, c_out, factory) if residual else nn.Identity())
            c_in = c_out
        self.out_channels = c_in

    def _projection(self, c_in: int, c_out: int, factory: dict) -> nn.Module:
        """The residual path: identity when the channels match, else a 1×1 projection without bias."""
        if c_in == c_out:
            return nn.Identity()
        if self.spatial_dims == 0:
            return nn.Linear(c_in, c_out, bias=False, **factory)
        conv = (nn.Conv1d, nn.Conv2d, nn.Conv3d)[self.spatial_dims - 1]
        return conv(c_in, c_out, 1, bias=False, **factory)

    def reset_parameters(self) -> None:
        """Re-initialize every cell (which resets its norms, then writes the forget bias) and projection."""
        for cells, skip in zip(self.layers, self.skips, strict=True):
            for cell in cells:
                cell.reset_parameters()
            if hasattr(skip, "reset_parameters"):
                skip.reset_parameters()

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every batch norm."""
        for cells in self.layers:
            for cell in cells:
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

    @staticmethod
    def _resolve_mask(mask: Tensor | None, lengths: Tensor | Sequence[int] | None, B: int, T: int,
                      device: torch.device) -> Tensor | None:
        if mask is not None and lengths is not None:
            raise ValueError("expected mask or lengths, not both")
        if lengths is not None:
            lengths = torch.as_tensor(lengths, device=device)
            if lengths.shape != (B,) or lengths.is_floating_point() or bool(((lengths < 0) | (lengths > T)).any()):
                raise ValueError(f"expected lengths to be {B} integers in [0, {T}] (B,), got {lengths.tolist()}")
            return torch.arange(T, device=device) < lengths[:, None]  # (B, T)
        if mask is None:
            return None
        if not isinstance(mask, Tensor) or mask.dtype != torch.bool or tuple(mask.shape) != (B, T):
            got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else type(mask).__name__
            raise ValueError(f"expected a boolean mask of shape ({B}, {T}) (B, T), True where valid; got {got}")
        return mask

    def _check_states(self, state: Sequence[Any] | None, B: int, spatial: tuple[int, ...]) -> list[list[Any]]:
        dirs = 2 if self.bidirectional else 1
        if state is None:
            return [[None] * dirs for _ in range(self.num_layers)]
        if not isinstance(state, (list, tuple)) or len(state) != self.num_layers:
            got = f"{len(state)} entries" if isinstance(state, (list, tuple)) else type(state).__name__
            raise ValueError(f"expected state to be a list with one entry per layer ({self.num_layers}), got {got}")
        out = []
        for k, (entry, cells) in enumerate(zip(state, self.layers, strict=True)):
            if entry is None:
                out.append([None] * dirs)
                continue
            if self.bidirectional:
                if not isinstance(entry, (list, tuple)) or len(entry) != 2:
                    raise ValueError(f"expected state[{k}] to be a (forward, backward) pair for a bidirectional "
                                     f"layer, got {type(entry).__name__}")
                out.append([cell.check_state(s, B, spatial, what=f"state[{k}][{d}]")
                            for d, (s, cell) in enumerate(zip(entry, cells, strict=True))])
            else:
                out.append([cells[0].check_state(entry, B, spatial, what=f"state[{k}]")])
        return out

    # -- the time loop --------------------------------------------------------------------------------

    def _run(
        self, cell: RecurrentCell, x: Tensor, state: Any, mask: Tensor | None, reverse: bool
    ) -> tuple[Tensor, Any]:
        """Run one direction of one layer over ``x`` ``(B, T, C, *S)``; return outputs and the final state."""
        B, T, C = x.shape[:3]
        spatial = x.shape[3:]
        joint = cell.joint_projection(x.device)
        if joint:  # one conv of [x_t; h] per step; x itself is the per-step input
            seq, weight = x, cell.joint_weight()  # weight: (G·C_h, C + C_h, *k), concatenated once
        else:
            seq = cell.project_input(x.reshape(B * T, C, *spatial))  # (B·T, G·C_h, *S), one hoisted conv
            seq = seq.reshape(B, T, -1, *spatial)  # (B, T, G·C_h, *S)
        order = None
        if reverse:
            order = reverse_order(mask, T)
            seq = _take(seq, order)
            mask = None if mask is None else mask.gather(1, order)  # valid steps first
        steps = seq.unbind(1)  # T views (B, *, *S); unlike seq[:, t], backward stacks once instead of T scatters
        if state is None:
            state = cell.initial_state(_projected_dtype(steps[0]))
        recurrent_mask = cell.recurrent_dropout_mask(cell.output(state))
        outputs = []
        for t, s_t in enumerate(steps):
            step_mask = None if mask is None else mask[:, t]
            if joint:
                gx_t = cell.project_joint(s_t, cell.output(state), weight, recurrent_mask)  # (B, G·C_h, *S)
                state = cell.step(gx_t, state, t=t, mask=step_mask, joint=True)
            else:
                state = cell.step(s_t, state, t=t, mask=step_mask, recurrent_mask=recurrent_mask)
            outputs.append(cell.output(state))
        y = torch.stack(outputs, dim=1)  # (B, T, C_h, *S)
        if reverse:
            y = _take(y, None if order is None else torch.argsort(order, dim=1))
        return y, state

    def _skip(self, k: int, x: Tensor) -> Tensor:
        proj = self.skips[k]
        if isinstance(proj, nn.Identity) or self.spatial_dims == 0:
            return proj(x)
        B, T, C = x.shape[:3]
        y = proj(x.reshape(B * T, C, *x.shape[3:]))  # (B·T, C_out, *S)
        return y.reshape(B, T, -1, *x.shape[3:])  # (B, T, C_out, *S)

    def forward(
        self,
        x: Tensor,
        state: Sequence[Any] | None = None,
        mask: Tensor | None = None,
        *,
        lengths: Tensor | Sequence[int] | None = None,
    ) -> tuple[Tensor, list[Any]]:
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
        states = self._check_states(state, B, spatial)
        valid = None if mask is None else mask.view(B, T, *([1] * (x.dim() - 2)))  # (B, T, 1, ...)
        finals: list[Any] = []
        for k, cells in enumerate(self.layers):
            inp = x
            if k > 0 and self.dropout:
                x = F.dropout(x, self.dropout, self.training)
            runs = [self._run(cell, x, states[k][d], mask, reverse=d == 1) for d, cell in enumerate(cells)]
            ys = [y for y, _ in runs]
            if len(ys) == 1:
                y = ys[0]
            else:
                y = torch.cat(ys, dim=2) if self.merge == "concat" else ys[0] + ys[1]  # (B, T, C_out, *S)
            if self.residual:
                y = y + self._skip(k, inp).to(y.dtype)
            if valid is not None:
                y = y * valid  # padded steps output zero
            x = y
            finals.append(runs[0][1] if len(runs) == 1 else tuple(s for _, s in runs))
        return (x if self.batch_first else x.transpose(0, 1)), finals

    def extra_repr(self) -> str:
        hidden = self.hidden_channels[0] if len(set(self.hidden_channels)) == 1 else self.hidden_channels
        s = f"{self.in_channels}, {hidden}, num_layers={self.num_layers}"
        if self.residual:
            s += ", residual=True"
        if self.bidirectional:
            s += f", bidirectional=True, merge={self.merge!r}"
        if not self.batch_first:
            s += ", batch_first=False"
        if self.dropout:
            s += f", dropout={self.dropout}"
        return s


_LAYER_ARGS = """
    Args:
        in_channels: C_in.
        hidden_channels: C, an int or one int per layer.
        num_layers: the number of stacked layers. Default: ``1``.
        residual: add each layer's input to its output, through a 1×1 projection if the channels differ.
            Default: ``False``.
        bidirectional: add a backward direction per layer. Default: ``False``.
        merge: how the two directions combine, ``"concat"`` (2C channels) or ``"sum"``. Default: ``"concat"``.
        batch_first: ``(B, T, …)`` input and output; ``False`` for ``(T, B, …)``. Default: ``True``.
        dropout: dropout on the input of every layer after the first. Default: ``0.0``.
        recurrent_dropout: variational dropout on ``h``, one mask per sequence. Default: ``0.0``.
        norm, norm_inputs, norm_scope, forget_bias, bias, norm_kwargs, recurrent_init, device, dtype, and the
            cell's own options: passed to every cell (see :mod:`normrnn.cells`)."""


class ConvLSTM(RecurrentLayer):
    __doc__ = r"""A stack of ConvLSTM layers over ``(B, T, C, *S)`` sequences (Shi et al. 2015, arXiv:1506.04214).

    Each layer runs :class:`normrnn.cells.ConvLSTMCell` over time:
    :math:`(h_t, c_t) = \mathrm{cell}(x_t, (h_{t-1}, c_{t-1}))`. Gate order ``i, f, g, o``.
""" + _LAYER_ARGS + r"""
        kernel_size: an int or one per spatial axis, odd or even.
        spatial_dims: 1, 2 or 3. Default: ``2``.
        peephole, norm_cell, dilation: see :class:`normrnn.cells.ConvLSTMCell`.

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
                 *, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class ConvGRU(RecurrentLayer):
    __doc__ = r"""A stack of ConvGRU layers over ``(B, T, C, *S)`` sequences (Ballas et al. 2016, arXiv:1511.06432).

    Each layer runs :class:`normrnn.cells.ConvGRUCell` over time: :math:`h_t = \mathrm{cell}(x_t, h_{t-1})`.
    Gate order ``r, z, n``.
""" + _LAYER_ARGS + r"""
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
                 *, spatial_dims: int = 2, **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, kernel_size, spatial_dims=spatial_dims, **kwargs)


class _TorchRNNKeys:
    """Load ``torch.nn.LSTM``/``GRU`` state dicts: ``weight_ih_l{k}[_reverse]`` etc. → normrnn names."""

    def _load_torch_keys(self, module: nn.Module, state_dict: dict, prefix: str, *args: Any) -> None:
        if prefix + "weight_ih_l0" not in state_dict:
            return
        for k, cells in enumerate(self.layers):
            for d, cell in enumerate(cells):
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
    __doc__ = r"""A stack of LSTM layers over ``(B, T, C)`` sequences with normalization, peepholes, residuals, masks.

    With ``norm="none"`` it computes exactly what ``torch.nn.LSTM`` does, and ``load_state_dict`` accepts
    a ``torch.nn.LSTM`` state dict (``bias = bias_ih + bias_hh``). ``norm="layer"`` gives the LN-LSTM of
    Ba et al. 2016 (arXiv:1607.06450).
    """ + _LAYER_ARGS + r"""
        peephole, norm_cell: see :class:`normrnn.cells.LSTMCell`.

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

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int], **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, None, spatial_dims=0, **kwargs)
        self.register_load_state_dict_pre_hook(self._load_torch_keys)


class GRU(_TorchRNNKeys, RecurrentLayer):
    __doc__ = r"""A stack of GRU layers over ``(B, T, C)`` sequences, with normalization, residuals and masks.

    With ``norm="none"`` it equals ``torch.nn.GRU``, and ``load_state_dict`` accepts its state dict.
    """ + _LAYER_ARGS + r"""

    Shape:
        - Input: ``(B, T, C_in)``; state: per layer ``h`` ``(B, C)``.
        - Output: ``(B, T, C_out)`` and the per-layer final states.

    Example::

        >>> y, (h,) = GRU(3, 5, norm="layer")(torch.randn(2, 7, 3))
        >>> y.shape, h.shape
        (torch.Size([2, 7, 5]), torch.Size([2, 5]))
    """

    cell_class = GRUCell

    def __init__(self, in_channels: int, hidden_channels: int | Sequence[int], **kwargs: Any) -> None:
        super().__init__(in_channels, hidden_channels, None, spatial_dims=0, **kwargs)
        self.register_load_state_dict_pre_hook(self._load_torch_keys)

    @staticmethod
    def _convert_bias(state_dict: dict, dst: str, b_ih: Tensor, b_hh: Tensor) -> None:
        C = b_ih.shape[0] // 3
        state_dict[dst + "bias"] = torch.cat([b_ih[: 2 * C] + b_hh[: 2 * C], b_ih[2 * C :]])
        state_dict[dst + "bias_hn"] = b_hh[2 * C :]

