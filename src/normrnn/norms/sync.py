"""Cross-process statistics: differentiable sums over ``torch.distributed`` ranks, and the converter that
switches a model's batch norms to them."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
from torch import Tensor, nn

__all__ = ["convert_sync_batchnorm", "cross_process_sum"]


def cross_process_sum(process_group: object | None = None) -> Callable[[Tensor], Tensor] | None:
    """A differentiable sum over the ranks of ``process_group`` (default: the world), or ``None`` when there is
    nothing to sum over: no initialized process group, or a group of one."""
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return None
    group = process_group if process_group is not None else dist.group.WORLD
    if dist.get_world_size(group) == 1:  # type: ignore[arg-type]  # a ProcessGroup, typed object for users
        return None
    return lambda t: cast(Tensor, _AllReduceSum.apply(t, group))  # type: ignore[no-untyped-call]  # torch's apply


def convert_sync_batchnorm(module: nn.Module, process_group: object | None = None) -> nn.Module:
    """Switch every normrnn batch norm in ``module`` to cross-rank statistics.

    normrnn's counterpart of :meth:`torch.nn.SyncBatchNorm.convert_sync_batchnorm`, in place: every norm with
    a ``sync`` switch (:class:`~normrnn.BatchNorm`, :class:`~normrnn.RecurrentBatchNorm`) gets ``sync=True``
    and ``process_group``, so under ``DistributedDataParallel`` the statistics, the running averages and the
    gradients equal those of one process over the global batch. Other norms are per-sample and need nothing.
    Outside an initialized process group a synced norm is a plain one.

    Example::

        >>> from normrnn import BatchNorm, LayerNorm
        >>> net = nn.Sequential(BatchNorm(4, layout="BC"), LayerNorm(4, layout="BC"))
        >>> [getattr(m, "sync", None) for m in convert_sync_batchnorm(net)]
        [True, None]
    """
    from .base import Norm

    for m in module.modules():
        if isinstance(m, Norm) and hasattr(m, "sync"):
            m.sync = True  # type: ignore[assignment]  # a batch norm's flag; nn.Module types it Tensor | Module
            m.process_group = process_group  # type: ignore[assignment]  # as sync
    return module


class _AllReduceSum(torch.autograd.Function):
    """Sum a tensor over ranks; the gradient of a sum of per-rank losses is the sum of their gradients."""

    @staticmethod
    def forward(ctx: Any, t: Tensor, group: object) -> Tensor:
        import torch.distributed as dist

        ctx.group = group
        out = t.clone()
        dist.all_reduce(out, group=group)
        return out

    @staticmethod
    def backward(ctx: Any, grad: Tensor) -> tuple[Tensor, None]:
        import torch.distributed as dist

        out = grad.contiguous().clone()
        dist.all_reduce(out, group=ctx.group)
        return out, None
