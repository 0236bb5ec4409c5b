"""The report's tables, one function per section: Accuracy, Best learning rate, Time to learn, Depth, Stability,
Generalization, Cost and the no-learning baselines, as markdown."""

from __future__ import annotations

import math
from typing import Any

from .aggregate import Aggregate, baseline_name, differ, main_variants, median_range, stability_frontier
from .names import TOPOLOGIES
from .plots import MSE_LABEL
from .rows import COLUMNS
from .thresholds import LEARN_FRACTION, LEARN_WINDOW, PLATEAU_GAIN, SATURATED

__all__ = ["all_tables", "baselines_table", "fmt", "main_only", "verdict"]


_ARROW = {"lower": "↓", "higher": "↑", None: ""}


def fmt(value: float | None, ci: float | None = None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" + ("" if ci is None else f" ± {ci:.{digits}f}")


def _base(aggs: list[Aggregate]) -> list[Aggregate]:
    """The variants at the lowest LR multiplier: the study's main grid."""
    base = min(a.lr_mult for a in aggs)
    return sorted((a for a in aggs if a.lr_mult == base), key=lambda a: (a.topology, a.depth))


def main_only(aggs: list[Aggregate]) -> list[Aggregate]:
    """Each variant at its own best LR when the grid has several multipliers (else the grid), sorted."""
    return sorted(main_variants(aggs), key=lambda a: (a.topology, a.depth))


def _at_best(aggs: list[Aggregate]) -> str:
    """A heading suffix saying at which learning rate a table's variants are."""
    return ", each at its best LR" if len({a.lr_mult for a in aggs}) > 1 else ""


def _steps(value: float | None) -> str:
    return "never" if value is None else f"{value:.0f}"


def _learned(a: Aggregate) -> str:
    """Median steps to learn with its min–max, and how many runs learned, e.g. ``120 (80–never), 2/3``."""
    values = a.steps_to_learn
    if not values:
        return "–"
    middle, lo, hi = median_range(values)
    learned = sum(v is not None for v in values)
    return f"{_steps(middle)} ({_steps(lo)}–{_steps(hi)}), {learned}/{len(values)}"


def _best_lr(aggs: list[Aggregate]) -> str:
    mults = sorted({a.lr_mult for a in aggs})
    if len(mults) < 2:
        return ""
    base = {a.variant: a for a in aggs if a.lr_mult == mults[0]}
    lines = ["### Best learning rate", "",
             f"Each variant at the LR multiplier (of {', '.join(f'{m:g}' for m in mults)}) with the lowest mean "
             "*validation* MSE over seeds; multipliers at which any seed diverged are not candidates unless nothing "
             "else was run with every seed (then the share that diverged is shown). The test MSE "
             f"(mean ± 95% CI) is measured there and never chose anything; lr × {mults[0]:g} is the shared-LR "
             "column. Steps to learn: median (min–max) over seeds, and how many learned.", "",
             f"| topology | depth | norm | best lr × | val MSE | test MSE ↓ | steps to learn | test MSE at lr × "
             f"{mults[0]:g} |", "|---|---|---|---|---|---|---|---|"]
    for a in main_only(aggs):
        shared = base.get(a.variant)
        diverged = f" ({a.diverged_rate:.0%} of seeds diverged)" if a.diverged_rate else ""
        lines.append(f"| {a.topology} | {a.depth} | {a.norm} | {a.lr_mult:g} | {fmt(a.mean('val_mse'))} "
                     f"| {fmt(a.mean('test_mse'), a.ci('test_mse'))}{diverged} | {_learned(a)} "
                     f"| {'–' if shared is None else fmt(shared.mean('test_mse'), shared.ci('test_mse'))} |")
    return "\n".join(lines)


def _time_to_learn(aggs: list[Aggregate]) -> str:
    main = [a for a in main_only(aggs) if a.steps_to_learn]
    if not main:
        return ""
    lines = [f"### Time to learn{_at_best(aggs)}", "",
             f"Optimizer steps until the trailing mean of {LEARN_WINDOW} training losses falls below "
             f"{LEARN_FRACTION:g} × the best no-learning predictor's loss on the training data; \"never\" if it did "
             "not within the run. Median over seeds, with min–max: for n seeds that range covers the median with "
             "probability 1 − 2^(1−n) (75% for 3). Plateau: runs whose validation MSE fell by less than "
             f"{PLATEAU_GAIN:.0%} over their last quarter of steps, i.e. trained to convergence; a comparison between "
             "runs that had not is a comparison at a budget. Saturated gates: the share of sigmoid gates within "
             f"{SATURATED:g} of 0 or 1 on the validation set after the first and the last epoch.", "",
             "| topology | depth | norm | lr × | median steps | min–max | learned | plateau | saturated gates, first "
             "→ last epoch |", "|---|---|---|---|---|---|---|---|---|"]
    for a in main:
        middle, lo, hi = median_range(a.steps_to_learn)
        curve = a.saturation_curve or []
        sat = f"{100 * curve[0]:.1f}% → {100 * curve[-1]:.1f}%" if curve else "–"
        learned = sum(v is not None for v in a.steps_to_learn)
        plateau = f"{sum(a.plateau)}/{len(a.plateau)}" if a.plateau else "–"
        lines.append(f"| {a.topology} | {a.depth} | {a.norm} | {a.lr_mult:g} | {_steps(middle)} "
                     f"| {_steps(lo)}–{_steps(hi)} | {learned}/{len(a.steps_to_learn)} | {plateau} | {sat} |")
    return "\n".join(lines)


def _accuracy(aggs: list[Aggregate]) -> str:
    base = min(a.lr_mult for a in aggs)
    columns = [c for c in COLUMNS if not c.where_measured or any(math.isfinite(a.mean(c.name)) for a in aggs)]
    frames = any(math.isfinite(a.mean("test_ssim")) for a in aggs)  # SSIM and PSNR only for frame targets
    lines = [f"### Accuracy and gate health (lr × {base:g}; mean ± 95% CI over seeds)", "",
             f"Test {MSE_LABEL if frames else 'MSE per element'}, lower is better. Speed is in the Cost section, "
             f"measured side by side with {baseline_name(aggs)}.", "",
             "| topology | depth | norm | runs | params | "
             + "".join(f"{c.column} {_ARROW[c.better]} | " for c in columns)
             + "diverged | peak MB | saturated gates | loss spikes |",
             "|---|---|---|---|---|" + "---|" * len(columns) + "---|---|---|---|"]
    for a in _base(aggs):
        metrics = "".join(f"{fmt(a.mean(c.name), a.ci(c.name), c.digits)} | " for c in columns)
        sat = "–" if not math.isfinite(a.gate_saturation) else f"{100 * a.gate_saturation:.1f}%"
        lines.append(
            f"| {a.topology} | {a.depth} | {a.norm} | {a.runs} | {_count(a.params)} "
            f"| {metrics}{a.diverged_rate:.0%} "
            f"| {fmt(a.peak_mem_mb, digits=1)} | {sat} | {a.loss_spikes:.1f} |")
    if not any(math.isfinite(a.gate_saturation) for a in aggs):
        lines += ["", "Saturated gates –: the model's cells expose no gate probe (normrnn's cells do; a cell of your "
                  "own can, with a `gate_probe` attribute it calls with its sigmoid gates, as the own-model guide "
                  "shows)."]
    return "\n".join(lines)


def _count(n: int | None) -> str:
    """A parameter count as a reader compares them: 12.3k, 1.05M."""
    if n is None:
        return "–"
    return f"{n / 1e6:.3g}M" if n >= 1e6 else f"{n / 1e3:.3g}k" if n >= 1e3 else str(n)


def _openstl_metrics(aggs: list[Aggregate], pixels: int | None) -> str:
    """OpenSTL's metric set for each variant at its best LR: MSE per frame and per pixel, MAE, SSIM and PSNR, as
    its Moving MNIST table reports them (so a reader can set our numbers beside theirs, per pixel)."""
    main = [a for a in main_only(aggs) if math.isfinite(a.mean("test_mse"))]
    if not main or not any(math.isfinite(a.mean("test_ssim")) for a in main):
        return ""
    per_pixel = "" if pixels is None else f" MSE per pixel is MSE per frame ÷ {pixels} pixels."
    lines = [f"### OpenSTL's metrics{_at_best(aggs)} (mean over seeds)", "",
             "Test MSE and MAE per frame (summed over a frame's pixels, averaged over frames), SSIM and PSNR per "
             f"frame, as OpenSTL's Moving MNIST table reports them.{per_pixel}", "",
             "| topology | depth | norm | LR | MSE / frame ↓ | MSE / pixel ↓ | MAE / frame ↓ | SSIM ↑ | PSNR dB ↑ |",
             "|---|---|---|---|---|---|---|---|---|"]
    for a in main:
        pixel = "–" if pixels is None else f"{a.mean('test_mse') / pixels:.5f}"
        lines.append(f"| {a.topology} | {a.depth} | {a.norm} | ×{a.lr_mult:g} | {fmt(a.mean('test_mse'))} | "
                     f"{pixel} | {fmt(a.mean('test_mae'))} | {fmt(a.mean('test_ssim'), digits=4)} | "
                     f"{fmt(a.mean('test_psnr'))} |")
    return "\n".join(lines)


def _depth(aggs: list[Aggregate]) -> str:
    main = main_only(aggs)
    depths = sorted({a.depth for a in main})
    if len(depths) < 2:
        return ""
    at = {a.variant: a for a in main}
    lines = [f"### Depth{_at_best(aggs)}", "", f"Test {MSE_LABEL} (mean ± 95% CI) by number of stacked layers.", "",
             "| topology | norm | " + " | ".join(f"depth {d}" for d in depths) + " |",
             "|---|---|" + "---|" * len(depths)]
    for topo, norm in dict.fromkeys((a.topology, a.norm) for a in main):
        cells = [at.get((norm, topo, d)) for d in depths]
        lines.append(f"| {topo} | {norm} | " + " | ".join(
            "–" if c is None else fmt(c.mean("test_mse"), c.ci("test_mse")) + (f" ({c.diverged_rate:.0%} div.)"
                                                                          if c.diverged_rate else "")
            for c in cells) + " |")
    return "\n".join(lines)


def _stability(aggs: list[Aggregate], floor: float | None) -> str:
    mults = sorted({a.lr_mult for a in aggs})
    if len(mults) < 2:
        return ""
    frontier = stability_frontier(aggs, floor)
    by_key = {(a.topology, a.depth, a.norm, a.lr_mult): a for a in aggs}
    counts = {a.runs for a in aggs}
    seeds = f"{counts.pop()} seeds each" if len(counts) == 1 else "their number in brackets, as LR halving varies it"
    floor_text = f" nor end at or above the no-learning test MSE {floor:.2f}" if floor is not None else ""
    lines = ["### Stability", "",
             f"Share of runs ({seeds}) that diverged, by learning-rate multiplier, and the largest "
             f"multiplier whose runs all neither diverge{floor_text}.", "",
             "| topology | depth | norm | " + " | ".join(f"lr × {m:g}" for m in mults) + " | max stable × |",
             "|---|---|---|" + "---|" * (len(mults) + 1)]
    for topo, depth, norm in dict.fromkeys((a.topology, a.depth, a.norm) for a in aggs):
        cells = [by_key.get((topo, depth, norm, m)) for m in mults]
        best = frontier.get((norm, topo, depth))
        lines.append(f"| {topo} | {depth} | {norm} | "
                     + " | ".join("–" if c is None else f"{c.diverged_rate:.0%}"
                                + (f" ({c.runs})" if "brackets" in seeds else "") for c in cells)
                     + f" | {'none' if best is None else f'{best:g}'} |")
    return "\n".join(lines)


def _generalization(aggs: list[Aggregate]) -> str:
    main = [a for a in main_only(aggs) if math.isfinite(a.mean("train_mse"))]
    if not main:
        return ""
    lines = [f"### Generalization{_at_best(aggs)}", "",
             f"Train {MSE_LABEL} on a fixed part of the training set (as many sequences as the test set, eval "
             "mode), test MSE, and the gap test − train (mean ± 95% CI over seeds). A norm that \"helps training "
             "but hurts test accuracy\" has a lower train MSE and a larger gap.", "",
             "| topology | depth | norm | train MSE | test MSE | gap (test − train) |", "|---|---|---|---|---|---|"]
    for a in main:
        lines.append(f"| {a.topology} | {a.depth} | {a.norm} | {fmt(a.mean('train_mse'), a.ci('train_mse'))} "
                     f"| {fmt(a.mean('test_mse'), a.ci('test_mse'))} | {fmt(a.mean('gap'), a.ci('gap'))} |")
    return "\n".join(lines)


def _cost(cost: dict[str, Any] | None, base: str = "bias-only") -> str:
    if cost is None:
        return ("### Cost\n\nNo paired cost measurement (`cost.json`) in this directory. `normrnn study` writes it "
                "before its first run, timing every variant side by side with `none`; run it on this directory "
                "to measure (finished runs are not trained again).")
    lines = ["### Cost", "",
             f"One training step (forward + backward, batch {cost['batch_size']}) of each variant's model at the "
             f"study's shapes, timed in {cost['rounds']} interleaved rounds with {base} of the same topology and "
             f"depth beside it ({cost['threads']} thread{'s' if cost['threads'] != 1 else ''}). "
             "*step ms* is the median of the variant's own times; "
             f"*÷ {base}* is the median of its per-round ratios to {base} timed beside it, with their min–max. "
             "The two need not agree: the ratio of two medians is not the median of the paired ratios, and the "
             f"paired one cancels what the machine did in each round. *noisy*: the rounds' ratios spread by more than "
             f"{NOISY:g}× (max ÷ min); read those ratios as rough.", "",
             f"| topology | depth | norm | step ms | ÷ {base} | min–max | |", "|---|---|---|---|---|---|---|"]
    for r in sorted(cost["rows"], key=lambda r: (TOPOLOGIES.index(r["topology"]), r["depth"])):
        span = "–" if r["ratio"] is None else f"{r['ratio_min']:.2f}–{r['ratio_max']:.2f}"
        lines.append(f"| {r['topology']} | {r['depth']} | {r['norm']} | {r['step_ms']:.1f} | {fmt(r['ratio'])} "
                     f"| {span} | {'noisy' if noisy(r) else ''} |")
    return "\n".join(lines)


NOISY = 1.5  # a cost row whose paired ratios spread more than this (max ÷ min) is flagged


def noisy(row: dict[str, Any]) -> bool:
    """Whether a cost row's paired ratios spread by more than :data:`NOISY` times."""
    low, high = row.get("ratio_min"), row.get("ratio_max")
    return low is not None and high is not None and low > 0 and high / low > NOISY


def all_tables(aggs: list[Aggregate], floor: float | None = None, cost: dict[str, Any] | None = None,
               pixels: int | None = None) -> str:
    return "\n\n".join(p for p in (_best_lr(aggs), _accuracy(aggs), _openstl_metrics(aggs, pixels),
                                    _time_to_learn(aggs), _depth(aggs), _stability(aggs, floor), _generalization(aggs),
                                    _cost(cost, baseline_name(aggs))) if p)


def baselines_table(rows: dict[str, dict[str, float]]) -> str:
    if not rows:
        return ""
    frames = any(m.get("test_ssim") is not None for m in rows.values())
    lines = ["### Reference predictors on the same test set (no learning)", "",
             "| predictor | test MSE | test MAE |" + (" SSIM | PSNR |" if frames else ""),
             "|---|---|---|" + ("---|---|" if frames else "")]
    for name, m in rows.items():
        quality = f" {fmt(m['test_ssim'], digits=3)} | {fmt(m['test_psnr'])} |" if frames else ""
        lines.append(f"| {name} | {m['test_mse']:.2f} | {m['test_mae']:.2f} |{quality}")
    best = min(rows, key=lambda k: rows[k]["test_mse"])
    lines += ["", f"A model whose test MSE is not below {rows[best]['test_mse']:.2f} ({best}) has learned nothing."]
    return "\n".join(lines)


def verdict(a: Aggregate, b: Aggregate, key: str = "test_mse") -> str:
    v = differ(a, b, key)
    return f" ({v})" if v else " (one seed: no noise estimate)"
