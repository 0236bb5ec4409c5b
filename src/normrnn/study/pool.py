"""Runs side by side on one machine: ``workers`` child processes share a study directory, the threads split between
them.

A study's convolutions are small, so a second thread speeds one run up little while a second run beside it nearly
doubles the work done (docs/performance.md, "The study's throughput"). Each child is a fresh interpreter
(``python -m normrnn.study.worker``, never a fork of a process that already runs torch's thread pools, and never a
re-import of the caller's ``__main__``) that trains runs exactly as a sequential study does: it claims a run with
its lock file, trains it, appends its row. The longest unclaimed run goes first, and a child that finds every
unfinished run claimed waits for them, so the runs a halving search adds as others finish are picked up at once.
The parent decides the precision and writes the cost table before the children start, then shows their progress.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from .config import StudyConfig
from .grid import RunSpec
from .threads import worker_threads

__all__ = ["POLL_S", "run_pool", "unimportable_factories"]

POLL_S = 1.0  # how often the parent counts finished rows, and a waiting child looks for an unclaimed run


def unimportable_factories(config: StudyConfig) -> list[str]:
    """The factories a child process could not import: those defined in the caller's ``__main__``."""
    return [f"{key} {value}" for key, value in (("model", config.model), ("data", config.data), ("loss", config.loss))
            if isinstance(value, str) and value.startswith("__main__:")]


def run_pool(config: StudyConfig, out: Path, runs: list[RunSpec] | None, shard_of: tuple[int, int] | None, *,
             poll: Callable[[], object], tensorboard: bool, most: int | None = None) -> None:
    """Train the study's unfinished runs in ``config.workers`` child processes, but no more than ``most`` (the runs
    left, counting those a halving search will add), and wait for them, calling ``poll()`` (the progress line) all
    the while. Ctrl-C stops the children (each keeps its last epoch's checkpoint); a
    child that fails stops the others and its one-line error is raised here."""
    workers = config.workers if most is None else max(1, min(config.workers, most))
    job = {"config": config.to_dict(), "out": str(out.resolve()), "shard": shard_of, "tensorboard": tensorboard,
           "runs": None if runs is None else [vars(s) for s in runs], "threads": worker_threads(config, workers),
           "sys_path": [p or os.getcwd() for p in sys.path]}  # the caller's modules, found in the caller's order
    logs: list[IO[str]] = [tempfile.TemporaryFile(mode="w+") for _ in range(workers)]
    previous = _stop_on_sigterm()
    children = [subprocess.Popen([sys.executable, "-m", "normrnn.study.worker"], stdin=subprocess.PIPE,
                                 stdout=subprocess.DEVNULL, stderr=log, text=True) for log in logs]
    try:
        for child in children:
            _send(child, json.dumps(job))
        while True:
            running = any(child.poll() is None for child in children)
            _fail_if_any_failed(children, logs)
            poll()
            if not running:
                break
            time.sleep(POLL_S)
    except BaseException:
        _stop(children)
        raise
    finally:
        for log in logs:
            log.close()
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _stop_on_sigterm() -> Any:
    """Make SIGTERM (Slurm's preemption, ``kill``) stop the children as Ctrl-C does, instead of orphaning them: the
    previous handler, to restore; ``None`` outside the main thread, where no handler can be set."""
    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt("terminated")

    try:
        return signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread
        return None


def _send(child: subprocess.Popen[str], text: str) -> None:
    assert child.stdin is not None  # stdin=PIPE
    child.stdin.write(text)
    child.stdin.close()


def _fail_if_any_failed(children: list[subprocess.Popen[str]], logs: list[IO[str]]) -> None:
    for child, log in zip(children, logs, strict=True):
        if child.poll() not in (None, 0):
            _stop(children)
            log.seek(0)
            lines = [line for line in log.read().splitlines() if line.strip()]
            raise ValueError(lines[-1] if lines else f"a study worker exited with code {child.returncode}")


def _stop(children: list[subprocess.Popen[str]]) -> None:
    """Interrupt the children as Ctrl-C would (they stop between atomic writes), then wait; kill what hangs."""
    for child in children:
        if child.poll() is None:
            child.send_signal(signal.SIGINT)
    for child in children:
        try:
            child.wait(timeout=30)
        except subprocess.TimeoutExpired:
            child.kill()
            child.wait()
