"""Runs side by side in a local pool (``workers``): the same rows as one at a time, halving phases, clear refusals."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from conftest import assert_same_test_mse
from normrnn.cli import main
from normrnn.study import StudyConfig, expand_grid, load_results, run_study
from normrnn.study.pool import worker_threads
from normrnn.study.runner import check_runnable

TINY = StudyConfig(name="tiny-pool", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4,
                   epochs=2, batch_size=4, norms=("none", "layer"), topologies=("stacked",), frames_in=3,
                   frames_out=2, threads=2)


def test_a_pool_trains_the_same_runs_as_one_process(tmp_path) -> None:
    """Halving grows the grid between phases; the pool trains each phase's runs once, with the same numbers as a
    sequential study up to float reordering (one thread per worker instead of two)."""
    config = dataclasses.replace(TINY, depths=(1, 2), seeds=(0, 1), lr_mults=(1.0, 3.0), lr_search="halving")
    want = run_study(config, tmp_path / "one", progress=False)
    rows = run_study(dataclasses.replace(config, workers=2), tmp_path / "pool", progress=False)
    assert len(rows) == len(want) == 12  # 2 norms x 2 depths x (2 multipliers + 1 later seed)
    assert_same_test_mse(rows, want, rel=1e-4)
    lines = (tmp_path / "pool" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 12  # each run recorded once
    assert {r["run_id"] for r in load_results(tmp_path / "pool")} == {s.run_id for s in expand_grid(config, want)}


def test_workers_change_no_hash_and_split_the_threads() -> None:
    assert dataclasses.replace(TINY, workers=2).config_hash == TINY.config_hash  # a speed setting only
    assert worker_threads(dataclasses.replace(TINY, workers=2)) == 1
    assert worker_threads(dataclasses.replace(TINY, workers=4)) == 1  # never below one thread
    assert worker_threads(dataclasses.replace(TINY, threads=8, workers=2)) == 4


@pytest.mark.parametrize(("options", "match"), [({"nproc": 2}, "data-parallel"), ({"executor": "ray"}, "ray")])
def test_a_pool_with_data_parallel_or_ray_runs_is_refused(tmp_path, options, match) -> None:
    with pytest.raises(ValueError, match=f"expected workers = 1 with .*{match}"):
        check_runnable(dataclasses.replace(TINY, workers=2), tmp_path / "out", **options)
    with pytest.raises(ValueError, match="workers"):
        StudyConfig(workers=0)


def test_the_cli_takes_workers(tmp_path, capsys) -> None:
    assert main(["study", "--preset", "smoke", "--workers", "0", "--out", str(tmp_path / "s")]) == 2
    assert "expected workers to be a positive int, got 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_script_without_a_main_guard_runs_a_pool(tmp_path) -> None:
    """The workers are fresh interpreters, not spawned copies that re-run the caller's script (which, without
    ``if __name__ == "__main__"``, would start the study again in every worker)."""
    script = tmp_path / "study_script.py"
    script.write_text(textwrap.dedent(f"""
        import dataclasses
        from normrnn.study import StudyConfig, run_study
        config = StudyConfig(name="script", size=8, patch=2, width=4, train_samples=8, val_samples=4, test_samples=4,
                             epochs=1, batch_size=4, norms=("none", "layer"), topologies=("stacked",), frames_in=3,
                             frames_out=2, threads=2, workers=2)
        rows = run_study(config, {str(tmp_path / "out")!r}, progress=False)
        print(len(rows))
        """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["2"]


def test_a_factory_in_main_is_refused_with_workers(tmp_path) -> None:
    config = dataclasses.replace(TINY, workers=2, model="__main__:build")
    with pytest.raises(ValueError, match="cannot import model __main__:build from your __main__"):
        check_runnable(config, tmp_path / "out")
