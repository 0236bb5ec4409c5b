"""One training run over several processes: torchrun's process group and ``DistributedDataParallel``.

``torchrun --nproc_per_node N -m normrnn train ...`` starts N processes whose environment (``RANK``,
``WORLD_SIZE``, ``MASTER_ADDR``, ...) describes the group; :func:`init_from_env` joins it. ``normrnn study
--nproc N`` starts them itself through torchrun's own launcher (:func:`launch`). Each process trains on its
slice of every global batch; gradients are averaged by DDP and batch-norm statistics are summed across
ranks (:func:`normrnn.norms.convert_sync_batchnorm`), so a run equals one process on the global batch.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import torch
import torch.distributed as dist

__all__ = ["Rank", "barrier", "broadcast", "current", "global_mean", "init_from_env", "launch", "local_batch_size"]

T = TypeVar("T")


@dataclass(frozen=True)
class Rank:
    """Where this process stands in the group; the default is a single process."""

    rank: int = 0  # 0 .. world_size - 1
    world_size: int = 1  # processes in the group
    local_rank: int = 0  # the process's index on its machine: its GPU

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, results and reports."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def device(self, device_type: str) -> torch.device:
        """``cpu``, or this process's own GPU for ``cuda``."""
        if device_type == "cuda" and self.active:
            return torch.device("cuda", self.local_rank)
        return torch.device(device_type)


def current() -> Rank:
    """The rank of this process in the initialized default group, or a single process."""
    if not (dist.is_available() and dist.is_initialized()):
        return Rank()
    return Rank(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))


def init_from_env(device: str = "cpu") -> Rank:
    """Join the process group that torchrun's environment describes (nccl for ``cuda``, else gloo).

    Without ``WORLD_SIZE`` > 1 in the environment, or when a group already exists, it changes nothing.
    """
    if env_world_size() <= 1 or (dist.is_available() and dist.is_initialized()):
        return current()
    if not dist.is_available():
        raise ValueError("expected a torch build with torch.distributed, got one without it")
    if device == "cuda":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
    dist.init_process_group("nccl" if device == "cuda" else "gloo")
    return current()


def env_world_size() -> int:
    """``$WORLD_SIZE`` (torchrun's), 1 when unset; a clear error when it is not a positive int."""
    text = os.environ.get("WORLD_SIZE", "1")
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise ValueError(f"expected the environment variable WORLD_SIZE to be a positive int, got {text!r}")
    return value


def local_batch_size(batch_size: int, world_size: int) -> int:
    """Each rank's share of the global batch; the global batch must split evenly."""
    if batch_size % world_size:
        raise ValueError(f"expected batch_size divisible by the number of processes ({world_size}), "
                         f"got batch_size={batch_size}")
    return batch_size // world_size


def barrier(rank: Rank) -> None:
    if rank.active:
        dist.barrier()


def broadcast(value: T, rank: Rank) -> T:
    """Rank 0's ``value`` on every rank (any picklable object)."""
    if not rank.active:
        return value
    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def global_mean(value: torch.Tensor, count: int, rank: Rank) -> float:
    """The mean over the global batch of per-rank means ``value`` over ``count`` samples each."""
    if not rank.active:
        return float(value)
    total = torch.stack([value.double() * count, value.new_tensor(count, dtype=torch.float64)])
    dist.all_reduce(total)
    return float(total[0] / total[1])


def launch(nproc: int, fn: Callable[..., Any], *args: Any) -> dict[int, Any]:
    """Run ``fn(*args)`` in ``nproc`` local processes with torchrun's launcher (``torchrun --standalone``);
    returns each rank's return value. A failing rank stops all of them and raises ``ChildFailedError``."""
    from torch.distributed.launcher.api import LaunchConfig, elastic_launch

    config = LaunchConfig(min_nodes=1, max_nodes=1, nproc_per_node=nproc, run_id=f"normrnn-{uuid.uuid4().hex[:8]}",
                          rdzv_backend="c10d", rdzv_endpoint="localhost:0", max_restarts=0, start_method="spawn")
    results: dict[int, Any] = elastic_launch(config, fn)(*args)
    return results
