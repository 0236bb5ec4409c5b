"""Gate blocks and the registry that picks one per call: eager, compiled, fused and triton.

- :mod:`.cell`: :class:`GateCell`, what a backend sees of a cell, and :class:`FusedLSTMBlock`, a fused kernel's
  description of a cell's gate block;
- :mod:`.registry`: :class:`GateBackend`, the eager backend, :func:`register_backend`, ``"auto"`` resolution;
- :mod:`.compile`: :class:`CompiledBlock`, ``torch.compile(fullgraph=True)`` with a loud fallback, and the
  ``compiled`` backend;
- :mod:`.fused`: :func:`fused_lstm_gates`, one memory-light autograd op for a group-normalized LSTM block, and the
  ``fused`` backend;
- :mod:`.triton`: :func:`triton_lstm_gates`, the same block as Triton kernels (CUDA, or CPU under
  ``TRITON_INTERPRET=1``; Triton itself is imported only when a kernel first runs), and the ``triton`` backend.

Each backend registers itself in its own module, and this package imports every public module it holds: a new backend
is one new module, with no other file to edit.
"""

import importlib
import pkgutil

from .cell import FusableCell, FusedLSTMBlock, GateCell
from .compile import CompiledBlock, CompileFallbackWarning, compile_key, configure_compile
from .fused import fused_lstm_gates
from .registry import (
    GateBackend,
    auto_backend,
    backend_names,
    get_backend,
    register_backend,
    registered_backend,
    resolve_backend,
    unregister_backend,
)
from .triton import TritonBackend, triton_lstm_gates, triton_unavailable

# every public module registers its backend when imported (the explicit imports above are the names we export)
for _module in pkgutil.iter_modules(__path__):
    if not _module.name.startswith("_"):
        importlib.import_module(f"{__name__}.{_module.name}")

__all__ = [
    "CompileFallbackWarning",
    "CompiledBlock",
    "FusableCell",
    "FusedLSTMBlock",
    "GateBackend",
    "GateCell",
    "TritonBackend",
    "auto_backend",
    "backend_names",
    "compile_key",
    "configure_compile",
    "fused_lstm_gates",
    "get_backend",
    "register_backend",
    "registered_backend",
    "resolve_backend",
    "triton_lstm_gates",
    "triton_unavailable",
    "unregister_backend",
]
