"""A cell's state: checking one handed in, and keeping the old one where a step is masked."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import torch
from torch import Tensor

from .._checks import autocasting
from .gates import LSTMState

__all__ = ["CellState", "LayerState", "checked_state", "dropout_mask", "freeze", "freeze_state", "hidden_of"]

CellState = Union[Tensor, LSTMState]
"""A cell's state: ``h`` (GRU) or ``(h, c)`` (LSTM), each ``(B, C, *S)``."""

LayerState = Union[CellState, tuple[CellState, CellState]]
"""One layer's state: its cell's, or ``(forward, backward)`` for a bidirectional layer."""


def checked_state(state: object, size: int, expected: tuple[int, ...], *, what: str = "state",
                  like: Tensor | None = None) -> CellState:
    """``state``, a tensor ``h`` (``size`` 1) or a tuple ``(h, c)`` (``(h, c, m)``), each of shape ``expected``; a
    ``ValueError`` says what does not fit. Given the input ``like``, each is checked (and cast under autocast) to
    its dtype."""
    tensors: Sequence[Any] = state if size > 1 else (state,)  # type: ignore[assignment]  # checked just below
    names = "hcm"[:size]  # (h, c) of an LSTM, (h, c, m) of an ST-LSTM
    if size > 1 and (not isinstance(state, (tuple, list)) or len(state) != size):
        raise ValueError(f"expected {what} to be a tuple ({', '.join(names)}), got {type(state).__name__}"
                         + (f" of length {len(state)}" if isinstance(state, (tuple, list)) else ""))
    for name, s in zip(names, tensors, strict=True):
        if not isinstance(s, Tensor) or tuple(s.shape) != expected:
            got = tuple(s.shape) if isinstance(s, Tensor) else type(s).__name__
            raise ValueError(f"expected {what} {name} of shape {expected} (B, C, *S), got {got}")
    if like is not None:
        tensors = tuple(_state_dtype(s, like, f"{what} {name}") for name, s in zip(names, tensors, strict=True))
    return tuple(tensors) if size > 1 else tensors[0]


def freeze(new: Tensor, old: Tensor, mask: Tensor | None) -> Tensor:
    """``new`` where the ``(B,)`` mask is True, ``old`` elsewhere, in ``old``'s dtype."""
    new = new.to(old.dtype)
    if mask is None:
        return new
    return torch.where(mask.view(-1, *([1] * (new.dim() - 1))), new, old)


def freeze_state(new: CellState, old: CellState, mask: Tensor | None) -> CellState:
    """The new state where the (B,) mask is True, the old one elsewhere, in the state's own dtype."""
    if isinstance(new, tuple) and isinstance(old, tuple):  # (h, c)
        return freeze(new[0], old[0], mask), freeze(new[1], old[1], mask)
    assert isinstance(new, Tensor) and isinstance(old, Tensor)  # one state tensor, h
    return freeze(new, old, mask)


def hidden_of(state: CellState | tuple[Tensor, ...]) -> Tensor:
    """The hidden state ``h`` of a state: the tensor itself, or the first of a tuple."""
    return state[0] if isinstance(state, tuple) else state


def dropout_mask(like: Tensor, rate: float, *, training: bool) -> Tensor | None:
    """One variational dropout mask shaped like ``like`` for a whole sequence (Gal & Ghahramani 2016), or None when
    not training or ``rate`` is 0."""
    if not training or rate == 0.0:
        return None
    keep = 1.0 - rate
    return torch.bernoulli(torch.full_like(like, keep)) / keep


def _state_dtype(s: Tensor, like: Tensor, what: str) -> Tensor:
    """``s`` in the dtype the step computes in: the autocast dtype under autocast, else ``like``'s (checked)."""
    device_type = like.device.type
    if not s.is_floating_point():
        raise ValueError(f"expected {what} to be a floating-point tensor like the input ({like.dtype}), got {s.dtype}")
    if autocasting(like):
        return s.to(torch.get_autocast_dtype(device_type))
    if s.dtype != like.dtype:
        raise ValueError(f"expected {what} of dtype {like.dtype}, the input's, got {s.dtype}; cast it with "
                         ".to(x.dtype)")
    return s
