"""Hostile input: every case of the robustness review, through the CLI where the case is a CLI case.

A CLI case runs ``normrnn ARGS`` in this process (``helpers.cli``) and checks the exit code, that no traceback is
printed, and that the one-line error names what was expected and what was got.
"""

from __future__ import annotations

import dataclasses
import json
import os
import stat
import warnings
from pathlib import Path

import pytest
import torch

from conftest import interrupt_after
from helpers import assert_one_line_error, cli, result_row
from normrnn._io import atomic_write_text
from normrnn.study import RunSpec, StudyConfig, load_config, load_results, run_study, train_run
from normrnn.study.checkpoint import CheckpointWarning, read_checkpoint
from normrnn.study.datasets import load_datasets
from normrnn.study.results import ResultsWarning, append_result

TINY = StudyConfig(name="tiny", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4, epochs=2,
                   batch_size=4, norms=("none",), topologies=("stacked",), depths=(1,), frames_in=3, frames_out=2,
                   threads=1)
TINY_TOML = """name = "tiny"
size = 8
patch = 2
width = 4
train_samples = 12
val_samples = 4
test_samples = 4
epochs = 2
batch_size = 4
norms = ["none"]
topologies = ["stacked"]
depths = [1]
frames_in = 3
frames_out = 2
threads = 1
"""


def _row(config: StudyConfig, norm: str, seed: int, mse: float) -> dict:
    return result_row(norm=norm, seed=seed, test_mse=mse, study=config.name, config_hash=config.config_hash,
                      test_mae=mse, test_ssim=0.5, test_psnr=20.0, diverged_step=None, step_time_s=1.0,
                      peak_mem_mb=10.0, loss_spikes=0, gate_saturation_mean=0.1, val_curve=[mse], train_curve=[mse])


def _fake_study(directory: Path, config: StudyConfig, mse: float) -> None:
    directory.mkdir(parents=True)
    atomic_write_text(directory / "study.json", json.dumps(config.to_dict()))
    for seed in (0, 1):
        append_result(directory, _row(config, "none", seed, mse + seed))


# --- 1. reports never mix studies ------------------------------------------------------------------------------------

def test_report_refuses_two_different_studies_and_mixed_keeps_them_apart(tmp_path) -> None:
    smoke, quick = load_config("smoke"), load_config("quick")
    _fake_study(tmp_path / "B", smoke, 53.0)
    _fake_study(tmp_path / "A", quick, 70.0)
    refused = cli("report", "B", "A", cwd=tmp_path)
    assert_one_line_error(refused, "refusing to merge different studies", "'epochs'", "'size'", "--mixed")
    mixed = cli("report", "B", "A", "--mixed", "--out", "both", cwd=tmp_path)
    assert mixed.returncode == 0, mixed.stderr
    md = (tmp_path / "both" / "report.md").read_text()
    sections = {part.split("\n", 1)[0]: part for part in md.split("## Study ")[1:]}
    assert len(sections) == 2
    smoke_part = next(v for k, v in sections.items() if k.startswith(f"smoke ({smoke.config_hash})"))
    quick_part = next(v for k, v in sections.items() if k.startswith(f"quick ({quick.config_hash})"))
    assert "53.50" in smoke_part and "70.50" not in smoke_part  # same run ids, never overwritten or pooled
    assert "70.50" in quick_part and "53.50" not in quick_part
    assert (tmp_path / "both" / f"smoke-{smoke.config_hash}-test_mse.png").stat().st_size > 0


# --- 2. a directory's rows cannot pass for another config, even without study.json --------------------------------

def test_a_changed_config_is_refused_even_without_study_json(tmp_path) -> None:
    _fake_study(tmp_path / "run", TINY, 50.0)
    (tmp_path / "run" / "study.json").unlink()
    (tmp_path / "tiny3.toml").write_text(TINY_TOML.replace("epochs = 2", "epochs = 3"))
    proc = cli("study", "--config", "tiny3.toml", "--out", "run", "--no-progress", cwd=tmp_path)
    assert_one_line_error(proc, "holds runs of a different study", TINY.config_hash)
    assert len(load_results(tmp_path / "run")) == 2  # nothing lost, nothing added


def test_a_checkpoint_of_another_study_is_set_aside_not_loaded(tmp_path) -> None:
    path = tmp_path / "checkpoint.pt"
    torch.save({"model": {}, "optimizer": {}, "scheduler": {}, "history": {}, "config_hash": "0" * 12}, path)
    with pytest.warns(CheckpointWarning, match="belongs to another study"):
        assert read_checkpoint(path, TINY.config_hash) is None
    assert not path.exists() and (tmp_path / "checkpoint.pt.unreadable").exists()


# --- 3. the CLI takes 0 as a value ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("flag", "expected"), [("--depth", "expected depth to be a positive int, got 0"),
                                                ("--lr-mult", "expected lr_mult to be a finite number > 0, got 0.0"),
                                                ("--seed", None)])
def test_zero_is_a_value_not_a_missing_flag(tmp_path, flag: str, expected: str | None) -> None:
    if expected is None:  # seed 0 is valid: it must train seed 0, not the grid's first seed
        (tmp_path / "t.toml").write_text(TINY_TOML + "seeds = [3]\n")
        proc = cli("train", "--config", "t.toml", "--out", "runs/", "--seed", "0", "--no-progress", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert "none_stacked_d1_s0_lr1" in proc.stdout and "(in runs/results.jsonl)" in proc.stdout  # no '//'
        return
    proc = cli("train", "--preset", "smoke", "--out", "runs", flag, "0", cwd=tmp_path)
    assert_one_line_error(proc, expected)
    assert not (tmp_path / "runs").exists()


# --- 4. a corrupt checkpoint is moved aside, its run restarts, the rest goes on ------------------------------------

@pytest.fixture(scope="module")
def tiny_data():
    return load_datasets(TINY)


@pytest.mark.parametrize("damage", ["garbage", "truncated", "empty"])
def test_a_corrupt_checkpoint_is_set_aside_and_its_run_restarts(tmp_path, tiny_data, damage: str) -> None:
    spec = RunSpec("none", "stacked", 1, 0, 1.0)
    want = train_run(TINY, spec, tiny_data, tmp_path / "clean").to_dict()
    run_dir = tmp_path / "run"
    with pytest.raises(KeyboardInterrupt):  # leave a real checkpoint of epoch 1 behind
        train_run(TINY, spec, tiny_data, run_dir, on_step=interrupt_after(4))
    path = run_dir / "checkpoint.pt"
    data = path.read_bytes()
    damaged = {"garbage": b"\x00not a checkpoint" * 10, "truncated": data[: len(data) // 2], "empty": b""}[damage]
    path.write_bytes(damaged)
    with pytest.warns(CheckpointWarning) as caught:
        row = train_run(TINY, spec, tiny_data, run_dir).to_dict()
    assert len(caught) == 1 and str(path) in str(caught[0].message) and "restarting" in str(caught[0].message)
    assert (run_dir / "checkpoint.pt.unreadable").read_bytes() == damaged  # kept, never deleted
    assert row["test_mse"] == want["test_mse"] and row["val_curve"] == want["val_curve"]  # a clean restart


# --- 5. junk lines in results.jsonl are skipped with their line numbers ---------------------------------------------

def test_junk_lines_are_skipped_with_a_warning_and_the_study_goes_on(tmp_path) -> None:
    out = tmp_path / "study"
    _fake_study(out, TINY, 40.0)
    with open(out / "results.jsonl", "a") as f:
        f.write("{}\nnull\n[1, 2]\nnot json at all\n")
    with pytest.warns(ResultsWarning) as caught:
        rows = load_results(out)
    assert len(rows) == 2
    assert [str(w.message).split(" of ")[0] for w in caught] == [f"normrnn: skipped line {n}" for n in (3, 4, 5, 6)]
    proc = cli("report", "study", cwd=tmp_path)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr, proc.stderr
    assert "warning: skipped line 3" in proc.stderr and f"report: {Path('study') / 'report.md'}" in proc.stderr
    config = dataclasses.replace(TINY, seeds=(0, 1, 2))  # the grid grows by one run: the study still resumes
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResultsWarning)
        done = run_study(config, out, progress=False)
    assert sorted(r["seed"] for r in done) == [0, 1, 2]


# --- 6, 7, 8. bad configs and flags fail at once, in one line, before anything is written -------------------------

@pytest.mark.parametrize(("toml", "flags", "expected"), [
    (None, ["--config", "nope.toml"], ["nope.toml does not exist"]),
    (None, ["--out", "afile"], ["expected --out to be a directory", "is a file"]),
    (None, ["--out", "afile/sub"], ["is under afile, which is a file"]),
    ('epochs = "two"', [], ["expected epochs to be a positive int, got 'two'"]),
    ("seeds = 0", [], ["expected seeds to be a list", "got 0"]),
    ("batch_size = 0", [], ["expected batch_size to be a positive int, got 0"]),
    ("frames_in = 0", [], ["expected frames_in to be a positive int, got 0"]),
    ('norms = "layer"', [], ["expected norms to be a list", "got 'layer'"]),
    ('norms = ["none", "lyer"]', [], ["unknown norm spec 'lyer'", "expected one of none, layer"]),
    (None, ["--device", "gpu"], ["expected device to be 'cpu', 'cuda' or 'cuda:N', got 'gpu'"]),
])
def test_bad_configs_and_flags_are_one_line_errors_before_any_work(tmp_path, toml, flags, expected) -> None:
    (tmp_path / "afile").write_text("not a directory")
    args = ["study", "--preset", "smoke", "--out", "out", "--no-progress"]
    if toml is not None:
        (tmp_path / "bad.toml").write_text(f'preset = "smoke"\n{toml}\n')
        args += ["--config", "bad.toml"]
    proc = cli(*args, *flags, cwd=tmp_path)
    assert_one_line_error(proc, *expected)
    assert not (tmp_path / "out").exists()  # nothing written: a corrected config is not refused later


@pytest.mark.skipif(torch.cuda.is_available(), reason="the case is a machine without CUDA")
@pytest.mark.parametrize("nproc", ["1", "4"])
def test_a_cuda_preset_without_cuda_fails_at_once(tmp_path, nproc: str) -> None:
    proc = cli("study", "--preset", "full", "--out", "out", "--nproc", nproc, cwd=tmp_path)
    assert_one_line_error(proc, "expected a CUDA device for device='cuda', but torch sees none")
    assert not (tmp_path / "out").exists()


def test_debug_shows_the_traceback(tmp_path) -> None:
    proc = cli("--debug", "study", "--config", "nope.toml", "--out", "out", cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" in proc.stderr and "nope.toml does not exist" in proc.stderr


# --- 10. polish ---------------------------------------------------------------------------------------------------

def test_outputs_respect_the_umask(tmp_path) -> None:
    old = os.umask(0o022)
    try:
        path = atomic_write_text(tmp_path / "a.txt", "x")
    finally:
        os.umask(old)
    assert stat.S_IMODE(path.stat().st_mode) == 0o644


def test_version_and_help_texts(tmp_path) -> None:
    from normrnn import __version__

    proc = cli("--version", cwd=tmp_path)
    assert proc.returncode == 0 and proc.stdout.strip() == f"normrnn {__version__}"
    help_text = cli("bench", "layers", "--help", cwd=tmp_path).stdout
    assert "odd or even" in help_text and "odd k" not in help_text


def test_a_fractional_kernel_size_is_a_clear_error() -> None:
    from normrnn import ConvLSTM

    with pytest.raises(ValueError, match=r"expected kernel_size to be a positive int or 2 positive ints, got 2.5"):
        ConvLSTM(1, 4, 2.5)
