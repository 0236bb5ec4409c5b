"""``normrnn study``: the normalization ablation (norm × topology × depth × seed × LR) and its report."""

from .config import PRESETS, RunSpec, StudyConfig, expand_grid, load_config, parse_shard, shard
from .model import Forecaster, ModelConfig
from .report import write_report
from .results import append_result, load_results
from .runner import run, run_study
from .train import train_run

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
