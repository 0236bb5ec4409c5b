"""Runs side by side in a local pool (``workers``): the same rows as one at a time, halving phases, clear refusals."""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from conftest import assert_same_test_mse
from normrnn.cli import main
from normrnn.study import StudyConfig, expand_grid, load_config, load_results, run_study
from normrnn.study.preflight import check_runnable
from normrnn.study.threads import worker_threads

pytestmark = pytest.mark.slow  # processes, a site build or an interpreter: make test-fast skips them

TINY = StudyConfig(name="tiny-pool", size=8, patch=2, width=4, train_samples=12, val_samples=4, test_samples=4,
                   epochs=2, batch_size=4, norms=("none", "layer"), topologies=("stacked",), frames_in=3,
                   frames_out=2, threads=2)


def test_workers_change_no_hash_and_split_the_threads() -> None:
    assert dataclasses.replace(TINY, workers=2).config_hash == TINY.config_hash  # a speed setting only
    assert worker_threads(dataclasses.replace(TINY, workers=2)) == 1
    assert worker_threads(dataclasses.replace(TINY, workers=4)) == 1  # never below one thread
    assert worker_threads(dataclasses.replace(TINY, threads=8, workers=2)) == 4


def test_workers_are_unused_where_something_else_places_the_runs(tmp_path) -> None:
    from normrnn.study.preflight import pooled

    config = dataclasses.replace(TINY, workers=2)
    assert pooled(config, "local", 1, None)
    assert not pooled(config, "ray", 1, None) and not pooled(config, "local", 2, None)
    assert not pooled(config, "local", 1, list(expand_grid(config))[:1])  # normrnn train: one run, all threads
    check_runnable(config, tmp_path / "out", nproc=2)  # a preset's workers do not stand in --nproc's way
    with pytest.raises(ValueError, match="workers"):
        StudyConfig(workers=0)


def test_the_cli_takes_workers(tmp_path, capsys) -> None:
    assert main(["study", "--preset", "smoke", "--workers", "0", "--out", str(tmp_path / "s")]) == 2
    assert "expected workers to be a positive int, got 0" in capsys.readouterr().err
    assert not (tmp_path / "s").exists()


def test_a_pool_trains_the_same_runs_as_one_process_even_from_a_script_without_a_main_guard(tmp_path) -> None:
    """A halving grid grows between phases: the pool trains each run once, with the same numbers as a sequential
    study up to float reordering (one thread per worker instead of two). It runs from a plain script: the workers
    are fresh interpreters, not spawned copies that re-run the caller's script (which, without
    ``if __name__ == "__main__"``, would start the study again in every worker)."""
    config = dataclasses.replace(TINY, depths=(1, 2), seeds=(0, 1), lr_mults=(1.0, 3.0), lr_search="halving")
    script = tmp_path / "study_script.py"
    script.write_text(textwrap.dedent(f"""
        import dataclasses, json
        from normrnn.study import StudyConfig, run_study
        config = StudyConfig(**{{**json.loads({json.dumps(json.dumps(config.to_dict()))}), "workers": 2}})
        print(json.dumps(run_study(config, {str(tmp_path / "pool")!r}, progress=False)))
        """))
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-2000:]
    rows = json.loads(done.stdout)
    want = run_study(config, tmp_path / "one", progress=False)
    assert len(rows) == len(want) == 12  # 2 norms x 2 depths x (2 multipliers + 1 later seed)
    assert_same_test_mse(rows, want, rel=1e-4)
    assert len((tmp_path / "pool" / "results.jsonl").read_text().splitlines()) == 12  # each run recorded once
    assert {r["run_id"] for r in load_results(tmp_path / "pool")} == {s.run_id for s in expand_grid(config, want)}


def test_a_factory_in_main_is_refused_with_workers(tmp_path) -> None:
    config = dataclasses.replace(TINY, workers=2, model="__main__:build")
    with pytest.raises(ValueError, match="cannot import model __main__:build from your __main__"):
        check_runnable(config, tmp_path / "out")


@pytest.mark.parametrize("sig", ["SIGTERM"])
def test_a_signal_to_the_parent_stops_the_workers_and_the_study_resumes(tmp_path, sig) -> None:
    """SIGTERM (a scheduler's preemption) or Ctrl-C reaches only the parent: it stops its workers as Ctrl-C would, so
    none is left training, each keeps its last epoch's checkpoint, and the same command finishes the study."""
    import signal
    import time

    (tmp_path / "s.toml").write_text('preset = "smoke"\nepochs = 6\nworkers = 2\n')
    cmd = [sys.executable, "-m", "normrnn", "study", "--config", str(tmp_path / "s.toml"), "--out",
           str(tmp_path / "st"), "--no-progress"]
    parent = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    runs = tmp_path / "st" / "runs"
    for _ in range(600):  # a guard against a hang, not a speed bound: polls, however long each takes
        if runs.exists() and any((d / "checkpoint.pt").exists() for d in runs.iterdir()):
            break
        assert parent.poll() is None, parent.communicate()
        time.sleep(0.5)
    else:
        pytest.fail("no worker wrote a checkpoint")
    # this study's workers (other studies on the machine have their own)
    workers = subprocess.run(["pgrep", "-P", str(parent.pid), "-f", "normrnn.study.worker"], capture_output=True,
                             text=True).stdout.split()
    assert len(workers) == 2, workers
    parent.send_signal(getattr(signal, sig))
    _, err = parent.communicate(timeout=120)
    assert parent.returncode == 130 and "interrupted" in err and "Traceback" not in err, err
    time.sleep(1)
    left = [pid for pid in workers if Path(f"/proc/{pid}").exists()]
    assert not left  # no worker left behind
    resumed = dataclasses.replace(load_config(path=tmp_path / "s.toml"), workers=1)  # the same study (same hash)
    assert len(run_study(resumed, tmp_path / "st", progress=False)) == 4


def test_a_failing_worker_stops_the_study_with_its_error(tmp_path, monkeypatch, capsys) -> None:
    (tmp_path / "flaky.py").write_text(textwrap.dedent("""
        import os
        import torch
        def loss(pred, target):
            if str(os.getpid()) != os.environ["STUDY_PARENT"]:  # in a worker's training, past the parent's checks
                raise RuntimeError("the loss gave up")
            return torch.nn.functional.mse_loss(pred, target)
        """))
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("STUDY_PARENT", str(os.getpid()))
    (tmp_path / "f.toml").write_text('preset = "smoke"\nworkers = 2\nloss = "flaky:loss"\n')
    code = main(["study", "--config", str(tmp_path / "f.toml"), "--out", str(tmp_path / "st"), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2 and "RuntimeError: the loss gave up" in err and len(err.strip().splitlines()) == 1, err
