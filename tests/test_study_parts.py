"""The study config's parts: every setting in one part, the model part reaching the model whole, and the hashes of
existing studies unchanged by the regrouping."""

from __future__ import annotations

import dataclasses

import pytest

from normrnn.study import PRESETS, StudyConfig, load_config
from normrnn.study.config import PARTS
from normrnn.study.grid import RunSpec
from normrnn.study.model import ModelConfig, build_model, model_settings

# the config hashes of the CPU presets as normrnn 0.2.0 computed them before the config had parts (the hash names a
# study's directory and every row in it: a change would orphan every study run so far)
HASHES_BEFORE = {"smoke": "331371a5c153", "quick": "e6b5611a889c", "deep": "5a6b1acffc33",
                 "stability": "e50d7b9b344e", "tuned": "d42098f00ee2", "converge": "0ce69f350142",
                 "standard": "5bcdb6024133"}


def test_every_setting_belongs_to_exactly_one_part() -> None:
    names = [name for part in PARTS.values() for name in part]
    assert sorted(names) == sorted(f.name for f in dataclasses.fields(StudyConfig))
    assert len(names) == len(set(names))
    assert StudyConfig(width=12).part("model")["width"] == 12
    with pytest.raises(ValueError, match="expected part to be one of 'data', 'model', 'optim', 'grid', 'run'"):
        StudyConfig().part("modle")


def test_the_model_part_reaches_the_model_whole() -> None:
    """Every model setting the study and ModelConfig share is carried by name; the run gives depth, norm and
    topology; the rest of ModelConfig (channels) keeps its default, which the study's data have."""
    config = StudyConfig(cell="convgru", width=6, kernel_size=5, patch=4, size=8, norm_inputs="separate",
                         norm_scope="all_gates", forget_bias=0.5, recurrent_init="default", head="sigmoid")
    spec = RunSpec("layer", "residual", 3, 0, 1.0)
    model = ModelConfig.for_run(config, spec)
    shared = set(PARTS["model"]) & {f.name for f in dataclasses.fields(ModelConfig)}
    assert shared == {"cell", "width", "kernel_size", "patch", "norm_inputs", "norm_scope", "forget_bias",
                      "recurrent_init", "head"}
    assert all(getattr(model, name) == getattr(config, name) for name in shared)
    assert (model.depth, model.norm, model.residual, model.channels) == (3, "layer", True, 1)
    assert {f.name for f in dataclasses.fields(ModelConfig)} - shared == {"depth", "norm", "residual", "channels"}
    forecaster = build_model(config, spec)
    assert forecaster.config == model
    assert model_settings(config) == {**{k: getattr(config, k) for k in shared}, "frames_in": 10, "frames_out": 10,
                                      "size": 8, "channels": 1}


def test_presets_toml_files_and_old_directories_keep_their_hashes() -> None:
    assert {name: PRESETS[name].config_hash for name in HASHES_BEFORE} == HASHES_BEFORE
    assert load_config("tuned").config_hash == HASHES_BEFORE["tuned"]
    import json
    from pathlib import Path

    converge = Path(__file__).resolve().parents[1] / "results" / "converge"
    rows = [json.loads(line) for line in (converge / "results.jsonl").read_text().splitlines()]
    assert {r["config_hash"] for r in rows} == {HASHES_BEFORE["converge"]}  # the committed study's rows
