"""The own-model contract grown to fit real models (OpenSTL's): the factory is told the frames it will see,
training can teach with the target (scheduled sampling, evaluation never), rows record only the settings that reach
the model, and the report says "no norm" for a model with no bias, with parameter counts and why gate saturation is
missing."""

from __future__ import annotations

import json

import pytest

from helpers import user_modules
from normrnn.study import RunSpec, StudyConfig, run, train_run
from normrnn.study.datasets import load_datasets
from normrnn.study.precision import FP32

SOURCE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset

SEEN = {"factory": [], "forward": []}

class NoBias(nn.Module):
    """A ConvLSTM-like forecaster without any bias, which can be taught with the target."""
    def __init__(self, channels, size, frames_out, norm):
        super().__init__()
        self.frames_out = frames_out
        self.conv = nn.Conv2d(2 * channels, channels, 3, padding=1, bias=False)
        self.norm = nn.GroupNorm(1, channels) if norm == "layer" else nn.Identity()

    def forward(self, x, target=None, teacher=None):
        SEEN["forward"].append((target is not None, teacher, self.training))
        frame, out = x[:, -1], []
        for t in range(self.frames_out):
            frame = self.norm(self.conv(torch.cat([frame, x[:, 0]], 1)))
            out.append(frame)
            if target is not None and teacher:  # scheduled sampling: feed the true frame
                frame = target[:, t]
        return torch.stack(out, 1)

def build(*, norm, topology, depth, seed, size, channels, frames_in, frames_out):
    SEEN["factory"].append((size, channels, frames_in, frames_out))
    return NoBias(channels, size, frames_out, norm)

def load(*, split, seed):
    g = torch.Generator().manual_seed(len(split) + seed)
    x = torch.rand(8, 5, 3, 12, 10, generator=g)  # 3 channels, 12 x 10 frames, 3 in and 2 out
    return TensorDataset(x[:, :3], x[:, 3:])
'''
CONFIG = dict(name="contract", epochs=2, batch_size=4, norms=("none", "layer"), topologies=("stacked",), depths=(1,),
              model="contract_mod:build", data="contract_mod:load", teacher_decay=0.25)


@pytest.fixture
def mod(tmp_path, monkeypatch):
    with user_modules(tmp_path, monkeypatch, {"contract_mod.py": SOURCE}) as folder:
        import contract_mod

        yield folder, contract_mod


def test_the_factory_is_told_the_frames_and_training_teaches_with_the_target(mod) -> None:
    folder, module = mod
    config = StudyConfig(**CONFIG)
    spec = RunSpec("none", "stacked", 1, seed=0, lr_mult=1.0)
    row = train_run(config, spec, load_datasets(config), folder / "run", precision=FP32).to_dict()
    assert set(module.SEEN["factory"]) == {((12, 10), 3, 3, 2)}  # from the data factory's samples
    training = [(taught, p) for taught, p, train in module.SEEN["forward"] if train]
    # the memory measurement's forward (as the first step), then two steps per epoch (8 samples, batch 4); the
    # probability falls 0.25 a step from 1.0: OpenSTL's linear form
    assert [p for _, p in training] == [1.0, 1.0, 0.75, 0.5, 0.25] and all(taught for taught, _ in training)
    evaluation = [(taught, p) for taught, p, train in module.SEEN["forward"] if not train]
    assert evaluation and all(not taught and p is None for taught, p in evaluation)
    assert row["cell"] is None  # the factory does not take `cell`: the row does not claim one
    assert row["bias_params"] == 0 and row["params"] == 3 * 6 * 9


def test_the_report_says_no_norm_shows_parameters_and_why_saturation_is_missing(mod) -> None:
    folder, _ = mod
    run(StudyConfig(**CONFIG), folder / "study", progress=False)
    text = (folder / "study" / "report.md").read_text()
    assert "measured side by side with no norm" in text and "bias-only" not in text
    assert "| params |" in text and "| 162 |" in text and "| 168 |" in text  # + the GroupNorm's 6
    assert "the model's cells expose no gate probe" in text
    rows = [json.loads(line) for line in (folder / "study" / "results.jsonl").read_text().splitlines()]
    assert {r["bias_params"] for r in rows} == {0, 3}  # GroupNorm's shift counts as a bias


def test_the_built_in_model_keeps_bias_only_and_its_cell() -> None:
    from normrnn.study.aggregate import aggregate, baseline_name

    def variants(*pairs: tuple[str, int | None]) -> list:
        return aggregate([{"norm": norm, "topology": "stacked", "depth": 1, "lr_mult": 1.0, "diverged": False,
                           "test_mse": 1.0, "bias_params": bias} for norm, bias in pairs])

    assert baseline_name(variants(("none", 40))) == "bias-only"
    assert baseline_name(variants(("none", None))) == "bias-only"  # rows written before: unknown
    assert baseline_name(variants(("none", 0), ("layer", 8))) == "no norm"
