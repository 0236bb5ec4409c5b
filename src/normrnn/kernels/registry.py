"""The gate-backend registry: how a cell runs its gate block, chosen by name or by ``"auto"``.

A backend is an object with a ``name``, ``unsupported(cell) -> reason | None`` (checked when a cell names
it), ``prefers(device)`` and ``priority`` (what ``"auto"`` picks: the highest-priority backend that prefers
the device and supports the cell), ``falls_back(cell, mask)`` (a call it leaves to eager, e.g. data-dependent
statistics under ``torch.compile``), and a call ``backend(cell, gx, gh, state, t, mask) -> new state``.

Cells ask the registry (:func:`resolve_backend`), never test backend names themselves. A backend sees a cell
only through this duck-typed surface: ``cell.kind`` (``"lstm"``/``"gru"``), ``cell.gate_block(...)`` (the
eager block), ``cell.compile_key()``, ``cell.traceable(masked=...)``, ``cell.gate_probe``, and for fused
blocks ``cell.norm_inputs``, ``cell.norm_gates``, ``cell.peephole``, ``cell.norm_cell``.

To add a backend: write its class here (or in its own module of this package) and call
:func:`register_backend` on an instance.
"""

from __future__ import annotations

import contextlib
import functools
import importlib.util
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import torch
from torch import Tensor

from .._checks import one_of
from .compile import CompiledBlock
from .fused import fused_lstm_gates

if TYPE_CHECKING:  # cells import this module, so only the type checker imports them here
    from ..cells import RecurrentCell
    from ..cells.states import CellState

__all__ = ["GateBackend", "TritonBackend", "auto_backend", "backend_names", "get_backend", "register_backend",
           "registered_backend", "resolve_backend", "unregister_backend"]


@functools.cache
def has_triton() -> bool:
    """Whether Triton can be imported (looked up once: ``find_spec`` scans ``sys.path``)."""
    return importlib.util.find_spec("triton") is not None


class GateBackend:
    """Base of the gate backends: eager by default; subclasses override what differs."""

    name: str = "eager"
    priority: int = 0  # "auto" picks the highest that prefers the device and supports the cell

    def prefers(self, device: torch.device) -> bool:
        """Whether ``"auto"`` may pick this backend on ``device``."""
        return True

    def unsupported(self, cell: RecurrentCell) -> str | None:
        """Why this backend cannot run ``cell`` at all, or ``None`` when it can."""
        return None

    def falls_back(self, cell: RecurrentCell, mask: Tensor | None) -> bool:
        """Whether this call must run eagerly instead (data-dependent or cross-process work)."""
        return False

    def __call__(self, cell: RecurrentCell, gx: Tensor, gh: Tensor | None, state: CellState, t: int,
                 mask: Tensor | None) -> CellState:
        return cell.gate_block(gx, gh, state, t, mask)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class EagerBackend(GateBackend):
    """PyTorch ops, one after another: the reference every other backend is tested against."""


def _gate_block(cell: RecurrentCell, *args: Any) -> CellState:
    return cell.gate_block(*args)


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

    def falls_back(self, cell: RecurrentCell, mask: Tensor | None) -> bool:
        # masked or synced batch statistics: data-dependent counts and collectives, eager by design
        return not cell.traceable(masked=mask is not None)

    def __call__(self, cell: RecurrentCell, gx: Tensor, gh: Tensor | None, state: CellState, t: int,
                 mask: Tensor | None) -> CellState:
        return self.block(cell.compile_key(), cell, gx, gh, state, t, mask)


class FusedBackend(GateBackend):
    """One autograd op for the LSTM gate block with a per-gate group or layer norm (:mod:`.fused`): it saves
    only the inputs and the statistics, about half the activation memory of eager. Opt-in: never ``"auto"``."""

    name = "fused"
    priority = -1

    def prefers(self, device: torch.device) -> bool:
        return False

    def unsupported(self, cell: RecurrentCell) -> str | None:
        why = _lstm_block_unsupported(cell, "fused")
        norm = getattr(cell, "norm_gates", None)
        if why is None and getattr(norm, "as_group_norm", lambda: None)() is None:
            why = (f"it needs a joint group or layer gate norm with a per-channel scale and shift, "
                   f"got norm={cell.norm_spec!r}")
        return why

    def __call__(self, cell: RecurrentCell, gx: Tensor, gh: Tensor | None, state: CellState, t: int,
                 mask: Tensor | None) -> CellState:
        g = cell.norm_gates.as_group_norm()
        pre = gx if gh is None else gx + gh
        return fused_lstm_gates(pre, state[1], g.weight, g.bias, groups=g.groups, eps=g.eps)


def _lstm_block_unsupported(cell: RecurrentCell, what: str) -> str | None:
    """Why an LSTM-only fused block cannot run ``cell`` (beyond its norm), or ``None``."""
    if cell.kind != "lstm":
        return f"there is no {what} {cell.kind.upper()} block yet"
    if cell.norm_inputs != "joint":
        return f"it needs norm_inputs='joint', got {cell.norm_inputs!r}"
    if (cell.activation, cell.recurrent_activation) != ("tanh", "sigmoid"):
        return (f"it computes tanh and sigmoid only, got activation={cell.activation!r}, "
                f"recurrent_activation={cell.recurrent_activation!r}")
    if cell.peephole or cell.norm_cell != "none":
        return f"it has no peepholes or cell norm, got peephole={cell.peephole}, norm_cell={cell.norm_cell!r}"
    return None


class TritonBackend(GateBackend):
    """The LSTM gate block as Triton kernels (:mod:`.triton`), forward and backward, for a joint per-gate norm
    with per-(sample, group) statistics: ``none``, ``layer``, ``group:G``, ``rms``. Runs on CUDA, and on CPU
    under ``TRITON_INTERPRET=1`` (the tests). Opt-in: ``"auto"`` keeps ``compiled`` on CUDA until a GPU
    measurement (``make gpu-check``) shows this is faster. Masks need no special care: the statistics are per
    sample, and the layer keeps padded samples' states."""

    name = "triton"
    priority = -1

    def prefers(self, device: torch.device) -> bool:
        return False

    def unsupported(self, cell: RecurrentCell) -> str | None:
        from .triton import triton_unavailable

        why = triton_unavailable() or _lstm_block_unsupported(cell, "Triton")
        if why is None and cell.normalized and _grouped_stats(cell) is None:
            why = (f"it needs a joint gate norm with per-sample statistics over channel groups and positions "
                   f"(none, layer, group:G, rms), got norm={cell.norm_spec!r}")
        return why

    def __call__(self, cell: RecurrentCell, gx: Tensor, gh: Tensor | None, state: CellState, t: int,
                 mask: Tensor | None) -> CellState:
        from .triton import triton_lstm_gates

        pre = gx if gh is None else gx + gh
        view = _grouped_stats(cell) if cell.normalized else None
        if view is None:
            return triton_lstm_gates(pre, state[1], None, cell.gate_bias)
        shift = view.bias if view.bias is not None else cell.gate_bias
        return triton_lstm_gates(pre, state[1], view.weight, shift, groups=view.groups, eps=view.eps, rms=view.rms)


def _grouped_stats(cell: RecurrentCell) -> Any:
    """The joint gate norm as per-(sample, group) statistics (:class:`normrnn.norms.GroupedStatsView`), or None."""
    norm = getattr(cell, "norm_gates", None)
    return getattr(norm, "as_grouped_stats", lambda: None)()


_BACKENDS: dict[str, GateBackend] = {}
_RANKED: list[GateBackend] = []  # by priority, highest first: what "auto" tries, kept at registration (not per step)


def register_backend(backend: GateBackend) -> GateBackend:
    """Add ``backend`` under its name; ``"auto"`` and a name taken twice are errors."""
    if backend.name == "auto" or backend.name in _BACKENDS:
        raise ValueError(f"gate backend name {backend.name!r} is reserved or taken")
    _BACKENDS[backend.name] = backend
    _rank()
    return backend


def unregister_backend(name: str) -> GateBackend:
    """Remove the backend registered as ``name``; returns it (for tests and plugins, see
    :func:`registered_backend`). The built-in ``eager`` backend stays."""
    if name == EAGER.name or name not in _BACKENDS:
        raise ValueError(f"expected a registered backend other than 'eager', got {name!r}; registered: "
                         f"{', '.join(_BACKENDS)}")
    backend = _BACKENDS.pop(name)
    _rank()
    return backend


@contextlib.contextmanager
def registered_backend(backend: GateBackend) -> Iterator[GateBackend]:
    """Register ``backend`` for the duration of a ``with`` block."""
    register_backend(backend)
    try:
        yield backend
    finally:
        unregister_backend(backend.name)


def _rank() -> None:
    _RANKED[:] = sorted(_BACKENDS.values(), key=lambda b: -b.priority)


EAGER = register_backend(EagerBackend())
register_backend(CompiledBackend())
register_backend(FusedBackend())
register_backend(TritonBackend())


def backend_names() -> tuple[str, ...]:
    """``"auto"`` and every registered backend, in registration order."""
    return ("auto", *_BACKENDS)


def get_backend(name: str) -> GateBackend:
    """The backend registered as ``name``; a ``ValueError`` listing the valid names otherwise."""
    one_of("backend", name, backend_names())
    return _BACKENDS[name] if name != "auto" else EAGER


def auto_backend(device: torch.device, cell: RecurrentCell | None = None) -> str:
    """The name ``"auto"`` resolves to on ``device`` (for ``cell``, when given): compiled on CUDA with Triton,
    eager elsewhere."""
    for backend in _RANKED:
        if backend.prefers(device) and (cell is None or backend.unsupported(cell) is None):
            return backend.name
    return EAGER.name


def resolve_backend(name: str, cell: RecurrentCell, device: torch.device, mask: Tensor | None = None) -> GateBackend:
    """The backend that runs this call of ``cell``'s gate block: ``name`` with ``"auto"`` resolved, and eager
    where the call needs it (a gate probe observes eager gates; a backend may leave a call to eager)."""
    if cell.gate_probe is not None:
        return EAGER
    backend = _BACKENDS[auto_backend(device, cell) if name == "auto" else name]
    return EAGER if backend.falls_back(cell, mask) else backend
