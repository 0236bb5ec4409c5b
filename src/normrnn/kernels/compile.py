"""A compiled gate block for every cell and norm: ``torch.compile(fullgraph=True)``, never quietly eager.

:class:`CompiledBlock` runs a cell's gate block (the ``gx + gh`` sum, the gate norms, the nonlinearities
and the state update) under ``torch.compile(fullgraph=True)``: inductor fuses it, forward and backward,
into a few kernels. It never falls back to eager quietly: a graph break or dynamo's recompile limit
raises inside, and the block warns once (:class:`CompileFallbackWarning`) and runs eagerly from then on.
"""

from __future__ import annotations

import functools
import importlib.util
import types
import warnings
import weakref
from collections.abc import Callable, Hashable
from typing import Any

import torch
from torch import Tensor

from .._checks import first_line
from .cell import GateCell, State, traceable
from .registry import GateBackend, register_backend

__all__ = ["CompileFallbackWarning", "CompiledBackend", "CompiledBlock", "compile_key", "configure_compile",
           "has_triton"]


class CompileFallbackWarning(UserWarning):
    """A compiled gate block could not stay compiled and runs eagerly from now on."""


_COMPILE_OPTIONS: dict[str, Any] = {"backend": "inductor", "mode": None}
_BLOCKS: list[CompiledBlock] = []


def configure_compile(*, backend: str | Callable[..., Any] = "inductor", mode: str | None = None) -> None:
    """The ``torch.compile`` backend and mode of every compiled gate block; resets blocks compiled before.

    ``backend="aot_eager"`` traces and differentiates like inductor without generating code (fast to
    build: the tests use it); ``mode="max-autotune"`` searches kernel configurations on GPU.
    """
    _COMPILE_OPTIONS.update(backend=backend, mode=mode)
    for block in _BLOCKS:
        block.reset()


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
            self.failures[key] = f"{type(e).__name__}: {first_line(e)}"
        warnings.warn(f"normrnn: the compiled {self.name} gate block runs eagerly from now on for {key} "
                      f"({self.failures[key]}); set backend='eager' to silence this, or see "
                      "TORCH_LOGS=recompiles,graph_breaks", CompileFallbackWarning, stacklevel=3)
        return self.fn(*args)


def _own_code(fn: Callable[..., Any], tag: int) -> Callable[..., Any]:
    """``fn`` with a code object of its own: dynamo keeps its cache and recompile count per code object."""
    code = fn.__code__.replace(co_name=f"{fn.__code__.co_name}_{tag}")
    return types.FunctionType(code, fn.__globals__, code.co_name, fn.__defaults__, fn.__closure__)


@functools.cache
def has_triton() -> bool:
    """Whether Triton can be imported (looked up once: ``find_spec`` scans ``sys.path``)."""
    return importlib.util.find_spec("triton") is not None


_COMPILE_KEYS: weakref.WeakKeyDictionary[Any, dict[bool, str]] = weakref.WeakKeyDictionary()


def compile_key(cell: GateCell) -> str:
    """What names ``cell``'s compiled graph: its class, every option and child norm (the full repr), and the training
    mode. Cells with equal keys trace alike and share one graph. Kept per cell: a repr costs more than a step's
    dispatch."""
    keys = _COMPILE_KEYS.setdefault(cell, {})
    key = keys.get(cell.training)
    if key is None:
        key = keys[cell.training] = f"{cell!r} training={cell.training}"
    return key


def _gate_block(cell: GateCell, *args: Any) -> State:
    new: State = cell.gate_block(*args)
    return new


class CompiledBackend(GateBackend):
    """``torch.compile`` of the whole gate block, forward and backward, one graph per cell configuration.

    On CPU, inductor needs about 30 s per gate-block graph on 2 cores and saves 3-4 ms of a ~140 ms ConvLSTM
    step (docs/performance.md), which pays only in runs of thousands of steps: ``"auto"`` picks it on CUDA.
    """

    name = "compiled"
    priority = 10

    def __init__(self) -> None:
        # Cells with the same configuration share a compiled graph; dynamo guards on configuration and shapes.
        self.block = CompiledBlock(_gate_block, name="recurrent")

    def prefers(self, device: torch.device) -> bool:
        return device.type == "cuda" and has_triton()

    def falls_back(self, cell: GateCell, mask: Tensor | None) -> bool:
        # masked or synced batch statistics: data-dependent counts and collectives, eager by design
        return not traceable(cell, masked=mask is not None)

    def __call__(self, cell: GateCell, gx: Tensor, gh: Tensor | None, state: State, t: int,
                 mask: Tensor | None) -> State:
        new: State = self.block(compile_key(cell), cell, gx, gh, state, t, mask)
        return new


register_backend(CompiledBackend())
