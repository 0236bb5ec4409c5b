"""A study directory's results: ``results.jsonl``, one JSON row per finished run, written by many processes.

Reading needs nothing but this module and the row schema (:mod:`.rows`), so a report never imports training.
"""

from __future__ import annotations

import errno
import json
import os
import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from .rows import ResultRow, row_problem

__all__ = ["COST_FILE", "ResultsWarning", "append_result", "load_cost", "load_results"]


class ResultsWarning(UserWarning):
    """A line of ``results.jsonl`` was skipped (damaged, or not a result row) or replaced by a newer row of its run."""


def load_results(directory: str | Path, *, warn: bool = True) -> list[dict[str, Any]]:
    """The rows of ``DIR/results.jsonl``. A line that is not JSON (torn by a crash, or damaged) or not a result
    row (``{}``, ``null``, a field of the wrong type or out of range) is skipped, with a :class:`ResultsWarning`
    naming its line number unless ``warn=False``. A run recorded twice with different numbers (the study writes
    each run once: an edit or a merge did this) keeps its newer (later) row, with a warning naming both lines."""
    path = Path(directory) / "results.jsonl"
    if not path.exists():
        return []
    rows: dict[str, dict[str, Any]] = {}
    lines: dict[str, int] = {}
    for number, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), start=1):
        if not line.strip():
            continue
        why: str | None
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            why = "not valid JSON (torn by a crash, or damaged)"
        else:
            why = row_problem(row)
            if why is None:
                run = row["run_id"]
                if run in rows and rows[run] != row and warn:
                    warnings.warn(f"normrnn: run {run!r} is recorded twice in {path} with different numbers, on "
                                  f"lines {lines[run]} and {number}; kept line {number}, the newer", ResultsWarning,
                                  stacklevel=2)
                rows.pop(run, None)  # the newer row takes the run's place in the order
                rows[run], lines[run] = row, number
                continue
        if warn:
            warnings.warn(f"normrnn: skipped line {number} of {path}: {why}", ResultsWarning, stacklevel=2)
    return list(rows.values())


def append_result(directory: str | Path, row: ResultRow | Mapping[str, Any]) -> bool:
    """Append ``row`` (a :class:`~normrnn.study.rows.ResultRow`, or a row as a dict) to ``DIR/results.jsonl`` unless
    its run is already there; returns whether it wrote.

    Any number of processes, on one machine or on a shared file system, may call this at once: the check and
    the write happen under ``DIR/results.jsonl.lock``, the line is written whole (or cut back on a full disk, and
    the error raised) and fsynced, and a line torn by an earlier crash is ended first, so the file holds every run
    exactly once and no torn rows.
    """
    from filelock import FileLock

    written = row.to_dict() if isinstance(row, ResultRow) else dict(row)

    directory = Path(directory)
    path = directory / "results.jsonl"
    try:
        data = (json.dumps(written, allow_nan=False) + "\n").encode()
    except (TypeError, ValueError) as e:
        raise ValueError(f"the result row of run {written.get('run_id')!r} is not plain JSON ({e}); "
                         "not recorded") from None
    with FileLock(directory / "results.jsonl.lock"):
        if any(r["run_id"] == written["run_id"] for r in load_results(directory, warn=False)):
            return False
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # close a torn line so that this row stays whole
            _write_all(fd, data, size)
        finally:
            os.close(fd)
    return True


def _write_all(fd: int, data: bytes, size: int) -> None:
    """Write every byte (``os.write`` may write fewer) and fsync; on any failure cut the file back to ``size``,
    so a full disk never leaves half a row, and raise."""
    view, done = memoryview(data), 0
    try:
        while done < len(data):
            n = os.write(fd, view[done:])
            if n <= 0:
                raise OSError(errno.ENOSPC, f"wrote {done} of {len(data)} bytes of a result row")
            done += n
        os.fsync(fd)
    except OSError:
        os.ftruncate(fd, size)
        raise


COST_FILE = "cost.json"



def load_cost(directory: str | Path, config_hash: str | None = None) -> dict[str, Any] | None:
    """``DIR/cost.json`` (of the study ``config_hash``, when given), or None."""
    path = Path(directory) / COST_FILE
    try:
        cost = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(cost, dict) or (config_hash is not None and cost.get("config_hash") != config_hash):
        return None
    return cost
