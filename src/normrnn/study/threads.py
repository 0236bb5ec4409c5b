"""How many torch threads each run trains with: the study's threads split among its side-by-side runs."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from .config import StudyConfig

__all__ = ["threads_of_runs", "worker_threads"]


def worker_threads(config: StudyConfig, workers: int | None = None) -> int:
    """Torch threads for each of ``workers`` processes (default: ``config.workers``): the study's threads (torch's
    default when unset) split evenly, at least one each."""
    import torch

    return max(1, (config.threads or torch.get_num_threads()) // (workers or config.workers))


@contextlib.contextmanager
def threads_of_runs(config: StudyConfig, workers: int | None = None) -> Iterator[None]:
    """Torch's thread count inside the block set to what each run of ``config`` trains with (the study's threads
    split among its ``workers``, default ``config.workers``); unchanged when the study sets neither. Timings taken
    inside speak for the runs."""
    import torch

    before = torch.get_num_threads()
    if config.threads is not None or config.workers > 1:
        torch.set_num_threads(worker_threads(config, workers))
    try:
        yield
    finally:
        torch.set_num_threads(before)
