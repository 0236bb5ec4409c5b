"""Shared test fixtures: an independent float64 NumPy reference for every axis-explicit norm."""

from __future__ import annotations

import multiprocessing.process
import os
import subprocess

import numpy as np
import pytest
import torch

if not torch.cuda.is_available():
    # Triton kernels run on CPU tensors under its interpreter; Triton reads this when it is first imported
    os.environ.setdefault("TRITON_INTERPRET", "1")

try:  # the dev extra has it; make gpu-check runs tests/test_triton.py on machines that may not
    from hypothesis import HealthCheck, settings
except ImportError:  # pragma: no cover
    settings = None

collect_ignore = ["fixtures/make_keras_convlstm.py"]  # needs Keras; run by hand to regenerate the fixtures

if settings is not None:
    settings.register_profile("ci", deadline=None, max_examples=40, suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("thorough", deadline=None, max_examples=400)
    settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


def randomize(module: torch.nn.Module) -> torch.nn.Module:
    """Non-trivial parameters so an affine bug cannot hide behind ones and zeros."""
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)
    return module


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def starts_a_process_unmarked(test: str):
    """A stand-in for the calls that start processes, failing ``test``: it is not marked ``slow``."""
    def refuse(*args, **kwargs):
        pytest.fail(f"{test} starts a process but is not marked slow; mark it @pytest.mark.slow "
                    "(make test-fast skips those)", pytrace=False)
    return refuse


@pytest.fixture(autouse=True)
def _processes_only_in_slow_tests(request, monkeypatch) -> None:
    """Every test that starts a process is marked ``slow``: elsewhere ``subprocess`` (``run``, ``Popen``, and so
    Ray's and torchrun's launchers) and ``multiprocessing`` (``Process``, ``Pool``) fail the test before a process
    starts. ``pytest.fail`` raises a ``BaseException``, so code that catches ``Exception`` cannot hide it."""
    if request.node.get_closest_marker("slow") is not None:
        return
    refuse = starts_a_process_unmarked(request.node.nodeid)
    monkeypatch.setattr(subprocess.Popen, "_execute_child", refuse)
    monkeypatch.setattr(multiprocessing.process.BaseProcess, "start", refuse)


def _reference(x, layout, reduce, groups, eps, rms, mask):
    """Textbook statistics in float64 NumPy: returns (y, rstd), both in x's shape."""
    x = np.asarray(x, dtype=np.float64)
    original_shape = x.shape
    letters = list(layout)
    cdim = letters.index("C")
    if groups is not None:
        shape = list(x.shape)
        x = x.reshape([*shape[:cdim], groups, shape[cdim] // groups, *shape[cdim + 1 :]])
        letters = [*letters[:cdim], "G", "C", *letters[cdim + 1 :]]
    axes = tuple(i for i, c in enumerate(letters) if c in reduce)
    if mask is None:
        w = np.ones_like(x)
    else:
        view = [x.shape[i] if c in "BT" else 1 for i, c in enumerate(letters)]
        w = np.broadcast_to(np.asarray(mask, dtype=np.float64).reshape(view), x.shape)
    n = w.sum(axis=axes, keepdims=True)
    if rms:
        mean = 0.0
        var = (w * x**2).sum(axis=axes, keepdims=True) / n
    else:
        mean = (w * x).sum(axis=axes, keepdims=True) / n
        var = (w * (x - mean) ** 2).sum(axis=axes, keepdims=True) / n
    rstd = 1.0 / np.sqrt(var + eps)
    return ((x - mean) * rstd).reshape(original_shape), np.broadcast_to(rstd, x.shape).reshape(original_shape)


def reference_norm(x: np.ndarray, layout: str, reduce: str, groups: int | None, eps: float,
                   rms: bool = False, mask: np.ndarray | None = None) -> np.ndarray:
    """The textbook definition in float64 NumPy, written without normrnn's code paths.

    ``layout``/``reduce`` use canonical letters (C, not F); ``groups`` splits C when C is reduced.
    ``mask`` has the shape of the B and T axes, True where valid.
    """
    return _reference(x, layout, reduce, groups, eps, rms, mask)[0]


def reference_rstd(x: np.ndarray, layout: str, reduce: str, groups: int | None, eps: float,
                   rms: bool = False) -> np.ndarray:
    """``1 / sqrt(var + eps)`` per element: how much a rounding error in x is amplified in the output."""
    return _reference(x, layout, reduce, groups, eps, rms, None)[1]


def interrupt_after(steps: int):
    """An ``on_step`` hook for ``train_run`` that stops the run after ``steps`` optimizer steps, as Ctrl-C would."""
    def hook(done: int) -> None:
        if done >= steps:
            raise KeyboardInterrupt(f"interrupted after {done} steps")
    return hook


def run_study_on_ray(config, out) -> list[dict]:
    """``run_study`` with one Ray task per run on a local 2-CPU Ray (skipped without Ray); its rows."""
    ray = pytest.importorskip("ray")
    from normrnn.study import run_study

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    try:
        return run_study(config, out, executor="ray", progress=False)
    finally:
        ray.shutdown()


def assert_same_test_mse(rows: list[dict], want: list[dict], *, rel: float) -> None:
    """The same runs, each with the test MSE of ``want``'s run of that id."""
    assert sorted(r["run_id"] for r in rows) == sorted(r["run_id"] for r in want)
    by_id = {r["run_id"]: r for r in rows}
    for r in want:
        assert by_id[r["run_id"]]["test_mse"] == pytest.approx(r["test_mse"], rel=rel)
