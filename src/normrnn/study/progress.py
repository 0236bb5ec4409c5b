"""The study's progress line: runs finished of all, the runs in progress with their epoch, and an ETA.

The ETA does not extrapolate from the runs finished so far (the first run to finish is the shortest, and a study's
runs differ by depth): it is the plan's model of each run's time (:func:`~normrnn.study.plan.run_seconds`) from the
training-step times that ``cost.json`` measured for every variant, the remaining runs dealt to the workers
(:func:`~normrnn.study.plan.makespan`), and scaled by how fast the epochs observed so far really went.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from .config import StudyConfig
from .grid import RunSpec
from .plan import duration, makespan, run_seconds
from .results import load_cost

__all__ = ["StudyProgress", "expected_seconds"]

_SHOWN = 3  # runs in progress named on the line; more are counted


def expected_seconds(config: StudyConfig, out: Path, specs: list[RunSpec]) -> dict[str, float]:
    """Each run's time alone, from ``cost.json``'s step time of its variant; {} before the cost table exists."""
    cost = load_cost(out, config.config_hash)
    if cost is None:
        return {}
    step_s = {(r["norm"], r["topology"], r["depth"]): r["step_ms"] / 1e3 for r in cost.get("rows", [])}
    n_train, n_val, n_test = cost.get("samples") or (config.train_samples, config.val_samples, config.test_samples)
    return {s.run_id: run_seconds(config, step_s[key], (n_train, n_val, n_test))
            for s in specs if (key := (s.norm, s.topology, s.depth)) in step_s}


class StudyProgress:
    """A tqdm line: ``study: 3/16 runs |███  | ETA 52 min · n2_layer_s0 e4/20, n4_none_s0 e1/20``.

    Args:
        config: the study; its ``epochs`` and ``workers``.
        out: the study directory, whose ``cost.json`` times the runs.
        enabled: show the line. Default: ``True``.
        workers: processes training at once. Default: ``config.workers``.
        clock: seconds, monotonic; tests pass their own. Default: :func:`time.monotonic`.
    """

    def __init__(self, config: StudyConfig, out: Path, *, enabled: bool = True, workers: int | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        from tqdm.auto import tqdm

        self.config, self.out, self.clock = config, out, clock
        self.workers = workers or config.workers
        self.expected: dict[str, float] = {}
        self.first_seen: dict[str, tuple[float, int]] = {}  # run → (time, epoch) when first seen in progress
        self.observed = [0.0, 0.0]  # seconds observed, and the seconds the estimate gave the same epochs
        self.bar: Any = tqdm(total=0, unit="run", desc="", disable=not enabled, dynamic_ncols=True,
                             bar_format="study: {n}/{total} runs |{bar}| {desc}")
        self.line = ""

    def show(self, specs: list[RunSpec], left: list[RunSpec], running: Mapping[str, int]) -> str:
        """Update the line: ``specs`` the known runs, ``left`` those unfinished, ``running`` those in progress with
        their epochs done. Returns the text after the bar."""
        if not self.expected or any(s.run_id not in self.expected for s in specs):
            self.expected = expected_seconds(self.config, self.out, specs)
        now = self.clock()
        self._observe(now, running)
        eta = self.eta(left, running)
        names = [f"{run} e{epoch}/{self.config.epochs}" for run, epoch in list(running.items())[:_SHOWN]]
        more = len(running) - _SHOWN
        text = " · ".join(filter(None, [f"ETA {duration(eta)}" if eta is not None else "",
                                        ", ".join(names) + (f" and {more} more" if more > 0 else "")]))
        self.bar.total, self.bar.n = len(specs), len(specs) - len(left)
        if text != self.line:  # a line per change, not per poll, where stderr is a log file
            self.bar.set_description_str(text, refresh=False)
            self.line = text
        self.bar.refresh()
        return text

    def _observe(self, now: float, running: Mapping[str, int]) -> None:
        """Add the epochs each running run finished since it was first seen to how fast runs really go."""
        for run, epoch in running.items():
            t0, e0 = self.first_seen.setdefault(run, (now, epoch))
            if epoch > e0 and run in self.expected:
                self.observed[0] += now - t0
                self.observed[1] += self.expected[run] * (epoch - e0) / self.config.epochs
                self.first_seen[run] = (now, epoch)

    def eta(self, left: list[RunSpec], running: Mapping[str, int]) -> float | None:
        """Seconds until every run in ``left`` finishes; None when a run has no estimate (no cost table yet)."""
        if not left or any(s.run_id not in self.expected for s in left):
            return None if left else 0.0
        E = self.config.epochs
        times = [self.expected[s.run_id] * (1 - min(running.get(s.run_id, 0), E) / E) for s in left]
        # as fast as the observed epochs went; before any, as fast as the plan's measured step times alone
        speed = self.observed[0] / self.observed[1] if self.observed[1] > 0 else 1.0
        return makespan(times, self.workers, 1.0) * speed

    def close(self) -> None:
        self.bar.close()
