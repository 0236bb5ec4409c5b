"""A study directory's results: ``results.jsonl``, one JSON row per finished run, written by many processes.

Reading needs nothing but this module, so a report never imports training.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

__all__ = ["append_result", "load_results"]


def load_results(directory: str | Path) -> list[dict[str, Any]]:
    """The rows of ``DIR/results.jsonl``; a torn line (a crash mid-write) is ignored."""
    path = Path(directory) / "results.jsonl"
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return rows


def append_result(directory: str | Path, row: dict[str, Any]) -> bool:
    """Append ``row`` to ``DIR/results.jsonl`` unless its run is already there; returns whether it wrote.

    Any number of processes, on one machine or on a shared file system, may call this at once: the check and
    the write happen under ``DIR/results.jsonl.lock``, the line goes out in one ``write`` and is fsynced, and a
    line torn by an earlier crash is ended first, so the file holds every run exactly once and no torn rows.
    """
    from filelock import FileLock

    directory = Path(directory)
    path = directory / "results.jsonl"
    data = (json.dumps(row, allow_nan=False) + "\n").encode()
    with FileLock(directory / "results.jsonl.lock"):
        if any(r.get("run_id") == row["run_id"] for r in load_results(directory)):
            return False
        fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            size = os.fstat(fd).st_size
            if size and os.pread(fd, 1, size - 1) != b"\n":
                data = b"\n" + data  # close a torn line so that this row stays whole
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
    return True
