r"""The LSTM gate block with a per-gate norm as Triton kernels: forward and backward, statistics saved, the rest
recomputed.

:func:`triton_lstm_gates` computes exactly :func:`normrnn.cells.lstm_gates` for a joint gate norm that keeps
statistics per (sample, channel group) over the group's channels and every spatial position (``none``,
``layer`` and ``group:G`` per gate, and ``rms``), with no peepholes or cell norm:

.. math::
    \hat x = \frac{\text{pre} - \mu_{b,g}}{\sqrt{\sigma^2_{b,g} + \epsilon}}
    \ (\text{rms: } \mu = 0,\ \sigma^2 = \mathrm{E}[x^2]), \quad a = \hat x \gamma + \beta,

    [i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](a), \quad c' = f c + i g, \quad h' = o \tanh c'

Forward is two passes over the gate tensor: a statistics kernel (one program per sample and group, two
sweeps for a centred variance) and an elementwise kernel for normalize, affine, gates, cell update and
``h``. It saves only ``pre``, ``c``, γ, β and the statistics. Backward recomputes the gates in one elementwise
kernel that writes :math:`\bar a` (and :math:`\bar a \hat x`), reduces them per channel with PyTorch for
:math:`\bar\gamma, \bar\beta` and the per-group sums, and maps them to :math:`\overline{\text{pre}}` in a
second elementwise kernel:

.. math::
    \overline{\text{pre}} = r \left(\gamma \bar a - \tfrac{1}{L}\textstyle\sum_g \gamma \bar a
    - \hat x \tfrac{1}{L}\sum_g \gamma \bar a \hat x\right) \quad (\text{rms: without the middle term})

Triton runs on CUDA, or on CPU tensors under its interpreter (``TRITON_INTERPRET=1``), which is how the
tests check it against eager PyTorch on machines without a GPU. The kernels use only ``tl.exp``, ``tl.sqrt``
and ``tl.sigmoid`` (tanh is built from them), so they run on Triton 3.6 and newer. (Triton 3.6's *interpreter*
cannot run their loops with a NumPy that refuses ``int()`` of a one-element array, as 2.4 does; Triton 3.7 fixed
that, and :func:`triton_unavailable` says so instead of failing inside the interpreter.)
"""

from __future__ import annotations

import functools
import importlib.metadata
import importlib.util
import math
import os
import re
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import torch
from torch import Tensor

from .._checks import install_hint
from .cell import GateCell, State, fused_block
from .registry import GateBackend, register_backend

__all__ = ["ELEMENT_BLOCK", "STATS_BLOCK", "TritonBackend", "triton_lstm_gates", "triton_unavailable"]

ELEMENT_BLOCK = 1024  # elements per program of the elementwise kernels
STATS_BLOCK = 1024  # elements per sweep step of the statistics kernel


def interpreting() -> bool:
    """Whether Triton runs kernels through its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


def triton_unavailable(device: torch.device | None = None, *, interpreter: bool | None = None) -> str | None:
    """Why Triton kernels cannot run here (on ``device``; through the CPU interpreter when ``interpreter``, by
    default when ``TRITON_INTERPRET=1``), or ``None`` when they can."""
    interpreter = interpreting() if interpreter is None else interpreter
    if importlib.util.find_spec("triton") is None:
        return f"Triton is not installed ({install_hint('triton', ['triton'])}; Linux x86_64)"
    if device is not None and device.type != "cuda" and not interpreter:
        return f"Triton runs on CUDA, or on CPU only under TRITON_INTERPRET=1; got a {device.type} tensor"
    if interpreter:
        return interpreter_defect(importlib.metadata.version("triton"), _numpy_takes_int_of_1_element())
    return None


def interpreter_defect(triton_version: str, numpy_takes_int_of_1_element: bool) -> str | None:
    """Why this Triton's CPU interpreter cannot run the kernels' runtime-bounded loops, or ``None``: before 3.7 it
    took ``int()`` of a one-element array for a loop bound, which newer NumPy refuses."""
    release = re.match(r"(\d+)\.(\d+)", triton_version)
    if release is None or (int(release[1]), int(release[2])) >= (3, 7) or numpy_takes_int_of_1_element:
        return None
    import numpy

    return (f"Triton {triton_version}'s CPU interpreter cannot run these kernels with NumPy {numpy.__version__} "
            f"(it takes int() of one-element arrays, which this NumPy refuses); use Triton >= 3.7 or run on CUDA")


@functools.cache
def _numpy_takes_int_of_1_element() -> bool:
    import warnings

    import numpy

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            int(numpy.ones(1))
    except TypeError:
        return False
    return True


def _kernels() -> ModuleType:
    """The kernels module, imported on first use (importing normrnn never imports Triton)."""
    from . import _triton_kernels

    return _triton_kernels


@dataclass(frozen=True)
class _Norm:
    """What the kernels need of the gate norm: ``groups`` over the 4C channels (0: no norm), eps, rms."""

    groups: int
    eps: float
    rms: bool


def _grid(n: int, block: int) -> tuple[int]:
    return (max(1, -(-n // block)),)


def _statistics(pre: Tensor, norm: _Norm, fp64: bool) -> tuple[Tensor, Tensor]:
    stats_kernel = _kernels().stats
    B, C4, S = pre.shape
    dtype = torch.float64 if fp64 else torch.float32
    mean = torch.empty(B * norm.groups, device=pre.device, dtype=dtype)
    rstd = torch.empty_like(mean)
    stats_kernel[(B * norm.groups,)](pre, mean, rstd, C4 // norm.groups * S, norm.eps, RMS=norm.rms, FP64=fp64,
                                     BLOCK=STATS_BLOCK)
    return mean, rstd


class _TritonLSTMGates(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, pre: Tensor, c: Tensor, weight: Tensor | None, shift: Tensor | None,
                norm: _Norm) -> tuple[Tensor, Tensor]:
        forward_kernel = _kernels().forward
        B, C4, S = pre.shape
        C = C4 // 4
        fp64 = pre.dtype == torch.float64
        groups = norm.groups or 1
        if norm.groups:
            mean, rstd = _statistics(pre, norm, fp64)
        else:  # no norm: the kernels never read the statistics
            mean = rstd = pre.new_zeros(1, dtype=torch.float32)
        h, c_new = torch.empty_like(c), torch.empty_like(c)
        N = B * C * S
        forward_kernel[_grid(N, ELEMENT_BLOCK)](
            pre, c, weight if weight is not None else pre, shift if shift is not None else pre, mean, rstd, h, c_new,
            N, C, S, C4 // groups, groups, NORM=bool(norm.groups), HAS_W=weight is not None,
            HAS_B=shift is not None, FP64=fp64, BLOCK=ELEMENT_BLOCK)
        ctx.save_for_backward(pre, c, weight, shift, mean, rstd)
        ctx.norm = norm
        return h, c_new

    @staticmethod
    def backward(ctx: Any, dh: Tensor, dc_new: Tensor | None) -> tuple[Tensor | None, ...]:
        gates_kernel, norm_kernel = _kernels().backward_gates, _kernels().backward_norm
        pre, c, weight, shift, mean, rstd = ctx.saved_tensors
        norm: _Norm = ctx.norm
        B, C4, S = pre.shape
        C, groups = C4 // 4, norm.groups or 1
        fp64 = pre.dtype == torch.float64
        work = torch.float64 if fp64 else torch.float32  # d(a) is kept at full precision for the reductions
        dax_needed = bool(norm.groups) or weight is not None
        da = torch.empty(pre.shape, device=pre.device, dtype=work)  # (B, 4C, S)
        dax = torch.empty_like(da) if dax_needed else da
        dc = torch.empty_like(c)
        N = B * C * S
        gates_kernel[_grid(N, ELEMENT_BLOCK)](
            pre, c, weight if weight is not None else pre, shift if shift is not None else pre, mean, rstd,
            dh.contiguous(), dc_new.contiguous() if dc_new is not None else dh, da, dax, dc, N, C, S, C4 // groups,
            groups, NORM=bool(norm.groups), HAS_W=weight is not None, HAS_B=shift is not None,
            HAS_DC=dc_new is not None, DAX=dax_needed, FP64=fp64, BLOCK=ELEMENT_BLOCK)
        da_sum = da.sum(2)  # (B, 4C): Σ over positions
        dax_sum = dax.sum(2) if dax_needed else None
        dweight = None
        if weight is not None and ctx.needs_input_grad[2]:
            assert dax_sum is not None  # dax_needed with a weight
            dweight = dax_sum.sum(0).to(weight.dtype)
        dshift = da_sum.sum(0).to(shift.dtype) if shift is not None and ctx.needs_input_grad[3] else None
        gamma = weight.to(work) if weight is not None else None
        if not norm.groups:  # a = pre·γ + β
            dpre = da * gamma.view(1, C4, 1) if gamma is not None else da
            return dpre.to(pre.dtype), dc, dweight, dshift, None
        if gamma is None:
            gamma = torch.ones(C4, device=pre.device, dtype=work)
        sum_dy = (da_sum * gamma).reshape(B * groups, -1).sum(1)  # (B·G,): Σ γ d(a) over each group
        assert dax_sum is not None  # dax_needed with a norm
        sum_dyx = (dax_sum * gamma).reshape(B * groups, -1).sum(1)  # Σ γ d(a) x-hat
        dpre = torch.empty_like(pre)
        n = pre.numel()
        norm_kernel[_grid(n, ELEMENT_BLOCK)](
            pre, da, weight if weight is not None else pre, mean, rstd, sum_dy, sum_dyx, dpre, n, C4, S,
            C4 // groups, groups, C4 // groups * S, RMS=norm.rms, HAS_W=weight is not None, FP64=fp64,
            BLOCK=ELEMENT_BLOCK)
        return dpre, dc, dweight, dshift, None


def _check_gate_inputs(pre: Tensor, c: Tensor, weight: Tensor | None, shift: Tensor | None, groups: int) -> None:
    """What the kernels read, checked as the eager block's ops would: shapes (a short γ or β would be read past its
    end), floating dtypes, ``c`` of ``pre``'s dtype, γ and β of it too or float32 (half inputs, as norms take), and
    one device for all."""
    tensors = {"pre": pre, "c": c, "weight": weight, "shift": shift}
    for name, t in tensors.items():
        if t is not None and not isinstance(t, Tensor):
            raise ValueError(f"expected {name} to be a tensor, got {type(t).__name__}")
    if pre.dim() < 2 or pre.shape[1] % 4:
        raise ValueError(f"expected pre (B, 4C, *S), got shape {tuple(pre.shape)}")
    B, C4 = pre.shape[:2]
    if c.shape != (B, C4 // 4, *pre.shape[2:]) or (groups and C4 % groups) or groups < 0:
        raise ValueError(f"expected pre (B, 4C, *S) and c (B, C, *S) with groups dividing 4C, got "
                         f"{tuple(pre.shape)}, {tuple(c.shape)}, groups={groups}")
    for name in ("weight", "shift"):
        t = tensors[name]
        if t is not None and t.shape != (C4,):
            raise ValueError(f"expected {name} of shape ({C4},), one value per gate channel, got {tuple(t.shape)}")
    given = {name: t for name, t in tensors.items() if t is not None}
    for name, t in given.items():
        if not t.is_floating_point():
            raise ValueError(f"expected floating-point tensors, got {name} of dtype {t.dtype}")
    params_ok = all(t.dtype in (pre.dtype, torch.float32) for t in (weight, shift) if t is not None)
    half_params = pre.dtype in (torch.float16, torch.bfloat16) or all(
        t.dtype == pre.dtype for t in (weight, shift) if t is not None)
    if c.dtype != pre.dtype or not (params_ok and half_params) or len({t.device for t in given.values()}) > 1:
        got = ", ".join(f"{name} {t.dtype} on {t.device}" for name, t in given.items())
        raise ValueError(f"expected pre and c of one dtype (weight and shift of it too, or float32 for a half "
                         f"pre) on one device, got {got}")


def triton_lstm_gates(pre: Tensor, c: Tensor, weight: Tensor | None = None, shift: Tensor | None = None, *,
                      groups: int = 0, eps: float = 1e-5, rms: bool = False) -> tuple[Tensor, Tensor]:
    """The LSTM gate block with a per-(sample, group) gate norm, as Triton kernels (see the module docstring).

    Args:
        pre: the gate pre-activations ``(B, 4C, *S)``, channels first, gates in the order i, f, g, o.
        c: the previous cell state ``(B, C, *S)``.
        weight: γ ``(4C,)``, or ``None`` for none. Default: ``None``.
        shift: β ``(4C,)`` added after the norm (the norm's or the cell's bias), or ``None``. Default: ``None``.
        groups: statistics groups over the 4C channels (4 for per-gate layer norm, 4G for ``group:G``); 0 for no
            norm (then ``pre`` already holds any bias). Default: ``0``.
        eps: added to the variance. Default: ``1e-5``.
        rms: root-mean-square statistics (no centring). Default: ``False``.

    Returns:
        ``(h, c)``, each ``(B, C, *S)``.

    Example (run on CUDA, or on CPU with ``TRITON_INTERPRET=1`` set before the first call)::

        >>> pre, c = torch.randn(2, 8, 3, 3), torch.randn(2, 2, 3, 3)
        >>> h, c1 = triton_lstm_gates(pre, c, torch.ones(8), torch.zeros(8), groups=4)  # doctest: +SKIP
    """
    _check_gate_inputs(pre, c, weight, shift, groups)
    why = triton_unavailable(pre.device)
    if why:
        raise ValueError(why)
    B, C4 = pre.shape[:2]
    S = math.prod(pre.shape[2:])
    flat = pre.reshape(B, C4, S).contiguous()  # (B, 4C, S)
    state = c.reshape(B, C4 // 4, S).contiguous()  # (B, C, S)
    h, c_new = _TritonLSTMGates.apply(  # type: ignore[no-untyped-call]  # torch's apply
        flat, state, weight, shift, _Norm(groups, float(eps), rms))
    return h.reshape(c.shape), c_new.reshape(c.shape)


class TritonBackend(GateBackend):
    """The LSTM gate block as Triton kernels (:func:`triton_lstm_gates`), forward and backward, for a joint per-gate
    norm with per-(sample, group) statistics: ``none``, ``layer``, ``group:G``, ``rms``. Runs on CUDA, and on CPU
    under ``TRITON_INTERPRET=1`` (the tests). Opt-in: ``"auto"`` keeps ``compiled`` on CUDA until a GPU
    measurement (``make gpu-check``) shows this is faster. Masks need no special care: the statistics are per
    sample, and the layer keeps padded samples' states."""

    name = "triton"
    priority = -1

    def prefers(self, device: torch.device) -> bool:
        return False

    def unsupported(self, cell: GateCell) -> str | None:
        block = fused_block(cell)
        why = triton_unavailable() or (block if isinstance(block, str) else None)
        if why is None and not isinstance(block, str) and block.normalized and block.stats is None:
            why = (f"it needs a joint gate norm with per-sample statistics over channel groups and positions "
                   f"(none, layer, group:G, rms), got norm={cell.norm_spec!r}")
        return why

    def __call__(self, cell: GateCell, gx: Tensor, gh: Tensor | None, state: State, t: int,
                 mask: Tensor | None) -> State:
        block = fused_block(cell)
        assert not isinstance(block, str)  # unsupported() said so at construction
        pre = gx if gh is None else gx + gh
        view = block.stats
        if view is None:
            return triton_lstm_gates(pre, state[1], None, block.bias)
        shift = view.bias if view.bias is not None else block.bias
        return triton_lstm_gates(pre, state[1], view.weight, shift, groups=view.groups, eps=view.eps, rms=view.rms)


register_backend(TritonBackend())
