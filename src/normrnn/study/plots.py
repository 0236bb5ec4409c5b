"""The report's plots: accuracy by norm, by depth, against the LR multiplier, train vs test, and cost.

Every plot labels its axes with units, fits its y-range to the data (with the no-learning floor drawn and
kept in view), and draws error bars only where there is a confidence interval (two or more seeds).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .._io import atomic_write, atomic_write_csv
from .aggregate import Aggregate, baseline_name, main_variants
from .names import BASELINE, TOPOLOGIES
from .thresholds import SATURATED

__all__ = ["MSE_LABEL", "plot_all"]

MSE_LABEL = "MSE per frame (summed over pixels)"

Floor = tuple[str, float] | None  # (name, test MSE) of the best no-learning predictor


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> str:
    plt = _pyplot()
    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path.name


def _fit_y(ax: Any, values: Sequence[float], floor: Floor, margin: float = 0.08) -> None:
    """A y-range around the data (and the floor), not from zero: differences of a few percent stay visible."""
    pts = [v for v in values if v is not None and math.isfinite(v)] + ([floor[1]] if floor else [])
    if not pts:
        return
    lo, hi = min(pts), max(pts)
    pad = (hi - lo) * margin or abs(hi) * 0.05 or 1.0
    ax.set_ylim(lo - pad, hi + pad)


def _floor_line(ax: Any, floor: Floor) -> None:
    if floor is not None:
        ax.axhline(floor[1], color="gray", ls="--", lw=1, label=f"{floor[0]} (no learning)")


def _ci(a: Aggregate, key: str) -> float:
    return a.ci(key) or 0.0


def curve_rows(main: list[Aggregate], pixels: int | None) -> list[dict[str, Any]]:
    """The learning curves' data, one row per variant and evaluation: means over seeds of the validation MSE per
    frame and of the training loss on the same scale (the per-pixel training MSE × ``pixels`` per frame; empty where
    the loss is not the MSE or the frame size is unknown)."""
    out = []
    for a in main:
        xs = a.val_steps or list(range(1, len(a.val_curve) + 1))
        train = [v * pixels for v in a.train_curve] if pixels and a.train_curve else []
        for i, (step, val) in enumerate(zip(xs, a.val_curve, strict=False)):
            out.append({"topology": a.topology, "depth": a.depth, "norm": a.norm, "lr_mult": a.lr_mult,
                        "step": step, "val_mse": val, "train_mse": train[i] if i < len(train) else None})
    return out


def plot_curves(main: list[Aggregate], out: Path, floor: Floor, prefix: str, pixels: int | None = None) -> str | None:
    """Validation MSE (solid) and training MSE (dotted) per frame against optimizer steps: one panel per topology
    and depth, one line per norm at its learning rate in ``main``, its legend saying how many seeds reached a
    plateau. Its data go to ``learning_curves.csv`` (:func:`curve_rows`)."""
    main = [a for a in main if a.val_curve]
    if not main:  # every run diverged before its first evaluation
        return None
    rows = curve_rows(main, pixels)
    atomic_write_csv(out / f"{prefix}learning_curves.csv", rows)  # the plotted values, to read and check
    plt = _pyplot()
    topologies = sorted({a.topology for a in main}, key=TOPOLOGIES.index)
    depths = sorted({a.depth for a in main})
    fig, axes = plt.subplots(len(topologies), len(depths), figsize=(4.2 * len(depths) + 0.6, 3.3 * len(topologies)),
                             squeeze=False)
    for (r, topo), (c, depth) in itertools.product(enumerate(topologies), enumerate(depths)):
        ax, later = axes[r][c], []
        for i, a in enumerate(x for x in main if (x.topology, x.depth) == (topo, depth)):
            color = f"C{i % 10}"
            mine = [row for row in rows if (row["norm"], row["topology"], row["depth"], row["lr_mult"])
                    == (a.norm, topo, depth, a.lr_mult)]
            plateau = f", plateau {sum(a.plateau)}/{len(a.plateau)}" if a.plateau else ""
            ax.plot([row["step"] for row in mine], [row["val_mse"] for row in mine], marker="o", ms=3, color=color,
                    label=f"{a.norm} × {a.lr_mult:g}{plateau}")
            train = [(row["step"], row["train_mse"]) for row in mine if row["train_mse"] is not None]
            if train:
                ax.plot(*zip(*train, strict=True), ls=":", color=color, lw=1)
            skip = 1 if len(mine) > 3 else 0  # a long curve's first evaluation may spike: leave it out
            later += [row["val_mse"] for row in mine[skip:]] + [v for _, v in train[skip:]]
        _floor_line(ax, floor)
        if pixels:
            ax.plot([], [], ls=":", color="gray", lw=1, label="training MSE per frame")  # the dotted lines' key
        ax.set(title=f"{topo}, depth {depth}", xlabel="optimizer step" if main[0].val_steps else "epoch",
               ylabel="MSE per frame" if c == 0 else "")
        ax.xaxis.get_major_locator().set_params(integer=True)
        _fit_y(ax, later, floor)  # each panel its own range, past the first evaluation's spike
        ax.legend(fontsize=6)
    fig.suptitle("learning curves, each norm at its learning rate (mean over seeds)", fontsize=9)
    return _save(fig, out / f"{prefix}learning_curves.png")


def plot_test_mse(main: list[Aggregate], out: Path, floor: Floor, prefix: str, note: str = "") -> str:
    """Test MSE by norm and topology (deepest depth when there are several), 95% CIs where there are seeds."""
    plt = _pyplot()
    depth = max(a.depth for a in main)
    main = [a for a in main if a.depth == depth]
    topologies = sorted({a.topology for a in main}, key=TOPOLOGIES.index)
    norms = list(dict.fromkeys(a.norm for a in main))
    width = 0.8 / len(topologies)
    fig, ax = plt.subplots(figsize=(max(0.8 * len(norms) * len(topologies) + 2.5, 5.0), 3.8))
    for j, topo in enumerate(topologies):
        vals = [next((a for a in main if a.norm == n and a.topology == topo), None) for n in norms]
        xs = [i + j * width for i, v in enumerate(vals) if v is not None]
        present = [v for v in vals if v is not None]
        ax.bar(xs, [v.mean("test_mse") for v in present], width, label=topo)
        with_ci = [(x, v) for x, v in zip(xs, present, strict=True) if v.ci("test_mse") is not None]
        if with_ci:
            ax.errorbar([x for x, _ in with_ci], [v.mean("test_mse") for _, v in with_ci],
                        yerr=[v.ci("test_mse") for _, v in with_ci], fmt="none", ecolor="k", capsize=3)
    ax.set_xticks([i + width * (len(topologies) - 1) / 2 for i in range(len(norms))], norms)
    _floor_line(ax, floor)
    tops = [a.mean("test_mse") + _ci(a, "test_mse") for a in main] + ([floor[1]] if floor else [])
    ax.set_ylim(0, 1.08 * max((t for t in tops if math.isfinite(t)), default=1.0))  # bars from zero
    seeds = max(a.runs for a in main)
    ax.set(xlabel="norm", ylabel=f"test {MSE_LABEL}",
           title=f"test MSE at depth {depth}{note}, lower is better\n"
           + ("95% CI over seeds" if seeds > 1 else "one seed (no CI)"))
    ax.legend(fontsize=8)
    return _save(fig, out / f"{prefix}test_mse.png")


def plot_depth(main: list[Aggregate], out: Path, floor: Floor, prefix: str, note: str = "") -> str:
    """Test MSE against depth, one line per norm, stacked and residual side by side, 95% CI bands."""
    plt = _pyplot()
    topologies = sorted({a.topology for a in main}, key=TOPOLOGIES.index)
    fig, axes = plt.subplots(1, len(topologies), figsize=(5 * len(topologies), 3.8), squeeze=False, sharey=True)
    for ax, topo in zip(axes[0], topologies, strict=True):
        for norm in dict.fromkeys(a.norm for a in main):
            line = sorted((a for a in main if a.norm == norm and a.topology == topo
                           and math.isfinite(a.mean("test_mse"))), key=lambda a: a.depth)
            if not line:
                continue
            depths, means = [a.depth for a in line], [a.mean("test_mse") for a in line]
            (handle,) = ax.plot(depths, means, marker="o", label=norm)
            if all(a.ci("test_mse") is not None for a in line):
                ax.fill_between(depths, [m - _ci(a, "test_mse") for m, a in zip(means, line, strict=True)],
                                [m + _ci(a, "test_mse") for m, a in zip(means, line, strict=True)],
                                color=handle.get_color(), alpha=0.15)
        _floor_line(ax, floor)
        ax.set(xscale="log", title=f"{topo}: test MSE by depth{note} (95% CI)", xlabel="stacked layers (depth)",
               ylabel=f"test {MSE_LABEL}")
        depths = sorted({a.depth for a in main})
        ax.set_xticks(depths, [str(d) for d in depths])
        ax.minorticks_off()
        ax.legend(fontsize=7)
    _fit_y(axes[0][0], [a.mean("test_mse") + s * _ci(a, "test_mse") for a in main for s in (-1, 1)], floor)
    return _save(fig, out / f"{prefix}depth.png")


def plot_stability(aggs: list[Aggregate], out: Path, floor: Floor, prefix: str) -> str:
    """Against the learning-rate multiplier, per norm and topology: the final test MSE (95% CI bands, the
    no-learning floor drawn) and the share of runs that diverged."""
    plt = _pyplot()
    fig, (ax_mse, ax_div) = plt.subplots(1, 2, figsize=(11, 3.9))
    seeds = max(a.runs for a in aggs)
    shown = []
    colors = {n: f"C{i % 10}" for i, n in enumerate(dict.fromkeys(a.norm for a in aggs))}
    for norm, topo in dict.fromkeys((a.norm, a.topology) for a in aggs):
        line = sorted((a for a in aggs if a.norm == norm and a.topology == topo), key=lambda a: a.lr_mult)
        depths = {a.depth for a in line}
        line = [a for a in line if a.depth == min(depths)]  # one depth per line: the shallowest
        style = {"color": colors[norm], "ls": "-" if topo == "stacked" else "--", "marker": "o",
                 "label": f"{norm} ({topo})"}
        mults = [a.lr_mult for a in line]
        ok = [(a.lr_mult, a.mean("test_mse"), a.ci("test_mse")) for a in line if math.isfinite(a.mean("test_mse"))]
        if ok:
            ax_mse.plot([m for m, _, _ in ok], [v for _, v, _ in ok], **style)
            if all(ci is not None for _, _, ci in ok):  # whiskers, not bands: with few seeds a band hides the lines
                ax_mse.errorbar([m for m, _, _ in ok], [v for _, v, _ in ok], yerr=[ci for _, _, ci in ok],
                                fmt="none", ecolor=style["color"], capsize=3, lw=0.8)
            shown += [v for _, v, _ in ok]
        ax_div.plot(mults, [a.diverged_rate for a in line], **style)
    _floor_line(ax_mse, floor)
    _fit_y(ax_mse, shown, floor)
    ax_mse.set(xscale="log", xlabel="learning-rate multiplier", ylabel=f"test {MSE_LABEL}",
               title="final test MSE of the runs that did not diverge")
    ax_div.set(xscale="log", xlabel="learning-rate multiplier", ylabel=f"fraction of runs diverged ({seeds} seeds)",
               title="divergence", ylim=(-0.05, 1.05))
    ax_mse.legend(fontsize=6, ncol=2)
    return _save(fig, out / f"{prefix}stability.png")


def plot_generalization(main: list[Aggregate], out: Path, prefix: str) -> str | None:
    """Train MSE against test MSE per variant, with the diagonal: the gap at a glance."""
    pts = [a for a in main if math.isfinite(a.mean("train_mse")) and math.isfinite(a.mean("test_mse"))]
    if not pts:
        return None
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(5.2, 4.2))
    markers = dict(zip(dict.fromkeys(a.topology for a in pts), "os^v", strict=False))
    colors = {n: f"C{i % 10}" for i, n in enumerate(dict.fromkeys(a.norm for a in pts))}
    for a in pts:
        ax.errorbar(a.mean("train_mse"), a.mean("test_mse"), xerr=a.ci("train_mse"), yerr=a.ci("test_mse"),
                    fmt=markers[a.topology], color=colors[a.norm], ms=4 + a.depth ** 0.5, capsize=2)
    lo = min(min(a.mean("train_mse"), a.mean("test_mse")) for a in pts)
    hi = max(max(a.mean("train_mse"), a.mean("test_mse")) for a in pts)
    ax.plot([lo, hi], [lo, hi], color="gray", lw=0.8, ls=":", label="test = train")
    for n, c in colors.items():
        ax.plot([], [], "o", color=c, label=n)
    for t, m in markers.items():
        ax.plot([], [], m, color="k", mfc="none", label=t)
    ax.set(xlabel=f"train {MSE_LABEL}", ylabel=f"test {MSE_LABEL}",
           title="generalization: above the diagonal = worse on test")
    ax.legend(fontsize=6)
    return _save(fig, out / f"{prefix}generalization.png")


def plot_cost(cost: dict[str, Any], out: Path, prefix: str, baseline: str = "bias-only") -> str:
    """Paired step-time ratios to ``baseline`` (``none``; median, min-max over rounds), per norm, topology and
    depth."""
    plt = _pyplot()
    rows = [r for r in cost["rows"] if r["norm"] != BASELINE and r["ratio"] is not None]
    rows.sort(key=lambda r: (TOPOLOGIES.index(r["topology"]), r["depth"], r["norm"]))
    fig, ax = plt.subplots(figsize=(max(0.3 * len(rows) + 3, 5.0), 4.2))
    labels = [f"{r['norm']} {r['topology'][:3]} d{r['depth']}" for r in rows]
    ratios = [r["ratio"] for r in rows]
    colors = {n: f"C{i % 10}" for i, n in enumerate(dict.fromkeys(r["norm"] for r in rows))}
    ax.bar(range(len(rows)), ratios, color=[colors[r["norm"]] for r in rows])
    ax.errorbar(range(len(rows)), ratios, yerr=[[r["ratio"] - r["ratio_min"] for r in rows],
                                                [r["ratio_max"] - r["ratio"] for r in rows]],
                fmt="none", ecolor="k", capsize=2)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks(range(len(rows)), labels, fontsize=6, rotation=60, ha="right", rotation_mode="anchor")
    ax.set(ylabel=f"training step time ÷ {baseline}", title="cost: paired, interleaved rounds\n(bar: median, whisker: "
           "min–max)")
    _fit_y(ax, [r["ratio_min"] for r in rows] + [r["ratio_max"] for r in rows] + [1.0], None)
    return _save(fig, out / f"{prefix}cost.png")


def plot_saturation(main: list[Aggregate], out: Path, prefix: str) -> str | None:
    """Gate saturation (validation, after each epoch) over training: one panel per topology and depth, one line
    per norm, each at its learning rate in ``main``."""
    main = [a for a in main if a.saturation_curve]
    if not main:
        return None
    plt = _pyplot()
    panels = sorted({(a.topology, a.depth) for a in main})
    cols = min(4, len(panels))
    rows = math.ceil(len(panels) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.6 * cols, 2.9 * rows), squeeze=False, sharey=True)
    for ax, (topo, depth) in zip(axes.flat, panels, strict=False):
        for a in (a for a in main if (a.topology, a.depth) == (topo, depth)):
            curve = a.saturation_curve
            ax.plot(range(1, len(curve) + 1), [100 * v for v in curve], marker=".",
                    label=f"{a.norm} (lr × {a.lr_mult:g})")
        ax.set(title=f"{topo}, depth {depth}", xlabel="epoch", ylabel="saturated gates (%)")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=6)
    for ax in list(axes.flat)[len(panels):]:
        ax.axis("off")
    fig.suptitle(f"sigmoid gates within {SATURATED:g} of 0 or 1, on the validation set, mean over seeds",
                 fontsize=9)
    return _save(fig, out / f"{prefix}saturation.png")


# each plot's heading and one-line caption in report.md, by file name (less the mixed-report prefix)
FIGURES: dict[str, tuple[str, str]] = {
    "learning_curves.png": ("Learning curves", "Validation MSE (solid) and training MSE (dotted: the per-pixel "
                            "training loss averaged over each epoch's steps, × pixels per frame, so on the same "
                            "scale) against optimizer steps, per "
                            "topology and depth; the legend counts the seeds whose last quarter of steps improved "
                            "validation MSE by under 2% (a plateau). The values are in the CSV of the same name."),
    "test_mse.png": ("Test MSE by norm", "Test MSE at the deepest depth, from zero, with 95% CIs over seeds; the "
                     "dashed line is the best no-learning predictor."),
    "depth.png": ("Test MSE by depth", "Test MSE against the number of stacked layers (log scale), 95% CIs."),
    "stability.png": ("Stability", "Final test MSE of the runs that did not diverge, and the share that diverged, "
                      "against the learning-rate multiplier."),
    "generalization.png": ("Generalization", "Test against train MSE per variant; above the diagonal is worse on "
                           "test."),
    "saturation.png": ("Gate saturation", "The share of sigmoid gates within 0.01 of 0 or 1 on the validation set "
                       "after each epoch."),
    "cost.png": ("Cost", "Training-step time ÷ the `none` variant's, timed side by side in interleaved rounds: "
                 "median and min–max."),
}


def figure_markdown(name: str) -> str:
    """A plot in report.md (``name`` with a mixed report's prefix or none): a heading, the image, a caption."""
    heading, caption = next(v for k, v in FIGURES.items() if name.endswith(k))
    return f"#### {heading}\n\n![{heading}]({name})\n\n{caption}"


def plot_all(aggs: list[Aggregate], out: Path, floor: Floor, cost: dict[str, Any] | None,
             prefix: str = "", pixels: int | None = None) -> list[str]:
    """Every plot that the study's grid supports, by file name; ``pixels`` per frame put the training loss (a
    per-pixel MSE) on the validation MSE's per-frame scale (``None``: unknown, or another loss; not drawn)."""
    main = main_variants(aggs)
    note = ", each at its best LR" if len({a.lr_mult for a in aggs}) > 1 else ""
    names = [plot_curves(main, out, floor, prefix, pixels), plot_test_mse(main, out, floor, prefix, note)]
    if len({a.depth for a in main}) > 1:
        names.append(plot_depth(main, out, floor, prefix, note))
    if len({a.lr_mult for a in aggs}) > 1:
        names.append(plot_stability(aggs, out, floor, prefix))
    names.append(plot_generalization(main, out, prefix))
    names.append(plot_saturation(main, out, prefix))
    if cost is not None and any(r["norm"] != BASELINE and r["ratio"] is not None for r in cost["rows"]):
        names.append(plot_cost(cost, out, prefix, baseline_name(aggs)))
    return [n for n in names if n]
