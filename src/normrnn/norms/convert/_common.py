"""What every converter shares: framework axis numbers to layout letters, channel counts, parameter
axes, checks of attributes and variables, and copying arrays in."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
import torch
from torch import nn

from ..layout import Layout


def _letters(layout: Layout, axes: int | Sequence[int], what: str) -> str:
    """Map framework axis numbers (batch = 0, negatives allowed) to canonical layout letters."""
    if isinstance(axes, (int, np.integer)):
        items = [axes]
    elif isinstance(axes, (Sequence, np.ndarray)) and not isinstance(axes, str):
        items = list(axes)
    else:
        items = []
    if not items or not all(isinstance(a, (int, np.integer)) and not isinstance(a, bool) for a in items):
        raise ValueError(f"expected {what} to be an int or a list of ints, got {axes!r}")
    out = []
    for a in items:
        if not -layout.ndim <= int(a) < layout.ndim:
            raise ValueError(f"{what}={a} is out of range for layout {layout.spelled!r} ({layout.ndim} axes)")
        out.append(layout.letters[int(a) % layout.ndim])
    return layout.axes("".join(out), what=what)


def _channels(layout: Layout, num_channels: int | None, input_shape: Sequence[int] | None, param_letters: str,
              arrays: Sequence[Any], what: str) -> int:
    """C from an explicit count, the input shape's C axis, or the C axis of parameters spanning ``param_letters``.

    Parameters that do not span C cannot tell it (their last axis is not C: ``axis=1`` on ``BTF`` has ``(T,)``
    parameters), so then ``input_shape`` or ``num_channels`` is required.
    """
    if input_shape is not None and len(input_shape) != layout.ndim:
        raise ValueError(f"expected input_shape with {layout.ndim} sizes for layout {layout.spelled!r}, "
                         f"got {tuple(input_shape)}")
    if num_channels is not None:
        return int(num_channels)
    if input_shape is not None:
        return int(input_shape[layout.dim("C")])
    if "C" in param_letters:
        for a in arrays:
            if a is not None and np.asarray(a).ndim == len(param_letters):
                return int(np.asarray(a).shape[param_letters.index("C")])
    spans = f"the parameters span {layout.describe(param_letters)}, not the channel axis {layout.spell('C')}; " \
        if param_letters and "C" not in param_letters else ""
    raise ValueError(f"{what}: cannot tell the number of channels: {spans}pass input_shape or num_channels"
                     + ("" if spans else ", or the weights"))


def _check_attrs(what: str, given: Mapping[str, Any], allowed: set[str], *, refused: Mapping[str, Any]) -> None:
    """Refuse, by name, attributes that are unknown (misspelled) or that set a feature normrnn does not reproduce.

    ``refused`` maps an attribute to the value it must have (its default) to be accepted.
    """
    unknown = sorted(k for k in given if k not in allowed and k not in refused)
    if unknown:
        raise ValueError(f"{what}: unknown attributes {unknown}; expected some of {sorted(allowed | set(refused))}")
    bad = sorted(k for k, default in refused.items() if k in given and given[k] != default)
    if bad:
        raise ValueError(f"{what}: unsupported {', '.join(f'{k}={given[k]!r}' for k in bad)}: normrnn does not "
                         f"reproduce {'it' if len(bad) == 1 else 'them'} (accepted: "
                         + ", ".join(f"{k}={refused[k]!r}" for k in bad) + ")")


def _param_axes(layout: Layout, letters: str, input_shape: Sequence[int] | None, arrays: Sequence[Any],
                what: str) -> tuple[str | None, tuple[int, ...] | None]:
    """Parameter axes and their sizes: per channel when ``letters`` is C, else elementwise."""
    if letters == "C":
        return None, None
    for a in arrays:
        if a is not None:
            return letters, tuple(np.asarray(a).shape)
    if input_shape is not None:
        return letters, layout.sizes(input_shape, letters)
    raise ValueError(f"{what}: parameters span {layout.spell(letters)!r}, more than the channel axis; pass the "
                     "weights or input_shape so their shape is known")


def _complete(what: str, given: Mapping[str, Any], expected: Sequence[str], known: Sequence[str]) -> None:
    """Variables handed to a converter are all there or none: a missing or misspelled one is an error, never a
    silent 1 or 0. (No variables at all: a fresh module, initialized as the framework would.)"""
    unknown = sorted(set(given) - set(known))
    missing = [n for n in expected if n not in given]
    if unknown or (given and missing):
        raise ValueError(f"{what}: expected variables {list(expected)}, got {sorted(given)}"
                         + (f" (unknown: {unknown})" if unknown else "")
                         + (f" (missing: {missing})" if missing else ""))


def _momentum(what: str, value: object) -> float:
    """A Keras/Flax momentum (the old average's weight) in [0, 1], as PyTorch's ``1 - momentum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"expected {what} momentum in [0, 1] (the weight of the old average), got {value!r}")
    return 1.0 - float(value)


def _int_option(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {what} to be an int, got {value!r}")
    return value


M = TypeVar("M", bound=nn.Module)  # load_arrays returns the module it was given


@torch.no_grad()
def load_arrays(module: M, **tensors: Any) -> M:
    """Copy arrays into same-named parameters/buffers, checking shapes."""
    for name, value in tensors.items():
        if value is None:
            continue
        target = getattr(module, name)
        if target is None:
            raise ValueError(f"the source has {name!r} but the converted module has none (check center/scale)")
        src = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        if tuple(src.shape) != tuple(target.shape):
            raise ValueError(f"expected {name} of shape {tuple(target.shape)}, got {tuple(src.shape)}")
        target.copy_(src.to(target.dtype))
    return module


def _dict(what: str, value: Any) -> dict[str, Any]:
    """``value`` as a dict, or a ``ValueError`` naming ``what`` (``None`` is an empty one)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise ValueError(f"expected {what} to be a dict, got {type(value).__name__}")
    return dict(value)
