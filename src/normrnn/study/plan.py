"""``normrnn study --plan``: the grid, how many runs, and an estimated time from a short timing; trains nothing."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from .config import StudyConfig
from .cost import measure_cost, training_step
from .data import Datasets, load_datasets
from .factories import size_of
from .grid import RunSpec
from .pool import threads_of_runs
from .precision import choose_precision

__all__ = ["estimate_seconds", "plan", "run_seconds", "shared_slowdown"]

_EVAL_STEP = 1 / 3  # a forward-only evaluation batch costs about a third of a training step


def plan(config: StudyConfig, runs: list[RunSpec], data: Datasets | None = None) -> str:
    """The runs of ``config`` (or ``runs``) and their estimated wall time on this machine.

    Every (norm, topology, depth) model is timed for one training step after one untimed step, at the study's
    shapes (one step each is noisy, but the grid's total averages many); a run is then ``epochs × steps per
    epoch`` such steps plus its evaluations. Runs that diverge stop early, so a grid with high learning-rate
    multipliers takes less.
    """
    data = load_datasets(config) if data is None else data  # already loaded by the factory check, if any
    with threads_of_runs(config):
        chosen = choose_precision(config, data, rounds=1)
        bf16 = chosen["precision"] == "bf16"
        cost = measure_cost(config, data, runs, rounds=1, warmup=1, bf16=bf16)
        timing = {(r["norm"], r["topology"], r["depth"]): r["step_ms"] / 1e3 for r in cost["rows"]}
        costliest = RunSpec(*max(timing, key=timing.__getitem__), seed=0, lr_mult=1.0)  # as cost.py builds it
        shared = 1.0 if config.workers == 1 else shared_slowdown(
            [training_step(config, data, costliest, bf16=bf16) for _ in range(config.workers)])
    sizes = (size_of(data.train), size_of(data.val), size_of(data.test))  # a data factory's sizes, too
    per_epoch = math.ceil(sizes[0] / config.batch_size)
    per_run = {key: run_seconds(config, t, sizes) for key, t in timing.items()}
    total = estimate_seconds(config, runs, timing, sizes, shared=shared)
    axes: dict[str, Counter[Any]] = {
        "norms": Counter(s.norm for s in runs), "topologies": Counter(s.topology for s in runs),
        "depths": Counter(s.depth for s in runs), "seeds": Counter(s.seed for s in runs),
        "lr_mults": Counter(s.lr_mult for s in runs)}
    lines = [f"study {config.name!r} (config hash {config.config_hash}): {len(runs)} runs",
             "  " + " × ".join(f"{len(c)} {name} ({', '.join(map(str, c))})" for name, c in axes.items()),
             f"  each run: {config.epochs} epochs × {per_epoch} steps of batch {config.batch_size}, "
             + _data_line(config, data)
             + (f", model from {config.model}" if config.model else ""), "",
             f"{'variant (norm, topology, depth)':<40} {'s/step':>8} {'runs':>5} {'est. min':>9}"]
    counts = Counter((s.norm, s.topology, s.depth) for s in runs)
    for key, t in timing.items():
        lines.append(f"{', '.join(map(str, key)):<40} {t:>8.3f} {counts[key]:>5} "
                     f"{counts[key] * per_run[key] / 60:>9.1f}")
    halving = (f"; LR halving: {len(config.lr_mults)} multipliers on seed {config.seeds[0]}, then the other seeds "
               "at each variant's best" if config.lr_search == "halving" and len(config.lr_mults) > 1 else "")
    side = ("one after another" if config.workers == 1
            else f"{config.workers} side by side, each step × {shared:.2f} slower when they share the machine")
    precision = chosen["precision"] + (f", auto: {chosen['why']}" if config.precision == "auto" else "")
    lines += ["", f"estimated total: {_duration(total)} on this machine ({len(runs)} runs, {side}, {precision}"
              f"{halving}; from one timed step per variant, so expect ±25%). Nothing was trained or written."]
    return "\n".join(lines)


def run_seconds(config: StudyConfig, step_s: float, sizes: tuple[int, int, int]) -> float:
    """One run's time from its training-step time: every step, plus each epoch's validation and the final test and
    train-subset evaluations at :data:`_EVAL_STEP` of a step per batch. ``sizes``: train, val and test samples."""
    n_train, n_val, n_test = sizes
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    evals = (config.epochs * n_val + n_test + min(n_train, n_test)) / config.batch_size
    return step_s * (steps + _EVAL_STEP * evals)


def estimate_seconds(config: StudyConfig, runs: list[RunSpec], step_s: dict[tuple[str, str, int], float],
                     sizes: tuple[int, int, int], *, shared: float = 1.0) -> float:
    """The study's wall time from one training-step time per (norm, topology, depth): its runs dealt to
    ``config.workers``, each slowed ``shared`` times when they share the machine (:func:`shared_slowdown`)."""
    times = [run_seconds(config, step_s[s.norm, s.topology, s.depth], sizes) for s in runs]
    return _makespan(times, config.workers, shared)


def shared_slowdown(steps: list[Callable[[], None]], *, rounds: int = 3) -> float:
    """How much slower a training step gets when ``len(steps)`` runs share the machine (at least 1): the first step
    timed alone, then all of them at once, each in a thread of its own (torch's kernels release the GIL, so the
    threads stand in for the study's worker processes); the ratio of the medians.

    It depends on the shapes; on our 2-core machine, 1.33 for the ``tuned`` study's batches of 4 (its runs side by
    side measured 1.34) and 1.00–1.11 for ``converge``'s batches of 16."""
    for step in steps:
        step()  # untimed: one-time set-up
    alone = [_seconds(steps[0]) for _ in range(rounds)]
    together: list[float] = []
    start = threading.Barrier(len(steps))

    def side_by_side(step: Callable[[], None]) -> None:
        for _ in range(rounds):
            start.wait()
            together.append(_seconds(step))

    threads = [threading.Thread(target=side_by_side, args=(step,)) for step in steps]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return max(1.0, statistics.median(together) / statistics.median(alone))


def _seconds(fn: Callable[[], None]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def _data_line(config: StudyConfig, data: Datasets) -> str:
    """What one training sample really is: a data factory's shapes as it returns them."""
    if config.data is None:
        return f"{config.size}×{config.size} frames, {config.frames_in} → {config.frames_out}"
    x, y = data.train[0][:2]
    return f"data from {config.data}: input {tuple(x.shape)} → target {tuple(y.shape)} per sample"


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"


def _makespan(times: list[float], workers: int, shared: float) -> float:
    """Wall time of ``times`` dealt longest first to ``workers`` processes, each slowed ``shared`` times when they
    share the machine (the pool's order, :func:`normrnn.study.executors.run_in_pool`)."""
    if workers == 1:
        return sum(times)
    loads = [0.0] * workers
    for t in sorted(times, reverse=True):
        loads[loads.index(min(loads))] += t * shared
    return max(loads)
