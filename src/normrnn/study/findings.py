"""The report's findings: which differences in test MSE the rows support, by one stated test and correction.

Two families of comparisons, each variant at its own best learning rate (:func:`~.aggregate.main_variants`):

- **norm vs bias-only**: every norm against ``none`` at the same topology and depth;
- **depth vs the shallowest**: every depth of a (norm, topology) against its shallowest depth (depth 1 in every
  preset).

Each comparison is Welch's two-sample t-test on the seeds' test MSEs (unequal variances; the difference's 95%
interval from the same t distribution), and the p-values of a family are adjusted by Holm–Bonferroni, so a family of
about 20 comparisons no longer finds one "difference" by chance. A verdict says "lower" or "higher" only where the
adjusted p-value is below :data:`ALPHA`; everything else is "within noise", and a comparison with fewer than two
seeds on a side is "not tested".
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

from .aggregate import Aggregate, main_variants
from .names import BASELINE

__all__ = ["ALPHA", "Comparison", "find", "findings_json", "findings_markdown", "holm", "welch"]

ALPHA = 0.05  # the family-wise error rate of each family, after Holm's correction
FAMILIES = ("norm vs bias-only", "depth vs shallowest")


@dataclass(frozen=True)
class Comparison:
    """One comparison of test MSE: ``a`` against ``b``, ``a − b``; ``None`` where it could not be tested."""

    family: str  # one of FAMILIES
    topology: str
    norm: str  # a's norm
    depth: int  # a's depth
    against_norm: str  # b's
    against_depth: int
    mean: float  # a's mean test MSE over its seeds
    against_mean: float
    n: int  # a's seeds (runs that did not diverge)
    against_n: int
    diff: float  # mean − against_mean
    ci_low: float | None  # the difference's 95% interval (Welch)
    ci_high: float | None
    p: float | None  # Welch's two-sided p-value
    p_holm: float | None  # adjusted over the family
    verdict: str  # "lower" | "higher" | "within noise" | "not tested"
    lr_mult: float  # a's learning-rate multiplier
    against_lr_mult: float
    lr_one_seed: bool  # the multipliers were chosen on one seed (LR halving)


def welch(a: Sequence[float], b: Sequence[float]) -> tuple[float, float, float, float] | None:
    """Welch's t-test of ``mean(a) − mean(b)``: (difference, 95% interval low, high, two-sided p), or ``None``
    with fewer than two values on a side. Two samples without any spread differ exactly or not at all."""
    from scipy import stats

    if len(a) < 2 or len(b) < 2:
        return None
    diff = statistics.fmean(a) - statistics.fmean(b)
    va, vb = statistics.variance(a) / len(a), statistics.variance(b) / len(b)
    se = math.sqrt(va + vb)
    if se == 0:
        return diff, diff, diff, 1.0 if diff == 0 else 0.0
    df = (va + vb) ** 2 / (va**2 / (len(a) - 1) + vb**2 / (len(b) - 1))  # Welch–Satterthwaite
    half = float(stats.t.ppf(0.975, df)) * se
    p = float(2 * stats.t.sf(abs(diff) / se, df))
    return diff, diff - half, diff + half, p


def holm(pvalues: Sequence[float | None]) -> list[float | None]:
    """Holm–Bonferroni adjusted p-values, in the given order (``None`` stays ``None`` and does not count): the k-th
    smallest of m is multiplied by m − k + 1, then made monotone and capped at 1.

    Example::

        >>> holm([0.01, 0.04, None, 0.03])
        [0.03, 0.06, None, 0.06]
    """
    tested = sorted((p, i) for i, p in enumerate(pvalues) if p is not None)
    out: list[float | None] = [None] * len(pvalues)
    running = 0.0
    for k, (p, i) in enumerate(tested):
        running = max(running, min(1.0, (len(tested) - k) * p))
        out[i] = running
    return out


def _chosen_on_one_seed(aggs: Sequence[Aggregate], a: Aggregate) -> bool:
    """Whether ``a``'s multiplier won against others that ran on one seed only (LR halving)."""
    others = [b for b in aggs if b.variant == a.variant
              and b.lr_mult != a.lr_mult]
    return bool(others) and all(b.runs == 1 for b in others)


def _compare(family: str, a: Aggregate, b: Aggregate, aggs: Sequence[Aggregate]) -> dict[str, Any]:
    result = welch(a.test_values, b.test_values)
    diff, low, high, p = result if result is not None else (a.mean("test_mse") - b.mean("test_mse"), None, None, None)
    return {"family": family, "topology": a.topology, "norm": a.norm, "depth": a.depth,
            "against_norm": b.norm, "against_depth": b.depth, "mean": a.mean("test_mse"),
            "against_mean": b.mean("test_mse"), "n": len(a.test_values), "against_n": len(b.test_values),
            "diff": diff, "ci_low": low, "ci_high": high, "p": p, "lr_mult": a.lr_mult,
            "against_lr_mult": b.lr_mult,
            "lr_one_seed": _chosen_on_one_seed(aggs, a) or _chosen_on_one_seed(aggs, b)}


def find(aggs: Sequence[Aggregate]) -> list[Comparison]:
    """Both families of comparisons over ``aggs`` (:func:`~.aggregate.aggregate`), each family Holm-adjusted."""
    main = [a for a in main_variants(aggs) if math.isfinite(a.mean("test_mse"))]
    at = {a.variant: a for a in main}
    pairs: dict[str, list[dict[str, Any]]] = {family: [] for family in FAMILIES}
    for (norm, topology, depth), a in at.items():
        reference = at.get((BASELINE, topology, depth))
        if norm != BASELINE and reference is not None:
            pairs[FAMILIES[0]].append(_compare(FAMILIES[0], a, reference, aggs))
        shallowest = min(d for n, t, d in at if (n, t) == (norm, topology))
        if depth != shallowest:
            pairs[FAMILIES[1]].append(_compare(FAMILIES[1], a, at[norm, topology, shallowest], aggs))
    out = []
    for rows in pairs.values():
        rows.sort(key=lambda r: (r["topology"], r["depth"], r["norm"]))
        for row, adjusted in zip(rows, holm([r["p"] for r in rows]), strict=True):
            out.append(Comparison(**row, p_holm=adjusted, verdict=_verdict(row["diff"], adjusted)))
    return out


def _verdict(diff: float, p_holm: float | None) -> str:
    if p_holm is None:
        return "not tested"
    if p_holm >= ALPHA:
        return "within noise"
    return "lower" if diff < 0 else "higher"


def _p(value: float | None) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def _lr(c: Comparison) -> str:
    text = f"×{c.lr_mult:g} vs ×{c.against_lr_mult:g}"
    return text + " (chosen on one seed)" if c.lr_one_seed else text


def findings_markdown(found: Sequence[Comparison], baseline: str = "bias-only") -> str:
    """The Findings section's tables, one per family, with the test and correction they used stated; ``baseline``
    names ``none`` (:func:`~.aggregate.baseline_name`)."""
    if not found:
        return ""
    if all(c.p is None for c in found):
        return ("Nothing can be tested: every variant has fewer than two seeds that did not diverge, so there is no "
                "noise estimate. Run 3 or more seeds (e.g. `seeds = [0, 1, 2]`) to test the differences.")
    lines = [f"Welch's t-test on the seeds' test MSEs, each variant at its own best LR; p-values Holm-adjusted within "
             f"each table; a verdict says lower or higher only where the adjusted p < {ALPHA:g}. Difference: the "
             "first minus the second, with its 95% interval."]
    for family, title, against in ((FAMILIES[0], f"Each norm against {baseline} (`none`)", baseline),
                                   (FAMILIES[1], "Each depth against the shallowest", "shallowest")):
        rows = [c for c in found if c.family == family]
        if not rows:
            continue
        lines += ["", f"**{title}** ({len(rows)} comparisons)", "",
                  f"| topology | depth | norm | test MSE | {against} | difference [95% CI] | p | Holm p | verdict | "
                  "LR |", "|---|---|---|---|---|---|---|---|---|---|"]
        for c in rows:
            depth = str(c.depth) if family == FAMILIES[0] else f"{c.depth} vs {c.against_depth}"
            interval = "" if c.ci_low is None else f" [{c.ci_low:+.2f}, {c.ci_high:+.2f}]"
            lines.append(f"| {c.topology} | {depth} | {c.norm} | {c.mean:.2f} | {c.against_mean:.2f} | "
                         f"{c.diff:+.2f}{interval} | {_p(c.p)} | {_p(c.p_holm)} | {c.verdict} | {_lr(c)} |")
        survived = [c for c in rows if c.verdict in ("lower", "higher")]
        lines += ["", f"{len(survived)} of {len(rows)} differences survive the correction"
                  + (": " + "; ".join(f"{c.topology} depth {c.depth} `{c.norm}` {c.verdict}"
                                      + ("" if family == FAMILIES[0] else f" than depth {c.against_depth}")
                                      for c in survived) + "." if survived else ".")]
    return "\n".join(lines)


def findings_json(found: Sequence[Comparison]) -> dict[str, Any]:
    """``findings.json``: the test, the correction and every comparison."""
    return {"test": "Welch's two-sample t-test on test MSE over seeds, two-sided", "correction": "Holm-Bonferroni",
            "alpha": ALPHA, "families": list(FAMILIES), "comparisons": [asdict(c) for c in found]}
