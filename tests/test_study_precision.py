"""The study's precision: the setting, its hash, auto's choice from paired timings, and its record in the directory."""

from __future__ import annotations

import dataclasses
import json

import pytest
import torch

import normrnn.study.cost as precision_module
from normrnn.study import StudyConfig, load_config, run_study
from normrnn.study.cost import PAYS, choose_precision
from normrnn.study.datasets import load_datasets
from normrnn.study.precision import BF16, load_precision

TINY = StudyConfig(name="tiny-precision", size=8, patch=2, width=4, train_samples=8, val_samples=4, test_samples=4,
                   epochs=1, batch_size=4, norms=("none",), topologies=("stacked",), depths=(1, 2), frames_in=3,
                   frames_out=2)


def _fake_timing(bf16_over_fp32: float):
    """``time_interleaved`` that reports bf16 steps at ``bf16_over_fp32`` times fp32's: auto's decision, not the
    machine's speed, is under test."""
    def fake(calls, *, rounds, **_):
        return {name: [(bf16_over_fp32 if name.endswith("bf16") else 1.0) * 0.01] * rounds for name in calls}
    return fake


def test_fp32_and_bf16_keep_the_hash_of_the_bf16_key_they_replace(tmp_path) -> None:
    """Studies written before ``precision`` hashed ``bf16 = false | true``; their directories keep their hash."""
    fp32, bf16 = TINY, dataclasses.replace(TINY, precision="bf16")
    assert fp32.identity()["bf16"] is False and "precision" not in fp32.identity()
    assert bf16.identity()["bf16"] is True
    assert len({fp32.config_hash, bf16.config_hash, dataclasses.replace(TINY, precision="auto").config_hash}) == 3
    path = tmp_path / "old.toml"
    path.write_text('preset = "smoke"\nbf16 = true\n')
    assert load_config(path=path).precision == "bf16"
    assert load_config(path=path).config_hash == dataclasses.replace(load_config("smoke"), precision="bf16").config_hash
    path.write_text('preset = "smoke"\nbf16 = true\nprecision = "fp32"\n')
    with pytest.raises(ValueError, match="contradicts precision"):
        load_config(path=path)
    with pytest.raises(ValueError, match="expected precision to be one of 'fp32', 'bf16', 'auto', got 'fp16'"):
        StudyConfig(precision="fp16")


@pytest.mark.parametrize(("ratio", "chosen"),
                         [(0.7, "bf16"), (PAYS - 0.01, "bf16"), (PAYS + 0.01, "fp32"), (1.3, "fp32")])
def test_auto_picks_bf16_only_where_it_measured_faster(monkeypatch, ratio: float, chosen: str) -> None:
    monkeypatch.setattr(precision_module, "bf16_hardware", lambda device: None)
    monkeypatch.setattr(precision_module, "time_interleaved", _fake_timing(ratio))
    config = dataclasses.replace(TINY, precision="auto")
    decision = choose_precision(config, load_datasets(config), rounds=2)
    assert decision["precision"] == chosen and decision["ratio"] == pytest.approx(ratio)


def test_auto_is_fp32_without_bf16_hardware(monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_hardware", lambda device: "no bf16 here")
    config = dataclasses.replace(TINY, precision="auto")
    assert choose_precision(config, load_datasets(config)) == {"requested": "auto", "precision": "fp32",
                                                                 "ratio": None, "why": "no bf16 here"}


def test_auto_decides_once_per_study_and_every_row_records_it(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(precision_module, "bf16_hardware", lambda device: None)
    monkeypatch.setattr(precision_module, "time_interleaved", _fake_timing(0.5))
    config = dataclasses.replace(TINY, precision="auto")
    rows = run_study(config, tmp_path, progress=False)
    record = json.loads((tmp_path / "precision.json").read_text())
    assert record["precision"] == "bf16" and record["config_hash"] == config.config_hash
    assert {r["precision"] for r in rows} == {"bf16"}
    assert json.loads((tmp_path / "cost.json").read_text())["precision"] == "bf16"
    # more seeds later, on a machine where bf16 would not pay: the study keeps the precision it began with
    monkeypatch.setattr(precision_module, "time_interleaved", _fake_timing(2.0))
    rows = run_study(dataclasses.replace(config, seeds=(0, 1)), tmp_path, progress=False)
    assert {r["precision"] for r in rows} == {"bf16"} and len(rows) == 4
    assert load_precision(tmp_path, config.config_hash) == BF16


def test_a_bf16_run_trains_under_autocast_and_says_so(tmp_path) -> None:
    """bf16 rows differ from fp32 ones only by rounding: the same run learns to within a few percent."""
    config = dataclasses.replace(TINY, depths=(1,), epochs=2)
    fp32 = run_study(config, tmp_path / "fp32", progress=False)[0]
    bf16 = run_study(dataclasses.replace(config, precision="bf16"), tmp_path / "bf16", progress=False)[0]
    assert (fp32["precision"], bf16["precision"]) == ("fp32", "bf16")
    assert bf16["test_mse"] != fp32["test_mse"]  # autocast did run
    assert bf16["test_mse"] == pytest.approx(fp32["test_mse"], rel=0.05)
    assert torch.get_autocast_dtype("cpu") == torch.bfloat16  # nothing left autocast switched on
    assert not torch.is_autocast_enabled("cpu")
