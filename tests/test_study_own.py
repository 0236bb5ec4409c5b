"""The study on a user's own model and data: factories by name, end to end with resume, the Python API, bad
factories refused before any work, and the config hash following the factory's source."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path

import pytest
import torch
from torch import nn
from torch.utils.data import TensorDataset

from conftest import assert_same_test_mse, interrupt_after, run_study_on_ray
from helpers import assert_one_line_error, cli, user_modules
from normrnn._loader import source_hash
from normrnn.layers import ConvLSTM
from normrnn.study import RunSpec, StudyConfig, load_results, run, run_study, train_run
from normrnn.study.datasets import load_datasets
from normrnn.study.preflight import check_factories

ROOT = Path(__file__).resolve().parents[1]
USER_MODULE = '''
import torch
from torch import nn
from torch.utils.data import TensorDataset
import normrnn

class Tiny(nn.Module):
    """A user's model: normrnn's ConvLSTM layer, their own head; predicts 2 frames from 3."""
    def __init__(self, norm, depth, residual):
        super().__init__()
        self.rnn = normrnn.ConvLSTM(1, 4, 3, num_layers=depth, norm=norm, residual=residual)
        self.head = nn.Conv2d(4, 1, 1)

    def forward(self, x):
        y, _ = self.rnn(x)
        B, T = y.shape[:2]
        return self.head(y.flatten(0, 1)).view(B, T, 1, *y.shape[-2:])[:, -2:]

def build(*, norm, topology, depth, seed, width=4):
    return Tiny(norm, depth, topology == "residual")

def load(*, split, seed):
    g = torch.Generator().manual_seed({"train": 0, "val": 1, "test": 2}[split] * 10 + seed)
    x = torch.rand({"train": 8, "val": 4, "test": 4}[split], 3, 1, 8, 8, generator=g)
    return TensorDataset(x, 0.5 * x[:, 1:])

class Dense(nn.Module):
    """A sequence regressor: an LSTM over (B, T, F) features, two numbers out per sequence."""
    def __init__(self, norm, depth):
        super().__init__()
        self.rnn = normrnn.LSTM(3, 8, num_layers=depth, norm=norm)
        self.head = nn.Linear(8, 2)

    def forward(self, x):
        return self.head(self.rnn(x)[0][:, -1])

def build_dense(*, norm, topology, depth, seed):
    return Dense(norm, depth)

def load_vectors(*, split, seed):
    g = torch.Generator().manual_seed(len(split) + seed)
    x = torch.randn(8, 5, 3, generator=g)
    return TensorDataset(x, x.sum(1)[:, :2])
'''
SMALL = dict(name="own", epochs=2, batch_size=4, norms=("none", "layer"), topologies=("stacked",), depths=(1,),
             model="usermod:build", data="usermod:load")


@pytest.fixture
def usermod(tmp_path, monkeypatch):
    """``usermod.py`` in a directory on the path, as a user's module next to their shell."""
    with user_modules(tmp_path, monkeypatch, {"usermod.py": USER_MODULE}) as folder:
        yield folder


def test_own_model_and_data_end_to_end_then_resume(usermod) -> None:
    config = StudyConfig(**SMALL)
    rows = run_study(config, usermod / "study", progress=False)
    assert sorted(r["norm"] for r in rows) == ["layer", "none"]
    for row in rows:
        assert row["test_mse"] is not None and row["test_ssim"] is not None  # (B, T, C, H, W) targets: frames
        # its normrnn ConvLSTM's cells are found by what they are, with no cells() method: one value per epoch
        assert len(row["gate_saturation_curve"]) == row["epochs"]
    assert run_study(config, usermod / "study", progress=False) == rows  # resumed: nothing retrained
    baselines = json.loads((usermod / "study" / "baselines.json").read_text())
    assert set(baselines) == {"blank", "mean frame", "copy last frame"}
    # an interrupted run resumes to the same numbers
    data = load_datasets(config)
    spec = RunSpec("layer", "stacked", 1, 0, 1.0)
    full = train_run(config, spec, data, usermod / "a").to_dict()
    with pytest.raises(KeyboardInterrupt):
        train_run(config, spec, data, usermod / "b", on_step=interrupt_after(3))
    resumed = train_run(config, spec, data, usermod / "b").to_dict()
    assert resumed["test_mse"] == full["test_mse"] and resumed["val_curve"] == full["val_curve"]


@pytest.mark.slow
def test_own_model_and_data_train_alike_under_ddp_and_ray(usermod, monkeypatch) -> None:
    """Scale-out works the same for a user's model: two DDP processes, and a Ray task per run, equal one process."""
    monkeypatch.setenv("PYTHONPATH", f"{usermod}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")  # the workers'
    config = StudyConfig(**{**SMALL, "epochs": 1})
    want = run_study(config, usermod / "one", progress=False)
    two = run_study(config, usermod / "two", nproc=2, progress=False)
    assert [r["run_id"] for r in two] == [r["run_id"] for r in want] and two[0]["processes"] == 2
    for got, ref in zip(two, want, strict=True):
        assert got["train_curve"] == pytest.approx(ref["train_curve"], rel=1e-5)
        assert got["test_mse"] == pytest.approx(ref["test_mse"], rel=1e-5)
    assert_same_test_mse(run_study_on_ray(config, usermod / "ray"), want, rel=1e-6)  # other thread counts


def build_here(*, norm: str, topology: str, depth: int, seed: int) -> nn.Module:
    """A module-level factory for the Python API: a ConvLSTM whose last step's hidden state is the output."""
    return _LastStep(ConvLSTM(1, 1, 3, num_layers=depth, norm=norm))


class _LastStep(nn.Module):
    def __init__(self, rnn: nn.Module) -> None:
        super().__init__()
        self.rnn = rnn

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.rnn(x)[0][:, -2:]  # (B, 2, 1, H, W)


def test_python_api_takes_callables_and_mae_loss_on_vector_targets(usermod) -> None:
    def vectors(*, split: str, seed: int) -> TensorDataset:
        g = torch.Generator().manual_seed(len(split))
        x = torch.randn(8, 3, 1, 4, 4, generator=g)
        return TensorDataset(x, x[:, -2:])

    with pytest.raises(ValueError, match="defined at module level"):
        run(StudyConfig(**{**SMALL, "model": None, "data": None}), usermod / "x", data=vectors)
    report = run(StudyConfig(**{**SMALL, "model": None, "data": "usermod:load", "loss": "mae"}), usermod / "api",
                 model=build_here, progress=False)
    assert len(load_results(usermod / "api")) == 2 and "### Accuracy" in report
    stored = json.loads((usermod / "api" / "study.json").read_text())
    assert stored["model"] == f"{__name__}:build_here" and stored["loss"] == "mae" and "model_source" in stored
    assert "### Best learning rate" not in report  # one multiplier: no best-LR section


def test_vector_targets_get_mse_and_mae_but_no_frame_metrics(usermod) -> None:
    config = StudyConfig(**{**SMALL, "model": "usermod:build_dense", "data": "usermod:load_vectors"})
    rows = run_study(config, usermod / "dense", progress=False)
    y = load_datasets(config).test.tensors[1]
    for row in rows:
        assert row["test_ssim"] is None and row["test_psnr"] is None and row["test_mse"] > 0
    baselines = json.loads((usermod / "dense" / "baselines.json").read_text())
    assert set(baselines) == {"blank", "mean frame"}  # no frames to copy
    assert baselines["blank"]["test_mse"] == pytest.approx(float((y.double() ** 2).mean()))
    report = run(config, usermod / "dense", progress=False)
    assert "SSIM" not in report.tables and "PSNR" not in report.tables


def test_a_changed_factory_source_is_a_different_study(usermod) -> None:
    config = StudyConfig(**SMALL)
    before = config.config_hash
    assert before == StudyConfig(**SMALL).config_hash  # stable
    (usermod / "usermod.py").write_text(USER_MODULE + "\n# the user edits their model\n")
    source_hash.cache_clear()
    assert StudyConfig(**SMALL).config_hash != before
    assert dataclasses.replace(config, model="usermod:build2").config_hash != before


BAD = {
    "cannot import": ("--model", "nosuchmodule:build", "cannot import 'nosuchmodule'"),
    "no such name": ("--model", "usermod:nothing", "has no 'nothing'"),
    "raises": ("--model", "usermod:raises", "raised for none_stacked_d2_s0_lr1: RuntimeError: out of ideas"),
    "not a module": ("--model", "usermod:not_a_module", "expected an nn.Module, got dict"),
    "wrong shape": ("--model", "usermod:wrong_shape", "expected an output shaped like the target (8, 2, 1, 8, 8), "
                                                      "got (8, 3, 1, 8, 8)"),
    "forward fails": ("--model", "usermod:bad_forward", "the forward pass on a batch of shape (8, 3, 1, 8, 8) "
                                                        "raised IndexError"),
    "data raises": ("--data", "usermod:data_raises", "data factory usermod:data_raises raised for split='train'"),
    "data not a dataset": ("--data", "usermod:data_number", "expected a torch.utils.data.Dataset"),
    "data not pairs": ("--data", "usermod:data_singles", "expected (input, target) tensor pairs"),
    "bad name": ("--model", "usermod.build", "expected model to be a 'module:function' string"),
    "no parameters": ("--model", "usermod:frozen", "expected a model with trainable parameters, got none"),
    "integer output": ("--model", "usermod:rounds", "expected a floating-point output computed from the trainable "
                                                    "parameters, got dtype torch.int64"),
    "detached output": ("--model", "usermod:detached", "got an output with no grad_fn"),
    "integer data": ("--data", "usermod:data_bytes", "expected floating-point (input, target) tensors, got "
                                                     "torch.uint8 and torch.uint8 in split 'train'"),
    "NaN in data": ("--data", "usermod:data_nan", "the target of sample 2 in split 'train' holds NaN or Inf"),
}
BAD_MODULE = '''
def raises(**kwargs):
    raise RuntimeError("out of ideas")

def not_a_module(**kwargs):
    return {}

class _Three(torch.nn.Module):
    def forward(self, x):
        return x

def wrong_shape(**kwargs):
    return _Three()

class _Fails(torch.nn.Module):
    def forward(self, x):
        return x[:, :, 5]

def bad_forward(**kwargs):
    return _Fails()

def data_raises(**kwargs):
    raise OSError("no such recording")

def data_number(**kwargs):
    return 3

def data_singles(**kwargs):
    return [torch.zeros(2)] * 4

class _Last(torch.nn.Module):
    def __init__(self, train=True, cast=None, detach=False):
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()), requires_grad=train)
        self.cast, self.detach = cast, detach
    def forward(self, x):
        y = x[:, -2:] * self.scale
        y = y.detach() if self.detach else y
        return y if self.cast is None else y.to(self.cast)

def frozen(**kwargs):
    return _Last(train=False)

def rounds(**kwargs):
    return _Last(cast=torch.int64)

def detached(**kwargs):
    return _Last(detach=True)

def data_bytes(**kwargs):
    return torch.utils.data.TensorDataset(torch.zeros(4, 3, 1, 8, 8, dtype=torch.uint8),
                                          torch.zeros(4, 2, 1, 8, 8, dtype=torch.uint8))

def data_nan(**kwargs):
    x, y = torch.zeros(4, 3, 1, 8, 8), torch.zeros(4, 2, 1, 8, 8)
    y[2, 1, 0, 3, 3] = float("inf")
    return torch.utils.data.TensorDataset(x, y)

def data_rgb(**kwargs):
    return torch.utils.data.TensorDataset(torch.zeros(4, 3, 3, 8, 8), torch.zeros(4, 2, 3, 8, 8))

def detached_loss(pred, target):
    return (pred - target).detach().pow(2).mean()
'''


@pytest.mark.parametrize("case", list(BAD))
def test_bad_factories_fail_before_any_work_in_one_line(usermod, case: str) -> None:
    (usermod / "usermod.py").write_text(USER_MODULE + BAD_MODULE)
    flag, value, message = BAD[case]
    args = ["--model", "usermod:build", "--data", "usermod:load"]
    args[args.index(flag) + 1] = value
    assert_one_line_error(cli("study", "--preset", "smoke", *args, "--out", "study", cwd=usermod), message)
    assert not (usermod / "study").exists()  # nothing written


def test_a_loss_detached_from_the_prediction_fails_before_any_work(usermod) -> None:
    (usermod / "usermod.py").write_text(USER_MODULE + BAD_MODULE)
    with pytest.raises(ValueError, match="loss usermod:detached_loss: expected a scalar computed from the prediction"):
        check_factories(StudyConfig(**{**SMALL, "loss": "usermod:detached_loss"}))


def test_data_the_builtin_forecaster_cannot_take_is_named_before_any_work(usermod) -> None:
    (usermod / "usermod.py").write_text(USER_MODULE + BAD_MODULE)
    config = StudyConfig(**{**SMALL, "model": None, "data": "usermod:data_rgb"})
    with pytest.raises(ValueError, match=r"the built-in forecaster cannot take data factory usermod:data_rgb's "
                                         r"batches of shape \(4, 3, 3, 8, 8\) \(it expects \(B, T, 1, H, W\)"):
        check_factories(config)


def test_the_memory_check_sizes_only_what_the_study_builds_itself() -> None:
    from normrnn.study.preflight import check_memory

    huge = {"train_samples": 100_000_000}  # 1.9 TB of built-in frames
    with pytest.raises(ValueError, match=r"its data take \d+\.\d GiB"):
        check_memory(StudyConfig(**huge, model="usermod:build"))  # the built-in data are still generated
    check_memory(StudyConfig(**huge, data="usermod:load"))  # a data factory's data: train_samples does not size them
    wide = {"width": 100_000}
    with pytest.raises(ValueError, match="expected the study to fit in memory"):
        check_memory(StudyConfig(**wide, data="usermod:load"))  # the built-in model is still built
    check_memory(StudyConfig(**wide, model="usermod:build"))  # a model factory's model: width does not size it


def test_check_factories_passes_a_good_study_and_the_builtin_one(usermod) -> None:
    check_factories(StudyConfig(**SMALL))
    check_factories(StudyConfig())  # nothing of the user's: nothing to check, nothing loaded


def test_the_example_factories_run_in_the_study(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(ROOT)
    config = StudyConfig(name="example", model="examples.own_model:build", data="examples.own_model:load",
                         frames_out=5, width=4, epochs=1, batch_size=16, norms=("group:2",),
                         topologies=("residual",), depths=(1,))
    (row,) = run_study(config, tmp_path, progress=False)
    assert row["test_mse"] is not None and len(row["gate_saturation_curve"]) == 1  # its cells are probed
