"""What a study decides once, before its runs: the data check, the baselines, ``auto``'s precision and the cost
table, each measured first and then written to the study directory."""

from __future__ import annotations

import json
from pathlib import Path

from .._io import atomic_write_text
from .config import StudyConfig
from .cost import choose_precision, measure_cost
from .datasets import Datasets, load_datasets, reference_predictors
from .directory import check_directory, recorded_precision
from .distributed import Rank
from .grid import planned_runs
from .precision import PRECISION_FILE, Precision, load_precision
from .results import COST_FILE, load_cost
from .threads import threads_of_runs

__all__ = ["prepare"]


def prepare(config: StudyConfig, out: Path, rank: Rank, *, need_data: bool, whole: bool,
             loaded: Datasets | None = None) -> Datasets | None:
    """The data (when this process trains, or must write the baselines or the cost table; ``loaded`` if the
    factory check already loaded it), and on the main process the study's one-time files: ``study.json``,
    ``baselines.json``, ``precision.json`` (``auto``) and, once per study, ``cost.json`` over the whole grid. All
    are measured first and written after, so data, model or loss that fails in any of them leaves nothing."""
    baselines = out / "baselines.json"
    need_baselines = rank.is_main and not baselines.exists()
    need_cost = whole and rank.is_main and load_cost(out, config.config_hash) is None
    need_precision = rank.is_main and config.precision == "auto" and load_precision(out, config.config_hash) is None
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
                precision = Precision(record["precision"])
            else:
                precision = recorded_precision(config, out)
            if need_cost:  # once per study, over the whole grid: the report's cost table
                cost = measure_cost(config, data, planned_runs(config), precision=precision)
                files[out / COST_FILE] = json.dumps(cost, indent=1) + "\n"
        check_directory(config, out)
        for path, text in files.items():
            atomic_write_text(path, text)
    return data
