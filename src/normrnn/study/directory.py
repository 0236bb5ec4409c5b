"""The study directory: its witness (``study.json`` and the rows' config hashes), the runs known and unfinished,
and one run's claim (a lock file) and progress. It records; :mod:`.executors` train and :mod:`.preparation` measures
what a study decides once."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .config import StudyConfig
from .grid import RunSpec, expand_grid, shard
from .precision import PRECISION_FILE, Precision, load_precision
from .results import load_results

__all__ = [
    "check_directory",
    "claim",
    "claim_holder",
    "epochs_done",
    "epochs_in_progress",
    "finished_rows",
    "known_runs",
    "recorded_precision",
    "row_hash",
    "unfinished",
]

CLAIM_OWNER = "claim.owner"  # beside a run's claim.lock: which process holds it
EPOCH_FILE = "epoch"  # runs/ID/epoch: the epochs a run has checkpointed, for another process's progress line


def row_hash(row: dict[str, Any], default: str | None) -> str | None:
    """The config hash a result row belongs to; rows written before hashes existed belong to ``default``."""
    return row.get("config_hash", default)


def check_directory(config: StudyConfig, out: Path, *, record: bool = True) -> None:
    """Record the study in ``DIR/study.json`` (``record=False``: only check); refuse to mix a different study into an
    existing directory.

    Two witnesses: ``study.json`` names the keys that differ; the config hash in every result row catches a
    different study even when ``study.json`` is gone. The grid may grow (more seeds, norms, depths, LR
    multipliers): that adds runs without changing any finished one.
    """
    path = out / "study.json"
    resolved = json.loads(json.dumps({**config.to_dict(), **config.identity()}))  # as stored; with factory hashes
    if path.exists():
        try:
            previous = json.loads(path.read_text())
            if not isinstance(previous, dict):
                raise ValueError("not a JSON object")
        except ValueError as e:
            raise ValueError(f"{path} is damaged ({e}); move it away to start this directory afresh, or use "
                             "another --out directory") from None
        if "bf16" not in previous and previous.get("precision") in ("fp32", "bf16"):  # written with precision only
            previous.update(Precision(previous["precision"]).hash_key())
        changed = sorted(k for k in config.identity() if previous.get(k) != resolved[k])
        if changed and load_results(out, warn=False):  # with no finished run, a corrected config may take over
            raise ValueError(f"{out} holds a different study (differs in {changed}); use another --out directory")
    others = {row_hash(r, config.config_hash) for r in load_results(out, warn=False)} - {config.config_hash}
    if others:
        hashes = ", ".join(sorted(map(str, others)))
        raise ValueError(f"{out}/results.jsonl holds runs of a different study (config hash {hashes}; this config is "
                         f"{config.config_hash}); use another --out directory")
    if record and (not path.exists() or json.loads(path.read_text()) != resolved):
        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(path, json.dumps(resolved, indent=2) + "\n")


def unfinished(out: Path, specs: list[RunSpec], config_hash: str | None = None) -> list[RunSpec]:
    """The runs with no row of this study (``config_hash``; ``None``: of any study) in ``results.jsonl``."""
    done = {row["run_id"] for row in load_results(out, warn=False)
            if config_hash is None or row_hash(row, config_hash) == config_hash}
    return [s for s in specs if s.run_id not in done]


@contextlib.contextmanager
def claim(out: Path, spec: RunSpec) -> Iterator[bool]:
    """Hold ``runs/ID/claim.lock`` while the run trains; yields False if another process holds it or if the
    run finished meanwhile."""
    from filelock import FileLock, Timeout

    (out / "runs" / spec.run_id).mkdir(parents=True, exist_ok=True)
    lock = FileLock(out / "runs" / spec.run_id / "claim.lock")
    try:
        lock.acquire(timeout=0)
    except Timeout:
        yield False
        return
    owner = out / "runs" / spec.run_id / CLAIM_OWNER
    try:
        atomic_write_text(owner, f"process {os.getpid()} on {socket.gethostname()}\n")
        yield bool(unfinished(out, [spec]))  # another process may have finished it since the results were read
    finally:
        owner.unlink(missing_ok=True)
        lock.release()


def claim_holder(out: str | Path, run_id: str) -> str:
    """Who holds the claim on run ``run_id`` of the study in ``out`` ("another process" if it did not say)."""
    try:
        return (Path(out) / "runs" / run_id / CLAIM_OWNER).read_text().strip() or "another process"
    except OSError:
        return "another process"


def epochs_done(out: Path, run_id: str) -> int:
    """The epochs run ``run_id`` has checkpointed (0 before its first)."""
    try:
        return int((out / "runs" / run_id / EPOCH_FILE).read_text())
    except (OSError, ValueError):
        return 0


def epochs_in_progress(out: Path, specs: list[RunSpec]) -> dict[str, int]:
    """The runs among ``specs`` that a process holds, each with the epochs it has checkpointed."""
    return {s.run_id: epochs_done(out, s.run_id) for s in specs if (out / "runs" / s.run_id / CLAIM_OWNER).exists()}


def recorded_precision(config: StudyConfig, out: Path) -> Precision:
    """The study's precision: as set, or ``auto``'s choice, which the study's set-up recorded before any run."""
    if config.precision != "auto":
        return Precision(config.precision)
    recorded = load_precision(out, config.config_hash)
    if recorded is None:
        raise ValueError(f"expected {out / PRECISION_FILE}, where precision = 'auto' records its choice; run the "
                         "study command again to decide it")
    return recorded


def finished_rows(out: Path, specs: list[RunSpec]) -> list[dict[str, Any]]:
    wanted = {s.run_id for s in specs}
    return [row for row in load_results(out, warn=False) if row["run_id"] in wanted]


def known_runs(config: StudyConfig, out: Path, runs: Iterable[RunSpec] | None,
           shard_of: tuple[int, int] | None) -> list[RunSpec]:
    """The runs known now: ``runs`` as given, or the grid grown by the finished rows; then this shard's share."""
    specs = list(expand_grid(config, load_results(out, warn=False)) if runs is None else runs)
    return specs if shard_of is None else shard(specs, *shard_of)
