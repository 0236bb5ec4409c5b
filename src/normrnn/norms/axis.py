"""The base of every norm with explicit axes: one definition from :mod:`normrnn.norms.functional` (reduced axes,
channel groups, parameter axes), with parameters created the PyTorch way. The modules in :mod:`.modules` differ
only in their default axes."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import Factory, non_negative, positive_int
from .base import Description, GroupedStatsView, GroupNormView, Norm
from .functional import NormAxes, choose_kernel, norm_forward
from .layout import Layout

__all__ = ["AxisNorm", "default_reduce"]


def default_reduce(layout: Layout) -> str:
    """Every axis but batch and time: per-sample, per-step statistics."""
    return "".join(c for c in layout.letters if c not in "BT")


class AxisNorm(Norm):
    """Base of the stateless norms: ``y = (x - mean_R(x)) / sqrt(var_R(x) + eps) * weight + bias``.

    Parameters live over ``param_axes`` (the channel by default, so one module works at every
    resolution); ``param_axes`` equal to ``reduce`` gives PyTorch's/Keras' elementwise affine.
    """

    rms: bool = False  # RMS norms skip centering and have no bias

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        reduce: str,
        groups: int | None,
        eps: float,
        affine: bool,
        center: bool,
        scale: bool,
        param_axes: str | None,
        param_shape: Sequence[int] | None,
        device: torch.device | str | None,
        dtype: torch.dtype | None,
    ) -> None:
        super().__init__()
        self.num_channels = positive_int("num_channels", num_channels)
        self.layout = Layout.parse(layout)
        reduce = self.layout.axes(reduce, what="reduce")
        if not reduce:
            raise ValueError(f"expected reduce to name at least one axis of layout {self.layout.spelled!r}, got "
                             f"{reduce!r} (use norm 'none' for no normalization)")
        if groups is not None and "C" not in reduce:
            raise ValueError(f"groups split the channels, so reduce must contain {self.layout.spell('C')!r}; "
                             f"got reduce={self.layout.spell(reduce)!r}")
        if groups is not None and (groups < 1 or num_channels % groups != 0):
            raise ValueError(f"expected num_groups to divide num_channels={num_channels}, got num_groups={groups}")
        self.axes = NormAxes(self.layout, reduce, groups)
        self.eps = non_negative("eps", eps)
        self.param_axes, self.param_shape = self._resolve_params(param_axes, param_shape)
        factory: Factory = {"device": device, "dtype": dtype}
        use_scale = affine and scale
        use_center = affine and center and not self.rms
        self.weight = nn.Parameter(torch.empty(self.param_shape, **factory)) if use_scale else None
        self.bias = nn.Parameter(torch.empty(self.param_shape, **factory)) if use_center else None
        self.kernel = choose_kernel(self.axes, rms=self.rms, param_axes=self.param_axes)  # the kernel, chosen once
        self.reset_parameters()

    def _resolve_params(self, param_axes: str | None, param_shape: Sequence[int] | None) -> tuple[str, tuple[Any, ...]]:
        if param_axes is None or self.layout.axes(param_axes, what="param_axes") == "C":
            if param_shape is not None and tuple(param_shape) != (self.num_channels,):
                raise ValueError(f"expected param_shape ({self.num_channels},) for per-channel parameters, "
                                 f"got {tuple(param_shape)}")
            return "C", (self.num_channels,)
        axes = param_axes.strip().upper().replace("F", "C")
        canonical = self.layout.axes(axes, what="param_axes")
        if "B" in canonical:
            raise ValueError(f"param_axes={param_axes!r} includes the batch axis; parameters cannot depend on B")
        if param_shape is not None and "C" in axes and len(param_shape) == len(canonical) - 1:
            # the channel size left out: this norm's own, so one norm_kwargs serves norms of several widths
            assert self.num_channels is not None  # set before the parameters
            param_shape = [*param_shape[: axes.index("C")], self.num_channels, *param_shape[axes.index("C"):]]
        if param_shape is None or len(param_shape) != len(canonical):
            raise ValueError(f"param_axes={param_axes!r} needs param_shape with one size per axis (the channels' "
                             f"may be left out), got {param_shape!r}")
        sizes = dict(zip(axes, param_shape, strict=True))  # the user's order
        shape = tuple(int(sizes[c]) for c in canonical)  # layout order
        if "C" in canonical and shape[canonical.index("C")] != self.num_channels:
            raise ValueError(f"param_shape gives {shape[canonical.index('C')]} channels, "
                             f"expected num_channels={self.num_channels}")
        return canonical, shape

    @property
    def reduce(self) -> str:
        """The reduced axes, spelled as in the layout."""
        return self.layout.spell(self.axes.reduce)

    def reset_parameters(self) -> None:
        """Set the scale to 1 and the shift to 0."""
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _check_input(self, x: Tensor) -> None:
        super()._check_input(x)
        if self.param_axes != "C":
            got = self.layout.sizes(x.shape, self.param_axes)
            if got != self.param_shape:
                raise ValueError(
                    f"expected sizes {self.layout.describe(self.param_axes, self.param_shape)} for the elementwise "
                    f"parameters, got {got} in input of shape {tuple(x.shape)}"
                )

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        """Normalize ``x``; ``mask`` ``(B, T)`` keeps padding out of statistics that span B or T; ``step`` is
        accepted for the protocol's sake (per-sample statistics do not depend on it)."""
        self.check_input_once(x)
        if x.numel() == 0:
            return x.clone()  # an empty batch (B=0 or T=0): nothing to normalize
        return norm_forward(x, self.axes, weight=self.weight, bias=self.bias, param_axes=self.param_axes,
                            eps=self.eps, rms=self.rms, mask=mask, kernel=self.kernel)

    def describe(self, shape: Sequence[int]) -> Description:
        shape = tuple(shape)
        affine = self.weight is not None or self.bias is not None
        return Description(reduce=self.axes.reduce, stats_letters=self.axes.stats_letters,
                           stats_shape=self.axes.stats_shape(shape), count=self.axes.count(shape),
                           param_letters=self.param_axes if affine else "",
                           param_shape=self.param_shape if affine else (), kernel=self.kernel.describe(self.axes))

    def as_group_norm(self) -> GroupNormView | None:
        """Channel-grouped statistics over every axis after C, with per-channel γ and β: a native group norm."""
        if (self.kernel.op != "group_norm" or self.kernel.permute is not None or self.axes.groups is None
                or self.weight is None or self.bias is None or self.param_axes != "C"
                or self.layout.dim("C") != 1):
            return None
        return GroupNormView(self.axes.groups, self.weight, self.bias, self.eps)

    def as_grouped_stats(self) -> GroupedStatsView | None:
        """Channel-grouped (or RMS) statistics over every axis after C, with per-channel γ and β, on ``B C ...``."""
        letters = self.layout.letters
        if (letters[0] != "B" or self.layout.dim("C") != 1 or self.param_axes != "C"
                or self.axes.reduce != letters[1:]):
            return None
        return GroupedStatsView(self.axes.groups or 1, self.weight, self.bias, self.eps, self.rms)

    def extra_repr(self) -> str:
        s = f"{self.num_channels}, layout={self.layout.spelled!r}, reduce={self.reduce!r}"
        if self.axes.groups not in (None, 1):
            s += f", num_groups={self.axes.groups}"
        s += f", eps={self.eps}"
        if self.weight is None and self.bias is None:
            s += ", affine=False"
        elif self.bias is None and not self.rms:
            s += ", center=False"
        if self.param_axes != "C":
            s += f", param_axes={self.layout.spell(self.param_axes)!r}, param_shape={self.param_shape}"
        return s
