"""Gate blocks and the registry that picks one per call: eager, compiled, fused (and the slot for Triton).

- :mod:`.registry`: the :class:`GateBackend` objects, :func:`register_backend`, ``"auto"`` resolution;
- :mod:`.compile`: :class:`CompiledBlock`, ``torch.compile(fullgraph=True)`` with a loud fallback;
- :mod:`.fused`: :func:`fused_lstm_gates`, one memory-light autograd op for a group-normalized LSTM block.
"""

from .compile import CompiledBlock, CompileFallbackWarning, configure_compile
from .fused import fused_lstm_gates
from .registry import GateBackend, auto_backend, backend_names, get_backend, register_backend, resolve_backend

__all__ = [
    "CompileFallbackWarning",
    "CompiledBlock",
    "GateBackend",
    "auto_backend",
    "backend_names",
    "configure_compile",
    "fused_lstm_gates",
    "get_backend",
    "register_backend",
    "resolve_backend",
]
