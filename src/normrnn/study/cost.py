"""The study's honest cost table: every variant's model timed side by side at the study's own shapes.

Sequential run timings are not comparable (a busy machine during one run makes another look cheap), so the
report's cost column comes from here: one forward+backward step of each (norm, topology, depth) model, paired
with bias-only of the same topology and depth in interleaved rounds (``normrnn bench``'s method), once per
study, into ``DIR/cost.json``.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from ..bench.timing import paired_ratios, time_interleaved
from .config import BASELINE, StudyConfig
from .data import Datasets
from .factories import first_batch, loss_function, size_of
from .grid import RunSpec
from .model import build_model

__all__ = ["measure_cost", "training_step"]

_ROUNDS, _WARMUP = 5, 1  # interleaved rounds per variant, and untimed calls before them


def measure_cost(config: StudyConfig, data: Datasets, runs: list[RunSpec], *, rounds: int = _ROUNDS,
                 warmup: int = _WARMUP, bf16: bool = False) -> dict[str, Any]:
    """Median milliseconds per training step of each variant in ``runs``, and its paired ratio to bias-only, at the
    study's precision (``bf16``: under bf16 autocast)."""
    variants = {(s.norm, s.topology, s.depth): s for s in runs}
    steps = {key: training_step(config, data, RunSpec(*key, seed=0, lr_mult=1.0), bf16=bf16) for key in variants}
    names = {key: "/".join(map(str, key)) for key in steps}
    groups = [[names[k] for k in steps if k[1:] == (topo, depth)] for topo, depth in {k[1:] for k in steps}]
    samples = time_interleaved({names[k]: step for k, step in steps.items()}, rounds=rounds, repeats=1,
                               warmup=warmup, groups=groups)
    rows = []
    for (norm, topo, depth), name in names.items():
        ref = names.get((BASELINE, topo, depth))
        ratios = paired_ratios(samples, name, ref) if ref is not None else None
        rows.append({"norm": norm, "topology": topo, "depth": depth,
                     "step_ms": statistics.median(samples[name]) * 1e3,
                     "ratio": statistics.median(ratios) if ratios else None,
                     "ratio_min": min(ratios) if ratios else None, "ratio_max": max(ratios) if ratios else None})
    return {"config_hash": config.config_hash, "rounds": rounds, "threads": torch.get_num_threads(),
            "batch_size": min(config.batch_size, size_of(data.train)), "precision": "bf16" if bf16 else "fp32",
            "samples": [size_of(data.train), size_of(data.val), size_of(data.test)], "rows": rows}


def training_step(config: StudyConfig, data: Datasets, spec: RunSpec, *, bf16: bool = False) -> Callable[[], None]:
    """One forward+backward step of ``spec``'s model (built here) on the first training batch; gradients are
    dropped after each call, so it can be timed again and again."""
    device = torch.device(config.device)
    x, y = first_batch(data.train, config.batch_size, device)
    loss_fn = loss_function(config.loss)
    model = build_model(config, spec, train=data.train).to(device)

    def run() -> None:
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        loss_fn(pred.float(), y).backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run
