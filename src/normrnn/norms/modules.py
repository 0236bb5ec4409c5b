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

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import positive_int
from .functional import (
    NormAxes,
    apply_affine,
    channels_second,
    compute_stats,
    mask_view,
    norm_forward,
    normalize,
    param_view,
    plan_kernel,
)
from .layout import Layout

__all__ = [
    "BatchNorm",
    "GroupNorm",
    "Identity",
    "InstanceNorm",
    "LayerNorm",
    "RMSNorm",
    "RecurrentBatchNorm",
    "convert_sync_batchnorm",
]


def _default_reduce(layout: Layout) -> str:
    """Every axis but batch and time: per-sample, per-step statistics."""
    return "".join(c for c in layout.letters if c not in "BT")


class _AxisNorm(nn.Module):
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
        if groups is not None and "C" not in reduce:
            raise ValueError(f"groups split the channels, so reduce must contain {self.layout.spell('C')!r}; "
                             f"got reduce={self.layout.spell(reduce)!r}")
        if groups is not None and (groups < 1 or num_channels % groups != 0):
            raise ValueError(f"expected num_groups to divide num_channels={num_channels}, got num_groups={groups}")
        if eps < 0:
            raise ValueError(f"expected eps >= 0, got {eps}")
        self.axes = NormAxes(self.layout, reduce, groups)
        self.eps = float(eps)
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

    def reset_running_stats(self) -> None:
        """Stateless norms keep no running statistics; present so any norm can be reset uniformly."""

    def _check_input(self, x: Tensor) -> None:
        self.layout.check(x, self.num_channels)
        if self.param_axes != "C":
            got = self.layout.sizes(x.shape, self.param_axes)
            if got != self.param_shape:
                raise ValueError(
                    f"expected sizes {self.layout.describe(self.param_axes, self.param_shape)} for the elementwise "
                    f"parameters, got {got} in input of shape {tuple(x.shape)}"
                )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        self._check_input(x)
        return norm_forward(x, self.axes, weight=self.weight, bias=self.bias, param_axes=self.param_axes,
                            eps=self.eps, rms=self.rms, mask=mask, plan=self.plan)

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


class LayerNorm(_AxisNorm):
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


class GroupNorm(_AxisNorm):
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


class InstanceNorm(_AxisNorm):
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

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        self._check_input(x)
        if self.training and self.axes.count(tuple(x.shape)) == 1:
            raise ValueError(f"expected more than 1 element per instance to reduce over {self.reduce!r} when "
                             f"training, got input of shape {tuple(x.shape)}; eval mode returns the shift β")
        return super().forward(x, mask)


class RMSNorm(_AxisNorm):
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


class Identity(nn.Module):
    """No normalization (spec ``"none"``). Accepts and ignores norm arguments so any spec can become it.

    Example::

        >>> x = torch.randn(2, 3)
        >>> Identity(3)(x) is x
        True
    """

    def __init__(self, num_channels: int | None = None, **kwargs: object) -> None:
        super().__init__()
        self.num_channels = num_channels

    def reset_parameters(self) -> None:
        """Nothing to reset."""

    def reset_running_stats(self) -> None:
        """Nothing to reset."""

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        return x


class BatchNorm(nn.Module):
    r"""Batch normalization over every axis but C (Ioffe & Szegedy 2015, arXiv:1502.03167).

    .. math::
        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta, \qquad
        \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu_{batch}

    In training it normalizes with the batch statistics and updates the running averages; in eval it uses
    the running averages (batch statistics again if ``track_running_stats=False``). The update follows the
    PyTorch convention: ``momentum`` ``m`` weights the *new* batch (Keras' ``momentum`` weights the old
    average, so ``m_torch = 1 - m_keras``) and ``momentum=None`` is a cumulative average. The output uses
    the biased variance; the running variance stores the unbiased one (``n / (n - 1)``, PyTorch) unless
    ``var_estimator="biased"`` (Keras 3, Flax). Running statistics stay fp32 whatever the input dtype.

    With ``sync=True`` inside an initialized ``torch.distributed`` process group, the statistics are sums
    reduced over all ranks (any backend, gloo on CPU included), so the result equals batch norm over the
    global batch; gradients flow across ranks too. A ``(B, T)`` mask excludes padded frames.

    Args:
        num_channels: C.
        layout: axis letters of the input, e.g. ``"BTF"``, ``"BCHW"``, ``"BTCHW"``.
        eps: added to the variance inside the square root. Default: ``1e-5``.
        momentum: weight of the new batch in the running averages, or ``None`` for a cumulative average.
            Default: ``0.1``.
        affine, center, scale: learn γ and β (``center``: β, ``scale``: γ). Default: ``True``.
        track_running_stats: keep running averages and use them in eval. Default: ``True``.
        var_estimator: ``"unbiased"`` (PyTorch) or ``"biased"`` (Keras 3, Flax) running variance.
            Default: ``"unbiased"``.
        sync: reduce statistics across ``torch.distributed`` ranks. Default: ``False``.
        process_group: the group to sync over. Default: the world.
        reduce: accepted for the factory's sake; must be every axis but C. Default: ``None``.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``.
        - Output: same as input.

    Example::

        >>> bn = BatchNorm(1, layout="BC")
        >>> bn(torch.tensor([[1.0], [2.0], [3.0], [4.0]])).squeeze(1)
        tensor([-1.3416, -0.4472,  0.4472,  1.3416], grad_fn=<...>)
        >>> bn.running_mean, bn.running_var
        (tensor([0.2500]), tensor([1.0667]))
    """

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        track_running_stats: bool = True,
        var_estimator: str = "unbiased",
        sync: bool = False,
        process_group: object | None = None,
        reduce: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_channels = positive_int("num_channels", num_channels)
        self.layout = Layout.parse(layout)
        all_but_c = "".join(c for c in self.layout.letters if c != "C")
        if reduce is not None and self.layout.axes(reduce) != all_but_c:
            raise ValueError(f"batch norm reduces every axis but {self.layout.spell('C')}, i.e. "
                             f"reduce={self.layout.spell(all_but_c)!r}; got reduce={reduce!r} "
                             "(use recurrent_batch for per-time-step statistics)")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"expected momentum in [0, 1] (PyTorch convention) or None, got {momentum}")
        if var_estimator not in ("unbiased", "biased"):
            raise ValueError(f"expected var_estimator 'unbiased' or 'biased', got {var_estimator!r}")
        self.axes = NormAxes(self.layout, all_but_c, None)
        self.eps = float(eps)
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        self.var_estimator = var_estimator
        self.sync = sync
        self.process_group = process_group
        factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(num_channels, **factory)) if affine and scale else None
        self.bias = nn.Parameter(torch.empty(num_channels, **factory)) if affine and center else None
        if track_running_stats:
            shape = self._buffer_shape()
            self.register_buffer("running_mean", torch.zeros(shape, device=device, dtype=torch.float32))
            self.register_buffer("running_var", torch.ones(shape, device=device, dtype=torch.float32))
            self.register_buffer("num_batches_tracked", torch.zeros(shape[:-1], device=device, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _buffer_shape(self) -> tuple[int, ...]:
        return (self.num_channels,)

    def reset_running_stats(self) -> None:
        """Zero the running mean and count; set the running variance to one."""
        if self.track_running_stats:
            self.running_mean.zero_()
            self.running_var.fill_(1.0)
            self.num_batches_tracked.zero_()

    def reset_parameters(self) -> None:
        """Reset the running statistics, set γ to 1 and β to 0."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> BatchNorm:
        # Keep running statistics fp32 through .half()/.to(dtype): move them, never round them.
        saved = {n: getattr(self, n) for n in ("running_mean", "running_var") if getattr(self, n) is not None}
        super()._apply(fn, recurse)
        for name, buf in saved.items():
            device = fn(torch.empty(0, device=buf.device)).device
            setattr(self, name, buf.to(device=device, dtype=torch.float32))
        return self

    def _all_reduce(self) -> Callable[[Tensor], Tensor] | None:
        """A differentiable cross-rank sum when syncing applies, else ``None``."""
        if not self.sync:
            return None
        import torch.distributed as dist

        if not (dist.is_available() and dist.is_initialized()):
            return None
        group = self.process_group if self.process_group is not None else dist.group.WORLD
        if dist.get_world_size(group) == 1:
            return None
        return lambda t: _AllReduceSum.apply(t, group)

    def _running(self, slot: int | None) -> tuple[Tensor, Tensor, Tensor]:
        """Running mean, variance and batch count for a time-step slot (``None``: the only slot)."""
        if slot is None:
            return self.running_mean, self.running_var, self.num_batches_tracked
        return self.running_mean[slot], self.running_var[slot], self.num_batches_tracked[slot]

    def _advance(self, count: Tensor) -> float:
        """Count one more batch and return the weight of that batch in the running averages."""
        count.add_(1)
        return 1.0 / float(count) if self.momentum is None else self.momentum

    @torch.no_grad()
    def _update_running(self, slot: int | None, mean: Tensor, var_unbiased: Tensor, n: float) -> None:
        running_mean, running_var, count = self._running(slot)
        factor = self._advance(count)
        var = var_unbiased if self.var_estimator == "unbiased" else var_unbiased * ((n - 1) / n)
        running_mean.mul_(1 - factor).add_(mean.float(), alpha=factor)
        running_var.mul_(1 - factor).add_(var.float(), alpha=factor)

    def _float_params(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        # Native BN is within 1 ulp on fp16/bf16 only with fp32 parameters (measured on CPU).
        if x.dtype in (torch.float16, torch.bfloat16):
            return (None if self.weight is None else self.weight.float(),
                    None if self.bias is None else self.bias.float())
        return self.weight, self.bias

    def _normalize(self, x: Tensor, layout: Layout, axes: NormAxes, mask: Tensor | None, slot: int | None,
                   use_batch_stats: bool) -> Tensor:
        """Batch-normalize one tensor whose layout has no time-step slots of its own."""
        C = self.num_channels
        cdim = layout.dim("C")
        x3 = channels_second(x, cdim)  # (N, C, *): every axis but C is reduced
        weight, bias = self._float_params(x)
        stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
        if not use_batch_stats:
            mean, var, _ = self._running(slot)
            y3 = F.batch_norm(x3, mean.to(stat_dtype), var.to(stat_dtype), weight, bias, False, 0.0, self.eps)
            return y3.reshape(x.shape)
        update = self.training and self.track_running_stats
        all_reduce = self._all_reduce()
        if mask is None and all_reduce is None:
            n = axes.count(tuple(x.shape))
            self._check_count(n, x)
            if not update:
                return F.batch_norm(x3, None, None, weight, bias, True, 0.0, self.eps).reshape(x.shape)
            if self.var_estimator == "unbiased" and stat_dtype == torch.float32:
                # PyTorch's own rule: let the kernel update the fp32 buffers (a row of them for a time slot).
                mean, var, count = self._running(slot)
                factor = self._advance(count)
                return F.batch_norm(x3, mean, var, weight, bias, True, factor, self.eps).reshape(x.shape)
            # momentum=1 makes the native kernel hand back the batch mean and unbiased variance for free.
            mean = torch.zeros(C, device=x.device, dtype=stat_dtype)
            var = torch.ones(C, device=x.device, dtype=stat_dtype)
            y = F.batch_norm(x3, mean, var, weight, bias, True, 1.0, self.eps).reshape(x.shape)
            self._update_running(slot, mean, var, float(n))
            return y
        stats = compute_stats(x, axes, mask=mask, all_reduce=all_reduce)
        n = float(stats.count.reshape(-1)[0])
        self._check_count(n, x)
        y = normalize(x, stats, axes, self.eps)
        y = apply_affine(y, param_view(weight, layout, "C"), param_view(bias, layout, "C"))
        if update:
            self._update_running(slot, stats.mean.reshape(C), stats.var.reshape(C) * (n / (n - 1)), n)
        return y.to(x.dtype)

    def _check_count(self, n: float, x: Tensor) -> None:
        if n <= 1:
            raise ValueError(
                f"expected more than 1 value per channel when training, got input of shape {tuple(x.shape)} "
                f"with layout {self.layout.spelled!r} ({int(n)} value per channel); use a larger batch, "
                "eval mode, or a per-sample norm such as group or layer"
            )

    def forward(self, x: Tensor, mask: Tensor | None = None) -> Tensor:
        self.layout.check(x, self.num_channels)
        if mask is not None:
            mask = mask_view(mask, self.layout, tuple(x.shape))
        return self._normalize(x, self.layout, self.axes, mask, None, self.training or not self.track_running_stats)

    def extra_repr(self) -> str:
        s = f"{self.num_channels}, layout={self.layout.spelled!r}, eps={self.eps}, momentum={self.momentum}"
        if self.weight is None and self.bias is None:
            s += ", affine=False"
        if not self.track_running_stats:
            s += ", track_running_stats=False"
        if self.var_estimator != "unbiased":
            s += f", var_estimator={self.var_estimator!r}"
        if self.sync:
            s += ", sync=True"
        return s


class RecurrentBatchNorm(BatchNorm):
    r"""Batch normalization with separate statistics per time step (Cooijmans et al. 2016, arXiv:1603.09025).

    .. math::
        \mathrm{BN}(x_t) = \frac{x_t - \hat\mu_{s}}{\sqrt{\hat\sigma^2_{s} + \epsilon}} \cdot \gamma + \beta,
        \qquad s = \min(t, T_{max} - 1)

    Each of the first ``max_steps`` steps has its own running statistics; later steps reuse the last slot,
    as the paper prescribes. γ and β are shared across time, and γ starts at ``gamma_init`` (0.1 in the
    paper, which also drops β on the input and hidden projections: pass ``center=False``).

    ``forward(x, t)`` normalizes one step when the layout has no T axis (``t`` is its index); with a T
    axis it normalizes a whole sequence whose first step is ``t`` (default 0), exactly as stepping would.

    Args:
        num_channels: C.
        max_steps: T_max, the number of per-step statistic slots.
        layout: axis letters of the input, e.g. ``"BC"`` or ``"BCHW"`` per step, ``"BTC"`` per sequence.
        gamma_init: initial γ. Default: ``0.1``.
        eps, momentum, affine, center, scale, track_running_stats, var_estimator, sync, process_group:
            as in :class:`BatchNorm`.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``, or ``(B,)`` for one step.
        - Output: same as input. Buffers: ``running_mean``, ``running_var``: ``(T_max, C)``.

    Example::

        >>> rbn = RecurrentBatchNorm(8, max_steps=4, layout="BC")
        >>> rbn(torch.randn(16, 8), 6).shape  # step 6 uses slot 3
        torch.Size([16, 8])
    """

    def __init__(
        self,
        num_channels: int,
        *,
        max_steps: int,
        layout: str | Layout,
        gamma_init: float = 0.1,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        track_running_stats: bool = True,
        var_estimator: str = "unbiased",
        sync: bool = False,
        process_group: object | None = None,
        reduce: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        if isinstance(max_steps, bool) or not isinstance(max_steps, int) or max_steps < 1:
            raise ValueError(f"expected max_steps (T_max) to be a positive int, got {max_steps!r}")
        self.max_steps = max_steps
        self.gamma_init = float(gamma_init)
        parsed = Layout.parse(layout)
        step = Layout.parse(parsed.spelled.replace("T", "")) if parsed.has("T") else parsed
        expected = "".join(c for c in parsed.letters if c not in "TC")
        if reduce is not None and parsed.axes(reduce) != expected:
            raise ValueError(f"recurrent batch norm reduces every axis but T and C, i.e. "
                             f"reduce={parsed.spell(expected)!r}; got reduce={reduce!r}")
        super().__init__(num_channels, layout=step, eps=eps, momentum=momentum, affine=affine, center=center,
                         scale=scale, track_running_stats=track_running_stats, var_estimator=var_estimator,
                         sync=sync, process_group=process_group, device=device, dtype=dtype)
        self.step_layout = step
        self.layout = parsed

    def _buffer_shape(self) -> tuple[int, ...]:
        return (self.max_steps, self.num_channels)

    def reset_parameters(self) -> None:
        """Reset the running statistics, set γ to ``gamma_init`` and β to 0."""
        super().reset_parameters()
        if self.weight is not None:
            nn.init.constant_(self.weight, self.gamma_init)

    def slot(self, t: int) -> int:
        """The statistics slot of time step ``t``: ``min(t, T_max - 1)``."""
        return min(t, self.max_steps - 1)

    def forward(self, x: Tensor, t: int | None = None, mask: Tensor | None = None) -> Tensor:
        self.layout.check(x, self.num_channels)
        if not self.layout.has("T"):
            if isinstance(t, bool) or not isinstance(t, int) or t < 0:
                raise ValueError(f"layout {self.layout.spelled!r} has no T axis, so forward(x, t) needs the "
                                 f"time-step index t >= 0; got t={t!r}")
            return self._step(x, t, mask)
        t0 = 0 if t is None else t
        if isinstance(t0, bool) or not isinstance(t0, int) or t0 < 0:
            raise ValueError(f"expected t (the index of the first step) to be an int >= 0, got {t!r}")
        if mask is not None:
            mask_view(mask, self.layout, tuple(x.shape))  # validates the (B, T) shape
        tdim = self.layout.dim("T")
        steps = [self._step(x.select(tdim, i), t0 + i, None if mask is None else mask[:, i])
                 for i in range(x.shape[tdim])]
        return torch.stack(steps, dim=tdim)

    def _step(self, x: Tensor, t: int, mask: Tensor | None) -> Tensor:
        use_batch_stats = self.training or not self.track_running_stats
        if mask is not None:
            mask = mask_view(mask, self.step_layout, tuple(x.shape))
            B = x.shape[self.step_layout.dim("B")]
            valid_per_channel = int(mask.sum()) * (x.numel() // (B * self.num_channels))
            if valid_per_channel <= 1 and self.track_running_stats:
                use_batch_stats = False  # too few valid samples at this step: fall back to the running stats
        return self._normalize(x, self.step_layout, self.axes, mask, self.slot(t), use_batch_stats)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_steps={self.max_steps}, gamma_init={self.gamma_init}"


def convert_sync_batchnorm(module: nn.Module, process_group: object | None = None) -> nn.Module:
    """Switch every :class:`BatchNorm` and :class:`RecurrentBatchNorm` in ``module`` to cross-rank statistics.

    normrnn's counterpart of :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, in place: it sets
    ``sync=True`` (and ``process_group``), so under ``DistributedDataParallel`` the statistics, the running
    averages and the gradients equal those of one process over the global batch. Other norms are per-sample
    and need nothing. Outside an initialized process group a synced norm is a plain one.

    Example::

        >>> net = nn.Sequential(BatchNorm(4, layout="BC"), LayerNorm(4, layout="BC"))
        >>> [getattr(m, "sync", None) for m in convert_sync_batchnorm(net)]
        [True, None]
    """
    for m in module.modules():
        if isinstance(m, BatchNorm):
            m.sync = True
            m.process_group = process_group
    return module


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over ranks; the gradient of a sum of per-rank losses is the sum of their gradients."""

    @staticmethod
    def forward(ctx: torch.autograd.function.FunctionCtx, t: Tensor, group: object) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: torch.autograd.function.FunctionCtx, grad: Tensor) -> tuple[Tensor, None]:
        import torch.distributed as dist

        out = grad.contiguous().clone()
        dist.all_reduce(out, group=ctx.group)
        return out, None
