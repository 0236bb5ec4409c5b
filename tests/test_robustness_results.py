"""No lost or silently skipped rows: a run that diverges on its last step is recorded, a short or failing write
never leaves half a row, and grid values that would share a run id are refused or kept apart."""

from __future__ import annotations

import json
import os

import pytest
import torch

from normrnn.study import (
    RunSpec,
    StudyConfig,
    append_result,
    expand_grid,
    load_results,
    results as results_module,
    train_run,
    write_report,
)
from normrnn.study.datasets import load_datasets

TINY = StudyConfig(name="tiny", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4, epochs=2,
                   batch_size=4, norms=("none",), topologies=("stacked",), frames_in=3, frames_out=2)


def test_a_run_that_diverges_on_its_last_step_is_recorded_as_diverged(tmp_path, monkeypatch) -> None:
    original = torch.optim.AdamW.step
    calls = [0]
    last = TINY.epochs * 3  # 12 samples in batches of 4

    def step(self, *args, **kwargs):
        out = original(self, *args, **kwargs)
        calls[0] += 1
        if calls[0] == last:  # the very last update blows the weights up, after the last loss check
            with torch.no_grad():
                for group in self.param_groups:
                    for p in group["params"]:
                        p.fill_(float("nan"))
        return out

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    row = train_run(TINY, RunSpec("none", "stacked", 1, 0, 1.0), load_datasets(TINY), tmp_path / "run").to_dict()
    assert row["diverged"] and row["diverged_step"] == last and row["test_mse"] is None
    assert append_result(tmp_path, row)  # plain JSON: recorded, so the study goes on to the next run
    assert load_results(tmp_path)[0]["diverged_step"] == last
    write_report([tmp_path])


def test_a_row_that_is_not_json_names_its_run(tmp_path) -> None:
    with pytest.raises(ValueError, match=r"run 'r1'.*not plain JSON"):
        append_result(tmp_path, {"run_id": "r1", "test_mse": float("nan")})
    assert not (tmp_path / "results.jsonl").exists() or load_results(tmp_path) == []


def test_short_writes_are_completed_and_a_full_disk_leaves_no_half_row(tmp_path, monkeypatch) -> None:
    append_result(tmp_path, {"run_id": "a", "x": 1})
    real_write = os.write

    def trickle(fd, data):  # the kernel may write fewer bytes than asked
        return real_write(fd, bytes(data[:5]))

    monkeypatch.setattr(results_module.os, "write", trickle)
    append_result(tmp_path, {"run_id": "b", "x": "a longer row than five bytes"})
    assert [r["run_id"] for r in load_results(tmp_path)] == ["a", "b"]
    before = (tmp_path / "results.jsonl").read_bytes()
    writes = [0]

    def full_disk(fd, data):
        writes[0] += 1
        if writes[0] == 1:
            return real_write(fd, bytes(data[:7]))  # part of the row, then the disk is full
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(results_module.os, "write", full_disk)
    with pytest.raises(OSError, match="No space left"):
        append_result(tmp_path, {"run_id": "c", "x": 3})
    assert (tmp_path / "results.jsonl").read_bytes() == before  # rolled back: no torn row
    monkeypatch.setattr(results_module.os, "write", lambda fd, data: 0)
    with pytest.raises(OSError, match="wrote 0 of"):
        append_result(tmp_path, {"run_id": "c", "x": 3})
    assert (tmp_path / "results.jsonl").read_bytes() == before


def test_grid_values_that_would_share_a_run_id_are_refused_or_kept_apart() -> None:
    with pytest.raises(ValueError, match="'layer' and 'Layer' name the same runs"):
        StudyConfig(norms=("layer", "Layer"))
    with pytest.raises(ValueError, match=r"lr_mults: 1\.0 and 1\.0 name the same runs"):
        StudyConfig(lr_mults=(1.0, 1.0))
    for key, values in (("seeds", (0, 0)), ("depths", (2, 2)), ("topologies", ("stacked", "stacked"))):
        with pytest.raises(ValueError, match=f"{key}: .* name the same runs"):
            StudyConfig(**{key: values})
    config = StudyConfig(norms=("none",), topologies=("stacked",), lr_mults=(1.0, 1.0000001, 0.3))
    ids = [s.run_id for s in expand_grid(config)]
    assert ids == ["none_stacked_d2_s0_lr1", "none_stacked_d2_s0_lr1.0000001", "none_stacked_d2_s0_lr0.3"]
    assert len(set(ids)) == len(ids)
    json.dumps(ids)
