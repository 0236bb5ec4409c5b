"""The study's progress line: runs done of all, the runs in progress with their epochs, and an ETA from the cost
table's measured step times (the plan's model of a run), corrected by the epochs observed. The clock is injected."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from normrnn.study.config import StudyConfig
from normrnn.study.directory import CLAIM_OWNER, EPOCH_FILE, epochs_done, epochs_in_progress
from normrnn.study.distributed import Rank
from normrnn.study.executors import train_one
from normrnn.study.grid import RunSpec
from normrnn.study.plan import makespan, run_seconds
from normrnn.study.progress import StudyProgress, expected_seconds

CONFIG = StudyConfig(epochs=4, train_samples=32, val_samples=8, test_samples=8, batch_size=8, workers=2,
                     norms=("none", "layer"), depths=(2, 4), topologies=("stacked",))
SPECS = [RunSpec(norm, "stacked", depth, seed=0, lr_mult=1.0) for norm in ("none", "layer") for depth in (2, 4)]
STEP_MS = {("none", 2): 10.0, ("layer", 2): 13.0, ("none", 4): 20.0, ("layer", 4): 26.0}


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def _cost(out: Path, config: StudyConfig = CONFIG) -> None:
    rows = [{"norm": n, "topology": "stacked", "depth": d, "step_ms": ms} for (n, d), ms in STEP_MS.items()]
    (out / "cost.json").write_text(json.dumps({"config_hash": config.config_hash, "samples": [32, 8, 8],
                                               "rows": rows}))


def _alone(spec: RunSpec) -> float:
    return run_seconds(CONFIG, STEP_MS[spec.norm, spec.depth] / 1e3, (32, 8, 8))


def test_each_run_is_expected_to_take_the_plans_time_from_its_measured_step(tmp_path: Path) -> None:
    assert expected_seconds(CONFIG, tmp_path, SPECS) == {}  # no cost table yet: no estimate
    _cost(tmp_path)
    assert expected_seconds(CONFIG, tmp_path, SPECS) == {s.run_id: _alone(s) for s in SPECS}
    other = dataclasses.replace(CONFIG, epochs=5)  # another study's cost table times other runs
    assert expected_seconds(other, tmp_path, SPECS) == {}


def test_the_line_names_the_runs_in_progress_and_the_eta_before_any_run_finishes(tmp_path: Path) -> None:
    _cost(tmp_path)
    clock = Clock()
    line = StudyProgress(CONFIG, tmp_path, enabled=False, clock=clock)
    a, b = SPECS[3], SPECS[1]  # the two deepest run first, as the pool deals them
    text = line.show(SPECS, SPECS, {a.run_id: 0, b.run_id: 0})
    eta = makespan([_alone(s) for s in SPECS], 2, 1.0)
    assert line.eta(SPECS, {}) == pytest.approx(eta)
    assert text.startswith("ETA ") and f"{a.run_id} e0/4" in text and f"{b.run_id} e0/4" in text
    assert (line.bar.n, line.bar.total) == (0, 4)
    # half of a's epochs done: its remaining half is what is left of it
    half = line.eta(SPECS, {a.run_id: 2})
    assert half == pytest.approx(makespan([_alone(a) / 2, *(_alone(s) for s in SPECS[:3])], 2, 1.0))


def test_the_eta_goes_as_fast_as_the_epochs_observed(tmp_path: Path) -> None:
    _cost(tmp_path)
    clock = Clock()
    line = StudyProgress(CONFIG, tmp_path, enabled=False, clock=clock)
    a = SPECS[3]
    line.show(SPECS, SPECS, {a.run_id: 1})
    before = line.eta(SPECS, {a.run_id: 1})
    clock.now += 3 * _alone(a) / CONFIG.epochs  # its next epoch took three times the plan's estimate
    line.show(SPECS, SPECS, {a.run_id: 2})
    assert line.eta(SPECS, {a.run_id: 1}) == pytest.approx(3 * before)


def test_finished_runs_count_and_the_last_eta_is_zero(tmp_path: Path) -> None:
    _cost(tmp_path)
    line = StudyProgress(CONFIG, tmp_path, enabled=False, clock=Clock())
    line.show(SPECS, SPECS[2:], {})
    assert (line.bar.n, line.bar.total) == (2, 4)
    assert line.show(SPECS, [], {}) == "ETA under 1 s"


def test_without_a_cost_table_it_shows_the_runs_and_no_eta(tmp_path: Path) -> None:
    line = StudyProgress(CONFIG, tmp_path, enabled=False, clock=Clock())
    assert line.show(SPECS, SPECS, {SPECS[0].run_id: 3}) == f"{SPECS[0].run_id} e3/4"


def test_only_claimed_runs_are_in_progress_with_the_epochs_they_wrote(tmp_path: Path) -> None:
    held, idle = SPECS[0], SPECS[1]
    for spec in (held, idle):
        (tmp_path / "runs" / spec.run_id).mkdir(parents=True)
        (tmp_path / "runs" / spec.run_id / EPOCH_FILE).write_text("2\n")
    (tmp_path / "runs" / held.run_id / CLAIM_OWNER).write_text("process 1 on here\n")
    assert epochs_in_progress(tmp_path, SPECS) == {held.run_id: 2}
    assert epochs_done(tmp_path, SPECS[2].run_id) == 0  # never started


def test_a_trained_run_writes_each_epoch_it_checkpoints(tmp_path: Path) -> None:
    from normrnn.study.datasets import load_datasets
    from normrnn.study.presets import load_config

    config = load_config("smoke")
    spec = RunSpec("none", "stacked", config.depths[0], seed=0, lr_mult=1.0)
    seen: list[int] = []
    assert train_one(config, tmp_path, spec, load_datasets(config), rank=Rank(), on_epoch=seen.append)
    assert seen == list(range(1, config.epochs + 1))
    assert epochs_done(tmp_path, spec.run_id) == config.epochs
