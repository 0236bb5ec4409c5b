"""``normrnn report DIR...``: tables, plots, CSV/JSON and a plain-language summary of a study.

Aggregates are over seeds: the mean and a 95% confidence interval from Student's t. Two variants differ
"beyond noise" only when their intervals do not overlap; with one seed there is no noise estimate, and
the summary says so instead of ranking.
"""

from __future__ import annotations

import csv
import io
import json
import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write, atomic_write_text
from .results import load_results

__all__ = ["Aggregate", "Report", "aggregate", "mean_ci", "write_report"]

_T975 = [12.706, 4.303, 3.182, 2.776, 2.571, 2.447, 2.365, 2.306, 2.262, 2.228, 2.201, 2.179, 2.160, 2.145,
         2.131, 2.120, 2.110, 2.101, 2.093, 2.086]  # Student's t, two-sided 95%, df = 1..20
METRICS = ("test_mse", "test_mae", "test_ssim", "test_psnr")
Aggregate = dict[str, Any]


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


def _directory_hash(directory: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The config hash and settings recorded in ``DIR/study.json`` (``None`` when it is missing or damaged)."""
    from .config import StudyConfig

    try:
        config = StudyConfig(**json.loads((directory / "study.json").read_text()))
    except (OSError, ValueError, TypeError):
        return None, None
    return config.config_hash, config.identity()


def _load_studies(directories: Sequence[str | Path], *, mixed: bool) -> dict[str, list[tuple[Path, list[dict]]]]:
    """Rows grouped by study (config hash), each with its directories; different studies refused unless ``mixed``.

    A row carries its study's hash; rows written before hashes existed take their directory's ``study.json``.
    """
    studies: dict[str, list[tuple[Path, list[dict[str, Any]]]]] = defaultdict(list)
    settings: dict[str, tuple[Path, dict[str, Any] | None]] = {}
    for d in map(Path, directories):
        default, identity = _directory_hash(d)
        by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in load_results(d):
            by_hash[str(row.get("config_hash", default))].append(row)
        for h, rows in by_hash.items():
            studies[h].append((d, rows))
            settings.setdefault(h, (d, identity if h == default else None))
    if len(studies) > 1 and not mixed:
        raise ValueError("refusing to merge different studies: " + _differences(settings)
                         + "; report them one by one, or pass --mixed to report each study in its own section")
    return dict(studies)


def _differences(settings: dict[str, tuple[Path, dict[str, Any] | None]]) -> str:
    """Which settings differ between studies, or their hashes when a ``study.json`` is missing."""
    known = [s for _, s in settings.values() if s is not None]
    if len(known) == len(settings):
        keys = sorted(k for k in known[0] if len({json.dumps(s.get(k)) for s in known}) > 1)
        where = ", ".join(f"{d} ({', '.join(f'{k}={s[k]}' for k in keys)})" for d, s in settings.values())
        return f"they differ in {keys}: {where}"
    return "their config hashes differ: " + ", ".join(f"{d}: {h}" for h, (d, _) in settings.items())


def _merge(groups: list[tuple[Path, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for _, group in groups:
        for row in group:
            rows[row["run_id"]] = row  # the same run (same study) in two directories counts once
    return list(rows.values())


def aggregate(rows: Sequence[dict[str, Any]]) -> list[Aggregate]:
    """One entry per variant (norm, topology, depth, lr_mult), over seeds, in first-seen order."""
    groups: dict[tuple, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        groups[(r["norm"], r["topology"], r["depth"], r["lr_mult"])].append(r)
    base_time = {(t, d, m): statistics.median(x["step_time_s"] for x in g if x["step_time_s"])
                 for (n, t, d, m), g in groups.items() if n == "none" and any(x["step_time_s"] for x in g)}
    out = []
    for (norm, topo, depth, mult), g in groups.items():
        ok = [r for r in g if not r["diverged"]]
        agg: Aggregate = {"norm": norm, "topology": topo, "depth": depth, "lr_mult": mult, "runs": len(g),
                          "diverged_rate": 1 - len(ok) / len(g)}
        for m in METRICS:
            agg[m], agg[m + "_ci"] = mean_ci([r[m] for r in ok])
        times = [r["step_time_s"] for r in g if r["step_time_s"]]
        agg["step_time_s"] = statistics.median(times) if times else math.nan
        base = base_time.get((topo, depth, mult))
        agg["time_vs_bias"] = agg["step_time_s"] / base if base else math.nan
        agg["peak_mem_mb"] = statistics.fmean(r["peak_mem_mb"] for r in g)
        sat = [r["gate_saturation_mean"] for r in ok if r["gate_saturation_mean"] is not None]
        agg["gate_saturation"] = statistics.fmean(sat) if sat else math.nan
        agg["loss_spikes"] = statistics.fmean(r["loss_spikes"] for r in g)
        curves = [r["val_curve"] for r in ok if r["val_curve"]]
        length = min((len(c) for c in curves), default=0)
        agg["val_curve"] = [statistics.fmean(c[i] for c in curves) for i in range(length)]
        out.append(agg)
    return out


def _fmt(value: float, ci: float | None = None, digits: int = 2) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" + ("" if ci is None else f" ± {ci:.{digits}f}")


def _tables(aggs: list[Aggregate]) -> str:
    base = min(a["lr_mult"] for a in aggs)
    lines = [f"### Accuracy, cost and gate health (lr × {base:g}; mean ± 95% CI over seeds)", "",
             "| topology | depth | norm | runs | test MSE ↓ | test MAE ↓ | SSIM ↑ | PSNR ↑ | diverged | "
             "step time ÷ bias-only | peak MB | saturated gates | loss spikes |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for a in sorted((a for a in aggs if a["lr_mult"] == base), key=lambda a: (a["topology"], a["depth"])):
        lines.append(
            f"| {a['topology']} | {a['depth']} | {a['norm']} | {a['runs']} | {_fmt(a['test_mse'], a['test_mse_ci'])} "
            f"| {_fmt(a['test_mae'], a['test_mae_ci'])} | {_fmt(a['test_ssim'], a['test_ssim_ci'], 3)} "
            f"| {_fmt(a['test_psnr'], a['test_psnr_ci'])} | {a['diverged_rate']:.0%} | {_fmt(a['time_vs_bias'])} "
            f"| {_fmt(a['peak_mem_mb'], digits=1)} | {_fmt(100 * a['gate_saturation'], digits=1)}% "
            f"| {a['loss_spikes']:.1f} |")
    mults = sorted({a["lr_mult"] for a in aggs})
    if len(mults) > 1:
        lines += ["", "### Divergence rate by learning-rate multiplier", "",
                  "| topology | depth | norm | " + " | ".join(f"lr × {m:g}" for m in mults) + " |",
                  "|---|---|---|" + "---|" * len(mults)]
        by_key = {(a["topology"], a["depth"], a["norm"], a["lr_mult"]): a for a in aggs}
        for topo, depth, norm in dict.fromkeys((a["topology"], a["depth"], a["norm"]) for a in aggs):
            cells = [by_key.get((topo, depth, norm, m)) for m in mults]
            lines.append(f"| {topo} | {depth} | {norm} | "
                         + " | ".join("–" if c is None else f"{c['diverged_rate']:.0%}" for c in cells) + " |")
    return "\n".join(lines)


def _load_baselines(directories: Sequence[str | Path]) -> dict[str, dict[str, float]]:
    path = next((Path(d) / "baselines.json" for d in directories if (Path(d) / "baselines.json").exists()), None)
    return {} if path is None else json.loads(path.read_text())


def _baselines(rows: dict[str, dict[str, float]]) -> str:
    if not rows:
        return ""
    lines = ["### Reference predictors on the same test set (no learning)", "",
             "| predictor | test MSE | test MAE | SSIM | PSNR |", "|---|---|---|---|---|"]
    for name, m in rows.items():
        lines.append(f"| {name} | {m['test_mse']:.2f} | {m['test_mae']:.2f} | {m['test_ssim']:.3f} "
                     f"| {m['test_psnr']:.2f} |")
    best = min(rows, key=lambda k: rows[k]["test_mse"])
    lines += ["", f"A model whose test MSE is not below {rows[best]['test_mse']:.2f} ({best}) has learned no motion."]
    return "\n".join(lines)


def _differ(a: Aggregate, b: Aggregate, key: str = "test_mse") -> str | None:
    """'lower'/'higher' when the 95% intervals do not overlap, 'within noise' when they do, None without CIs."""
    if a[key + "_ci"] is None or b[key + "_ci"] is None:
        return None
    if abs(a[key] - b[key]) <= a[key + "_ci"] + b[key + "_ci"]:
        return "within noise"
    return "lower" if a[key] < b[key] else "higher"


def summarize(aggs: list[Aggregate], baselines: dict[str, dict[str, float]] | None = None) -> str:
    """Plain-language answers to the seed's questions, from the numbers."""
    base = min(a["lr_mult"] for a in aggs)
    at = {(a["norm"], a["topology"], a["depth"]): a for a in aggs if a["lr_mult"] == base}
    lines = ["### What the numbers say", ""]
    if baselines:
        name = min(baselines, key=lambda k: baselines[k]["test_mse"])
        floor = baselines[name]["test_mse"]
        learned = [f"`{a['norm']}` ({a['topology']})" for a in at.values() if a["test_mse"] < floor]
        lines.append(f"- Below the best no-learning predictor ({name}, test MSE {floor:.2f}): "
                     + (", ".join(learned) if learned else "no variant yet; train longer") + ".")
    seeds = max(a["runs"] for a in aggs)
    if seeds < 2:
        lines.append("- **One seed per variant, so there is no noise estimate.** The differences below are "
                     "single measurements and none of them is established; run a preset with 3 or more seeds "
                     "(e.g. `--preset standard`) before drawing conclusions.")
    for (norm, topo, depth), a in sorted(at.items(), key=lambda kv: (kv[0][1], kv[0][2])):
        ref = at.get(("none", topo, depth))
        if norm == "none" or ref is None or not math.isfinite(a["test_mse"]) or not math.isfinite(ref["test_mse"]):
            continue
        rel = a["test_mse"] / ref["test_mse"] - 1 if ref["test_mse"] else math.nan
        verdict = _differ(a, ref)
        tail = f" ({verdict})" if verdict else ""
        lines.append(f"- {topo}, depth {depth}: `{norm}` test MSE {a['test_mse']:.2f} vs bias-only "
                     f"{ref['test_mse']:.2f}, {rel:+.1%}{tail}; step time × {a['time_vs_bias']:.2f}.")
    for depth in sorted({k[2] for k in at}):
        for norm in dict.fromkeys(k[0] for k in at):
            s, r = at.get((norm, "stacked", depth)), at.get((norm, "residual", depth))
            if s and r and math.isfinite(s["test_mse"]) and math.isfinite(r["test_mse"]):
                verdict = _differ(r, s)
                lines.append(f"- Residual vs stacked, `{norm}`, depth {depth}: {r['test_mse']:.2f} vs "
                             f"{s['test_mse']:.2f}" + (f" ({verdict})" if verdict else "") + ".")
    layer = [a for k, a in at.items() if k[0] == "layer" and math.isfinite(a["test_mse"])]
    group = [a for k, a in at.items() if k[0].startswith("group") and math.isfinite(a["test_mse"])]
    if layer and group:
        g, l_ = statistics.fmean(a["test_mse"] for a in group), statistics.fmean(a["test_mse"] for a in layer)
        lines.append(f"- Group vs layer norm (mean over topologies): test MSE {g:.2f} vs {l_:.2f}.")
    top = max(a["lr_mult"] for a in aggs)
    if top != base:
        risky = [f"`{a['norm']}` ({a['topology']}) {a['diverged_rate']:.0%}" for a in aggs
                 if a["lr_mult"] == top and a["diverged_rate"] > 0]
        lines.append(f"- At lr × {top:g}: " + (", ".join(risky) + " diverged." if risky else "no variant diverged."))
    return "\n".join(lines)


def _plots(aggs: list[Aggregate], out: Path, floor: tuple[str, float] | None = None, prefix: str = "") -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    base = min(a["lr_mult"] for a in aggs)
    main = [a for a in aggs if a["lr_mult"] == base]
    topologies = list(dict.fromkeys(a["topology"] for a in main))
    names = []

    fig, axes = plt.subplots(1, len(topologies), figsize=(5 * len(topologies), 3.6), squeeze=False, sharey=True)
    for ax, topo in zip(axes[0], topologies, strict=True):
        for a in (a for a in main if a["topology"] == topo and a["val_curve"]):
            ax.plot(range(1, len(a["val_curve"]) + 1), a["val_curve"], marker="o", label=f"{a['norm']} d{a['depth']}")
        if floor is not None:
            ax.axhline(floor[1], color="gray", ls="--", lw=1, label=f"{floor[0]} (no learning)")
        ax.set(title=f"validation MSE, {topo}", xlabel="epoch", ylabel="MSE per frame")
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.legend(fontsize=7)
    names.append(_save(fig, out / f"{prefix}learning_curves.png"))

    norms = list(dict.fromkeys(a["norm"] for a in main))
    fig, ax = plt.subplots(figsize=(0.7 * len(norms) * len(topologies) + 2, 3.6))
    width = 0.8 / len(topologies)
    for j, topo in enumerate(topologies):
        vals = [next((a for a in main if a["norm"] == n and a["topology"] == topo), None) for n in norms]
        ax.bar([i + j * width for i in range(len(norms))], [v["test_mse"] if v else 0 for v in vals], width,
               yerr=[(v["test_mse_ci"] or 0) if v else 0 for v in vals], capsize=3, label=topo)
    ax.set_xticks([i + width * (len(topologies) - 1) / 2 for i in range(len(norms))], norms)
    if floor is not None:
        ax.axhline(floor[1], color="gray", ls="--", lw=1, label=f"{floor[0]} (no learning)")
    seeds = max(a["runs"] for a in main)
    ax.set(ylabel="test MSE per frame (lower is better)",
           title="test MSE by norm" + (", 95% CI over seeds" if seeds > 1 else ", one seed (no CI)"))
    ax.legend(fontsize=8)
    names.append(_save(fig, out / f"{prefix}test_mse.png"))

    fig, ax = plt.subplots(figsize=(0.7 * len(norms) * len(topologies) + 2, 3.2))
    for j, topo in enumerate(topologies):
        vals = [next((a["time_vs_bias"] for a in main if a["norm"] == n and a["topology"] == topo), 0) for n in norms]
        ax.bar([i + j * width for i in range(len(norms))], vals, width, label=topo)
    ax.axhline(1.0, color="k", lw=0.8)
    ax.set_xticks([i + width * (len(topologies) - 1) / 2 for i in range(len(norms))], norms)
    ax.set(ylabel="step time ÷ bias-only", title="cost of normalization per training step")
    ax.legend()
    names.append(_save(fig, out / f"{prefix}overhead.png"))

    mults = sorted({a["lr_mult"] for a in aggs})
    if len(mults) > 1:
        fig, ax = plt.subplots(figsize=(5, 3.4))
        for norm in norms:
            rates = [statistics.fmean(a["diverged_rate"] for a in aggs if a["norm"] == norm and a["lr_mult"] == m)
                     for m in mults]
            ax.plot(mults, rates, marker="o", label=norm)
        ax.set(xscale="log", xlabel="learning-rate multiplier", ylabel="divergence rate", title="stability")
        ax.legend(fontsize=7)
        names.append(_save(fig, out / f"{prefix}divergence.png"))
    return names


def _save(fig: Any, path: Path) -> str:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    atomic_write(path, lambda f: fig.savefig(f, dpi=110, format="png"))
    plt.close(fig)
    return path.name


@dataclass(frozen=True)
class Report:
    """A written report: where it is, and its parts as data, so a caller prints what it needs."""

    path: Path  # report.md
    title: str
    tables: str  # the accuracy, divergence and cost tables (markdown)
    baselines: str  # the no-learning predictors (markdown)
    summary: str  # one line per finding
    plots: tuple[str, ...]  # PNG file names beside report.md

    @property
    def markdown(self) -> str:
        """The whole ``report.md``."""
        parts = [self.tables, self.baselines, self.summary, "\n".join(f"![{p}]({p})" for p in self.plots)]
        return self.title + "\n\n" + "\n\n".join(p for p in parts if p) + "\n"

    def __str__(self) -> str:
        return self.markdown

    def __contains__(self, text: str) -> bool:
        return text in self.markdown


def write_report(directories: Sequence[str | Path], out: str | Path | None = None, *,
                 mixed: bool = False) -> Report:
    """Write ``report.md``, ``results.csv``, ``results.json`` and PNG plots into ``out`` (default: the
    first directory); return the :class:`Report`.

    Directories of different studies (settings that change results) are refused, naming what differs;
    ``mixed=True`` reports each study in its own section with its own baselines and plots, never pooled.
    """
    studies = _load_studies(directories, mixed=mixed)
    rows = [row for groups in studies.values() for row in _merge(groups)]
    if not rows:
        raise ValueError(f"no results in {', '.join(map(str, directories))}: expected results.jsonl from a study")
    out = Path(out or directories[0])
    out.mkdir(parents=True, exist_ok=True)
    parts: list[tuple[str, str, str, list[str]]] = []  # (tables, baselines, summary, plots) per study
    for h, groups in studies.items():
        study_rows = _merge(groups)
        aggs = aggregate(study_rows)
        baselines = _load_baselines([d for d, _ in groups])
        best = min(baselines, key=lambda k: baselines[k]["test_mse"]) if baselines else None
        label = f"{study_rows[0].get('study')} ({h})"
        prefix = f"{study_rows[0].get('study')}-{h}-" if len(studies) > 1 else ""
        plots = _plots(aggs, out, None if best is None else (best, baselines[best]["test_mse"]), prefix)
        heading = f"## Study {label}, from {', '.join(str(d) for d, _ in groups)}\n\n" if len(studies) > 1 else ""
        parts.append((heading + _tables(aggs), _baselines(baselines), summarize(aggs, baselines), plots))
    names = ", ".join(sorted({str(r.get("study")) for r in rows}))
    title = "\n\n".join([
        f"# normrnn study report: {names}",
        f"{len(rows)} runs from {', '.join(map(str, directories))}. MSE and MAE are summed over each frame's "
        "pixels (values in [0, 1]) and averaged over frames and samples, the OpenSTL/PredRNN convention; SSIM "
        "is skimage's default (7×7 window), PSNR is per frame. Diverged runs count in the divergence rate only. "
        "Peak memory on CPU is parameters, gradients and AdamW state plus the tensors autograd saves in one "
        "training step; on CUDA it is `max_memory_allocated`."])
    if len(parts) == 1:
        tables, baselines_md, summary, plots = parts[0]
    else:  # each study's tables, baselines and summary stay together, in its own section
        tables = "\n\n".join("\n\n".join(p[:3]) for p in parts)
        baselines_md, summary = "", ""
        plots = [name for p in parts for name in p[3]]
    report = Report(out / "report.md", title, tables, baselines_md, summary, tuple(plots))
    atomic_write_text(report.path, report.markdown)
    flat = [{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()} for r in rows]
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=list(dict.fromkeys(k for r in flat for k in r)))
    writer.writeheader()
    writer.writerows(flat)
    atomic_write_text(out / "results.csv", buffer.getvalue())
    atomic_write_text(out / "results.json", json.dumps(rows, indent=1) + "\n")
    return report
