"""``normrnn report DIR...``: tables, plots, CSV/JSON and a plain-language summary of a study.

Sections: Accuracy (with gate health), Depth, Stability (the max stable LR multiplier), Generalization
(train vs test), Cost (paired, interleaved step times from ``cost.json``), the no-learning baselines, and a
summary that answers each of the TensorFlow ConvLSTM issue's questions in one sentence, saying "within noise"
where the 95% intervals overlap. Aggregation lives in :mod:`.aggregate`, plots in :mod:`.plots`.
"""

from __future__ import annotations

import json
import math
import statistics
import warnings
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .._io import atomic_write_csv, atomic_write_text
from .aggregate import Aggregate, aggregate, baseline_name, differ, diverged_everywhere, mean_ci, stability_frontier
from .config import StudyConfig, legacy_keys
from .findings import find, findings_json, findings_markdown
from .names import BASELINE
from .plots import figure_markdown, plot_all
from .results import ResultsWarning, load_cost, load_results
from .rows import REQUIRED
from .tables import all_tables, baselines_table, fmt, main_only, verdict

__all__ = ["Report", "aggregate", "mean_ci", "summarize", "write_report"]




def _directory_hash(directory: Path) -> tuple[str | None, dict[str, Any] | None]:
    """The config hash and settings recorded in ``DIR/study.json`` (``None`` when it is missing or damaged)."""
    try:
        config = StudyConfig.as_recorded(legacy_keys(json.loads((directory / "study.json").read_text())))
        return config.config_hash, config.identity()
    except (OSError, ValueError, TypeError, AttributeError):
        return None, None


def _load_studies(directories: Sequence[str | Path], *,
                  mixed: bool) -> dict[str, list[tuple[Path, list[dict[str, Any]]]]]:
    """Rows grouped by study (config hash), each with its directories; different studies refused unless ``mixed``.

    A row carries its study's hash; rows written before hashes existed take their directory's ``study.json``.
    """
    studies: dict[str, list[tuple[Path, list[dict[str, Any]]]]] = defaultdict(list)
    settings: dict[str, tuple[Path, dict[str, Any] | None]] = {}
    for d in map(Path, directories):
        default, identity = _directory_hash(d)
        by_hash: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for row in load_results(d):
            missing = [k for k in REQUIRED if k not in row]
            if missing:
                warnings.warn(f"normrnn: skipped run {row['run_id']!r} of {d / 'results.jsonl'}: it lacks {missing}",
                              ResultsWarning, stacklevel=2)
                continue
            by_hash[str(row.get("config_hash", default))].append(row)
        for h, rows in by_hash.items():
            studies[h].append((d, rows))
            settings.setdefault(h, (d, identity if h == default else None))
    if len(studies) > 1 and not mixed:
        raise ValueError("refusing to merge different studies: " + _differences(settings)
                         + "; report them one by one, or pass --mixed to report each study in its own section")
    return dict(studies)


def _frame_pixels(directories: Sequence[Path]) -> tuple[int | None, bool]:
    """Pixels per frame of a study on the built-in data (one channel, ``size``²), and whether its training loss is
    the MSE, from its ``study.json``: ``(None, False)`` for a data factory's frames or an unreadable file."""
    for d in directories:
        try:
            stored = json.loads((d / "study.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(stored, dict):
            continue
        size = stored.get("size")
        if stored.get("data") is None and isinstance(size, int) and size > 0:
            return size * size, stored.get("loss", "mse") == "mse"
        return None, False
    return None, False


def _load_with_notes(directories: Sequence[str | Path], *,
                     mixed: bool) -> tuple[dict[str, list[tuple[Path, list[dict[str, Any]]]]], list[str]]:
    """:func:`_load_studies`, and what its reader warned of (rows skipped or replaced), for the report to say too."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", ResultsWarning)
        studies = _load_studies(directories, mixed=mixed)
    for w in caught:  # shown as before
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    return studies, [str(w.message).removeprefix("normrnn: ") for w in caught if issubclass(w.category, ResultsWarning)]


def _differences(settings: dict[str, tuple[Path, dict[str, Any] | None]]) -> str:
    """Which settings differ between studies, or their hashes when a ``study.json`` is missing."""
    known = [s for _, s in settings.values() if s is not None]
    if len(known) == len(settings):
        keys = sorted(k for k in known[0] if len({json.dumps(s.get(k)) for s in known}) > 1)
        where = ", ".join(f"{d} ({', '.join(f'{k}={s[k]}' for k in keys)})" for d, s in settings.values()
                          if s is not None)
        return f"they differ in {keys}: {where}"
    return "their config hashes differ: " + ", ".join(f"{d}: {h}" for h, (d, _) in settings.items())


def _merge(groups: list[tuple[Path, list[dict[str, Any]]]]) -> list[dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    for _, group in groups:
        for row in group:
            rows[row["run_id"]] = row  # the same run (same study) in two directories counts once
    return list(rows.values())


def _load_baselines(directories: Sequence[str | Path]) -> dict[str, dict[str, float]]:
    path = next((Path(d) / "baselines.json" for d in directories if (Path(d) / "baselines.json").exists()), None)
    if path is None:
        return {}
    try:
        baselines = json.loads(path.read_text())
        if not isinstance(baselines, dict) or not all(
                isinstance(m, dict) and isinstance(m.get("test_mse"), (int, float)) for m in baselines.values()):
            raise ValueError("expected {predictor: {test_mse: ...}}")
    except ValueError as e:
        raise ValueError(f"{path} is damaged ({e}); delete it and run the study command again to rewrite it") from None
    return baselines


def _answers(aggs: list[Aggregate], floor: float | None, cost: dict[str, Any] | None) -> list[str]:
    """One sentence per seed question, from the numbers at the study's deepest depth (each variant at its best
    LR when the grid has several)."""
    main = [a for a in main_only(aggs) if math.isfinite(a.mean("test_mse"))]
    if not main:
        return []
    at = {a.variant: a for a in main}
    deepest = max(a.depth for a in main)
    out, base = [], baseline_name(aggs)
    for topo, question in (("stacked", "Does layer norm matter when ConvLSTM layers are stacked"),
                           ("residual", "With skip connections (residual)")):
        ln, none = at.get(("layer", topo, deepest)), at.get((BASELINE, topo, deepest))
        if ln and none and math.isfinite(ln.mean("test_mse")) and math.isfinite(none.mean("test_mse")):
            ours, theirs = fmt(ln.mean("test_mse"), ln.ci("test_mse")), fmt(none.mean("test_mse"), none.ci("test_mse"))
            several = len({a.lr_mult for a in aggs}) > 1
            at_lr = {id(a): f" at its best lr × {a.lr_mult:g}" if several else "" for a in (ln, none)}
            out.append(f"- **{question}?** At depth {deepest} ({topo}), `layer`{at_lr[id(ln)]} test MSE {ours} vs "
                       f"{base}{at_lr[id(none)]} {theirs}{verdict(ln, none)}.")
    if len({a.lr_mult for a in aggs}) > 1:
        frontier = stability_frontier(aggs, floor)
        depth = min(a.depth for a in aggs)
        def best(n: str, t: str) -> str:
            m = frontier.get((n, t, depth))
            return "none" if m is None else f"{m:g}"

        text = ", ".join(f"`{n}` ({t}) × {best(n, t)}" for n, t in dict.fromkeys((a.norm, a.topology)
                                                                                 for a in aggs))
        out.append(f"- **Does normalization stabilize training?** Largest stable LR multiplier at depth {depth}, "
                   f"clipping as configured: {text}.")
    with_gap = [a for a in main if a.norm == "layer" and math.isfinite(a.mean("gap"))]
    bias_only = {(a.topology, a.depth): a for a in main if a.norm == BASELINE}
    pairs = [(a, bias_only[(a.topology, a.depth)]) for a in with_gap if (a.topology, a.depth) in bias_only
             and math.isfinite(bias_only[(a.topology, a.depth)].mean("gap"))]
    if pairs:
        a, b = max(pairs, key=lambda p: p[0].depth)
        out.append(f"- **Does layer norm help training but hurt test accuracy?** At depth {a.depth} "
                   f"({a.topology}): train MSE {fmt(a.mean('train_mse'))} vs {base} {fmt(b.mean('train_mse'))}, gap "
                   f"{fmt(a.mean('gap'), a.ci('gap'))} vs {fmt(b.mean('gap'), b.ci('gap'))}{verdict(a, b, 'gap')}; "
                   f"test MSE "
                   f"{fmt(a.mean('test_mse'))} vs {fmt(b.mean('test_mse'))}{verdict(a, b)}.")
    group = [a for a in main if a.norm.startswith("group") and a.depth == deepest]
    for g in group:
        ln_ = at.get(("layer", g.topology, deepest))
        if ln_ and math.isfinite(g.mean("test_mse")) and math.isfinite(ln_.mean("test_mse")):
            out.append(f"- **Is group norm better than layer norm?** {g.topology}, depth {deepest}: `{g.norm}` "
                       f"{fmt(g.mean('test_mse'), g.ci('test_mse'))} vs `layer` "
                       f"{fmt(ln_.mean('test_mse'), ln_.ci('test_mse'))}"
                       f"{verdict(g, ln_)}.")
    if cost is not None:
        ratios = defaultdict(list)
        for r in cost["rows"]:
            if r["norm"] != BASELINE and r["ratio"] is not None:
                ratios[r["norm"]].append(r["ratio"])
        if ratios:
            text = ", ".join(f"`{n}` × {statistics.median(v):.2f}" for n, v in ratios.items())
            out.append(f"- **What does it cost?** Paired step time ÷ {base}, median over topologies and depths: "
                       f"{text} (per-variant min–max in the Cost table; spans that include 1 are within noise).")
    return out


def summarize(aggs: list[Aggregate], baselines: dict[str, dict[str, float]] | None = None,
              cost: dict[str, Any] | None = None) -> str:
    """Plain-language answers to the TensorFlow ConvLSTM issue's questions, from the numbers (each variant at its
    best LR when the grid has several multipliers)."""
    main = main_only(aggs)
    lines = ["### What the numbers say", ""]
    lost = diverged_everywhere(aggs)
    diverged = ["- **Diverged at every learning rate tried** (no result to compare): " + ", ".join(
        f"`{n}` ({t}, d{d}) at × {', '.join(f'{m:g}' for m in mults)}" for (n, t, d), mults in lost.items()) + "."
        ] if lost else []
    floor = None
    if baselines:
        name = min(baselines, key=lambda k: baselines[k]["test_mse"])
        floor = baselines[name]["test_mse"]
        learned = [f"`{a.norm}` ({a.topology}, d{a.depth})" for a in main if a.mean("test_mse") < floor]
        if not learned:  # every model is as bad as predicting the mean frame: their differences mean nothing
            lines.append(f"- **No conclusions: no model beat the best no-learning predictor** ({name}, test MSE "
                         f"{floor:.2f}), so no variant learned anything to compare. Train longer or on more data "
                         "(e.g. `--preset tuned`); this report's tables are for checking that the study runs.")
            return "\n".join(lines + diverged)
        lines.append(f"- Below the best no-learning predictor ({name}, test MSE {floor:.2f}): {', '.join(learned)}.")
    if max(a.runs for a in aggs) < 2:
        lines.append("- **One seed per variant, so there is no noise estimate.** The differences below are "
                     "single measurements and none of them is established; run a preset with 3 or more seeds "
                     "(e.g. `--preset tuned`) before drawing conclusions.")
    lines += diverged + _answers(aggs, floor, cost)
    lines += ["", f"Every variant against {baseline_name(aggs)}:", ""]
    at = {a.variant: a for a in main}
    for (norm, topo, depth), a in at.items():
        ref = at.get((BASELINE, topo, depth))
        if (norm == BASELINE or ref is None or not math.isfinite(a.mean("test_mse"))
                or not math.isfinite(ref.mean("test_mse"))):
            continue
        rel = a.mean("test_mse") / ref.mean("test_mse") - 1 if ref.mean("test_mse") else math.nan
        verdict = differ(a, ref)
        lines.append(f"- {topo}, depth {depth}: `{norm}` test MSE {a.mean('test_mse'):.2f} vs {baseline_name(aggs)} "
                     f"{ref.mean('test_mse'):.2f}, {rel:+.1%}" + (f" ({verdict})" if verdict else "") + ".")
    top = max(a.lr_mult for a in aggs)
    if top != min(a.lr_mult for a in aggs):
        risky = [f"`{a.norm}` ({a.topology}) {a.diverged_rate:.0%}" for a in aggs
                 if a.lr_mult == top and a.diverged_rate > 0]
        lines.append(f"- At lr × {top:g}: " + (", ".join(risky) + " diverged." if risky else "no variant diverged."))
    return "\n".join(lines)


@dataclass(frozen=True)
class Report:
    """A written report: where it is, and its parts as data, so a caller prints what it needs."""

    path: Path  # report.md
    title: str
    tables: str  # the accuracy, divergence and cost tables (markdown)
    baselines: str  # the no-learning predictors (markdown)
    findings: str  # the Findings section: the tested comparisons (markdown)
    summary: str  # one line per finding
    plots: tuple[str, ...]  # PNG file names beside report.md

    @property
    def markdown(self) -> str:
        """The whole ``report.md``."""
        parts = [self.tables, self.baselines, self.findings, self.summary,
                 "\n\n".join(map(figure_markdown, self.plots))]
        return self.title + "\n\n" + "\n\n".join(p for p in parts if p) + "\n"

    def __str__(self) -> str:
        return self.markdown

    def __contains__(self, text: str) -> bool:
        return text in self.markdown


@dataclass(frozen=True)
class _StudyPart:
    """One study's share of a report: its markdown parts and plots, and its findings for ``findings.json``."""

    config_hash: str
    markdown: tuple[str, str, str, str, list[str]]  # (tables, baselines, findings, summary, plot file names)
    findings: dict[str, Any]


def _study_part(h: str, groups: list[tuple[Path, list[dict[str, Any]]]], out: Path, *, several: bool) -> _StudyPart:
    """Aggregate, test, tabulate and plot the rows of one study (config hash ``h``)."""
    study_rows = _merge(groups)
    aggs = aggregate(study_rows)
    found = find(aggs)
    baselines = _load_baselines([d for d, _ in groups])
    best = min(baselines, key=lambda k: baselines[k]["test_mse"]) if baselines else None
    floor = None if best is None else (best, baselines[best]["test_mse"])
    cost = next((c for d, _ in groups if (c := load_cost(d, h)) is not None), None)
    name = study_rows[0].get("study")
    pixels, mse_loss = _frame_pixels([d for d, _ in groups])
    # the training curve is on the validation scale only when it is a per-pixel MSE of frames of known size
    plots = plot_all(aggs, out, floor, cost, f"{name}-{h}-" if several else "", pixels=pixels if mse_loss else None)
    heading = f"## Study {name} ({h}), from {', '.join(str(d) for d, _ in groups)}\n\n" if several else ""
    findings = findings_markdown(found, baseline_name(aggs))
    return _StudyPart(h, (heading + all_tables(aggs, None if floor is None else floor[1], cost, pixels),
                          baselines_table(baselines), "### Findings\n\n" + findings if findings else "",
                          summarize(aggs, baselines, cost), plots), findings_json(found))


def write_report(directories: Sequence[str | Path], out: str | Path | None = None, *,
                 mixed: bool = False) -> Report:
    """Write ``report.md``, ``results.csv``, ``results.json`` and PNG plots into ``out`` (default: the
    first directory); return the :class:`Report`.

    Directories of different studies (settings that change results) are refused, naming what differs;
    ``mixed=True`` reports each study in its own section with its own baselines and plots, never pooled.
    """
    missing = [str(d) for d in directories if not Path(d).is_dir()]
    if missing:
        raise ValueError(f"expected study directories, but {', '.join(missing)} "
                         f"{'is not a directory' if len(missing) == 1 else 'are not directories'}")
    studies, notes = _load_with_notes(directories, mixed=mixed)
    rows = [row for groups in studies.values() for row in _merge(groups)]
    if not rows:
        raise ValueError(f"no results in {', '.join(map(str, directories))}: expected results.jsonl from a study")
    out = Path(out or directories[0])
    out.mkdir(parents=True, exist_ok=True)
    parts = [_study_part(h, groups, out, several=len(studies) > 1) for h, groups in studies.items()]
    names = ", ".join(sorted({str(r.get("study")) for r in rows}))
    lrs = {ident["lr"] for d in directories if (ident := _directory_hash(Path(d))[1]) and "lr" in ident}
    lr_note = (f" An LR multiplier (× m) scales the AdamW peak learning rate {next(iter(lrs)):g}: × 10 is a peak of "
               f"{10 * next(iter(lrs)):g}." if len(lrs) == 1 else "")
    title = "\n\n".join([
        f"# normrnn study report: {names}",
        f"{len(rows)} runs from {', '.join(map(str, directories))}. MSE and MAE are summed over each frame's "
        "pixels (values in [0, 1]) and averaged over frames and samples, the OpenSTL/PredRNN convention; SSIM "
        "is skimage's default (7×7 window), PSNR is per frame. Diverged runs count in the divergence rate only. "
        "Peak memory on CPU is parameters, gradients and AdamW state plus the tensors autograd saves in one "
        f"training step at the run's precision; on CUDA it is `max_memory_allocated`.{lr_note}",
        *(["Rows not reported as written:\n\n" + "\n".join(f"- {note}" for note in notes)] if notes else [])])
    if len(parts) == 1:
        tables, baselines_md, findings, summary, plots = parts[0].markdown
    else:  # each study's tables, baselines, findings and summary stay together, in its own section
        tables = "\n\n".join("\n\n".join(q for q in p.markdown[:4] if q) for p in parts)
        baselines_md, findings, summary = "", "", ""
        plots = [name for p in parts for name in p.markdown[4]]
    report = Report(out / "report.md", title, tables, baselines_md, findings, summary, tuple(plots))
    atomic_write_text(report.path, report.markdown)
    found = {p.config_hash: p.findings for p in parts}  # one study: its findings; several: by config hash
    atomic_write_text(out / "findings.json", json.dumps(
        parts[0].findings if len(parts) == 1 else found, indent=1) + "\n")
    atomic_write_csv(out / "results.csv", [{k: json.dumps(v) if isinstance(v, list) else v for k, v in r.items()}
                                           for r in rows])
    atomic_write_text(out / "results.json", json.dumps(rows, indent=1) + "\n")
    return report
