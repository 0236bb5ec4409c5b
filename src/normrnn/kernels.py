r"""Fast gate blocks: a compiled block for every cell and norm, and a fused, memory-light LSTM block.

:class:`CompiledBlock` runs a cell's gate block (the ``gx + gh`` sum, the gate norms, the nonlinearities
and the state update) under ``torch.compile(fullgraph=True)``: inductor fuses it, forward and backward,
into a few kernels. It never falls back to eager quietly: a graph break or dynamo's recompile limit
raises inside, and the block warns once (:class:`CompileFallbackWarning`) and runs eagerly from then on.

:func:`fused_lstm_gates` computes exactly :func:`normrnn.cells.lstm_gates` with a per-gate group norm
(``layer`` or ``group:G`` over the channel-first gate tensor) and no peepholes or cell norm, but as one
``torch.autograd.Function`` that saves only its inputs and the norm's mean and rstd, and recomputes the
normalized gates in backward (Chen et al. 2016, arXiv:1604.06174). The eager block saves every
intermediate: the normalized tensor, four activations and the new cell state.

.. math::
    a = \mathrm{GN}_G(\text{pre}; \gamma, \beta), \quad [i, f, g, o] = [\sigma, \sigma, \tanh, \sigma](a), \quad
    c' = f c + i g, \quad h' = o \tanh(c')

Backward, with :math:`\bar x` the upstream gradients:

.. math::
    \bar c_{tot} = \bar c' + \bar h' o (1 - \tanh^2 c'), \quad
    \bar a = [\bar c_{tot} g \, i(1-i),\ \bar c_{tot} c \, f(1-f),\ \bar c_{tot} i (1-g^2),\ \bar h' \tanh c' \, o(1-o)]

then the native group-norm backward maps :math:`\bar a` to the gradients of pre, γ and β, and
:math:`\bar c = \bar c_{tot} f`.
"""

from __future__ import annotations

import importlib.util
import math
import types
import warnings
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

__all__ = ["BACKENDS", "CompileFallbackWarning", "CompiledBlock", "auto_backend", "configure_compile",
           "fused_lstm_gates"]

# how a cell runs its gate block
BACKENDS = ("auto", "eager", "compiled", "fused")


class CompileFallbackWarning(UserWarning):
    """A compiled gate block could not stay compiled and runs eagerly from now on."""


_COMPILE_OPTIONS: dict[str, Any] = {"backend": "inductor", "mode": None}
_BLOCKS: list[CompiledBlock] = []


def configure_compile(*, backend: str | Callable = "inductor", mode: str | None = None) -> None:
    """The ``torch.compile`` backend and mode of every compiled gate block; resets blocks compiled before.

    ``backend="aot_eager"`` traces and differentiates like inductor without generating code (fast to
    build: the tests use it); ``mode="max-autotune"`` searches kernel configurations on GPU.
    """
    _COMPILE_OPTIONS.update(backend=backend, mode=mode)
    for block in _BLOCKS:
        block.reset()


def auto_backend(device: torch.device) -> str:
    """``"compiled"`` on CUDA with Triton, else ``"eager"``.

    On CPU, inductor needs about 30 s per gate-block graph on 2 cores and saves 3-4 ms of a ~140 ms
    ConvLSTM step (docs/performance.md), which pays only in runs of thousands of steps: ask for it.
    """
    if device.type == "cuda" and importlib.util.find_spec("triton") is not None:
        return "compiled"
    return "eager"


class CompiledBlock:
    """``fn`` under ``torch.compile(fullgraph=True)``, falling back to ``fn`` loudly, never quietly.

    Calls name a ``key``, e.g. a cell's configuration. Each key gets its own copy of ``fn`` and so its own
    dynamo cache and recompile budget: a study that builds a dozen differently normalized models in one
    process does not exhaust the budget, and cells built alike share one graph. A key that cannot stay
    compiled (a graph break, or dynamo's recompile limit) warns once with :class:`CompileFallbackWarning` and
    runs ``fn`` eagerly from then on. Inside an outer ``torch.compile`` or ``torch.export`` the block is traced
    as plain code.

    Example::

        >>> block = CompiledBlock(lambda x: torch.sigmoid(x) * x, name="silu")
        >>> configure_compile(backend="aot_eager")
        >>> torch.allclose(block("fp32", torch.ones(2)), torch.sigmoid(torch.ones(2)))
        True
        >>> configure_compile()
    """

    def __init__(self, fn: Callable[..., Any], *, name: str) -> None:
        self.fn = fn
        self.name = name
        self.failures: dict[Hashable, str] = {}  # why a key runs eagerly, once it does
        self._compiled: dict[Hashable, Callable[..., Any]] = {}
        _BLOCKS.append(self)

    def reset(self) -> None:
        """Forget the compiled code and any failure: the next call compiles again."""
        self._compiled.clear()
        self.failures.clear()

    def __call__(self, key: Hashable, *args: Any) -> Any:
        if key in self.failures or torch.compiler.is_compiling():
            return self.fn(*args)
        compiled = self._compiled.get(key)
        if compiled is None:
            compiled = self._compiled[key] = torch.compile(_own_code(self.fn, len(self._compiled)), fullgraph=True,
                                                           **_COMPILE_OPTIONS)
        try:
            with torch._dynamo.config.patch(fail_on_recompile_limit_hit=True):
                return compiled(*args)
        except (torch._dynamo.exc.TorchDynamoException, torch._dynamo.exc.FailOnRecompileLimitHit) as e:
            # raised while tracing or guarding, before any of the block ran: running it eagerly is safe
            self.failures[key] = f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}"
        warnings.warn(f"normrnn: the compiled {self.name} gate block runs eagerly from now on for {key} "
                      f"({self.failures[key]}); set backend='eager' to silence this, or see "
                      "TORCH_LOGS=recompiles,graph_breaks", CompileFallbackWarning, stacklevel=3)
        return self.fn(*args)


def _own_code(fn: Callable[..., Any], tag: int) -> Callable[..., Any]:
    """``fn`` with a code object of its own: dynamo keeps its cache and recompile count per code object."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


def _flat(x: Tensor) -> tuple[int, int, int]:
    """``(N, C, HxW)`` of a channel-first tensor ``(B, C, *S)``."""
    return x.shape[0], x.shape[1], math.prod(x.shape[2:])


def _gates(a: Tensor, c: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor, Tensor]:
    i, f, g, o = a.chunk(4, dim=1)  # each (B, C, *S)
    i, f, g, o = torch.sigmoid(i), torch.sigmoid(f), torch.tanh(g), torch.sigmoid(o)
    c_new = f * c + i * g
    return i, f, g, o, c_new, torch.tanh(c_new)


class _FusedLSTMGates(torch.autograd.Function):
    @staticmethod
    def forward(ctx, pre: Tensor, c: Tensor, weight: Tensor, bias: Tensor, groups: int,  # type: ignore[override]
                eps: float) -> tuple[Tensor, Tensor]:
        N, C, HxW = _flat(pre)
        a, mean, rstd = torch.native_group_norm(pre, weight, bias, N, C, HxW, groups, eps)
        _, _, _, o, c_new, tanh_c = _gates(a, c)
        ctx.save_for_backward(pre, c, weight, bias, mean, rstd)
        ctx.groups = groups
        return o * tanh_c, c_new

    @staticmethod
    def backward(ctx, dh: Tensor, dc_new: Tensor):  # type: ignore[override]
        pre, c, weight, bias, mean, rstd = ctx.saved_tensors
        N, C, HxW = _flat(pre)
        G = ctx.groups
        # recompute the normalized gates from the saved statistics
        xg = pre.reshape(N, G, -1)  # (N, G, C/G·HxW)
        xhat = ((xg - mean[..., None]) * rstd[..., None]).reshape(pre.shape)
        shape = (1, C) + (1,) * (pre.dim() - 2)
        a = xhat.to(pre.dtype) * weight.view(shape).to(pre.dtype) + bias.view(shape).to(pre.dtype)  # as forward
        i, f, g, o, _, tanh_c = _gates(a, c)
        dc_total = dh * o * (1 - tanh_c * tanh_c)
        if dc_new is not None:
            dc_total = dc_total + dc_new
        da = torch.cat([dc_total * g * i * (1 - i), dc_total * c * f * (1 - f), dc_total * i * (1 - g * g),
                        dh * tanh_c * o * (1 - o)], dim=1).to(pre.dtype)  # (B, 4C, *S)
        dpre, dweight, dbias = torch.ops.aten.native_group_norm_backward(
            da, pre, mean, rstd, weight, N, C, HxW, G, [True, True, True])
        return dpre, (dc_total * f).to(c.dtype), dweight.to(weight.dtype), dbias.to(bias.dtype), None, None


def fused_lstm_gates(pre: Tensor, c: Tensor, weight: Tensor, bias: Tensor, *, groups: int,
                     eps: float = 1e-5) -> tuple[Tensor, Tensor]:
    """The LSTM gate block with a per-gate group norm as one memory-light autograd op.

    Args:
        pre: the gate pre-activations, ``(B, 4C, *S)``, channels first.
        c: the previous cell state, ``(B, C, *S)``.
        weight, bias: the norm's γ and β, ``(4C,)`` each.
        groups: the number of norm groups over the 4C channels (4 for per-gate layer norm).
        eps: added to the variance. Default: ``1e-5``.

    Returns:
        ``(h, c)``, each ``(B, C, *S)``.

    Example::

        >>> pre, c = torch.randn(2, 8, 3, 3), torch.randn(2, 2, 3, 3)
        >>> h, c1 = fused_lstm_gates(pre, c, torch.ones(8), torch.zeros(8), groups=4)
        >>> h.shape
        torch.Size([2, 2, 3, 3])
    """
    if pre.shape[1] % groups or pre.shape[1] != 4 * c.shape[1]:
        raise ValueError(f"expected pre (B, 4C, *S) for c (B, C, *S) and groups dividing 4C, got "
                         f"{tuple(pre.shape)}, {tuple(c.shape)}, groups={groups}")
    return _FusedLSTMGates.apply(pre, c, weight, bias, groups, eps)
