"""A study's rows, aggregated over seeds: means with 95% intervals, the generalization gap, the stability frontier.

Two variants differ "beyond noise" only when their intervals do not overlap; with one seed there is no noise
estimate, and :func:`differ` says nothing.
"""

from __future__ import annotations

import math
import re
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .rows import SUMMARIZED
from .validation import canonical_norm

__all__ = ["METRICS", "Aggregate", "aggregate", "baseline_name", "best_lr", "differ", "diverged_everywhere",
           "main_variants", "mean_ci", "median_range", "stability_frontier"]

_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086]  # Student's t, two-sided 95%, df = 1..20
METRICS = SUMMARIZED  # averaged with a 95% interval per variant: the ResultRow fields marked so


@dataclass
class Aggregate:
    """One variant (norm, topology, depth, LR multiplier) over its seeds: what the report's tables, plots and
    findings read. Each :data:`METRICS` field of the rows, and ``"gap"`` (test MSE − train MSE), has a mean over the
    runs that did not diverge (:meth:`mean`, NaN where none has it) and the half-width of its 95% interval
    (:meth:`ci`, None for one run)."""

    norm: str
    topology: str
    depth: int
    lr_mult: float
    runs: int
    diverged_rate: float  # the share of runs that diverged
    means: dict[str, float]  # each of METRICS, and "gap"
    cis: dict[str, float | None]  # each of METRICS, and "gap"
    step_time_s: float  # median over runs (sequential timings: the cost table compares)
    peak_mem_mb: float
    gate_saturation: float  # NaN: no cell exposes its gates
    loss_spikes: float
    val_curve: list[float]  # mean over runs, per epoch
    train_curve: list[float]
    val_steps: list[int] | None  # the step of each val_curve point; None: rows written before steps were kept
    test_values: list[float]  # each run's test MSE
    steps_to_learn: list[int | None]  # each run's; None: never learned
    plateau: list[bool]
    saturation_curve: list[float]
    params: int | None  # the model's parameters (one model per variant)
    bias_params: int | None  # elements of its bias parameters; None: unknown

    @property
    def variant(self) -> tuple[str, str, int]:
        """(norm, topology, depth): the variant, whatever its LR multiplier."""
        return self.norm, self.topology, self.depth

    def mean(self, metric: str) -> float:
        """The mean of ``metric`` (one of :data:`METRICS`, or ``"gap"``) over the runs that did not diverge."""
        return self.means[metric]

    def ci(self, metric: str) -> float | None:
        """The half-width of the 95% interval of ``metric``'s mean; None with fewer than two runs."""
        return self.cis[metric]


def mean_ci(values: Sequence[float]) -> tuple[float, float | None]:
    """Mean and the half-width of its 95% confidence interval (None for a single value).

    Example::

        >>> mean_ci([1.0, 2.0, 3.0])
        (2.0, 2.484...)
    """
    n = len(values)
    if n == 0:
        return math.nan, None
    mean = statistics.fmean(values)
    if n < 2:
        return mean, None
    t = _T975[n - 2] if n - 1 <= len(_T975) else 1.96
    return mean, t * statistics.stdev(values) / math.sqrt(n)


def median_range(values: Sequence[float | None]) -> tuple[float | None, float | None, float | None]:
    """Median, min and max of ``values``, where ``None`` (never) counts as larger than any number; each of the
    three is ``None`` when it falls on a "never". For n values, [min, max] covers the true median with
    probability 1 − 2^(1−n) (75% for 3 seeds): the distribution-free interval that small samples allow.

    Example::

        >>> median_range([40, None, 10])
        (40, 10, None)
    """
    if not values:
        return None, None, None
    ordered = sorted(values, key=lambda v: math.inf if v is None else v)
    n = len(ordered)
    below, above = ordered[(n - 1) // 2], ordered[n // 2]  # the same value for odd n
    middle = above if n % 2 else (None if below is None or above is None else (below + above) / 2)
    return middle, ordered[0], ordered[-1]


def _val_mse(row: dict[str, Any]) -> float | None:
    """The validation MSE at the end of training (rows written before ``val_mse`` existed: the curve's last)."""
    value = row.get("val_mse")
    if value is None and row.get("val_curve") and not row["diverged"]:
        value = row["val_curve"][-1]
    return None if value is None else float(value)


def _mean_curve(curves: list[list[float]]) -> list[float]:
    length = min((len(c) for c in curves), default=0)
    return [statistics.fmean(c[i] for c in curves) for i in range(length)]


_CANONICAL = re.compile(r"[a-z][a-z0-9_]*(:[1-9][0-9]*)?")  # how the study writes a spec: "layer", "group:8"


def _canonical(norm: str) -> str:
    """A row's norm as the study names it now (rows written before specs were canonical may say ``"None"``). A spec
    already spelled as the study writes them is taken as is: the registry that reads the others loads torch."""
    if _CANONICAL.fullmatch(norm) and norm != "identity":  # "identity" is the one lower-case alias ("none")
        return norm
    try:
        return canonical_norm(norm)
    except ValueError:  # a spec this version does not know: reported as written
        return norm


def aggregate(rows: Sequence[dict[str, Any]]) -> list[Aggregate]:
    """One entry per variant (norm, topology, depth, lr_mult), over seeds, in first-seen order."""
    groups: dict[tuple[Any, ...], list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(_canonical(r["norm"]), r["topology"], r["depth"], r["lr_mult"])].append(r)
    return [_aggregate(key, g) for key, g in groups.items()]


def _aggregate(key: tuple[Any, ...], g: list[dict[str, Any]]) -> Aggregate:
    """The rows ``g`` of one variant ``key`` (norm, topology, depth, lr_mult) as an :class:`Aggregate`."""
    ok = [r for r in g if not r["diverged"]]
    stats = {m: mean_ci([v for v in ([_val_mse(r) for r in ok] if m == "val_mse" else [r.get(m) for r in ok])
                         if v is not None]) for m in METRICS}
    stats["gap"] = mean_ci([r["test_mse"] - r["train_mse"] for r in ok
                            if r.get("train_mse") is not None and r.get("test_mse") is not None])
    times = [r["step_time_s"] for r in g if r.get("step_time_s")]
    memory = [r["peak_mem_mb"] for r in g if r.get("peak_mem_mb") is not None]
    sat = [r["gate_saturation_mean"] for r in ok if r.get("gate_saturation_mean") is not None]
    params = [r["params"] for r in g if isinstance(r.get("params"), int)]
    biases = [r["bias_params"] for r in g if isinstance(r.get("bias_params"), int)]
    return Aggregate(
        norm=key[0], topology=key[1], depth=key[2], lr_mult=key[3], runs=len(g), diverged_rate=1 - len(ok) / len(g),
        means={m: s[0] for m, s in stats.items()}, cis={m: s[1] for m, s in stats.items()},
        step_time_s=statistics.median(times) if times else math.nan,
        peak_mem_mb=statistics.fmean(memory) if memory else math.nan,
        gate_saturation=statistics.fmean(sat) if sat else math.nan,
        loss_spikes=statistics.fmean(r.get("loss_spikes") or 0 for r in g),
        val_curve=_mean_curve([r["val_curve"] for r in ok if r.get("val_curve")]),
        train_curve=_mean_curve([r["train_curve"] for r in ok if r.get("train_curve")]),
        val_steps=next((r["val_steps"] for r in ok if r.get("val_steps")), None),  # rows before: none
        test_values=[r["test_mse"] for r in ok],
        # None: never; a row whose loss has no finite no-learning floor has no steps to learn at all
        steps_to_learn=[r.get("steps_to_learn") for r in g if "steps_to_learn" in r and "learn_floor_note" not in r],
        plateau=[r["plateau"] for r in ok if isinstance(r.get("plateau"), bool)],  # rows before: none
        saturation_curve=_mean_curve([r["gate_saturation_curve"] for r in g if r.get("gate_saturation_curve")]),
        params=max(params) if params else None,  # one model per variant: the seeds' counts are equal
        bias_params=max(biases) if len(biases) == len(g) else None)  # rows written before: unknown


def baseline_name(aggs: Sequence[Aggregate], baseline: str = "none") -> str:
    """What the reference variant ``baseline`` is called in the report: "bias-only", or "no norm" when its model
    has no bias at all (rows that know, :attr:`~.rows.ResultRow.bias_params`), as OpenSTL's ConvLSTM."""
    ref = [a for a in aggs if a.norm == baseline]
    return "no norm" if ref and all(a.bias_params == 0 for a in ref) else "bias-only"


def differ(a: Aggregate, b: Aggregate, key: str = "test_mse") -> str | None:
    """'lower'/'higher' when the 95% intervals do not overlap, 'within noise' when they do, None without CIs."""
    ci_a, ci_b = a.ci(key), b.ci(key)
    if ci_a is None or ci_b is None:
        return None
    if abs(a.mean(key) - b.mean(key)) <= ci_a + ci_b:
        return "within noise"
    return "lower" if a.mean(key) < b.mean(key) else "higher"


def best_lr(aggs: Sequence[Aggregate]) -> list[Aggregate]:
    """Each (norm, topology, depth) at its own best learning-rate multiplier: the one with the lowest mean
    *validation* MSE over seeds (test MSE never chooses). Candidates are the multipliers run with the most seeds
    (with LR halving, the one that won on the first seed); one at which any seed diverged is not a candidate,
    unless every candidate had a seed diverge (with halving: the winner of seed 0 diverged on another seed), when
    the variant is shown there, its ``diverged_rate`` saying so. A variant that diverged at every multiplier is
    shown at the smallest (:func:`diverged_everywhere` names them). Ties go to the smaller multiplier."""
    most: dict[tuple[Any, ...], int] = defaultdict(int)
    for a in aggs:
        key = a.variant
        most[key] = max(most[key], a.runs)
    best: dict[tuple[Any, ...], Aggregate] = {}
    for clean in (True, False):  # diverged seeds only where nothing clean is left
        chosen = set(best)
        for a in sorted(aggs, key=lambda a: a.lr_mult):
            key = a.variant
            if (a.runs < most[key] or (clean and a.diverged_rate > 0) or key in chosen
                    or not math.isfinite(a.mean("val_mse"))):
                continue
            if key not in best or a.mean("val_mse") < best[key].mean("val_mse"):
                best[key] = a
    for a in sorted(aggs, key=lambda a: a.lr_mult):  # diverged at every multiplier: shown at the smallest
        best.setdefault(a.variant, a)
    order = {a.variant: i for i, a in enumerate(aggs)}  # the grid's order
    return sorted(best.values(), key=lambda a: order[a.variant])


def diverged_everywhere(aggs: Sequence[Aggregate]) -> dict[tuple[Any, ...], list[float]]:
    """The variants (norm, topology, depth) whose every run diverged, with the multipliers they were tried at."""
    tried: dict[tuple[Any, ...], list[float]] = defaultdict(list)
    lost: dict[tuple[Any, ...], bool] = defaultdict(lambda: True)
    for a in aggs:
        key = a.variant
        tried[key].append(a.lr_mult)
        lost[key] = lost[key] and a.diverged_rate == 1
    return {key: sorted(mults) for key, mults in tried.items() if lost[key]}


def main_variants(aggs: Sequence[Aggregate]) -> list[Aggregate]:
    """What the report compares: each variant at its own best learning rate (:func:`best_lr`) when the grid
    has several multipliers, otherwise the grid itself."""
    if len({a.lr_mult for a in aggs}) > 1:
        return best_lr(aggs)
    return list(aggs)


def stability_frontier(aggs: Sequence[Aggregate], floor: float | None) -> dict[tuple[Any, ...], float | None]:
    """Each variant's (norm, topology, depth) largest stable LR multiplier, or None when none is stable.

    A multiplier is stable when every seed's run at it neither diverged nor ended at or above ``floor``, the
    test MSE of the best no-learning predictor (no floor: divergence alone decides).
    """
    out: dict[tuple[Any, ...], float | None] = {}
    for a in aggs:
        key = a.variant
        stable = a.diverged_rate == 0 and (floor is None or all(v < floor for v in a.test_values))
        best = out.get(key)
        out[key] = max(best or 0.0, a.lr_mult) if stable else best
    return out
