"""``normrnn study``: the normalization ablation (norm × topology × depth × seed × LR) and its report.

The package, in import order (each module imports only those before it): ``checks`` (value checks), ``config``
(:class:`StudyConfig`, its parts), ``grid`` (:class:`RunSpec`, expansion, halving, shards), ``presets`` (the named
grids, TOML files), ``factories``, ``metrics``, ``model``, ``data``, ``checkpoint``, ``history`` (a run's record and
its row), ``train`` (one run), ``cost`` and ``precision`` (timed once per study), ``results`` (the rows on disk, with
``rows``, their schema), ``directory`` (witness, claims, one run's claim-train-record), ``pool``, ``executors``
(local, pool, Ray), ``preflight`` (every check before work), ``runner`` (phases), ``plan``; and the report side,
which reads rows and never imports training: ``aggregate``, ``tables``, ``plots``, ``report``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .config import StudyConfig
    from .grid import RunSpec, expand_grid, parse_shard, shard
    from .model import Forecaster, ModelConfig
    from .presets import PRESETS, load_config
    from .report import write_report
    from .results import append_result, load_results
    from .runner import run, run_study
    from .train import train_run

# each name loads its module on first use, so that ``normrnn report`` imports no training code
_HOME = {"PRESETS": "presets", "StudyConfig": "config", "load_config": "presets", "RunSpec": "grid",
         "expand_grid": "grid", "parse_shard": "grid", "shard": "grid", "Forecaster": "model", "ModelConfig": "model",
         "write_report": "report", "append_result": "results", "load_results": "results", "run": "runner",
         "run_study": "runner", "train_run": "train"}


def __getattr__(name: str) -> Any:
    if name not in _HOME:
        raise AttributeError(f"module 'normrnn.study' has no attribute {name!r}")
    value = getattr(importlib.import_module(f".{_HOME[name]}", __name__), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_HOME])


__all__ = [
    "PRESETS",
    "Forecaster",
    "ModelConfig",
    "RunSpec",
    "StudyConfig",
    "append_result",
    "expand_grid",
    "load_config",
    "load_results",
    "parse_shard",
    "run",
    "run_study",
    "shard",
    "train_run",
    "write_report",
]
