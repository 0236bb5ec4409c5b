"""The one norm protocol: ``forward(x, mask=None, *, step=None)``, plus what callers may ask a norm.

Every normrnn norm derives from :class:`Norm`. Cells, kernels and ``explain`` talk to norms only through
this protocol, never by checking their classes, so a new norm is one class in one file:

- ``forward(x, mask=None, *, step=None)``: ``mask`` is the ``(B, T)`` (or ``(B,)``) validity mask, ``step``
  the index of the time step a step-layout input belongs to. Norms that need neither ignore them.
- ``traceable(masked=...)``: whether ``torch.compile`` can trace a call (no data-dependent counts, no
  collectives); a compiled gate block runs eagerly otherwise.
- ``as_group_norm()``: the norm as a native channel-first group norm (groups, γ, β, eps), for fused kernels;
  ``None`` when it is not one.
- ``as_grouped_stats()``: the norm as statistics per (sample, channel group) over the group's channels and
  every axis after C, centred or RMS, then a per-channel γ and β (:class:`GroupedStatsView`), for the Triton
  kernels; ``None`` when it is not one.
- ``describe(shape)``: what it reduces, its statistics and parameters (:func:`normrnn.explain`).

Modules that are not normrnn norms (``nn.BatchNorm2d``, a user's own) are called as ``module(x)``:
:func:`call_norm` is the one place that knows the difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal, overload

from torch import Tensor, nn

from .layout import Layout

__all__ = ["Description", "GroupNormView", "GroupedStatsView", "Norm", "call_norm", "check_step"]


@dataclass(frozen=True)
class Description:
    """What a built norm computes on one input shape, in layout letters (``G``: channel groups)."""

    reduce: str  # canonical reduced letters, "" for none
    stats_letters: str  # letters indexing the statistics
    stats_shape: tuple[int, ...]
    count: int  # elements per statistic
    param_letters: str  # letters the parameters span, "" for none
    param_shape: tuple[int, ...]
    kernel: str  # the kernel call, in words
    comparable: bool = True  # explain may run it next to single-pass norms (not per-step statistics)


@dataclass(frozen=True)
class GroupNormView:
    """A norm that is exactly ``F.group_norm(x, groups, weight, bias, eps)`` on a channel-first tensor."""

    groups: int
    weight: Tensor
    bias: Tensor
    eps: float


@dataclass(frozen=True)
class GroupedStatsView:
    """A norm that, on a channel-first ``(B, C, *S)`` tensor, keeps statistics per (sample, group of ``C/groups``
    contiguous channels) over the group's channels and all of ``S``, then applies a per-channel γ and β (each
    may be ``None``). ``rms``: the root mean square, no centring (RMSNorm)."""

    groups: int
    weight: Tensor | None
    bias: Tensor | None
    eps: float
    rms: bool


class Norm(nn.Module):
    """Base of every normrnn norm; see the module docstring for the protocol."""

    num_channels: int | None
    layout: Layout
    per_step_statistics: bool = False  # keeps separate running statistics per time step (recurrent batch norm)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        raise NotImplementedError

    def _check_input(self, x: Tensor) -> None:
        """Raise ``ValueError`` unless ``x`` fits this norm (layout, channels, dtype); subclasses add their own."""
        weight = getattr(self, "weight", None)
        self.layout.check(x, self.num_channels, param_dtype=None if weight is None else weight.dtype)

    def check_input_once(self, x: Tensor) -> None:
        """:meth:`_check_input`, skipped for an input of the shape, dtype and device last checked: a recurrent layer
        calls its norms with one signature at every step, and the check would cost as much as a small kernel."""
        key = (x.shape, x.dtype, x.device) if type(x) is Tensor else None
        if key is not None and key == self.__dict__.get("_checked"):
            return
        self._check_input(x)
        weight = getattr(self, "weight", None)
        if key is not None and (weight is None or x.dtype == weight.dtype):  # the check did not rest on autocast
            self.__dict__["_checked"] = key

    def _apply(self, fn: Any, recurse: bool = True) -> Norm:
        self.__dict__.pop("_checked", None)  # .to(dtype) and the like: check the next input again
        moved: Norm = super()._apply(fn, recurse)  # type: ignore[no-untyped-call]  # torch leaves it unannotated
        return moved

    def reset_parameters(self) -> None:
        """Reset the learned parameters (and running statistics, where kept)."""

    def reset_running_stats(self) -> None:
        """Reset running statistics; norms that keep none do nothing, so any norm can be reset uniformly."""

    def traceable(self, *, masked: bool) -> bool:
        """Whether ``torch.compile`` can trace a call with (``masked``) or without a mask."""
        return True

    def as_group_norm(self) -> GroupNormView | None:
        """This norm as a native channel-first group norm with per-channel γ and β, or ``None``."""
        return None

    def as_grouped_stats(self) -> GroupedStatsView | None:
        """This norm as per-(sample, channel group) statistics on a channel-first tensor, or ``None``."""
        return None

    def describe(self, shape: Sequence[int]) -> Description:
        """What this norm reduces on an input of ``shape``."""
        raise NotImplementedError


def call_norm(module: nn.Module, x: Tensor, mask: Tensor | None = None, step: int | None = None) -> Tensor:
    """Call a norm by the protocol: normrnn norms get the mask and the step; other modules get ``x`` alone."""
    out: Tensor = module(x, mask, step=step) if isinstance(module, Norm) else module(x)
    return out


@overload
def check_step(step: object, *, required: Literal[True]) -> int: ...
@overload
def check_step(step: object, *, required: bool) -> int | None: ...
def check_step(step: object, *, required: bool) -> int | None:
    """``step`` if it is ``None`` (and not required) or an int >= 0; a clear ``ValueError`` otherwise."""
    if step is None and not required:
        return None
    if isinstance(step, bool) or not isinstance(step, int) or step < 0:
        raise ValueError(f"expected step (the time-step index) to be an int >= 0, got {step!r}")
    return step
