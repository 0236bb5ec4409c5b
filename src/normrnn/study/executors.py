"""Where a study's runs train: in this process (or each rank of a torchrun group), in a pool of local worker
processes, or as Ray tasks. Each executor trains a run through :func:`train_one`, so a run
is claimed, trained and recorded the same way everywhere."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from pathlib import Path

import torch

from .._checks import install_hint
from .._io import atomic_write_text
from .config import StudyConfig
from .datasets import Datasets, cached_datasets, load_datasets
from .directory import EPOCH_FILE, claim, epochs_done, epochs_in_progress, known_runs, recorded_precision, unfinished
from .distributed import Rank, broadcast
from .grid import RunSpec, planned_runs
from .pool import run_pool
from .progress import StudyProgress
from .results import append_result
from .train import train_run

__all__ = ["run_as_worker", "run_in_pool", "run_locally", "run_on_ray", "train_one"]


def run_in_pool(config: StudyConfig, out: Path, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None, *,
                progress: bool, tensorboard: bool) -> None:
    """The study's runs in ``config.workers`` local processes (:mod:`normrnn.study.pool`); the caller has written
    what is decided once (:func:`~normrnn.study.preparation.prepare`): the baselines, the precision, the cost table."""

    def known() -> list[RunSpec]:
        return known_runs(config, out, runs, shard_of)

    todo = unfinished(out, known(), config.config_hash)
    if not todo:
        return
    # a halving search adds the later seeds' runs as the first seed's finish: they may keep more workers busy
    later = len(planned_runs(config)) - len(known()) if runs is None and shard_of is None else 0
    most = len(todo) + max(0, later)
    line = StudyProgress(config, out, enabled=progress, workers=max(1, min(config.workers, most)))

    def poll() -> str:
        specs = known()
        left = unfinished(out, specs, config.config_hash)
        return line.show(specs, left, epochs_in_progress(out, left))

    try:
        run_pool(config, out, runs, shard_of, poll=poll, tensorboard=tensorboard, most=most)
    finally:
        line.close()


def run_as_worker(config: StudyConfig, out: Path, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None, *,
                  tensorboard: bool, poll: float) -> None:
    """One process of a local pool: train the longest unclaimed run of the study, again and again; when every
    unfinished run is claimed by another process, wait for one to free (a halving search adds runs as others finish,
    and a process that dies releases its claim); return when every run is finished."""
    data = load_datasets(config)
    while True:
        known = known_runs(config, out, runs, shard_of)
        todo = sorted(unfinished(out, known, config.config_hash), key=lambda s: -s.depth)  # the longest first
        if not todo:
            return
        if not any(train_one(config, out, spec, data, rank=Rank(), tensorboard=tensorboard) for spec in todo):
            time.sleep(poll)


def run_locally(config: StudyConfig, out: Path, todo: list[RunSpec], data: Datasets, *, progress: bool,
                rank: Rank, tensorboard: bool = False) -> None:
    """``todo`` one after another in this process (every rank of a torchrun group together), with a progress line
    that shows the run in progress, its epoch and the ETA (:class:`~normrnn.study.progress.StudyProgress`)."""
    if config.threads is not None:
        torch.set_num_threads(max(1, config.threads // rank.world_size))  # the processes share the cores
    line = StudyProgress(config, out, enabled=progress, workers=1)
    try:
        for i, spec in enumerate(todo):
            def on_epoch(epoch: int, spec: RunSpec = spec, left: list[RunSpec] = todo[i:]) -> None:
                line.show(todo, left, {spec.run_id: epoch})

            line.show(todo, todo[i:], {spec.run_id: epochs_done(out, spec.run_id)})  # resumed: where it stopped
            train_one(config, out, spec, data, rank=rank, on_epoch=on_epoch, tensorboard=tensorboard)
        line.show(todo, [], {})
    finally:
        line.close()


def _ray_task(config: StudyConfig, out: str, spec: RunSpec) -> bool:
    """One run inside a Ray worker; the worker keeps the data for the next run of the same study."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    return train_one(config, Path(out), spec, cached_datasets(config), rank=Rank())


def run_on_ray(config: StudyConfig, out: Path, todo: list[RunSpec], *, progress: bool,
                address: str | None) -> None:
    """Submit each run as a Ray task (one GPU, or ``threads`` CPUs); the tasks write results themselves, so a
    driver that dies loses nothing finished. Every node must see ``out`` (a shared file system)."""
    try:
        import ray
    except ImportError as e:
        raise ValueError(f"expected Ray for executor='ray'; install it with: {install_hint('ray', ['ray'])}") from e
    started = not ray.is_initialized()
    if started:
        ray.init(address=address)
    resources = {"num_gpus": 1} if config.device == "cuda" else {"num_cpus": config.threads or 1}
    task = ray.remote(**resources)(_ray_task)  # type: ignore[call-overload]  # Ray's stubs type each option apart
    pending = {task.remote(config, str(out.resolve()), spec): spec for spec in todo}
    line = StudyProgress(config, out, enabled=progress and bool(todo), workers=len(todo))
    try:
        while pending:
            line.show(todo, list(pending.values()), {})
            done, _ = ray.wait(list(pending), num_returns=1)
            pending.pop(done[0])
            ray.get(done[0])  # re-raises the task's error
        line.show(todo, [], {})
    except BaseException:
        for ref in pending:
            ray.cancel(ref)
        raise
    finally:
        line.close()
        if started:
            ray.shutdown()


def train_one(config: StudyConfig, out: Path, spec: RunSpec, data: Datasets, *, rank: Rank,
               on_epoch: Callable[[int], None] | None = None, tensorboard: bool = False) -> bool:
    """Claim, train and record one run; returns False when another process has it or had it. Each epoch done is
    also written to ``runs/ID/epoch``, for the progress line of the process that watches a pool."""
    run_dir = out / "runs" / spec.run_id

    def epoch_done(epoch: int) -> None:
        if rank.is_main:
            atomic_write_text(run_dir / EPOCH_FILE, f"{epoch}\n")
        if on_epoch is not None:
            on_epoch(epoch)

    with contextlib.ExitStack() as stack:
        claimed = stack.enter_context(claim(out, spec)) if rank.is_main else None
        if not broadcast(claimed, rank):
            return False
        precision = broadcast(recorded_precision(config, out) if rank.is_main else None, rank)
        row = train_run(config, spec, data, run_dir, on_epoch=epoch_done, rank=rank, tensorboard=tensorboard,
                        precision=precision)
        if rank.is_main:
            append_result(out, row)
    return True
