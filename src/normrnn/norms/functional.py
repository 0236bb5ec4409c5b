"""The statistics core: every normalization is (reduced axes, channel groups, parameter axes).

Following flax's ``_compute_stats``/``_normalize``, all norms share one generic path:

.. math::

    \\mu = \\frac{1}{n}\\sum_{R} x, \\qquad \\sigma^2 = \\frac{1}{n}\\sum_{R} (x - \\mu)^2, \\qquad
    y = \\frac{x - \\mu}{\\sqrt{\\sigma^2 + \\epsilon}} \\cdot \\gamma + \\beta

where ``R`` is the set of reduced axes (channels may be reduced in ``G`` groups), the variance is two-pass
(never ``E[x^2] - E[x]^2``), statistics are fp32 for fp16/bf16 inputs, and a mask removes padded positions
from ``n`` and the sums. :func:`choose_kernel` maps the same definition onto PyTorch's native kernels
(``F.group_norm``, ``F.layer_norm``, ``F.rms_norm``) by reshaping or permuting whenever the axes allow, so
the generic path runs only for masks and the rare axes no native kernel can express.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from .layout import Layout, NormAxes
from .native import KernelChoice, channels_second, choose_kernel, native_norm

__all__ = [
    "KernelChoice",
    "NormAxes",
    "RunningStats",
    "Stats",
    "apply_affine",
    "check_mask",
    "choose_kernel",
    "compute_stats",
    "grouped_view",
    "mask_view",
    "norm_forward",
    "normalize",
    "param_view",
]

_HALF = (torch.float16, torch.bfloat16)


@dataclass
class Stats:
    """Statistics in the grouped keep-dim view; ``mean`` is ``None`` for RMS (no centering)."""

    mean: Tensor | None  # (x-shaped with reduced dims kept as 1; channels unflattened to (G, C/G) if grouped)
    var: Tensor  # biased variance, or mean square for RMS
    count: Tensor  # elements per statistic after masking, same shape as var


@dataclass(frozen=True)
class RunningStats:
    """A batch norm's running averages, and what :func:`norm_forward` does with them (batch axes only).

    ``use``: normalize with ``mean`` and ``var`` (inference). Otherwise the batch's statistics normalize: ``check``
    sees their count first, and the running-statistics hook ``update`` gets the batch mean, its unbiased variance
    and the count. ``in_kernel`` (PyTorch's rule: fp32 buffers, unbiased estimator, no mask or sync) returns the
    batch's weight instead, and the native kernel updates ``mean`` and ``var`` in place.
    """

    mean: Tensor | None = None
    var: Tensor | None = None
    use: bool = False
    check: Callable[[float], None] | None = None
    update: Callable[[Tensor, Tensor, float], None] | None = None
    in_kernel: Callable[[], float] | None = None


def _compute_dtype(x: Tensor) -> torch.dtype:
    return torch.float32 if x.dtype in _HALF else x.dtype


def grouped_view(x: Tensor, axes: NormAxes) -> tuple[Tensor, list[int]]:
    """``x`` viewed with its channels split into ``axes.groups`` groups (no copy), and the dims of that view a
    statistic reduces: the helper a norm author needs to reduce per group the way :func:`compute_stats` does.

    Example::

        >>> axes = NormAxes(Layout.parse("BCHW"), "CHW", groups=2)
        >>> xg, dims = grouped_view(torch.zeros(4, 6, 5, 5), axes)
        >>> tuple(xg.shape), dims
        ((4, 2, 3, 5, 5), [3, 4, 2])
    """
    layout = axes.layout
    cdim = layout.dim("C")
    dims = [layout.dim(c) for c in axes.reduce if c != "C"]
    if axes.groups is None:
        return x, dims
    C = x.shape[cdim]
    xg = x.unflatten(cdim, (axes.groups, C // axes.groups))  # (..., G, C/G, ...)
    return xg, [d + 1 if d > cdim else d for d in dims] + [cdim + 1]


def check_mask(mask: object, named: str, expected: tuple[int, ...], context: str = "") -> Tensor:
    """``mask`` if it is a bool tensor of shape ``expected`` (spelled ``named``, e.g. ``"(B, T) = (4, 2)"``);
    else the one ``ValueError`` every mask check raises."""
    if not isinstance(mask, Tensor) or tuple(mask.shape) != expected or mask.dtype != torch.bool:
        got = f"{mask.dtype} {tuple(mask.shape)}" if isinstance(mask, Tensor) else f"{type(mask).__name__} {mask!r}"
        raise ValueError(f"expected a boolean mask of shape {named}{context}, True where valid; got {got}")
    return mask


def mask_view(mask: Tensor, layout: Layout, shape: tuple[int, ...]) -> Tensor:
    """Check a ``(B, T)`` mask (``(B,)`` for layouts without T) and return it broadcastable to ``shape``.

    The mask is ``(B, T)`` whatever the layout's order (time-major ``"TBF"`` included), of dtype bool;
    ``True`` marks valid positions. Raises ``ValueError`` when the dtype or shape does not fit the input.
    """
    letters = "BT" if layout.has("T") else "B"
    expected = layout.sizes(shape, letters)
    check_mask(mask, layout.describe(letters, expected), expected,
               f" for input of shape {tuple(shape)} with layout {layout.spelled!r}")
    if letters == "BT" and layout.dim("T") < layout.dim("B"):
        mask = mask.transpose(0, 1)  # (T, B), the layout's order
    view = [shape[layout.dim(c)] if c in letters else 1 for c in layout.letters]
    return mask.reshape(view)


def compute_stats(
    x: Tensor,
    axes: NormAxes,
    *,
    mask: Tensor | None = None,
    rms: bool = False,
    all_reduce: Callable[[Tensor], Tensor] | None = None,
) -> Stats:
    """Two-pass statistics of ``x`` over ``axes``, in fp32 for half inputs.

    Args:
        x: input in ``axes.layout``.
        axes: what to reduce.
        mask: boolean, broadcastable to ``x`` (see :func:`mask_view`); False positions are excluded.
            Default: ``None``.
        rms: compute the mean square instead of mean and variance. Default: ``False``.
        all_reduce: sums a tensor across processes (differentiably) for cross-process statistics.
            Default: ``None``.
    """
    xg, dims = grouped_view(x.to(_compute_dtype(x)), axes)
    valid = None
    if mask is not None:
        valid = mask if axes.groups is None else mask.unsqueeze(axes.layout.dim("C") + 1)

    def total(t: Tensor) -> Tensor:
        s = t.sum(dims, keepdim=True)
        return all_reduce(s) if all_reduce is not None else s

    def masked(t: Tensor) -> Tensor:
        return t if valid is None else torch.where(valid, t, 0.0)

    if valid is None:
        # lists, not generators, inside math.prod: torch.compile traces these without a graph break
        kept_shape = [1 if d in dims else s for d, s in enumerate(xg.shape)]
        count = torch.full(kept_shape, float(math.prod([xg.shape[d] for d in dims])), dtype=xg.dtype, device=x.device)
        count = all_reduce(count) if all_reduce is not None else count
    else:
        # Sum the mask over its own extent; the axes it broadcasts over contribute their full size.
        spread = math.prod([xg.shape[d] for d in dims if valid.shape[d] == 1])
        count = total(valid.to(xg.dtype)) * spread
    # Guard the division only: an all-padded statistic has no valid output to normalize.
    denom = count.clamp_min(1.0)
    if rms:
        return Stats(mean=None, var=total(masked(xg.square())) / denom, count=count)
    mean = total(masked(xg)) / denom
    var = total(masked((xg - mean).square())) / denom
    return Stats(mean=mean, var=var, count=count)


def normalize(x: Tensor, stats: Stats, axes: NormAxes, eps: float) -> Tensor:
    """``(x - mean) / sqrt(var + eps)`` in the compute dtype, returned in ``x``'s (ungrouped) shape."""
    xg, _ = grouped_view(x.to(_compute_dtype(x)), axes)
    centered = xg if stats.mean is None else xg - stats.mean
    return (centered * torch.rsqrt(stats.var + eps)).reshape(x.shape)


def param_view(p: Tensor | None, layout: Layout, param_axes: str) -> Tensor | None:
    """Reshape a parameter stored over ``param_axes`` so it broadcasts against a ``layout`` tensor."""
    if p is None:
        return None
    sizes = iter(p.shape)
    return p.reshape([next(sizes) if c in param_axes else 1 for c in layout.letters])


def apply_affine(y: Tensor, weight: Tensor | None, bias: Tensor | None) -> Tensor:
    """``y * weight + bias`` with broadcast parameters; either may be ``None``."""
    if weight is not None and bias is not None:
        return torch.addcmul(bias.to(y.dtype), y, weight.to(y.dtype))
    if weight is not None:
        return y * weight.to(y.dtype)
    if bias is not None:
        return y + bias.to(y.dtype)
    return y


def _batch_norm(x: Tensor, axes: NormAxes, weight: Tensor | None, bias: Tensor | None, eps: float,
                mask: Tensor | None, all_reduce: Callable[[Tensor], Tensor] | None, running: RunningStats) -> Tensor:
    """:func:`norm_forward` with batch statistics and running averages: the native kernel where it can compute
    them (no mask, no cross-process sum), else :func:`compute_stats`."""
    layout = axes.layout
    x3 = channels_second(x, layout.dim("C"))  # (N, C, *): every axis but C is reduced
    stat_dtype = torch.float64 if x.dtype == torch.float64 else torch.float32
    if running.use:
        assert running.mean is not None and running.var is not None  # use implies them
        mean, var = running.mean.to(stat_dtype), running.var.to(stat_dtype)
        return F.batch_norm(x3, mean, var, weight, bias, False, 0.0, eps).reshape(x.shape)
    if mask is None and all_reduce is None:
        n = axes.count(tuple(x.shape))
        if running.check is not None:
            running.check(n)
        if running.in_kernel is not None:
            factor = running.in_kernel()
            return F.batch_norm(x3, running.mean, running.var, weight, bias, True, factor, eps).reshape(x.shape)
        if running.update is None:
            return native_norm(x, axes, KernelChoice("batch_norm"), weight, bias, "C", eps)
        # momentum=1 makes the native kernel hand back the batch mean and unbiased variance for free
        mean = torch.zeros(x3.shape[1], device=x.device, dtype=stat_dtype)
        var = torch.ones(x3.shape[1], device=x.device, dtype=stat_dtype)
        y = F.batch_norm(x3, mean, var, weight, bias, True, 1.0, eps).reshape(x.shape)
        running.update(mean, var, float(n))
        return y
    stats = compute_stats(x, axes, mask=mask, all_reduce=all_reduce)
    count = float(stats.count.reshape(-1)[0])
    if running.check is not None:
        running.check(count)
    y = apply_affine(normalize(x, stats, axes, eps), param_view(weight, layout, "C"), param_view(bias, layout, "C"))
    if running.update is not None:
        assert stats.mean is not None and stats.var is not None  # batch norm is centred
        C = stats.mean.numel()
        running.update(stats.mean.reshape(C), stats.var.reshape(C) * (count / (count - 1)), count)
    return y.to(x.dtype)


def norm_forward(
    x: Tensor,
    axes: NormAxes,
    *,
    weight: Tensor | None = None,
    bias: Tensor | None = None,
    param_axes: str = "C",
    eps: float = 1e-5,
    rms: bool = False,
    mask: Tensor | None = None,
    kernel: KernelChoice | None = None,
    all_reduce: Callable[[Tensor], Tensor] | None = None,
    running: RunningStats | None = None,
) -> Tensor:
    """Normalize ``x`` over ``axes`` and apply the affine parameters stored over ``param_axes``.

    ``mask`` is the ``(B, T)`` (or ``(B,)``) boolean validity mask; it is ignored when no statistic spans
    B or T, because then padding cannot reach a valid output. ``kernel`` is :func:`choose_kernel`'s answer,
    which modules compute once. ``all_reduce`` sums the statistics across processes; ``running`` holds a batch
    norm's running averages (:class:`RunningStats`: use them, or update them from the batch).
    """
    layout = axes.layout
    if mask is not None:
        mask = mask_view(mask, layout, tuple(x.shape))
        if not axes.mask_matters:
            mask = None
    if mask is not None:
        kernel = KernelChoice("generic")
        # padded values never enter the graph: NaN or Inf there would reach every gradient through the
        # statistics (where() alone drops their values forward, not their NaN·0 products backward)
        x = x.masked_fill(~mask, 0)
    elif kernel is None:
        kernel = choose_kernel(axes, rms=rms, param_axes=param_axes)
    if running is not None or all_reduce is not None:
        return _batch_norm(x, axes, weight, bias, eps, mask, all_reduce, running or RunningStats())
    if rms and kernel.op == "rms_norm" and weight is not None and weight.dtype != x.dtype:
        kernel = KernelChoice("generic")  # F.rms_norm silently drops to a slow composite on mixed dtypes
    if kernel.op in ("group_norm", "batch_norm") and x.numel() == (axes.groups or x.shape[layout.dim("C")]):
        kernel = KernelChoice("generic")  # the native kernels refuse one element per group (or channel) in total
    fused = kernel.fused_affine and kernel.op != "generic"
    if kernel.op == "generic":
        y = normalize(x, compute_stats(x, axes, mask=mask, rms=rms), axes, eps)
    else:
        y = native_norm(x, axes, kernel, weight if fused else None, bias if fused else None, param_axes, eps)
    if not fused:
        y = apply_affine(y, param_view(weight, layout, param_axes), param_view(bias, layout, param_axes))
    return y if y.dtype == x.dtype else y.to(x.dtype)


