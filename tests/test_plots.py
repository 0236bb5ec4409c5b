"""The report's plots write their data beside them, on the scales their axes name."""

from __future__ import annotations

import csv
import statistics
from pathlib import Path

import pytest

from normrnn.study import load_results, write_report
from normrnn.study.aggregate import aggregate, main_variants

ROOT = Path(__file__).resolve().parents[1]
CONVERGE = ROOT / "results" / "converge"


def test_the_learning_curves_csv_holds_the_plotted_means_with_training_on_the_validation_scale(tmp_path) -> None:
    """The last training point of each variant is the mean over its seeds of the rows' last ``train_curve`` value
    (a per-pixel MSE) × the 32 × 32 pixels of a frame, the scale of ``val_curve`` (MSE per frame)."""
    report = write_report([CONVERGE], tmp_path)
    assert "learning_curves.png" in report.plots and (tmp_path / "learning_curves.png").exists()
    with open(tmp_path / "learning_curves.csv", newline="") as f:
        table = list(csv.DictReader(f))
    assert list(table[0]) == ["topology", "depth", "norm", "lr_mult", "step", "val_mse", "train_mse"]
    rows = load_results(CONVERGE)
    main = main_variants(aggregate(rows))
    assert len(table) == sum(len(a.val_curve) for a in main) == 18 * 24  # 18 variants × 24 epochs
    for a in main:
        runs = [r for r in rows if (r["norm"], r["topology"], r["depth"], r["lr_mult"])
                == (a.norm, a.topology, a.depth, a.lr_mult) and not r["diverged"]]
        mine = [t for t in table if (t["norm"], t["topology"], int(t["depth"]), float(t["lr_mult"]))
                == (a.norm, a.topology, a.depth, a.lr_mult)]
        last = mine[-1]
        assert int(last["step"]) == 1200
        assert float(last["train_mse"]) == pytest.approx(statistics.fmean(r["train_curve"][-1] for r in runs) * 1024)
        assert float(last["val_mse"]) == pytest.approx(statistics.fmean(r["val_curve"][-1] for r in runs))
        # on one scale, training and validation MSE at the end are close, as the rows' train_mse and val_mse are
        assert float(last["train_mse"]) == pytest.approx(float(last["val_mse"]), rel=0.1)


def test_a_damaged_study_json_or_another_loss_draws_no_rescaled_training_curve(tmp_path) -> None:
    """The report reads the frame size from ``study.json``: a file that is no JSON object is no frame size (the
    report is still written), and a study whose loss is not the MSE keeps its per-pixel MSE column but draws no
    training curve on the validation scale."""
    import json
    import shutil

    shutil.copy(CONVERGE / "results.jsonl", tmp_path / "results.jsonl")
    (tmp_path / "study.json").write_text("[1, 2]")
    write_report([tmp_path])
    with open(tmp_path / "learning_curves.csv", newline="") as f:
        assert {row["train_mse"] for row in csv.DictReader(f)} == {""}
    stored = json.loads((CONVERGE / "study.json").read_text())
    (tmp_path / "study.json").write_text(json.dumps({**stored, "loss": "mae"}))
    report = write_report([tmp_path])
    with open(tmp_path / "learning_curves.csv", newline="") as f:
        assert {row["train_mse"] for row in csv.DictReader(f)} == {""}
    assert "MSE per pixel is MSE per frame ÷ 1024 pixels" in report.markdown
