"""Run a study grid into a directory: skip finished runs, resume interrupted ones, append results safely."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .._loader import factory_name
from .config import StudyConfig
from .datasets import Datasets
from .directory import check_directory, finished_rows, known_runs, unfinished
from .distributed import Rank, barrier, broadcast, current, init_from_env, launch
from .executors import run_in_pool, run_locally, run_on_ray
from .grid import RunSpec
from .preflight import check_factories, check_runnable, pooled
from .preparation import prepare

__all__ = ["run", "run_study"]


def run_study(config: StudyConfig, out: str | Path, *, progress: bool = True,
              runs: Iterable[RunSpec] | None = None, nproc: int = 1, executor: str = "local",
              ray_address: str | None = None, tensorboard: bool = False,
              shard_of: tuple[int, int] | None = None, checked: bool = False) -> list[dict[str, Any]]:
    """Run every unfinished run of ``config`` (or of ``runs``, e.g. a shard) into ``out``; return their rows.

    Finished runs (already in ``results.jsonl``) are skipped; interrupted ones resume from their last
    epoch's checkpoint. Ctrl-C stops between atomic writes, so the directory stays consistent. With
    ``lr_search = "halving"`` the grid grows as its first-seed runs finish (:func:`expand_grid`), so the
    study runs in phases until nothing is left.

    Several processes may work on one directory at once (shards, a Ray cluster, or plain repeats of the same
    command): a run is claimed with a lock file before it starts, so none is trained twice concurrently, and
    :func:`append_result` keeps every run exactly once.

    Args:
        progress: show a progress bar. Default: ``True``.
        runs: the runs to do. Default: the whole grid of ``config``.
        nproc: train each run data-parallel in this many local processes (torchrun's launcher, DDP,
            cross-rank batch statistics). Under ``torchrun`` itself leave it at 1: every rank calls
            ``run_study`` and rank 0 alone writes. Default: ``1``.
        executor: ``"local"``, or ``"ray"`` to submit each run as a Ray task. Default: ``"local"``.
        ray_address: the Ray cluster to join. Default: ``None``, ``$RAY_ADDRESS`` or a new local instance.
        tensorboard: log each run to ``runs/ID/tensorboard`` (local executor). Default: ``False``.
        shard_of: ``(I, N)``: only shard I of N of the grid (:func:`~normrnn.study.grid.shard`), phase by phase.
            Default: ``None``, every run.
        checked: the caller has run :func:`~normrnn.study.preflight.check_runnable` with these arguments (the CLI
            does, before it joins a torchrun group), so it is not run twice. Default: ``False``.
    """
    out = Path(out)
    rank = current()
    runs = None if runs is None else list(runs)
    if not checked:
        check_runnable(config, out, nproc=nproc, executor=executor, runs=runs,  # before any data or child process
                       shard_of=shard_of)
    if executor == "ray" and rank.active:
        raise ValueError("expected executor='local' for data-parallel runs, got 'ray'; use one or the other")
    if nproc > 1:
        if rank.active:
            raise ValueError(f"expected nproc=1 inside a process group of {rank.world_size}, got nproc={nproc}")
        _launch_workers(nproc, config, out, runs, shard_of, progress)
        return finished_rows(out, known_runs(config, out, runs, shard_of))
    _run_phases(config, out, rank, runs, shard_of, executor=executor, progress=progress, ray_address=ray_address,
                tensorboard=tensorboard)
    # every rank leaves together: gloo torn down by one rank while another still finishes a collective can
    # abort that one ("terminate called without an active exception", seen once in CI)
    barrier(rank)
    return finished_rows(out, known_runs(config, out, runs, shard_of))


def _run_phases(config: StudyConfig, out: Path, rank: Rank, runs: list[RunSpec] | None,
                shard_of: tuple[int, int] | None, *, executor: str, progress: bool, ray_address: str | None,
                tensorboard: bool) -> None:
    """Train this process's unfinished runs, phase by phase (a halving search adds phases as runs finish)."""
    loaded = None
    if rank.is_main:
        loaded = check_factories(config)  # a broken factory fails here, before anything is written
        check_directory(config, out, record=False)  # prepare() records the study once its set-up has run
    barrier(rank)
    if pooled(config, executor, 1, runs) and not rank.active:
        prepare(config, out, Rank(), need_data=False, whole=runs is None, loaded=loaded)  # the workers load their own
        run_in_pool(config, out, runs, shard_of, progress=progress, tensorboard=tensorboard)
        return
    data: Datasets | None = None
    tried: set[str] = set()
    while True:  # one pass per phase; a grid without halving has one
        todo = broadcast([s for s in unfinished(out, known_runs(config, out, runs, shard_of), config.config_hash)
                          if s.run_id not in tried], rank)
        if data is None:
            data = prepare(config, out, rank, need_data=executor == "local" and bool(todo), whole=runs is None,
                           loaded=loaded)
        if not todo:
            break
        tried |= {s.run_id for s in todo}  # a run another process holds is not waited for
        if executor == "ray":
            run_on_ray(config, out, todo, progress=progress, address=ray_address)
        else:
            assert data is not None  # prepared above: this process trains (need_data)
            run_locally(config, out, todo, data, progress=progress and rank.is_main, rank=rank,
                        tensorboard=tensorboard)


def run(config: StudyConfig, out: str | Path, *, model: Callable[..., Any] | str | None = None,
        data: Callable[..., Any] | str | None = None, loss: Callable[..., Any] | str | None = None,
        report: bool = True, **options: Any) -> Any:
    """Run the study ``config`` into ``out`` (resuming what is there) and write its report; returns the
    :class:`~normrnn.study.report.Report` (``report=False``: the result rows).

    ``model``, ``data`` and ``loss`` replace the config's factories (:mod:`normrnn.study.factories`): a function
    defined at module level, or a ``"module:function"`` string. ``options`` go to :func:`run_study`.

    Example::

        >>> from normrnn.study import PRESETS, run
        >>> def build(*, norm, topology, depth, seed, **settings): ...  # doctest: +SKIP
        >>> report = run(PRESETS["smoke"], "study-own", model=build)  # doctest: +SKIP
    """
    from .report import write_report

    given = (("model", model), ("data", data), ("loss", loss))
    changes: dict[str, Any] = {key: value if isinstance(value, str) else factory_name(value)
                               for key, value in given if value is not None}
    config = dataclasses.replace(config, **changes)
    rows = run_study(config, out, **options)
    return write_report([out]) if report else rows


def _launch_workers(nproc: int, config: StudyConfig, out: Path, runs: Iterable[RunSpec] | None,
                    shard_of: tuple[int, int] | None, progress: bool) -> None:
    from torch.distributed.elastic.multiprocessing.api import SignalException

    try:
        launch(nproc, _ddp_worker, config, str(out), None if runs is None else list(runs), shard_of, progress)
    except SignalException as e:  # Ctrl-C reached the launcher, which stopped the workers
        raise KeyboardInterrupt(str(e)) from e


def _ddp_worker(config: StudyConfig, out: str, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None,
                progress: bool) -> None:
    """One rank of ``run_study(..., nproc=N)``."""
    import torch.distributed as dist

    init_from_env(config.device)
    try:
        run_study(config, out, runs=runs, shard_of=shard_of, progress=progress)
    finally:
        dist.destroy_process_group()


