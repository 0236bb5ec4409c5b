"""The result-row schema: what a run writes is a ResultRow, the reader checks rows against it, and the row is built
from the run's history without changing it."""

from __future__ import annotations

import dataclasses
import math

import pytest

from helpers import result_row
from normrnn.study import StudyConfig, train_run
from normrnn.study.datasets import load_datasets
from normrnn.study.grid import RunSpec
from normrnn.study.history import FinalMetrics, RunHistory, result_row as build_row
from normrnn.study.metrics import TestMetrics
from normrnn.study.precision import BF16, FP32
from normrnn.study.rows import FIELDS, REQUIRED, ResultRow, row_problem

TINY = StudyConfig(name="tiny", size=8, patch=2, width=4, train_samples=8, val_samples=4, test_samples=4, epochs=1,
                   batch_size=4, norms=("none",), topologies=("stacked",), depths=(1,), frames_in=3, frames_out=2,
                   threads=1)


def test_a_trained_run_writes_every_field_of_the_schema_in_order(tmp_path) -> None:
    spec = RunSpec("layer", "stacked", 1, 0, 1.0)
    row = train_run(TINY, spec, load_datasets(TINY), tmp_path / "run", precision=FP32).to_dict()
    assert list(row) == [f.name for f in FIELDS if f.name != "learn_floor_note"]  # omitted: steps to learn is defined
    assert row_problem(row) is None
    assert ResultRow(**row).to_dict() == row


def test_the_reader_checks_types_and_nulls_from_the_schema() -> None:
    assert row_problem(result_row(test_mse=3)) is None  # an int where a float goes: JSON writes 3 for 3.0
    assert row_problem(result_row(test_mse=None, diverged=True)) is None  # nullable
    assert row_problem({**result_row(), "depth": True}) == "run 'none_stacked_d1_s0_lr1' has depth=True, expected int"
    assert row_problem({**result_row(), "norm": None}) == "run 'none_stacked_d1_s0_lr1' has norm=None, expected str"
    assert "expected list" in row_problem({**result_row(), "val_curve": "[]"})
    assert row_problem({"depth": 1}) == "not a result row (expected a JSON object with a 'run_id')"
    assert set(REQUIRED) == {"norm", "topology", "depth", "lr_mult", "diverged", "test_mse"}
    by_name = {f.name: f for f in FIELDS}
    assert (by_name["test_psnr"].unit, by_name["test_psnr"].better) == ("dB", "higher")
    assert (by_name["step_time_s"].unit, by_name["step_time_s"].better) == ("s", "lower")


def test_the_row_is_built_from_the_history_without_changing_it() -> None:
    history = RunHistory(loss=[4.0, 2.0, 1.0], grad_norm=[1.0, 2.0, 3.0], step_time=[9.0, 1.0, 3.0],
                         train_curve=[2.0], val_curve=[1.5], val_steps=[3], gate_saturation_curve=[0.2], epoch=1)
    before = dataclasses.replace(history)
    spec = RunSpec("none", "stacked", 1, 0, 1.0)
    good = FinalMetrics(TestMetrics(mse=1.0, mae=0.5, ssim=0.9, psnr=30.0), [0.1, 0.3], 1.1)
    row = build_row(TINY, spec, history, good, params=7, memory=1.0, floor=3.0, precision=FP32, processes=2)
    assert (row.diverged, row.test_mse, row.step_time_s, row.grad_norm_max) == (False, 1.0, 2.0, 3.0)
    assert row.gate_saturation_mean == pytest.approx(0.2) and row.processes == 2 and row.learn_floor_note is None
    # weights went non-finite after the last step
    broken = FinalMetrics(dataclasses.replace(good.test, mse=math.nan), [0.1, 0.3], 1.1)
    row = build_row(TINY, spec, history, broken, params=7, memory=1.0, floor=None, precision=BF16, processes=1)
    assert (row.diverged, row.diverged_step, row.test_mse, row.plateau, row.val_mse) == (True, 3, None, None, None)
    assert row.learn_floor_note is not None and "learn_floor_note" in row.to_dict() and row.precision == "bf16"
    assert history == before


def test_a_checkpoint_history_of_an_earlier_version_resumes() -> None:
    old = {"loss": [3.0, 2.0, 1.0, 0.5], "grad_norm": [1.0] * 4, "step_time": [0.1] * 4, "train_curve": [2.5, 0.8],
           "val_curve": [2.0, 1.0], "diverged_step": None, "epoch": 2}  # before val_steps and gate saturation
    history = RunHistory.from_dict(old)
    assert history.val_steps == [2, 4] and history.gate_saturation_curve == []
    assert RunHistory.from_dict(history.to_dict()) == history
    with pytest.raises(ValueError, match="unknown history keys"):
        RunHistory.from_dict({**old, "surprise": 1})


def test_each_test_metric_is_declared_once_and_reaches_the_report() -> None:
    """A metric is a field of TestMetrics (named and computed there) and its test_NAME row field (unit, direction,
    report column); the row is filled and the table built from those declarations, so the two stay one list."""
    from normrnn.study.rows import COLUMNS

    declared = {f"test_{f.name}" for f in dataclasses.fields(TestMetrics)}
    assert declared == {f.name for f in FIELDS if f.name.startswith("test_")}
    assert declared == {c.name for c in COLUMNS} and all(c.summary == "mean_ci" for c in COLUMNS)
    assert set(TestMetrics(mse=1.0).as_row()) == declared
