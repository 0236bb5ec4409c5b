"""Comparing trained models: time to learn, gate saturation over training, each variant at its own best LR
(successive halving), the diagnosis knobs, and a --plan that times one model per depth."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from conftest import interrupt_after
from helpers import result_row
from normrnn.study import RunSpec, StudyConfig, expand_grid, load_results, run_study, train_run
from normrnn.study.aggregate import aggregate, best_lr, median_range
from normrnn.study.datasets import load_datasets, train_subset
from normrnn.study.grid import halving_winner, planned_runs
from normrnn.study.model import build_model
from normrnn.study.presets import PRESETS
from normrnn.study.report import write_report
from normrnn.study.thresholds import steps_to_learn
from normrnn.study.train import evaluate

TINY = StudyConfig(name="tiny", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4, epochs=3,
                   batch_size=4, norms=("none",), topologies=("stacked",), frames_in=3, frames_out=2)
EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture(scope="module")
def tiny_data():
    return load_datasets(TINY)


# --- time to learn ------------------------------------------------------------------------------------------------

def test_steps_to_learn_is_the_first_step_whose_trailing_mean_is_below_the_threshold() -> None:
    losses = [2.0] * 30 + [1.0] * 30
    floor = 1.5  # threshold 0.9 × 1.5 = 1.35: the window of 10 ending at step i has (i - 29) ones
    # mean = (2 (39 - i) + (i - 29)) / 10 < 1.35  <=>  i > 35.5
    assert steps_to_learn(losses, floor) == 36
    assert steps_to_learn(losses[:35], floor) is None
    assert steps_to_learn([None, *losses], floor) == 37  # a missing loss only delays the window
    assert steps_to_learn([0.1, 0.1], 1.0) == 1  # a short run: the window is the whole run


def test_median_range_counts_never_as_the_largest() -> None:
    assert median_range([30, 10, 20]) == (20, 10, 30)
    assert median_range([30, None, None]) == (None, 30, None)
    assert median_range([10, 20]) == (15, 10, 20)
    assert median_range([10, None]) == (None, 10, None)
    assert median_range([]) == (None, None, None)


def test_every_row_records_steps_to_learn_and_gate_saturation_after_each_epoch(tmp_path, tiny_data) -> None:
    spec = RunSpec("layer", "stacked", 1, 0, 1.0)
    row = train_run(TINY, spec, tiny_data, tmp_path / "run").to_dict()
    assert "steps_to_learn" in row and (row["steps_to_learn"] is None or 0 <= row["steps_to_learn"] < 9)
    assert len(row["gate_saturation_curve"]) == TINY.epochs
    assert row["val_mse"] == row["val_curve"][-1]
    # the floor is the best no-learning predictor's per-pixel MSE on the fixed training subset
    sub = train_subset(tiny_data)
    x, y = sub.video[:, : sub.frames_in], sub.video[:, sub.frames_in :]
    want = min(float(F.mse_loss(torch.zeros_like(y), y)), float(F.mse_loss(x[:, -1:].expand_as(y), y)),
               float(F.mse_loss(torch.full_like(y, float(y.mean())), y)))
    assert row["learn_floor_loss"] == pytest.approx(want)
    # the last saturation is the final model's, measured again independently
    model = build_model(TINY, spec)
    model.load_state_dict(torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)["model"])
    again = evaluate(model, tiny_data.val, batch_size=4, device=torch.device("cpu"), gates=True)
    assert row["gate_saturation_curve"][-1] == pytest.approx(sum(again.gate_saturation or []) / 2)


def test_a_checkpoint_from_before_saturation_curves_resumes(tmp_path, tiny_data) -> None:
    spec = RunSpec("none", "stacked", 1, 0, 1.0)
    with pytest.raises(KeyboardInterrupt):
        train_run(TINY, spec, tiny_data, tmp_path / "run", on_step=interrupt_after(4))
    path = tmp_path / "run" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["history"]["gate_saturation_curve"]  # as written by an older normrnn
    torch.save(ckpt, path)
    row = train_run(TINY, spec, tiny_data, tmp_path / "run").to_dict()
    assert len(row["gate_saturation_curve"]) == TINY.epochs - 1  # the epochs trained since


# --- best learning rate and successive halving -------------------------------------------------------------------

def _row(norm: str, mult: float, seed: int, val: float | None, test: float, diverged: bool = False) -> dict:
    return result_row(norm=norm, depth=2, seed=seed, lr_mult=mult, test_mse=test, diverged=diverged, val_mse=val,
                      step_time_s=1.0, peak_mem_mb=1.0, gate_saturation_mean=0.0, loss_spikes=0, val_curve=[],
                      train_curve=[], steps_to_learn=5, gate_saturation_curve=[0.1])


def test_best_lr_is_chosen_by_validation_not_test_and_never_where_a_seed_diverged() -> None:
    rows = [_row("none", 1.0, s, 60.0, 50.0) for s in (0, 1)]
    rows += [_row("none", 3.0, s, 55.0, 70.0) for s in (0, 1)]  # best on validation, worse on test
    rows += [_row("none", 10.0, 0, 40.0, 40.0), _row("none", 10.0, 1, None, None, diverged=True)]
    (best,) = best_lr(aggregate(rows))
    assert best.lr_mult == 3.0 and best.mean("test_mse") == 70.0
    # LR halving: the only multiplier run with every seed lost a seed; it is still shown, the divergence with it
    halved = [_row("none", 1.0, 0, 60.0, 50.0), _row("none", 10.0, 0, 40.0, 40.0),
              _row("none", 10.0, 1, None, None, diverged=True), _row("none", 10.0, 2, 42.0, 44.0)]
    (best,) = best_lr(aggregate(halved))
    assert best.lr_mult == 10.0 and best.diverged_rate == pytest.approx(1 / 3) and best.mean("test_mse") == 42.0


def test_halving_runs_every_multiplier_on_the_first_seed_then_the_winner_on_the_others() -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer"), seeds=(3, 4, 5), lr_mults=(1.0, 3.0, 10.0),
                                 lr_search="halving")
    first = expand_grid(config)
    assert {(s.norm, s.seed, s.lr_mult) for s in first} == {(n, 3, m) for n in ("none", "layer")
                                                             for m in (1.0, 3.0, 10.0)}
    vals = {1.0: 50.0, 3.0: 40.0, 10.0: 30.0}
    rows = [{"run_id": s.run_id, "lr_mult": s.lr_mult, "val_mse": vals[s.lr_mult], "diverged": s.lr_mult == 10.0}
            for s in first if s.norm == "none"]  # layer's first seed is not finished yet
    grown = expand_grid(config, rows)
    later = [s for s in grown if s.seed != 3]
    assert [(s.norm, s.seed, s.lr_mult) for s in later] == [("none", 4, 3.0), ("none", 5, 3.0)]  # 10 diverged
    assert halving_winner([{"lr_mult": 1.0, "diverged": True}, {"lr_mult": 3.0, "diverged": True}]) == 1.0
    assert len(planned_runs(config)) == 2 * 3 + 2 * 2
    assert expand_grid(dataclasses.replace(config, lr_search="grid")) == planned_runs(
        dataclasses.replace(config, lr_search="grid"))


def test_a_halving_study_runs_in_phases_and_reports_best_lr_and_time_to_learn(tmp_path) -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer"), seeds=(0, 1), lr_mults=(1.0, 3.0),
                                 lr_search="halving", epochs=2)
    rows = run_study(config, tmp_path, progress=False)
    assert len(rows) == 2 * 2 + 2  # both multipliers on seed 0, then seed 1 at each norm's winner
    for norm in ("none", "layer"):
        seed0 = [r for r in rows if r["norm"] == norm and r["seed"] == 0]
        (seed1,) = [r for r in rows if r["norm"] == norm and r["seed"] == 1]
        assert seed1["lr_mult"] == min(seed0, key=lambda r: r["val_mse"])["lr_mult"]
    report = write_report([tmp_path])
    assert "### Best learning rate" in report and "### Time to learn, each at its best LR" in report
    assert (tmp_path / "saturation.png").exists()
    assert len(load_results(tmp_path)) == 6  # rerunning adds nothing
    run_study(config, tmp_path, progress=False)
    assert len(load_results(tmp_path)) == 6


# --- the diagnosis knobs ------------------------------------------------------------------------------------------

def test_model_knobs_reach_the_cells_and_the_head() -> None:
    config = dataclasses.replace(TINY, forget_bias=0.0, recurrent_init="default", head="linear")
    model = build_model(config, RunSpec("none", "stacked", 2, 0, 1.0))
    assert all(c.forget_bias == 0.0 and c.recurrent_init == "default" for c in model.cells())
    with torch.no_grad():
        model.head.bias.fill_(5.0)  # a sigmoid head could not reach 5
        assert model(torch.rand(1, 3, 1, 8, 8)).min() > 1.0


def test_new_keys_at_their_old_values_keep_the_config_hash_of_existing_studies() -> None:
    config = dataclasses.replace(PRESETS["deep"], head="sigmoid")  # what deep ran before the head changed
    assert not {"forget_bias", "recurrent_init", "head", "warmup", "lr_search", "model", "data", "loss"} & set(
        config.identity())
    assert PRESETS["deep"].identity()["head"] == "linear"  # the new default: another study
    assert dataclasses.replace(config, warmup=0.5).config_hash != config.config_hash
    assert dataclasses.replace(config, lr_search="halving").config_hash == config.config_hash  # which runs only
    with pytest.raises(ValueError, match="warmup"):
        dataclasses.replace(config, warmup=1.0)
    with pytest.raises(ValueError, match="head"):
        dataclasses.replace(config, head="tanh")


def test_a_constant_schedule_keeps_the_peak_learning_rate(tmp_path, tiny_data) -> None:
    config = dataclasses.replace(TINY, schedule="constant", epochs=1)
    train_run(config, RunSpec("none", "stacked", 1, 0, 2.0), tiny_data, tmp_path)
    ckpt = torch.load(tmp_path / "checkpoint.pt", weights_only=True)
    assert ckpt["optimizer"]["param_groups"][0]["lr"] == pytest.approx(2.0 * TINY.lr)


def test_an_independent_convlstm_trains_in_the_study_loop_with_its_gates_probed(tmp_path, tiny_data) -> None:
    spec = importlib.util.spec_from_file_location("own_model", EXAMPLES / "own_model.py")
    own_model = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(own_model)
    for factory in (own_model.build, own_model.build_keras_init):
        row = train_run(TINY, RunSpec("none", "stacked", 2, 0, 1.0), tiny_data, tmp_path / factory.__name__,
                        model_factory=factory).to_dict()
        assert math.isfinite(row["test_mse"]) and len(row["gate_saturation_curve"]) == TINY.epochs
    # Keras' initialization: unit forget bias, orthogonal recurrent kernel
    cell = own_model.build_keras_init(norm="none", topology="stacked", depth=1, seed=0, width=4).encoder[0]
    C, c_in = 4, cell.in_channels
    assert torch.equal(cell.conv.bias[C : 2 * C], torch.ones(C))
    recurrent = cell.conv.weight[:, c_in:].reshape(4 * C, -1)  # (4C, C·k·k): Keras' (k·k·C, 4C) matrix, transposed
    assert torch.allclose(recurrent @ recurrent.T, torch.eye(4 * C), atol=1e-5)  # its 4C columns orthonormal


# --- the plan ---------------------------------------------------------------------------------------------------

def test_plan_times_every_variant_and_totals_them(monkeypatch) -> None:
    from normrnn.study import plan as plan_module

    timed = []

    def fake_cost(steps):
        keys = [(n, t, int(d)) for n, t, d in (name.split("/") for name in steps)]
        timed.extend(keys)
        return {name: 10.0 * key[2] for name, key in zip(steps, keys, strict=True)}

    monkeypatch.setattr(plan_module, "_fastest_of_rounds", fake_cost)
    monkeypatch.setattr(plan_module, "shared_slowdown", lambda steps: 1.5)
    config = dataclasses.replace(TINY, norms=("none", "layer", "group:2"), topologies=("stacked", "residual"),
                                 depths=(1, 2, 4), seeds=(0, 1, 2), lr_mults=(1.0, 3.0), lr_search="halving",
                                 workers=2)
    runs = planned_runs(config)
    text = plan_module.plan(config, runs)
    variants = {(n, t, d) for n in config.norms for t in config.topologies for d in config.depths}
    assert set(timed) < variants  # the reference at depths 1 and 4 of each topology, each norm at depth 1
    step_s = {key: 10.0 * key[2] for key in variants}  # the fake 10 s per layer, inferred where not timed
    total = plan_module.estimate_seconds(config, runs, step_s, (12, 4, 4), shared=1.5)
    assert f"estimated total: {total / 60:.0f} min" in text and "× 1.50 slower when 2 share" in text
    assert f"{len(runs)} runs" in text and "LR halving" in text
    json.dumps(text)  # plain text


def test_plan_shows_the_shapes_a_data_factory_really_gives(monkeypatch) -> None:
    from torch.utils.data import TensorDataset

    from normrnn.study import plan as plan_module
    from normrnn.study.datasets import Datasets

    monkeypatch.setattr(plan_module, "_fastest_of_rounds", lambda steps: dict.fromkeys(steps, 0.02))
    pairs = TensorDataset(torch.zeros(8, 3, 1, 12, 12), torch.zeros(8, 2, 1, 12, 12))
    config = dataclasses.replace(TINY, data="examples.own_model:load", model_version="v1")
    text = plan_module.plan(config, planned_runs(config), data=Datasets(pairs, pairs, pairs))
    assert "input (3, 1, 12, 12) → target (2, 1, 12, 12) per sample" in text
    assert "estimated total: " in text and " s on this machine" in text  # under a minute: in seconds


@pytest.mark.slow
def test_the_converge_plan_writes_nothing_and_says_how_it_estimated(tmp_path, capsys) -> None:
    """``--plan`` on the real converge grid (18 models): its speed is in its own output and in the notes, never
    asserted here."""
    from normrnn.cli import main

    assert main(["study", "--preset", "converge", "--plan", "--out", str(tmp_path / "c")]) == 0
    text = capsys.readouterr().out
    assert "How: 6 of the 18 models timed" in text and "Expect ±25%" in text
    assert "72 runs" in text and "LR halving: 2 multipliers" in text and not (tmp_path / "c").exists()


def test_the_plan_estimate_by_hand() -> None:
    """A run is its steps plus a third of a step per evaluation batch; runs are dealt longest first to the workers,
    each slowed ``shared`` times while two share the machine."""
    from normrnn.study.plan import estimate_seconds, run_seconds

    config = dataclasses.replace(TINY, epochs=2, batch_size=4, depths=(1, 2), workers=2)
    sizes = (12, 4, 4)  # train, val, test samples
    # 2 epochs × 3 steps; evaluations: (2 × 4 val + 4 test + 4 train subset) / 4 = 4 batches at 1/3 of a step
    assert run_seconds(config, 0.5, sizes) == pytest.approx(0.5 * (6 + 4 / 3))
    runs = planned_runs(config)  # depth 1 and 2, one run each
    one, two = run_seconds(config, 1.0, sizes), run_seconds(config, 3.0, sizes)
    step_s = {("none", "stacked", 1): 1.0, ("none", "stacked", 2): 3.0}
    # side by side, 1.35× slower, until the short run ends; then the long one alone at full speed
    assert estimate_seconds(config, runs, step_s, sizes, shared=1.35) == pytest.approx(one * 1.35 + (two - one))
    alone = dataclasses.replace(config, workers=1)
    assert estimate_seconds(alone, runs, step_s, sizes, shared=1.35) == pytest.approx(one + two)


def test_the_shared_slowdown_is_the_ratio_of_medians_together_to_alone() -> None:
    """An injected timer: a step timed in the calling thread takes 1 s (2 s in one round, which the median drops),
    and 2.5 s in a thread beside the others; every step runs in its own thread, all at once, each round."""
    import threading

    from normrnn.study.plan import shared_slowdown

    calls: list[str] = []
    alone = iter([1.0, 2.0, 1.0])
    inside = threading.Barrier(3, timeout=10)

    def seconds(step) -> float:
        step()
        if threading.current_thread() is threading.main_thread():
            return next(alone)
        inside.wait()  # all three steps are inside at once, or this raises
        return 2.5

    steps = [lambda k=k: calls.append(f"step {k}") for k in range(3)]
    assert shared_slowdown(steps, rounds=3, seconds=seconds) == 2.5
    assert sorted(calls) == sorted([f"step {k}" for k in range(3)] * 4 + ["step 0"] * 3)  # set-up, alone, together
    # faster side by side than alone is noise: never below 1
    assert shared_slowdown(steps[:2], rounds=1, seconds=lambda step: 0.5 if threading.current_thread()
                           is not threading.main_thread() else 1.0) == 1.0


def test_one_run_shares_nothing_and_is_not_timed() -> None:
    from normrnn.study.plan import shared_slowdown

    def fail(step) -> float:
        raise AssertionError("one step alone is not timed")

    assert shared_slowdown([lambda: None], seconds=fail) == 1.0


def test_the_makespan_slows_runs_only_while_they_overlap() -> None:
    """By hand: runs of 3 s and 1 s alone on 2 workers, 2× slower side by side: together until the short one ends at
    2 s (1 s of work each), then the long one alone for its last 2 s."""
    from normrnn.study.plan import makespan

    assert makespan([3.0, 1.0], workers=2, shared=2.0) == pytest.approx(4.0)
    assert makespan([5.0], workers=32, shared=9.0) == 5.0  # one run never shares, whatever the workers
    assert makespan([2.0, 2.0], workers=2, shared=1.5) == pytest.approx(3.0)  # always together
    assert makespan([1.0, 2.0, 3.0], workers=1, shared=5.0) == 6.0  # one after another
    # 3 workers, 3× slower all together: 1 + (3 − 1)·(m − 1)/2 with m running, so 2× with two
    # [3, 2, 1]: all three until the 1 ends (3 s); [2, 1] left at 2× until the 1 ends (2 s); 1 left alone (1 s)
    assert makespan([1.0, 2.0, 3.0], workers=3, shared=3.0) == pytest.approx(6.0)


def test_the_plan_times_few_models_and_infers_the_rest() -> None:
    """A step's time linear in depth and a norm's ratio the same at every depth: the inferred times are exact for
    a machine that follows that model, and only the reference's extreme depths and each norm once are timed."""
    from normrnn.study.plan import step_times

    config = dataclasses.replace(TINY, norms=("none", "layer", "group:2"), topologies=("stacked", "residual"),
                                 depths=(1, 2, 4, 8), seeds=(0,))
    ratio, per_layer = {"none": 1.0, "layer": 1.5, "group:2": 2.0}, {"stacked": 0.1, "residual": 0.12}
    timed: list[str] = []

    def measure(steps: dict) -> dict:
        timed.extend(steps)
        out = {}
        for name in steps:
            norm, topology, depth = name.split("/")
            out[name] = ratio[norm] * (0.05 + per_layer[topology] * int(depth))
        return out

    times, how = step_times(config, load_datasets(config), planned_runs(config), measure=measure)
    assert sorted(timed) == sorted(["none/stacked/1", "none/stacked/8", "none/residual/1", "none/residual/8",
                                    "layer/stacked/1", "group:2/stacked/1"])
    assert len(times) == 3 * 2 * 4
    for (norm, topology, depth), t in times.items():
        assert t == pytest.approx(ratio[norm] * (0.05 + per_layer[topology] * depth))
    assert "6 of the 24 models timed" in how
    small = dataclasses.replace(config, norms=("none",), topologies=("stacked",), depths=(1, 2))
    timed.clear()
    times, how = step_times(small, load_datasets(small), planned_runs(small), measure=measure)
    assert sorted(timed) == ["none/stacked/1", "none/stacked/2"] and "every one of the 2 models" in how
