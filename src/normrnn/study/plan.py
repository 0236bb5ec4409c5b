"""``normrnn study --plan``: the grid, how many runs, and an estimated time from a short timing; trains nothing."""

from __future__ import annotations

import math
import statistics
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from ..bench.timing import time_interleaved
from ..data import create_dataset
from .config import StudyConfig
from .cost import choose_precision, training_step
from .datasets import Datasets, load_datasets
from .factories import size_of
from .grid import RunSpec
from .names import BASELINE
from .precision import FP32, Precision
from .threads import threads_of_runs

__all__ = ["duration", "estimate_seconds", "plan", "plan_data", "run_seconds", "shared_slowdown", "step_times"]

_EVAL_STEP = 1 / 3  # a forward-only evaluation batch costs about a third of a training step
_ROUNDS = 2  # timed rounds per model, after one untimed step; the fastest is kept (a busy machine only slows)
Key = tuple[str, str, int]  # (norm, topology, depth)


def plan(config: StudyConfig, runs: list[RunSpec], data: Datasets | None = None) -> str:
    """The runs of ``config`` (or ``runs``) and their estimated wall time on this machine.

    It measures few models and infers the rest (:func:`step_times`): the reference norm at the shallowest and the
    deepest depth of each topology, and every other norm's cost ratio once, at the shallowest depth. A run is then
    ``epochs × steps per epoch`` such steps plus its evaluations, and the runs are dealt to the workers as the pool
    deals them. Runs that diverge stop early, so a grid with high learning-rate multipliers takes less.
    """
    if not runs:  # a shard past the grid's end
        return f"study {config.name!r} (config hash {config.config_hash}): 0 runs here; nothing to train or estimate"
    data = plan_data(config) if data is None else data  # a data factory's: already loaded by the factory check
    sizes = _sizes(config, data)
    overlap = min(config.workers, len(runs))  # the pool starts no more workers than runs
    with threads_of_runs(config, workers=overlap):
        chosen = choose_precision(config, data, rounds=1, depths=tuple(sorted({min(config.depths),
                                                                               max(config.depths)})))
        precision = Precision(chosen["precision"])
        timing, how = step_times(config, data, runs, precision=precision)
        reference = min(timing, key=lambda k: (k[2], timing[k]))  # a shallow model: its step shapes are the runs'
        shared = 1.0 if overlap == 1 else shared_slowdown(
            [training_step(config, data, RunSpec(*reference, seed=0, lr_mult=1.0), precision=precision)
             for _ in range(overlap)])
    per_epoch = math.ceil(sizes[0] / config.batch_size)
    per_run = {key: run_seconds(config, t, sizes) for key, t in timing.items()}
    total = estimate_seconds(config, runs, timing, sizes, shared=shared)
    axes: dict[str, Counter[Any]] = {
        "norms": Counter(s.norm for s in runs), "topologies": Counter(s.topology for s in runs),
        "depths": Counter(s.depth for s in runs), "seeds": Counter(s.seed for s in runs),
        "lr_mults": Counter(s.lr_mult for s in runs)}
    count = f"{len(runs)} run{'s' if len(runs) > 1 else ''}"
    lines = [f"study {config.name!r} (config hash {config.config_hash}): {count}",
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
    side = ("one after another" if overlap == 1
            else f"{overlap} side by side, each step × {shared:.2f} slower when {overlap} share the machine")
    precision = chosen["precision"] + (f", auto: {chosen['why']}" if config.precision == "auto" else "")
    lines += ["", f"estimated total: {duration(total)} on this machine ({count}, {side}, {precision}"
              f"{halving}). Nothing was trained or written.",
              f"How: {how}. Expect ±25%: that is how close such an estimate came to converge's measured wall time; "
              "a busy machine makes every step slower."]
    return "\n".join(lines)


def plan_data(config: StudyConfig) -> Datasets:
    """The data ``--plan`` times on: a data factory's splits, or only the first training batch of the built-in
    dataset (generating all of it would cost more than the timing; the split sizes come from the config). Building
    it checks the dataset's settings (a canvas smaller than the digits, missing digits) as the study would."""
    if config.data is not None:
        return load_datasets(config)
    n = min(config.batch_size, config.train_samples)
    first = create_dataset(config.dataset, n, split="train", seed=config.data_seed, size=config.size,
                           frames_in=config.frames_in, frames_out=config.frames_out, path=config.data_path)
    return Datasets(first, first, first)


def _sizes(config: StudyConfig, data: Datasets) -> tuple[int, int, int]:
    """Train, validation and test samples: a data factory's as it returned them, else the config's."""
    if config.data is not None:
        return size_of(data.train), size_of(data.val), size_of(data.test)
    return config.train_samples, config.val_samples, config.test_samples


def step_times(config: StudyConfig, data: Datasets, runs: list[RunSpec], *, precision: Precision = FP32,
               measure: Callable[[dict[str, Callable[[], None]]], dict[str, float]] | None = None,
               ) -> tuple[dict[Key, float], str]:
    """Seconds per training step of every (norm, topology, depth) in ``runs``, and how they were had.

    Where the grid has more variants than this needs models, it times (``measure``: names → steps to their
    seconds; default :func:`_fastest_of_rounds`) the reference norm (bias-only where the grid has it) at the
    shallowest and deepest depth of each topology, and each other norm beside the reference at the shallowest
    depth of the first topology. A step's time grows linearly with depth (each layer adds the same work), and a
    norm costs its ratio at every depth: ``t(norm, topology, d) = ratio(norm) × t(reference, topology, d)``.
    """
    measure = _fastest_of_rounds if measure is None else measure
    variants: list[Key] = list(dict.fromkeys((s.norm, s.topology, s.depth) for s in runs))
    norms = list(dict.fromkeys(k[0] for k in variants))
    topologies = list(dict.fromkeys(k[1] for k in variants))
    shallow, deep = min(k[2] for k in variants), max(k[2] for k in variants)
    ref = BASELINE if BASELINE in norms else norms[0]
    timed: list[Key] = list(dict.fromkeys([*((ref, t, d) for t in topologies for d in (shallow, deep)),
                                           *((n, topologies[0], shallow) for n in norms)]))
    if len(timed) >= len(variants):
        timed = variants
    seconds = measure({"/".join(map(str, k)): training_step(config, data, RunSpec(*k, seed=0, lr_mult=1.0),
                                                            precision=precision) for k in timed})
    at = {k: seconds["/".join(map(str, k))] for k in timed}
    if timed is variants:
        return at, f"every one of the {len(variants)} models timed for one training step (the fastest of {_ROUNDS})"

    def reference(topology: str, depth: int) -> float:
        low, high = at[ref, topology, shallow], at[ref, topology, deep]
        return low if deep == shallow else low + (high - low) * (depth - shallow) / (deep - shallow)

    ratio = {n: at[n, topologies[0], shallow] / at[ref, topologies[0], shallow] for n in norms}
    depths = (f"depths {shallow} and {deep}" if deep > shallow else f"depth {shallow}")
    how = (f"{len(timed)} of the {len(variants)} models timed for one training step (the fastest of {_ROUNDS}): "
           f"{ref} at {depths} of each topology, and each norm's cost ratio to it at depth {shallow}"
           + ("; the other depths are interpolated linearly" if deep > shallow else ""))
    return {k: at.get(k, ratio[k[0]] * reference(k[1], k[2])) for k in variants}, how


def _fastest_of_rounds(steps: dict[str, Callable[[], None]]) -> dict[str, float]:
    """Each step's fastest of :data:`_ROUNDS` interleaved rounds, after one untimed call."""
    samples = time_interleaved(steps, rounds=_ROUNDS, repeats=1, warmup=1)
    return {name: min(times) for name, times in samples.items()}


def run_seconds(config: StudyConfig, step_s: float, sizes: tuple[int, int, int]) -> float:
    """One run's time from its training-step time: every step, plus each epoch's validation and the final test and
    train-subset evaluations at :data:`_EVAL_STEP` of a step per batch. ``sizes``: train, val and test samples."""
    n_train, n_val, n_test = sizes
    steps = config.epochs * math.ceil(n_train / config.batch_size)
    evals = (config.epochs * n_val + n_test + min(n_train, n_test)) / config.batch_size
    return step_s * (steps + _EVAL_STEP * evals)


def estimate_seconds(config: StudyConfig, runs: list[RunSpec], step_s: dict[Key, float],
                     sizes: tuple[int, int, int], *, shared: float = 1.0) -> float:
    """The study's wall time from one training-step time per (norm, topology, depth): its runs dealt to
    ``config.workers`` (at most one per run), slowed ``shared`` times while all of them share the machine
    (:func:`makespan`)."""
    times = [run_seconds(config, step_s[s.norm, s.topology, s.depth], sizes) for s in runs]
    return makespan(times, config.workers, shared)


def makespan(times: list[float], workers: int, shared: float) -> float:
    """Wall time of runs that take ``times`` seconds alone, dealt longest first to ``workers`` processes (the
    pool's order). ``shared`` is the slowdown when ``min(workers, len(times))`` of them run at once; with ``m``
    running, each is ``1 + (shared − 1)·(m − 1)/(n − 1)`` times slower, so a run alone at the end runs at full
    speed and one run never shares.

    Example::

        >>> makespan([3.0, 1.0], workers=2, shared=2.0)  # together until the short run ends at 2, then alone
        4.0
    """
    n = min(workers, len(times))
    queue = sorted(times, reverse=True)
    running = queue[:n]  # the work each running run has left, in seconds alone
    queue = queue[n:]
    clock = 0.0
    while running:
        m = len(running)
        slow = 1.0 if n == 1 else 1.0 + (shared - 1.0) * (m - 1) / (n - 1)
        step = min(running)  # the next run to finish, in seconds alone
        clock += step * slow
        running = [left - step for left in running if left > step]
        while len(running) < n and queue:
            running.append(queue.pop(0))
    return clock


def shared_slowdown(steps: list[Callable[[], None]], *, rounds: int = 3,
                    seconds: Callable[[Callable[[], None]], float] | None = None) -> float:
    """How much slower a training step gets when ``len(steps)`` runs share the machine (at least 1): the first step
    timed alone, then all of them at once, each in a thread of its own (torch's kernels release the GIL, so the
    threads stand in for the study's worker processes); the ratio of the medians. ``seconds(step)`` times one call
    (default: the wall clock); a single step shares nothing, so it is 1 without timing.

    It depends on the shapes; on our 2-core machine, 1.33 for the ``tuned`` study's batches of 4 (its runs side by
    side measured 1.34) and 1.00–1.11 for ``converge``'s batches of 16."""
    if len(steps) < 2:
        return 1.0
    seconds = _seconds if seconds is None else seconds
    for step in steps:
        step()  # untimed: one-time set-up
    alone = [seconds(steps[0]) for _ in range(rounds)]
    together: list[float] = []
    start = threading.Barrier(len(steps))

    def side_by_side(step: Callable[[], None]) -> None:
        for _ in range(rounds):
            start.wait()
            together.append(seconds(step))

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


def duration(seconds: float) -> str:
    """``seconds`` as the plan and the progress line write it: "under 1 s", "40 s", "52 min"."""
    if seconds < 0.5:
        return "under 1 s"
    return f"{seconds:.0f} s" if seconds < 60 else f"{seconds / 60:.0f} min"
