"""Gate blocks and the registry that picks one per call: eager, compiled, fused and triton.

- :mod:`.registry`: the :class:`GateBackend` objects, :func:`register_backend`, ``"auto"`` resolution;
- :mod:`.compile`: :class:`CompiledBlock`, ``torch.compile(fullgraph=True)`` with a loud fallback;
- :mod:`.fused`: :func:`fused_lstm_gates`, one memory-light autograd op for a group-normalized LSTM block;
- :mod:`.triton`: :func:`triton_lstm_gates`, the same block as Triton kernels (CUDA, or CPU under
  ``TRITON_INTERPRET=1``); Triton itself is imported only when a kernel first runs.
"""

from .compile import CompiledBlock, CompileFallbackWarning, configure_compile
from .fused import fused_lstm_gates
from .registry import (
    GateBackend,
    TritonBackend,
    auto_backend,
    backend_names,
    get_backend,
    register_backend,
    registered_backend,
    resolve_backend,
    unregister_backend,
)
from .triton import triton_lstm_gates, triton_unavailable

__all__ = [
    "CompileFallbackWarning",
    "CompiledBlock",
    "GateBackend",
    "TritonBackend",
    "auto_backend",
    "backend_names",
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
