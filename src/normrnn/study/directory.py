"""The study directory: its witness (``study.json`` and the rows' config hashes), the runs known and unfinished,
and one run's claim (a lock file), training and row."""

from __future__ import annotations

import contextlib
import json
import os
import socket
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

from .._io import atomic_write_text
from .config import StudyConfig
from .cost import measure_cost
from .data import Datasets, load_datasets, reference_predictors
from .distributed import Rank, broadcast
from .grid import RunSpec, expand_grid, planned_runs, shard
from .pool import threads_of_runs
from .precision import PRECISION_FILE, choose_precision, load_precision
from .results import COST_FILE, append_result, load_cost, load_results
from .train import train_run

__all__ = [
    "check_directory",
    "claim",
    "claim_holder",
    "epochs_done",
    "epochs_in_progress",
    "finished_rows",
    "known_runs",
    "prepare",
    "recorded_precision",
    "row_hash",
    "train_one",
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
            previous["bf16"] = previous["precision"] == "bf16"
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


def train_one(config: StudyConfig, out: Path, spec: RunSpec, data: Datasets, *, rank: Rank,
               on_epoch: Callable[[int], None] | None = None, tensorboard: bool = False) -> bool:
    """Claim, train and record one run; returns False when another process has it or had it. Each epoch done is
    also written to ``runs/ID/epoch``, for the progress line of the process that watches a pool."""
    run_dir = out / "runs" / spec.run_id

    def epoch_done(epoch: int) -> None:
        if rank.is_main:
            atomic_write_text(run_dir / EPOCH_FILE, f"{epoch}\n")
        if on_epoch is not None:
            on_epoch(epoch)

    with contextlib.ExitStack() as stack:
        claimed = stack.enter_context(claim(out, spec)) if rank.is_main else None
        if not broadcast(claimed, rank):
            return False
        precision = broadcast(recorded_precision(config, out) if rank.is_main else None, rank)
        row = train_run(config, spec, data, run_dir, on_epoch=epoch_done, rank=rank, tensorboard=tensorboard,
                        precision=precision)
        if rank.is_main:
            append_result(out, row)
    return True


def recorded_precision(config: StudyConfig, out: Path) -> str:
    """The study's precision: as set, or ``auto``'s choice, which the study's set-up recorded before any run."""
    if config.precision != "auto":
        return config.precision
    recorded = load_precision(out, config)
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


def prepare(config: StudyConfig, out: Path, rank: Rank, *, need_data: bool, whole: bool,
             loaded: Datasets | None = None) -> Datasets | None:
    """The data (when this process trains, or must write the baselines or the cost table; ``loaded`` if the
    factory check already loaded it), and on the main process the study's one-time files: ``study.json``,
    ``baselines.json``, ``precision.json`` (``auto``) and, once per study, ``cost.json`` over the whole grid. All
    are measured first and written after, so data, model or loss that fails in any of them leaves nothing."""
    baselines = out / "baselines.json"
    need_baselines = rank.is_main and not baselines.exists()
    need_cost = whole and rank.is_main and load_cost(out, config.config_hash) is None
    need_precision = rank.is_main and config.precision == "auto" and load_precision(out, config) is None
    if not (need_data or need_baselines or need_cost or need_precision):
        if rank.is_main:
            check_directory(config, out)
        return None
    data = loaded if loaded is not None else load_datasets(config)
    files: dict[Path, str] = {}
    if need_baselines:
        files[baselines] = json.dumps(reference_predictors(data.test), indent=2) + "\n"
    if rank.is_main:
        with threads_of_runs(config):
            if need_precision:  # auto: decided once, at the runs' thread count
                record = {**choose_precision(config, data), "config_hash": config.config_hash}
                files[out / PRECISION_FILE] = json.dumps(record, indent=1) + "\n"
                precision = record["precision"]
            else:
                precision = recorded_precision(config, out)
            if need_cost:  # once per study, over the whole grid: the report's cost table
                cost = measure_cost(config, data, planned_runs(config), bf16=precision == "bf16")
                files[out / COST_FILE] = json.dumps(cost, indent=1) + "\n"
        check_directory(config, out)
        for path, text in files.items():
            atomic_write_text(path, text)
    return data
