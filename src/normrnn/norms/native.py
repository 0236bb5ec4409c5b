"""The native-kernel chooser: which PyTorch kernel (``F.group_norm``, ``F.layer_norm``, ``F.rms_norm``,
``F.batch_norm``) computes a normalization exactly, after which permutation, and whether it applies the affine
parameters itself. :func:`~normrnn.norms.functional.norm_forward` asks once per module and falls back to the
generic statistics for masks and the rare axes no native kernel can express."""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import Tensor

from .layout import Layout, NormAxes

__all__ = ["KernelChoice", "channels_second", "choose_kernel", "native_norm"]


@dataclass(frozen=True)
class KernelChoice:
    """How a normalization runs: which kernel, after which permutation, and whether it applies the affine."""

    op: str  # "group_norm" | "layer_norm" | "rms_norm" | "batch_norm" | "generic"
    permute: tuple[int, ...] | None = None  # dims order that puts kept axes, then C, then reduced axes
    fused_affine: bool = False  # the native kernel applies gamma/beta itself

    def describe(self, axes: NormAxes) -> str:
        """A one-line, human-readable account of the kernel call."""
        layout = axes.layout
        letters = layout.letters if self.permute is None else "".join(layout.letters[d] for d in self.permute)
        spelled = layout.spell(letters)
        if self.op == "generic":
            return "generic two-pass statistics (fp32), then (x - mean) * rsqrt(var + eps)"
        if self.op == "batch_norm":
            return "F.batch_norm(x.reshape(N, C, R))"
        if self.op in ("layer_norm", "rms_norm"):
            k = len(axes.reduce)
            return f"F.{self.op} over the trailing {layout.spell(letters[-k:])} of {spelled}"
        cdim = letters.index("C")
        groups = "C (one group per channel)" if axes.groups is None else str(axes.groups)
        prefix = f"permute to {spelled}, then " if self.permute is not None else ""
        n = "·".join(layout.spell(letters[:cdim])) or "1"
        rest = "·".join(layout.spell(letters[cdim + 1 :])) or "1"
        return f"{prefix}F.group_norm(x.reshape({n}, {layout.spell('C')}, {rest}), groups={groups})"


@lru_cache(maxsize=512)
def choose_kernel(axes: NormAxes, *, rms: bool = False, param_axes: str = "C") -> KernelChoice:
    """Choose the fastest exact kernel for ``axes`` (without a mask).

    The order follows the CPU measurements in ``docs/perf-baseline``: ``F.group_norm`` (also for layer norm
    over C-first axes, and for instance norm as ``groups=C``) beats ``F.layer_norm`` with an elementwise
    affine; ``F.layer_norm`` handles channel-last axes; a permutation brings any other axes to a native
    form. Only RMS over non-trailing axes needs the generic path.
    """
    letters = axes.layout.letters
    k = len(axes.reduce)
    trailing = letters[len(letters) - k :] == axes.reduce
    per_channel = param_axes in ("", "C")
    elementwise = param_axes == axes.reduce
    if not rms and axes.groups is None and axes.reduce == letters.replace("C", ""):
        return KernelChoice("batch_norm", fused_affine=per_channel)  # statistics per channel over everything else
    if rms:
        if "C" in axes.reduce and axes.groups == 1 and trailing:
            return KernelChoice("rms_norm", fused_affine=per_channel or elementwise)
        return KernelChoice("generic")
    layer_ok = axes.groups == 1 and trailing
    if layer_ok and (letters[-1] == "C" or elementwise):
        return KernelChoice("layer_norm", fused_affine=per_channel or elementwise)
    cdim = letters.index("C")
    before, after = letters[:cdim], letters[cdim + 1 :]
    if not any(c in axes.reduce for c in before) and all(c in axes.reduce for c in after):
        return KernelChoice("group_norm", fused_affine=per_channel)
    if layer_ok:
        return KernelChoice("layer_norm", fused_affine=per_channel or elementwise)
    kept = [d for d, c in enumerate(letters) if c not in axes.reduce and c != "C"]
    reduced = [d for d, c in enumerate(letters) if c in axes.reduce and c != "C"]
    return KernelChoice("group_norm", permute=(*kept, cdim, *reduced), fused_affine=per_channel)


def native_norm(x: Tensor, axes: NormAxes, kernel: KernelChoice, weight: Tensor | None, bias: Tensor | None,
                 param_axes: str, eps: float) -> Tensor:
    """:func:`norm_forward` through the native kernel ``kernel`` names (batch, layer, RMS or group norm), with the
    affine parameters fused when given."""
    layout = axes.layout
    if kernel.op == "batch_norm":
        x3 = channels_second(x, layout.dim("C"))  # (N, C, *)
        return F.batch_norm(x3, None, None, weight, bias, True, 0.0, eps).reshape(x.shape)
    if kernel.op in ("layer_norm", "rms_norm"):
        trailing = layout.letters[layout.ndim - len(axes.reduce) :]
        shape = layout.sizes(x.shape, trailing)
        if param_axes != axes.reduce:  # per-channel parameters, spread over the trailing axes
            weight, bias = (_channel_param(p, layout, trailing, x) for p in (weight, bias))
        if kernel.op == "layer_norm":
            return F.layer_norm(x, shape, weight, bias, eps)
        return F.rms_norm(x, shape, weight, eps)
    xp = x if kernel.permute is None else x.permute(kernel.permute)
    cdim = layout.dim("C") if kernel.permute is None else kernel.permute.index(layout.dim("C"))
    groups = axes.groups if axes.groups is not None else xp.shape[cdim]
    x3 = channels_second(xp, cdim)  # (N, C, *)
    # the ATen op itself: F.group_norm's Python checks cost as much as the kernel at a recurrent step's small
    # shapes, and norm_forward has already sent one element per group to the generic path
    y = torch.group_norm(x3, groups, weight, bias, eps, torch.backends.cudnn.enabled)
    y = y if x3 is xp else y.reshape(xp.shape)
    return y if kernel.permute is None else y.permute(_inverse(kernel.permute))


def channels_second(x: Tensor, cdim: int) -> Tensor:
    """View ``x`` as ``(N, C, *)`` for the native kernels: axes before C merge into N, axes after it into one."""
    if cdim == 1 and x.dim() > 2:
        return x  # already (N, C, *)
    return x.reshape(math.prod(x.shape[:cdim]), x.shape[cdim], -1)  # (N, C, R)


def _channel_param(p: Tensor | None, layout: Layout, letters: str, x: Tensor) -> Tensor | None:
    """A per-channel parameter expanded to the trailing ``letters`` of ``x`` (a view; no copy)."""
    if p is None:
        return None
    shape = [p.shape[0] if c == "C" else 1 for c in letters]
    return p.reshape(shape).expand(layout.sizes(x.shape, letters))


def _inverse(perm: tuple[int, ...]) -> tuple[int, ...]:
    inv = [0] * len(perm)
    for i, p in enumerate(perm):
        inv[p] = i
    return tuple(inv)
