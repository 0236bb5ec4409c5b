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
from torch import Tensor

from .axis import AxisNorm, default_reduce
from .base import Description, Norm
from .layout import Layout
from .registry import NormEntry, default_groups, register_norm

__all__ = ["AxisNorm", "GroupNorm", "Identity", "InstanceNorm", "LayerNorm", "RMSNorm"]


class LayerNorm(AxisNorm):
    r"""Layer normalization over explicit axes (Ba, Kiros & Hinton 2016, arXiv:1607.06450).

    .. math::
        y = \frac{x - \mathrm{E}_R[x]}{\sqrt{\mathrm{Var}_R[x] + \epsilon}} \cdot \gamma + \beta

    ``R`` defaults to every axis but B and T, so a sequence ``"BTF"`` gets statistics per ``(B, T)``
    (Keras ``LayerNormalization(axis=-1)``, TF1 ``layer_norm(begin_norm_axis=-1)``) and an image ``"BCHW"``
    per sample. ``reduce="TF"`` reproduces TF1's default ``begin_norm_axis=1`` on ``[B, T, F]``. With
    C in ``R`` this equals ``GroupNorm(num_groups=1)`` over the same axes; it never equals group norm
    when ``R`` is only C (Keras' and TF-Addons' "G=1 is LN" claim,
    https://github.com/tensorflow/addons/issues/2143).

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
        param_shape: sizes of ``param_axes``, needed when they are more than C; the channels' size may be left out
            (``(H, W)`` with ``param_axes="CHW"``: this norm's own C). Default: ``None``.

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
        reduce = default_reduce(parsed) if reduce is None else reduce
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
        reduce = default_reduce(parsed) if reduce is None else reduce
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
        reduce = default_reduce(parsed) if reduce is None else reduce
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
