"""``normrnn study``: the normalization ablation (norm × topology × depth × seed × LR) and its report.

From the command line, ``normrnn study --preset quick --out study-quick`` trains a grid (re-run it to resume) and
writes ``study-quick/report.md``; ``normrnn report study-quick`` rewrites the report. From Python, a preset or your
own :class:`StudyConfig` runs the same way, and the report comes back as data.

For contributors, the package in import order (each module imports only those before it): ``checks`` (value checks),
``config`` (:class:`StudyConfig`, its parts), ``grid`` (:class:`RunSpec`, expansion, halving, shards), ``presets``
(the named grids, TOML files), ``factories``, ``metrics``, ``model``, ``data``, ``checkpoint``, ``history`` (a run's
record and its row), ``train`` (one run), ``cost`` and ``precision`` (timed once per study), ``results`` (the rows
on disk, with ``rows``, their schema), ``directory`` (witness, claims, one run's claim-train-record), ``pool``,
``executors`` (local, pool, Ray), ``preflight`` (every check before work), ``runner`` (phases), ``plan``; and the
report side, which reads rows and never imports training: ``aggregate``, ``tables``, ``plots``, ``report``.

Example::

    >>> from normrnn.study import PRESETS, run
    >>> report = run(PRESETS["smoke"], "study-smoke")  # doctest: +SKIP
    >>> print(report.findings)  # doctest: +SKIP
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from .._loader import lazy_exports

if TYPE_CHECKING:
    from .config import StudyConfig as StudyConfig
    from .grid import RunSpec as RunSpec, expand_grid as expand_grid, parse_shard as parse_shard, shard as shard
    from .model import Forecaster as Forecaster, ModelConfig as ModelConfig
    from .presets import PRESETS as PRESETS, load_config as load_config
    from .report import write_report as write_report
    from .results import append_result as append_result, load_results as load_results
    from .runner import run as run, run_study as run_study
    from .train import train_run as train_run

# each name loads its module on first use, so that ``normrnn report`` imports no training code
_EXPORTS = {
    "config": ("StudyConfig",), "grid": ("RunSpec", "expand_grid", "parse_shard", "shard"),
    "model": ("Forecaster", "ModelConfig"), "presets": ("PRESETS", "load_config"), "report": ("write_report",),
    "results": ("append_result", "load_results"), "runner": ("run", "run_study"), "train": ("train_run",),
}
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, globals())
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
