"""The gate-backend registry: how a cell runs its gate block, chosen by name or by ``"auto"``.

A backend is an object with a ``name``, ``unsupported(cell) -> reason | None`` (checked when a cell names
it), ``prefers(device)`` and ``priority`` (what ``"auto"`` picks: the highest-priority backend that prefers
the device and supports the cell), ``falls_back(cell, mask)`` (a call it leaves to eager, e.g. data-dependent
statistics under ``torch.compile``), and a call ``backend(cell, gx, gh, state, t, mask) -> new state``.

Cells ask the registry (:func:`resolve_backend`), never test backend names themselves. A backend sees a cell
only through the protocol of :mod:`.cell` (:class:`~normrnn.kernels.cell.GateCell`): the eager ``gate_block``,
``norm_spec`` (for messages), ``training`` and ``modules()``; a fused kernel also asks a
:class:`~normrnn.kernels.cell.FusableCell` for its ``fused_block()``, and a cell with a ``gate_probe`` set runs
eagerly.

To add a backend: one module of this package (as :mod:`.compile`, :mod:`.fused` and :mod:`.triton` are) with its
class and a :func:`register_backend` call on an instance, imported by ``kernels/__init__.py``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor

from .._checks import one_of
from .cell import GateCell, State

__all__ = ["GateBackend", "auto_backend", "backend_names", "get_backend", "register_backend",
           "registered_backend", "resolve_backend", "unregister_backend"]


class GateBackend:
    """Base of the gate backends: eager by default; subclasses override what differs."""

    name: str = "eager"
    priority: int = 0  # "auto" picks the highest that prefers the device and supports the cell

    def prefers(self, device: torch.device) -> bool:
        """Whether ``"auto"`` may pick this backend on ``device``."""
        return True

    def unsupported(self, cell: GateCell) -> str | None:
        """Why this backend cannot run ``cell`` at all, or ``None`` when it can."""
        return None

    def falls_back(self, cell: GateCell, mask: Tensor | None) -> bool:
        """Whether this call must run eagerly instead (data-dependent or cross-process work)."""
        return False

    def __call__(self, cell: GateCell, gx: Tensor, gh: Tensor | None, state: State, t: int,
                 mask: Tensor | None) -> State:
        new: State = cell.gate_block(gx, gh, state, t, mask)
        return new

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"


class EagerBackend(GateBackend):
    """PyTorch ops, one after another: the reference every other backend is tested against."""


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


def backend_names() -> tuple[str, ...]:
    """``"auto"`` and every registered backend, in registration order."""
    return ("auto", *_BACKENDS)


def get_backend(name: str) -> GateBackend:
    """The backend registered as ``name``; a ``ValueError`` listing the valid names otherwise."""
    one_of("backend", name, backend_names())
    return _BACKENDS[name] if name != "auto" else EAGER


def auto_backend(device: torch.device, cell: GateCell | None = None) -> str:
    """The name ``"auto"`` resolves to on ``device`` (for ``cell``, when given): compiled on CUDA with Triton,
    eager elsewhere."""
    for backend in _RANKED:
        if backend.prefers(device) and (cell is None or backend.unsupported(cell) is None):
            return backend.name
    return EAGER.name


def resolve_backend(name: str, cell: GateCell, device: torch.device, mask: Tensor | None = None) -> GateBackend:
    """The backend that runs this call of ``cell``'s gate block: ``name`` with ``"auto"`` resolved, and eager
    where the call needs it (a gate probe observes eager gates; a backend may leave a call to eager)."""
    if getattr(cell, "gate_probe", None) is not None:  # only gated cells have one
        return EAGER
    backend = _BACKENDS[auto_backend(device, cell) if name == "auto" else name]
    return EAGER if backend.falls_back(cell, mask) else backend
