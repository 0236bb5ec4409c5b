"""Normalization modules whose axes are explicit.

Each module is one definition from :mod:`normrnn.norms.functional`, (reduced axes, channel groups,
parameter axes), with parameters created the PyTorch way. They differ only in their default axes:

========== =============================== ==============================
module     default ``reduce``              statistics per
========== =============================== ==============================
layer      every axis but B and T          sample (and time step)
group      every axis but B and T, C in G  sample, time step and group
instance   the spatial axes                sample, time step and channel
batch      every axis but C                channel (running averages)
rms        every axis but B and T          sample (and time step)
========== =============================== ==============================
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor, nn

from .._checks import non_negative, positive_int
from .base import Description, GroupedStatsView, GroupNormView, Norm
from .functional import NormAxes, norm_forward, plan_kernel
from .layout import Layout
from .registry import NormEntry, default_groups, register_norm

__all__ = ["AxisNorm", "GroupNorm", "Identity", "InstanceNorm", "LayerNorm", "RMSNorm"]


def _default_reduce(layout: Layout) -> str:
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
        factory = {"device": device, "dtype": dtype}
        use_scale = affine and scale
        use_center = affine and center and not self.rms
        self.weight = nn.Parameter(torch.empty(self.param_shape, **factory)) if use_scale else None
        self.bias = nn.Parameter(torch.empty(self.param_shape, **factory)) if use_center else None
        self.plan = plan_kernel(self.axes, rms=self.rms, param_axes=self.param_axes)  # the kernel, chosen once
        self.reset_parameters()

    def _resolve_params(self, param_axes: str | None, param_shape: Sequence[int] | None) -> tuple[str, tuple]:
        if param_axes is None or self.layout.axes(param_axes, what="param_axes") == "C":
            if param_shape is not None and tuple(param_shape) != (self.num_channels,):
                raise ValueError(f"expected param_shape ({self.num_channels},) for per-channel parameters, "
                                 f"got {tuple(param_shape)}")
            return "C", (self.num_channels,)
        axes = param_axes.strip().upper().replace("F", "C")
        canonical = self.layout.axes(axes, what="param_axes")
        if "B" in canonical:
            raise ValueError(f"param_axes={param_axes!r} includes the batch axis; parameters cannot depend on B")
        if param_shape is None or len(param_shape) != len(canonical):
            raise ValueError(f"param_axes={param_axes!r} needs param_shape with one size per axis, "
                             f"got {param_shape!r}")
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
                            eps=self.eps, rms=self.rms, mask=mask, plan=self.plan)

    def describe(self, shape: Sequence[int]) -> Description:
        shape = tuple(shape)
        affine = self.weight is not None or self.bias is not None
        return Description(reduce=self.axes.reduce, stats_letters=self.axes.stats_letters,
                           stats_shape=self.axes.stats_shape(shape), count=self.axes.count(shape),
                           param_letters=self.param_axes if affine else "",
                           param_shape=self.param_shape if affine else (), kernel=self.plan.describe(self.axes))

    def as_group_norm(self) -> GroupNormView | None:
        """Channel-grouped statistics over every axis after C, with per-channel γ and β: a native group norm."""
        if (self.plan.kernel != "group_norm" or self.plan.permute is not None or self.axes.groups is None
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


class LayerNorm(AxisNorm):
    r"""Layer normalization over explicit axes (Ba, Kiros & Hinton 2016, arXiv:1607.06450).

    .. math::
        y = \frac{x - \mathrm{E}_R[x]}{\sqrt{\mathrm{Var}_R[x] + \epsilon}} \cdot \gamma + \beta

    ``R`` defaults to every axis but B and T, so a sequence ``"BTF"`` gets statistics per ``(B, T)``
    (Keras ``LayerNormalization(axis=-1)``, TF1 ``layer_norm(begin_norm_axis=-1)``) and an image ``"BCHW"``
    per sample. ``reduce="TF"`` reproduces TF1's default ``begin_norm_axis=1`` on ``[B, T, F]``. With
    C in ``R`` this equals ``GroupNorm(num_groups=1)`` over the same axes; it never equals group norm
    when ``R`` is only C (Keras' and TF-Addons' "G=1 is LN" claim, TFA #2143).

    Args:
        num_channels: C, the size of the channel axis.
        layout: axis letters of the input, e.g. ``"BTF"``, ``"BCHW"``, ``"BTCHW"``.
        reduce: letters to reduce. Default: every axis but B and T.
        eps: added to the variance inside the square root. Default: ``1e-5``.
        affine: learn a scale and a shift. Default: ``True``.
        center: learn the shift β (Keras ``center``). Default: ``True``.
        scale: learn the scale γ (Keras ``scale``). Default: ``True``.
        param_axes: axes the parameters span. Default: C (per channel, any resolution). Set equal to
            ``reduce`` for PyTorch's elementwise ``nn.LayerNorm`` parameters.
        param_shape: sizes of ``param_axes``, needed when they are more than C. Default: ``None``.

    Shape:
        - Input: any shape in ``layout``, e.g. ``(B, T, C, H, W)``; ``mask``: ``(B, T)``, True where valid.
        - Output: same as input.

    Example::

        >>> ln = LayerNorm(3, layout="BTF")
        >>> ln(torch.randn(4, 2, 3)).shape
        torch.Size([4, 2, 3])
    """

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        reduce: str | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        param_axes: str | None = None,
        param_shape: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        parsed = Layout.parse(layout)
        reduce = _default_reduce(parsed) if reduce is None else reduce
        groups = 1 if "C" in parsed.axes(reduce) else None
        super().__init__(num_channels, layout=parsed, reduce=reduce, groups=groups, eps=eps, affine=affine,
                         center=center, scale=scale, param_axes=param_axes, param_shape=param_shape,
                         device=device, dtype=dtype)


class GroupNorm(AxisNorm):
    r"""Group normalization over explicit axes (Wu & He 2018, arXiv:1803.08494).

    .. math::
        y_{g} = \frac{x_g - \mathrm{E}_{R,g}[x]}{\sqrt{\mathrm{Var}_{R,g}[x] + \epsilon}} \cdot \gamma + \beta

    Channels are split into ``num_groups`` contiguous groups and each group is reduced together with the
    other ``reduce`` axes. The default ``reduce`` (every axis but B and T) gives per-frame statistics on
    ``"BTCHW"``, as ``nn.GroupNorm`` on ``x.reshape(B*T, C, H, W)``; ``reduce="TCHW"`` spans time, as
    Keras 3 and Flax do by default. ``num_groups=1`` is layer norm over the same axes; ``num_groups=C`` is
    instance norm.

    Args:
        num_channels: C, the size of the channel axis.
        num_groups: G, which must divide C. Default: ``32``.
        layout: axis letters of the input.
        reduce: letters to reduce; must contain C. Default: every axis but B and T.
        eps: added to the variance inside the square root. Default: ``1e-5``.
        affine, center, scale, param_axes, param_shape: as in :class:`LayerNorm`.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``.
        - Output: same as input.

    Example::

        >>> gn = GroupNorm(16, num_groups=4, layout="BTCHW")
        >>> gn(torch.randn(2, 5, 16, 8, 8)).shape
        torch.Size([2, 5, 16, 8, 8])
    """

    def __init__(
        self,
        num_channels: int,
        *,
        num_groups: int = 32,
        layout: str | Layout,
        reduce: str | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        param_axes: str | None = None,
        param_shape: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        parsed = Layout.parse(layout)
        if isinstance(num_groups, bool) or not isinstance(num_groups, int):
            raise ValueError(f"expected num_groups to be an int, got {num_groups!r}")
        reduce = _default_reduce(parsed) if reduce is None else reduce
        super().__init__(num_channels, layout=parsed, reduce=reduce, groups=num_groups, eps=eps, affine=affine,
                         center=center, scale=scale, param_axes=param_axes, param_shape=param_shape,
                         device=device, dtype=dtype)


class InstanceNorm(AxisNorm):
    r"""Instance normalization: per sample, time step and channel (Ulyanov et al. 2016, arXiv:1607.08022).

    .. math::
        y_{c} = \frac{x_c - \mathrm{E}_{HW}[x_c]}{\sqrt{\mathrm{Var}_{HW}[x_c] + \epsilon}} \cdot \gamma_c + \beta_c

    Statistics are always per instance (train and eval), as PyTorch's ``InstanceNorm`` with its default
    ``track_running_stats=False``. Unlike PyTorch, ``affine`` defaults to ``True`` so every normrnn norm
    has the same defaults.

    Args:
        num_channels: C.
        layout: axis letters of the input; needs spatial axes unless ``reduce`` is given.
        reduce: letters to reduce; must not contain C. Default: the spatial axes (D, H, W or L).
        eps, affine, center, scale, param_axes, param_shape: as in :class:`LayerNorm`.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``.
        - Output: same as input.

    Example::

        >>> InstanceNorm(8, layout="BCHW")(torch.randn(2, 8, 4, 4)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        reduce: str | None = None,
        eps: float = 1e-5,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        param_axes: str | None = None,
        param_shape: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        parsed = Layout.parse(layout)
        if reduce is None:
            if not parsed.spatial:
                raise ValueError(f"instance norm reduces spatial axes, but layout {parsed.spelled!r} has none; "
                                 "pass reduce explicitly (e.g. reduce='T' to normalize each channel over time)")
            reduce = parsed.spatial
        if "C" in parsed.axes(reduce):
            raise ValueError(f"instance norm keeps channels apart, so reduce must not contain "
                             f"{parsed.spell('C')!r}; got reduce={reduce!r} (use group or layer norm)")
        super().__init__(num_channels, layout=parsed, reduce=reduce, groups=None, eps=eps, affine=affine,
                         center=center, scale=scale, param_axes=param_axes, param_shape=param_shape,
                         device=device, dtype=dtype)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        self.check_input_once(x)
        if x.numel() and self.training and self.axes.count(tuple(x.shape)) == 1:
            raise ValueError(f"expected more than 1 element per instance to reduce over {self.reduce!r} when "
                             f"training, got input of shape {tuple(x.shape)}; eval mode returns the shift β")
        return super().forward(x, mask)


class RMSNorm(AxisNorm):
    r"""Root-mean-square normalization: scale only, no centering (Zhang & Sennrich 2019, arXiv:1910.07467).

    .. math::
        y = \frac{x}{\sqrt{\mathrm{E}_R[x^2] + \epsilon}} \cdot \gamma

    Equals :class:`LayerNorm` over the same axes when the mean over ``R`` is zero and β = 0.

    Args:
        num_channels: C.
        layout: axis letters of the input.
        reduce: letters to reduce. Default: every axis but B and T.
        num_groups: when ``reduce`` contains C, split the channels into this many groups, each with its
            own statistic (per-gate RMS in a recurrent cell). Default: ``1``.
        eps: added inside the square root. Default: ``1e-5`` (PyTorch's ``eps=None`` is ``finfo.eps``;
            Keras and Flax use ``1e-6``).
        affine: learn the scale γ. Default: ``True``.
        param_axes, param_shape: as in :class:`LayerNorm`.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``.
        - Output: same as input.

    Example::

        >>> RMSNorm(2, layout="BF", eps=1e-6)(torch.tensor([[3.0, 4.0]]))
        tensor([[0.8485, 1.1314]], grad_fn=<...>)
    """

    rms = True

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        reduce: str | None = None,
        num_groups: int = 1,
        eps: float = 1e-5,
        affine: bool = True,
        scale: bool = True,
        param_axes: str | None = None,
        param_shape: Sequence[int] | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        parsed = Layout.parse(layout)
        reduce = _default_reduce(parsed) if reduce is None else reduce
        if isinstance(num_groups, bool) or not isinstance(num_groups, int):
            raise ValueError(f"expected num_groups to be an int, got {num_groups!r}")
        groups = num_groups if "C" in parsed.axes(reduce) else None
        super().__init__(num_channels, layout=parsed, reduce=reduce, groups=groups, eps=eps, affine=affine,
                         center=False, scale=scale, param_axes=param_axes, param_shape=param_shape,
                         device=device, dtype=dtype)


class Identity(Norm):
    """No normalization (spec ``"none"``). ``create_norm("none", ...)`` drops the other norms' arguments; called
    directly, it takes only the channel count and PyTorch's ``device``/``dtype`` (ignored: it has no tensors).

    Example::

        >>> x = torch.randn(2, 3)
        >>> Identity(3)(x) is x
        True
    """

    def __init__(self, num_channels: int | None = None, *, device: torch.device | str | None = None,
                 dtype: torch.dtype | None = None) -> None:
        super().__init__()
        self.num_channels = num_channels

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        return x

    def describe(self, shape: Sequence[int]) -> Description:
        return Description("", "", (), 1, "", (), "none")


# the per-sample norms lead every list of spec names (normrnn.norms imports this module first)
register_norm(NormEntry("none", Identity, shift=False, aliases=("identity",)))
register_norm(NormEntry("layer", LayerNorm, gate_groups=lambda arg, C: 1, grouped_as="group"))
register_norm(NormEntry("group", GroupNorm, arg="num_groups", default=default_groups,
                        gate_groups=lambda arg, C: default_groups(C) if arg is None else arg, grouped_as="group"))
register_norm(NormEntry("instance", InstanceNorm))
register_norm(NormEntry("rms", RMSNorm, gate_groups=lambda arg, C: 1, grouped_as="rms", shift=False))
