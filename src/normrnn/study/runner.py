"""Run a study grid into a directory: skip finished runs, resume interrupted ones, append results safely."""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import torch

from .._io import atomic_write_text
from ..data import SequenceDataset, create_dataset
from .config import RunSpec, StudyConfig, expand_grid
from .metrics import frame_mae, frame_mse, psnr, ssim
from .train import Datasets, train_run

__all__ = ["append_result", "load_results", "reference_predictors", "run_study"]


def load_results(directory: str | Path) -> list[dict[str, Any]]:
    """The rows of ``DIR/results.jsonl``; a torn last line (a crash mid-write) is ignored."""
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


def append_result(directory: str | Path, row: dict[str, Any]) -> None:
    """Append one JSON line with a single ``write`` on an ``O_APPEND`` descriptor, then fsync."""
    data = (json.dumps(row, allow_nan=False) + "\n").encode()
    fd = os.open(Path(directory) / "results.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _datasets(config: StudyConfig) -> Datasets:
    common = {"seed": config.data_seed, "size": config.size, "frames_in": config.frames_in,
              "frames_out": config.frames_out, "path": config.data_path}
    return Datasets(
        train=create_dataset(config.dataset, config.train_samples, split="train", **common),
        val=create_dataset(config.dataset, config.val_samples, split="val", **common),
        test=create_dataset(config.dataset, config.test_samples, split="test", **common),
    )


def reference_predictors(test: SequenceDataset) -> dict[str, dict[str, float]]:
    """Test metrics of three predictors that learn nothing, the floor any model must beat: all-zero
    frames, the last given frame repeated, and the mean pixel value of the targets everywhere."""
    x = test.video[:, : test.frames_in]
    y = test.video[:, test.frames_in : test.frames_in + test.frames_out]
    guesses = {"blank": torch.zeros_like(y), "copy last frame": x[:, -1:].expand_as(y).contiguous(),
               "mean frame": torch.full_like(y, float(y.mean()))}
    return {name: {"test_mse": frame_mse(g, y), "test_mae": frame_mae(g, y), "test_ssim": ssim(g, y),
                   "test_psnr": psnr(g, y)} for name, g in guesses.items()}


_NOT_RESULTS = ("threads",)  # settings that may change between resumed calls without changing results


def _check_directory(config: StudyConfig, out: Path) -> None:
    """Record the study in ``DIR/study.json``; refuse to mix a different study into an existing directory."""
    path = out / "study.json"
    resolved = json.loads(json.dumps(config.to_dict()))  # tuples as lists, as stored
    if path.exists():
        previous = json.loads(path.read_text())
        changed = sorted(k for k in resolved if k not in _NOT_RESULTS and previous.get(k) != resolved[k])
        if changed:
            raise ValueError(f"{out} holds a different study (differs in {changed}); use another --out directory")
    else:
        atomic_write_text(path, json.dumps(resolved, indent=2) + "\n")


def run_study(config: StudyConfig, out: str | Path, *, progress: bool = True,
              runs: Iterable[RunSpec] | None = None) -> list[dict[str, Any]]:
    """Run every unfinished run of ``config`` into ``out`` and return all its result rows.

    Finished runs (already in ``results.jsonl``) are skipped; interrupted ones resume from their last
    epoch's checkpoint. Ctrl-C stops between atomic writes, so the directory stays consistent.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    _check_directory(config, out)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    specs = list(expand_grid(config) if runs is None else runs)
    done = {row["run_id"] for row in load_results(out)}
    todo = [s for s in specs if s.run_id not in done]
    baselines = out / "baselines.json"
    data = _datasets(config) if todo or not baselines.exists() else None
    if not baselines.exists():
        atomic_write_text(baselines, json.dumps(reference_predictors(data.test), indent=2) + "\n")
    bar = _progress(len(todo) * config.epochs, enabled=progress and bool(todo))
    try:
        for i, spec in enumerate(todo):
            ticks = [0]

            def on_epoch(epoch: int, i: int = i, spec: RunSpec = spec, ticks: list[int] = ticks) -> None:
                ticks[0] += 1
                bar.update(1)
                bar.set_postfix_str(f"run {i + 1}/{len(todo)} {spec.run_id} epoch {epoch}/{config.epochs}")

            bar.set_postfix_str(f"run {i + 1}/{len(todo)} {spec.run_id}")
            row = train_run(config, spec, data, out / "runs" / spec.run_id, on_epoch=on_epoch)
            bar.update(config.epochs - ticks[0])  # epochs resumed from a checkpoint, or skipped by divergence
            append_result(out, row)
    finally:
        bar.close()
    wanted = {s.run_id for s in specs}
    return [row for row in load_results(out) if row["run_id"] in wanted]


def _progress(total: int, *, enabled: bool):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="epoch", disable=not enabled, dynamic_ncols=True, desc="study")
