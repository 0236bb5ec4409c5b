"""Measuring what a forward pass holds: the activation memory autograd saves, the same way on every device.

Shared by ``normrnn bench`` and the study's per-run rows.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor

__all__ = ["cuda_peak_mb", "saved_tensor_bytes"]


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs: the activation memory
    a training step holds, measured the same way on every device.

    Example::

        >>> w = torch.ones(256, requires_grad=True)
        >>> saved_tensor_bytes(lambda: (w * torch.ones(256)).sum())  # saves the float32 operand
        1024
    """
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        # a detached alias, never t itself: an op that saves its own output (sigmoid, tanh) would otherwise make
        # output -> grad_fn -> saved output a cycle that autograd never frees (it leaked ~10 MB per study run)
        return t.detach()

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


def cuda_peak_mb(run: Callable[[], object], device: torch.device) -> float:
    """The CUDA allocator's peak during ``run()``, above what was allocated before it, in MiB."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20
