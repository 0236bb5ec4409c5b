"""Data-parallel training: 2 gloo processes on CPU must equal one process over the same global batches."""

from __future__ import annotations

import dataclasses
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from conftest import interrupt_after
from normrnn.cli import main
from normrnn.study import RunSpec, StudyConfig, load_results, run_study, train_run
from normrnn.study.datasets import load_datasets
from normrnn.study.distributed import Rank, local_batch_size

pytestmark = pytest.mark.skipif(not dist.is_available(), reason="torch.distributed is not available in this build")

TOML = """preset = "smoke"
norms = ["batch"]
topologies = ["stacked"]
depths = [1]
epochs = 2
threads = 1
"""
RUN = "batch_stacked_d1_s0_lr1"
# 30 sequences in global batches of 8: the last batch has 6, 3 per rank
SMALL = StudyConfig(name="ddp", size=8, patch=2, width=4, train_samples=30, val_samples=4, test_samples=4, epochs=2,
                    batch_size=8, norms=("recurrent_batch",), topologies=("residual",), frames_in=3, frames_out=2,
                    threads=1)


def _checkpoint(directory, run_id: str = RUN) -> dict:
    return torch.load(directory / "runs" / run_id / "checkpoint.pt", weights_only=True)


def _assert_same_training(ddp: dict, single: dict) -> None:
    """Loss curve, validation curve and every batch-norm running statistic, within 1e-5."""
    for curve in ("loss", "val_curve"):
        torch.testing.assert_close(torch.tensor(ddp["history"][curve]), torch.tensor(single["history"][curve]),
                                   atol=1e-5, rtol=1e-5)
    stats = [k for k in single["model"] if "running_" in k]
    assert stats, "expected batch-norm running statistics in the model"
    for k in stats:
        torch.testing.assert_close(ddp["model"][k], single["model"][k], atol=1e-5, rtol=1e-5, msg=k)


@pytest.mark.slow
def test_torchrun_two_processes_equal_one_process(tmp_path, capsys) -> None:
    config = tmp_path / "bn.toml"
    config.write_text(TOML)
    one, two = tmp_path / "one", tmp_path / "two"
    assert main(["train", "--config", str(config), "--out", str(one), "--no-progress"]) == 0
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "normrnn", "train", "--config", str(config), "--out", str(two), "--no-progress"]
    done = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert f"{RUN}: test_mse=" in done.stdout and "processes=2" in done.stdout  # printed by rank 0 only once
    assert done.stdout.count(RUN) == 1
    _assert_same_training(_checkpoint(two), _checkpoint(one))
    (row_two,), (row_one,) = load_results(two), load_results(one)
    assert row_two["processes"] == 2 and row_one["processes"] == 1
    assert row_two["test_mse"] == pytest.approx(row_one["test_mse"], rel=1e-5)
    assert not list(two.glob("runs/*/.*.tmp")), "a temporary file was left behind"


def _resume_worker(rank: int, init_file: str, out: str, steps: int) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    torch.set_num_threads(1)
    try:
        spec = RunSpec("recurrent_batch", "residual", 2, 0, 1.0)
        with pytest.raises(KeyboardInterrupt):
            train_run(SMALL, spec, load_datasets(SMALL), _run_dir(out, spec), on_step=interrupt_after(steps),
                      rank=Rank(rank, 2))
        dist.barrier()  # both ranks stopped at the same step: leave together, as run_study does (gloo teardown race)
    finally:
        dist.destroy_process_group()


def _run_dir(out: str | Path, spec: RunSpec) -> Path:
    return Path(out) / "runs" / spec.run_id


@pytest.mark.slow
def test_a_run_resumes_with_another_world_size(tmp_path) -> None:
    spec = RunSpec("recurrent_batch", "residual", 2, 0, 1.0)
    data = load_datasets(SMALL)
    single = tmp_path / "single"
    train_run(SMALL, spec, data, _run_dir(single, spec), rank=Rank())
    # 2 processes stop one step into epoch 2, after the checkpoint of epoch 1; one process finishes the run
    mixed = tmp_path / "mixed"
    mp.spawn(_resume_worker, args=(str(tmp_path / "init"), str(mixed), 5), nprocs=2, join=True)
    assert _checkpoint(mixed, spec.run_id)["history"]["epoch"] == 1
    train_run(SMALL, spec, data, _run_dir(mixed, spec), rank=Rank())
    _assert_same_training(_checkpoint(mixed, spec.run_id), _checkpoint(single, spec.run_id))


@pytest.mark.slow
def test_study_nproc_launches_the_group_itself(tmp_path) -> None:
    config = dataclasses.replace(SMALL, epochs=1)
    rows = run_study(config, tmp_path / "two", nproc=2, progress=False)
    want = run_study(config, tmp_path / "one", progress=False)
    assert [r["run_id"] for r in rows] == [r["run_id"] for r in want] and rows[0]["processes"] == 2
    assert rows[0]["train_curve"] == pytest.approx(want[0]["train_curve"], rel=1e-5)
    _assert_same_training(_checkpoint(tmp_path / "two", rows[0]["run_id"]),
                          _checkpoint(tmp_path / "one", rows[0]["run_id"]))


def test_bad_process_counts_are_clear_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"batch_size divisible by the number of processes \(3\), got batch_size=8"):
        run_study(SMALL, tmp_path, nproc=3, progress=False)
    with pytest.raises(ValueError, match="expected nproc to be a positive int, got 0"):
        run_study(SMALL, tmp_path, nproc=0, progress=False)
    with pytest.raises(ValueError, match="use one or the other"):
        run_study(SMALL, tmp_path, nproc=2, executor="ray", progress=False)
    assert local_batch_size(8, 4) == 2
