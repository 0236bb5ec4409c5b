"""The findings engine against independent references: scipy's Welch test on the committed rows, and Holm's
adjustment by hand."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from scipy import stats

from helpers import result_row
from normrnn.study import load_results, write_report
from normrnn.study.aggregate import aggregate
from normrnn.study.findings import find, holm, welch

ROOT = Path(__file__).resolve().parents[1]


def _seeds(rows: list[dict], norm: str, topology: str, depth: int, lr_mult: float) -> list[float]:
    """The test MSEs of one variant's runs that did not diverge, straight from the rows."""
    return [r["test_mse"] for r in rows if (r["norm"], r["topology"], r["depth"], r["lr_mult"])
            == (norm, topology, depth, lr_mult) and not r["diverged"]]


@pytest.mark.parametrize(("name", "count"), [("converge", 24), ("tuned", 48)])
def test_every_p_value_and_interval_is_scipys_welch_test_on_the_rows(name: str, count: int) -> None:
    rows = load_results(ROOT / "results" / name)
    found = find(aggregate(rows))
    assert len(found) == count  # converge: 12 norm-vs-bias-only + 12 depth-vs-depth-1; tuned: 24 + 24
    for c in found:
        a = _seeds(rows, c.norm, c.topology, c.depth, c.lr_mult)
        b = _seeds(rows, c.against_norm, c.topology, c.against_depth, c.against_lr_mult)
        reference = stats.ttest_ind(a, b, equal_var=False)
        interval = reference.confidence_interval(0.95)
        assert c.p == pytest.approx(reference.pvalue, rel=1e-9)
        assert (c.ci_low, c.ci_high) == pytest.approx((interval.low, interval.high), rel=1e-9)
        assert c.diff == pytest.approx(sum(a) / len(a) - sum(b) / len(b))


def _holm_by_hand(p: list[float]) -> list[float]:
    """Holm's step-down procedure written out: the i-th smallest p times (m − i), the running maximum, at most 1."""
    m = len(p)
    order = sorted(range(m), key=lambda i: p[i])
    adjusted = [0.0] * m
    for rank, i in enumerate(order):
        candidates = [min(1.0, (m - r) * p[order[r]]) for r in range(rank + 1)]
        adjusted[i] = max(candidates)
    return adjusted


@pytest.mark.parametrize("name", ["converge", "tuned"])
def test_holm_adjustment_recomputes_by_hand_in_each_family(name: str) -> None:
    found = find(aggregate(load_results(ROOT / "results" / name)))
    for family in ("norm vs bias-only", "depth vs shallowest"):
        rows = [c for c in found if c.family == family]
        assert [c.p_holm for c in rows] == pytest.approx(_holm_by_hand([c.p for c in rows]))
        for c in rows:
            survives = c.p_holm < 0.05
            assert c.verdict == (("lower" if c.diff < 0 else "higher") if survives else "within noise")


def test_holm_by_hand_on_a_small_family() -> None:
    # sorted 0.01, 0.03, 0.04: × 3, × 2, × 1 → 0.03, 0.06, 0.04, then the running maximum → 0.03, 0.06, 0.06
    assert holm([0.04, 0.01, 0.03]) == pytest.approx([0.06, 0.03, 0.06])
    assert holm([0.5, 0.9]) == pytest.approx([1.0, 1.0])  # capped at 1
    assert holm([None, 0.02]) == [None, 0.02]  # an untested comparison does not count


def test_one_seed_is_not_tested_and_identical_seeds_differ_exactly() -> None:
    assert welch([1.0], [2.0, 3.0]) is None
    assert welch([2.0, 2.0], [2.0, 2.0]) == (0.0, 0.0, 0.0, 1.0)
    rows = [result_row(norm=n, depth=2, seed=0, test_mse=40.0 + (n == "layer")) for n in ("none", "layer")]
    (c,) = find(aggregate(rows))
    assert c.verdict == "not tested" and c.p is None and c.diff == pytest.approx(1.0)


def test_a_clear_difference_survives_and_the_lr_choice_on_one_seed_is_named(tmp_path) -> None:
    rows = [result_row(norm=n, depth=d, seed=s, lr_mult=1.0, test_mse=base + 0.01 * s, val_mse=base)
            for n, base in (("none", 40.0), ("layer", 30.0)) for d in (1, 2) for s in range(3)]
    rows += [result_row(norm="layer", depth=d, seed=0, lr_mult=3.0, test_mse=35.0, val_mse=35.0) for d in (1, 2)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    report = write_report([tmp_path])
    written = json.loads((tmp_path / "findings.json").read_text())
    assert written["test"].startswith("Welch") and written["correction"] == "Holm-Bonferroni"
    by_family = {c["family"]: [] for c in written["comparisons"]}
    for c in written["comparisons"]:
        by_family[c["family"]].append(c)
    assert [c["verdict"] for c in by_family["norm vs bias-only"]] == ["lower", "lower"]
    assert all(c["lr_one_seed"] for c in by_family["norm vs bias-only"])  # layer's × 1 won over × 3 on seed 0
    assert "×1 vs ×1 (chosen on one seed)" in report.findings
    assert "2 of 2 differences survive the correction" in report.findings
    assert report.findings in report.markdown and "### Findings" in report.markdown
    assert all(math.isfinite(c["p"]) for c in written["comparisons"])


def test_a_one_seed_study_says_nothing_can_be_tested() -> None:
    from normrnn.study.findings import findings_markdown

    rows = [result_row(norm=n, depth=d, seed=0, test_mse=40.0 + d) for n in ("none", "layer") for d in (1, 2)]
    text = findings_markdown(find(aggregate(rows)))
    assert text.startswith("Nothing can be tested") and "|" not in text


def test_a_mixed_report_keeps_each_studys_findings_apart(tmp_path) -> None:
    for name, shift in (("a", 0.0), ("b", 5.0)):
        rows = [result_row(norm=n, depth=1, seed=s, test_mse=40.0 + shift + (n == "layer") + 0.1 * s,
                           config_hash=f"hash{name}") for n in ("none", "layer") for s in range(3)]
        (tmp_path / name).mkdir()
        (tmp_path / name / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_report([tmp_path / "a", tmp_path / "b"], tmp_path / "out", mixed=True)
    written = json.loads((tmp_path / "out" / "findings.json").read_text())
    assert sorted(written) == ["hasha", "hashb"]
    for study in written.values():
        (c,) = study["comparisons"]
        assert c["diff"] == pytest.approx(1.0) and c["verdict"] == "higher"
