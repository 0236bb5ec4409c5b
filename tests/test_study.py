"""The study: metrics against hand-computed values, the grid, determinism, resume, divergence, report."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing
import os
import random
import subprocess
import sys

import pytest
import torch

from conftest import assert_same_test_mse, interrupt_after, run_study_on_ray
from helpers import result_row
from normrnn.cli import main
from normrnn.study import (
    RunSpec,
    StudyConfig,
    expand_grid,
    load_config,
    load_results,
    parse_shard,
    run_study,
    shard,
    train_run,
)
from normrnn.study.datasets import load_datasets
from normrnn.study.directory import claim
from normrnn.study.history import count_spikes
from normrnn.study.metrics import frame_mae, frame_mse, psnr, ssim
from normrnn.study.report import mean_ci, write_report
from normrnn.study.results import append_result

TINY = StudyConfig(name="tiny", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4, epochs=3,
                   batch_size=4, norms=("none",), topologies=("stacked",), frames_in=3, frames_out=2)


# --- metrics ---------------------------------------------------------------------------------------------------

def test_mse_and_mae_sum_over_pixels_then_average_over_frames() -> None:
    target = torch.zeros(1, 2, 1, 2, 2)
    pred = torch.tensor([[[[0.1, 0.2], [0.0, 0.3]]], [[[0.5, 0.0], [0.0, 0.0]]]]).reshape(1, 2, 1, 2, 2)
    # frame 1: 0.01 + 0.04 + 0.09 = 0.14; frame 2: 0.25 -> mean 0.195. MAE: (0.6 + 0.5) / 2 = 0.55
    assert frame_mse(pred, target) == pytest.approx(0.195)
    assert frame_mae(pred, target) == pytest.approx(0.55)


def test_psnr_known_values_and_ssim_identity() -> None:
    target = torch.full((2, 3, 1, 8, 8), 0.1)
    assert psnr(torch.zeros_like(target), target) == pytest.approx(20.0)  # mse 0.01 -> 20 dB
    x = torch.rand(2, 3, 1, 16, 16)
    assert ssim(x, x) == pytest.approx(1.0)
    noisy = (x + 0.2 * torch.randn_like(x)).clamp(0, 1)
    assert ssim(noisy, x) < 0.9
    assert ssim(x, x.flip(-1)) < ssim(noisy, x)


def test_ssim_matches_skimage_when_installed() -> None:
    skimage = pytest.importorskip("skimage.metrics")
    x, y = torch.rand(1, 1, 1, 20, 24, dtype=torch.float64), torch.rand(1, 1, 1, 20, 24, dtype=torch.float64)
    want = skimage.structural_similarity(x[0, 0, 0].numpy(), y[0, 0, 0].numpy(), data_range=1.0)
    assert ssim(x, y) == pytest.approx(want, rel=1e-9)


def test_spikes_and_confidence_intervals() -> None:
    losses = [1.0] * 20 + [5.0] + [1.0] * 5 + [2.9]
    assert count_spikes(losses) == 1
    mean, half = mean_ci([1.0, 2.0, 3.0])
    assert mean == 2.0 and half == pytest.approx(4.303 * 1.0 / 3**0.5)
    assert mean_ci([1.0]) == (1.0, None)


# --- configuration ------------------------------------------------------------------------------------------------

def test_grid_covers_every_combination_once() -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer"), topologies=("stacked", "residual"), seeds=(0, 1),
                                 lr_mults=(1.0, 10.0))
    runs = expand_grid(config)
    assert len(runs) == len({r.run_id for r in runs}) == 16
    assert RunSpec("group:8", "residual", 2, 0, 3.0).run_id == "group-8_residual_d2_s0_lr3"


def test_toml_overrides_a_preset(tmp_path) -> None:
    path = tmp_path / "study.toml"
    path.write_text('preset = "smoke"\nepochs = 1\nnorms = ["none", "group:2"]\n')
    config = load_config(None, path)
    assert config.epochs == 1 and config.norms == ("none", "group:2") and config.size == 16
    path.write_text("epoch = 1\n")
    with pytest.raises(ValueError, match="unknown keys"):
        load_config(None, path)
    with pytest.raises(ValueError, match="unknown preset"):
        load_config("huge")


@pytest.mark.parametrize("count", [1, 2, 3, 5, 16, 40])
def test_shards_partition_the_grid(count: int) -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer", "rms"), topologies=("stacked", "residual"),
                                 seeds=(0, 1), lr_mults=(1.0, 10.0))
    grid = [s.run_id for s in expand_grid(config)]
    shards = [[s.run_id for s in shard(expand_grid(config), i, count)] for i in range(count)]
    assert sorted(r for part in shards for r in part) == sorted(grid)  # every run exactly once
    assert max(map(len, shards)) - min(map(len, shards)) <= 1  # and evenly dealt
    assert parse_shard(" 2 / 5 ") == (2, 5)
    for bad in ("5/5", "-1/2", "1", "a/b", "0/0"):
        with pytest.raises(ValueError, match="expected"):
            parse_shard(bad)


# --- training -------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_data():
    return load_datasets(TINY)


def _metrics(row: dict) -> dict:
    return {k: row[k] for k in ("test_mse", "test_mae", "test_ssim", "test_psnr", "val_curve", "train_curve")}


@pytest.mark.parametrize("norm", ["none", "recurrent_batch"])
def test_same_seed_same_metrics_and_resume_equals_uninterrupted(tmp_path, tiny_data, norm: str) -> None:
    spec = RunSpec(norm, "stacked", 2, 0, 1.0)
    full = train_run(TINY, spec, tiny_data, tmp_path / "a").to_dict()
    assert _metrics(full) == _metrics(train_run(TINY, spec, tiny_data, tmp_path / "b").to_dict())
    # 3 steps per epoch: interrupt in the middle of epoch 2, after its checkpoint of epoch 1
    with pytest.raises(KeyboardInterrupt):
        train_run(TINY, spec, tiny_data, tmp_path / "c", on_step=interrupt_after(5))
    ckpt = torch.load(tmp_path / "c" / "checkpoint.pt", weights_only=True)
    assert ckpt["history"]["epoch"] == 1  # at most the epoch in progress was lost
    resumed = train_run(TINY, spec, tiny_data, tmp_path / "c").to_dict()
    assert _metrics(resumed) == _metrics(full)


def test_divergence_is_a_result_not_a_crash(tmp_path, tiny_data) -> None:
    config = dataclasses.replace(TINY, divergence_bound=0.5)  # any loss above half the first counts
    row = train_run(config, RunSpec("layer", "stacked", 2, 0, 1.0), tiny_data, tmp_path).to_dict()
    assert row["diverged"] and row["diverged_step"] is not None and row["test_mse"] is None


# --- the study end to end ----------------------------------------------------------------------------------------

def test_smoke_study_end_to_end_then_resume_skips_finished_runs(tmp_path, capsys) -> None:
    out = tmp_path / "smoke"
    assert main(["study", "--preset", "smoke", "--out", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "| stacked | 2 | layer | 1 |" in printed and "What the numbers say" in printed
    rows = load_results(out)
    assert len(rows) == 4 and {r["norm"] for r in rows} == {"none", "layer"}
    required = {"norm", "topology", "depth", "seed", "lr_mult", "test_mse", "test_mae", "test_ssim", "test_psnr",
                "diverged", "step_time_s", "peak_mem_mb"}
    assert all(required <= set(r) and r["test_mse"] > 0 for r in rows)
    for name in ("report.md", "results.csv", "results.json", "learning_curves.png", "test_mse.png", "cost.png",
                 "generalization.png", "cost.json"):
        assert (out / name).stat().st_size > 0, name
    assert len(json.loads((out / "results.json").read_text())) == 4
    assert run_study(load_config("smoke"), out, progress=False) == rows  # nothing re-run
    assert len((out / "results.jsonl").read_text().splitlines()) == 4
    with pytest.raises(ValueError, match=r"different study \(differs in \['epochs'\]\)"):
        run_study(dataclasses.replace(load_config("smoke"), epochs=3), out, progress=False)
    assert run_study(dataclasses.replace(load_config("smoke"), threads=1), out, progress=False) == rows
    assert main(["report", str(out)]) == 0


def _row(norm: str, topology: str, seed: int, mse: float | None, lr_mult: float = 1.0) -> dict:
    ok = mse is not None
    return result_row(norm=norm, topology=topology, depth=2, seed=seed, lr_mult=lr_mult, test_mse=mse,
                      diverged=not ok, study="synthetic", test_mae=mse, test_ssim=0.5 if ok else None,
                      test_psnr=20.0 if ok else None, diverged_step=None if ok else 3,
                      step_time_s=1.0 if norm == "none" else 1.1, peak_mem_mb=10.0, loss_spikes=0,
                      gate_saturation_mean=0.1 if ok else None, val_curve=[2 * mse, mse] if ok else [],
                      train_curve=[])


def test_report_separates_real_differences_from_noise(tmp_path) -> None:
    rows = [_row("none", "stacked", s, 60 + s) for s in range(3)]
    rows += [_row("layer", "stacked", s, 50 + s) for s in range(3)]  # clearly lower
    rows += [_row("none", "residual", s, 60 + 5 * s) for s in range(3)]
    rows += [_row("layer", "residual", s, 61 + 5 * s) for s in range(3)]  # within noise
    rows += [_row("none", "stacked", s, None, 10.0) for s in range(3)] + [_row("layer", "stacked", 0, 55, 10.0)]
    for r in rows:
        append_result(tmp_path, r)
    md = write_report([tmp_path])
    assert "stacked, depth 2: `layer` test MSE 51.00 vs bias-only 61.00, -16.4% (lower)" in md
    assert "residual, depth 2: `layer` test MSE 66.00 vs bias-only 65.00, +1.5% (within noise)" in md
    assert "| stacked | 2 | none | 0% (3) | 100% (3) |" in md  # the divergence table: lr × 1, lr × 10 (run counts:
    # they differ, layer ran one seed at lr × 10)
    assert "At lr × 10: `none` (stacked) 100% diverged." in md
    assert "One seed" not in md and "time_vs_bias" not in md
    assert (tmp_path / "stability.png").stat().st_size > 0


# --- many writers, one directory ------------------------------------------------------------------------------------

def _append_many(directory: str, seed: int) -> None:
    ids = [f"run{i}" for i in range(40)]
    random.Random(seed).shuffle(ids)
    for run_id in ids:
        append_result(directory, {"run_id": run_id, "writer": seed, "pad": "x" * 5000})


@pytest.mark.slow
def test_concurrent_appends_keep_every_run_exactly_once(tmp_path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        pool.starmap(_append_many, [(str(tmp_path), seed) for seed in range(4)])
    lines = (tmp_path / "results.jsonl").read_text().splitlines()
    assert sorted(json.loads(line)["run_id"] for line in lines) == sorted(f"run{i}" for i in range(40))


def test_a_torn_line_does_not_swallow_the_next_row(tmp_path) -> None:
    append_result(tmp_path, {"run_id": "a"})
    with open(tmp_path / "results.jsonl", "a") as f:
        f.write('{"run_id": "b", "test_m')  # a crash mid-write
    assert append_result(tmp_path, {"run_id": "c"}) and not append_result(tmp_path, {"run_id": "a"})
    assert [r["run_id"] for r in load_results(tmp_path)] == ["a", "c"]


def test_a_claimed_run_is_left_to_its_owner(tmp_path) -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer"), epochs=1)
    held, other = expand_grid(config)
    with claim(tmp_path, held) as claimed:
        assert claimed
        assert [r["run_id"] for r in run_study(config, tmp_path, progress=False)] == [other.run_id]
    assert {r["run_id"] for r in run_study(config, tmp_path, progress=False)} == {held.run_id, other.run_id}


@pytest.mark.slow
def test_two_shards_at_once_into_one_directory_lose_nothing(tmp_path) -> None:
    out = tmp_path / "shared"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    shards = [subprocess.Popen([sys.executable, "-m", "normrnn", "study", "--preset", "smoke", "--threads", "1",
                                "--shard", f"{i}/2", "--out", str(out), "--no-progress"],
                               env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(2)]
    outputs = [p.communicate(timeout=300) for p in shards]
    assert [p.returncode for p in shards] == [0, 0], [err[-2000:] for _, err in outputs]
    lines = (out / "results.jsonl").read_text().splitlines()
    grid = sorted(s.run_id for s in expand_grid(load_config("smoke")))
    assert sorted(json.loads(line)["run_id"] for line in lines) == grid  # each once, none torn
    assert (out / "report.md").exists()  # written by the shard that completed the grid


@pytest.mark.slow
def test_ray_executor_equals_the_local_one(tmp_path) -> None:
    config = dataclasses.replace(TINY, norms=("none", "layer"), epochs=1, threads=1)
    want = run_study(config, tmp_path / "local", progress=False)
    assert_same_test_mse(run_study_on_ray(config, tmp_path / "ray"), want, rel=1e-5)
    assert len((tmp_path / "ray" / "results.jsonl").read_text().splitlines()) == 2


# --- depth, stability, generalization, cost (the seed's questions at depth) ---------------------------------------

def test_a_depth_and_stability_grid_reports_every_section(tmp_path) -> None:
    """Smoke scale, timing-free checks: two depths, clipping off, LR multipliers, train_mse, the new sections."""
    config = dataclasses.replace(TINY, name="tinydeep", norms=("none", "layer"), depths=(1, 2), clip=0.0,
                                 lr_mults=(1.0, 1000.0), epochs=2, seeds=(0, 1))
    rows = run_study(config, tmp_path, progress=False)
    assert len(rows) == 2 * 2 * 2 * 2
    ok = [r for r in rows if not r["diverged"]]
    assert ok and all(r["train_mse"] > 0 and r["config_hash"] == config.config_hash for r in ok)
    assert {r["lr_mult"] for r in rows} == {1.0, 1000.0}
    cost = json.loads((tmp_path / "cost.json").read_text())
    assert {(r["norm"], r["depth"]) for r in cost["rows"]} == {(n, d) for n in ("none", "layer") for d in (1, 2)}
    assert all(r["ratio"] == 1.0 for r in cost["rows"] if r["norm"] == "none")  # paired with itself
    md = str(write_report([tmp_path]))
    assert "No conclusions: no model beat the best no-learning predictor" in md  # two epochs learn nothing
    assert f"the AdamW peak learning rate {config.lr:g}: × 10 is a peak of {10 * config.lr:g}" in md
    assert "**What does it cost?**" not in md and "Every variant against bias-only" not in md
    # the same runs against a floor they beat: now the answers compare the variants
    baselines = json.loads((tmp_path / "baselines.json").read_text())
    (tmp_path / "baselines.json").write_text(json.dumps({k: {m: v * 100 for m, v in b.items()}
                                                         for k, b in baselines.items()}))
    md = str(write_report([tmp_path]))
    assert "No conclusions" not in md
    for section in ("### Depth", "### Stability", "### Generalization", "### Cost", "max stable ×",
                    "gap (test − train)", "**Does normalization stabilize training?**",
                    "**Does layer norm help training but hurt test accuracy?**", "**What does it cost?**"):
        assert section in md, section
    for plot in ("depth.png", "stability.png", "generalization.png", "cost.png", "test_mse.png"):
        assert (tmp_path / plot).stat().st_size > 0, plot


def test_the_stability_frontier_is_the_largest_multiplier_all_seeds_survive() -> None:
    from normrnn.study.aggregate import aggregate, stability_frontier

    rows = [_row("none", "stacked", s, 60.0, 1.0) for s in range(2)]
    rows += [_row("none", "stacked", 0, 61.0, 3.0), _row("none", "stacked", 1, None, 3.0)]  # one seed diverged
    rows += [_row("layer", "stacked", s, 50.0, m) for s in range(2) for m in (1.0, 3.0)]
    rows += [_row("layer", "stacked", s, 75.0, 10.0) for s in range(2)]  # worse than the floor: not stable
    frontier = stability_frontier(aggregate(rows), floor=70.0)
    assert frontier == {("none", "stacked", 2): 1.0, ("layer", "stacked", 2): 3.0}


def test_plan_prints_the_grid_and_an_estimate_and_trains_nothing(tmp_path, capsys) -> None:
    (tmp_path / "tiny.toml").write_text('preset = "smoke"\ndepths = [1, 2]\nseeds = [0, 1]\n')
    assert main(["study", "--config", str(tmp_path / "tiny.toml"), "--plan"]) == 0
    out = capsys.readouterr().out
    assert "16 runs" in out and "2 depths (1, 2)" in out and "estimated total:" in out
    assert list(tmp_path.iterdir()) == [tmp_path / "tiny.toml"]  # nothing written


def test_tensorboard_logs_loss_and_gate_histograms(tmp_path, tiny_data) -> None:
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    train_run(TINY, RunSpec("layer", "stacked", 2, 0, 1.0), tiny_data, tmp_path, tensorboard=True)
    events = EventAccumulator(str(tmp_path / "tensorboard"), size_guidance={"histograms": 0}).Reload()
    tags = events.Tags()
    assert {"train/loss", "train/grad_norm", "val/mse", "gates/saturation_layer0"} <= set(tags["scalars"])
    assert len(events.Scalars("train/loss")) == 9 and "gates/layer0" in tags["histograms"]  # 3 epochs x 3 steps


# --- convergence: the plateau flag --------------------------------------------------------------------------------

def test_plateau_flag_against_hand_computed_curves() -> None:
    from normrnn.study.thresholds import plateaued

    # the last quarter starts at the last validation at or before 0.75 × 100 = 75: 41 -> 40.5 is 1.2%, under 2%
    assert plateaued([60.0, 45.0, 41.0, 40.5], [25, 50, 75, 100]) is True
    # 41 -> 40 is 2.4%: still improving
    assert plateaued([60.0, 45.0, 41.0, 40.0], [25, 50, 75, 100]) is False
    # uneven validations: the reference is step 60's 42 (80 > 75), and 42 -> 41.5 is 1.2%
    assert plateaued([50.0, 42.0, 41.6, 41.5], [30, 60, 80, 100]) is True
    assert plateaued([40.0], [100]) is None  # one validation: nothing to compare
    assert plateaued([40.0, 39.0], [90, 100]) is None  # no validation before the last quarter


def test_rows_record_the_validation_curve_against_steps_and_the_plateau(tmp_path, tiny_data) -> None:
    from normrnn.study.thresholds import plateaued

    row = train_run(TINY, RunSpec("none", "stacked", 1, 0, 1.0), tiny_data, tmp_path / "a").to_dict()
    assert row["val_steps"] == [3, 6, 9]  # 12 sequences in batches of 4, 3 epochs
    assert row["plateau"] == plateaued(row["val_curve"], [3, 6, 9])
    # a checkpoint written before val_steps was recorded resumes with the steps of its epochs
    with pytest.raises(KeyboardInterrupt):
        train_run(TINY, RunSpec("none", "stacked", 1, 0, 1.0), tiny_data, tmp_path / "b", on_step=interrupt_after(7))
    path = tmp_path / "b" / "checkpoint.pt"
    ckpt = torch.load(path, weights_only=True)
    del ckpt["history"]["val_steps"]
    torch.save(ckpt, path)
    resumed = train_run(TINY, RunSpec("none", "stacked", 1, 0, 1.0), tiny_data, tmp_path / "b").to_dict()
    assert resumed["val_steps"] == [3, 6, 9] and resumed["val_curve"] == row["val_curve"]


# --- fresh training sequences ---------------------------------------------------------------------------------------

def test_fresh_training_sequences_differ_every_epoch_and_resume_identically(tmp_path, tiny_data) -> None:
    from normrnn.study.datasets import fresh_train_set

    config = dataclasses.replace(TINY, fresh_train=True, dataset="moving_mnist_5k")
    assert dataclasses.replace(TINY, fresh_train=False).config_hash == TINY.config_hash  # off: the old hash
    first, second = (fresh_train_set(config, 0, epoch).video for epoch in (0, 1))
    assert first.shape == tiny_data.train.video.shape and not torch.equal(first, second)
    assert torch.equal(first, fresh_train_set(config, 0, 0).video)  # the same stream in every process
    assert not torch.equal(first, fresh_train_set(config, 1, 0).video)  # each run seed its own
    data = load_datasets(config)
    spec = RunSpec("none", "stacked", 1, 0, 1.0)
    full = train_run(config, spec, data, tmp_path / "a").to_dict()
    with pytest.raises(KeyboardInterrupt):
        train_run(config, spec, data, tmp_path / "b", on_step=interrupt_after(5))
    assert _metrics(train_run(config, spec, data, tmp_path / "b").to_dict()) == _metrics(full)


@pytest.mark.parametrize("change", [{"dataset": "moving_mnist", "data_path": "x.npy"}, {"data": "mod:load"}])
def test_fresh_training_sequences_need_a_generated_dataset(change) -> None:
    with pytest.raises(ValueError, match="fresh_train generates training sequences"):
        StudyConfig(fresh_train=True, **change)
