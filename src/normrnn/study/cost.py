"""The study's honest cost table: every variant's model timed side by side at the study's own shapes; and ``auto``'s
precision, decided by the same kind of timing.

Sequential run timings are not comparable (a busy machine during one run makes another look cheap), so the
report's cost column comes from here: one forward+backward step of each (norm, topology, depth) model, paired
with bias-only of the same topology and depth in interleaved rounds (``normrnn bench``'s method), once per
study, into ``DIR/cost.json``.

bf16 autocast runs a ConvLSTM's convolutions on the CPU's bf16 dot-product instructions (AVX512-BF16, AMX) or a
GPU's tensor cores; norm statistics stay fp32 under it (:mod:`normrnn.norms.functional`). Whether it pays depends on
the shapes: at small convolutions the casts around each op can cost what the faster convolution saves. ``auto``
times one training step of the study's own models at each of its depths, fp32 and bf16 side by side in interleaved
rounds, and picks bf16 only when its total step time is at most :data:`PAYS` of fp32's. The choice is made once per
study and kept in ``DIR/precision.json``, so a study resumed on another machine keeps the precision it began with.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from typing import Any

import torch

from ..bench.hardware import bf16_hardware
from ..bench.timing import paired_ratios, time_interleaved
from .config import StudyConfig
from .datasets import Datasets
from .factories import first_batch, loss_function, size_of
from .grid import RunSpec
from .model import build_model
from .names import BASELINE
from .precision import BF16, FP32, Precision

__all__ = ["PAYS", "choose_precision", "measure_cost", "training_step"]

_ROUNDS, _WARMUP = 5, 1  # interleaved rounds per variant, and untimed calls before them
PAYS = 0.9  # auto picks bf16 when its paired step time is at most this fraction of fp32's


def measure_cost(config: StudyConfig, data: Datasets, runs: list[RunSpec], *, rounds: int = _ROUNDS,
                 warmup: int = _WARMUP, precision: Precision = FP32) -> dict[str, Any]:
    """Median milliseconds per training step of each variant in ``runs``, and its paired ratio to bias-only, at the
    study's ``precision``."""
    variants = {(s.norm, s.topology, s.depth): s for s in runs}
    steps = {key: training_step(config, data, RunSpec(*key, seed=0, lr_mult=1.0), precision=precision)
             for key in variants}
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
            "batch_size": min(config.batch_size, size_of(data.train)), "precision": precision.name,
            "samples": [size_of(data.train), size_of(data.val), size_of(data.test)], "rows": rows}


def training_step(config: StudyConfig, data: Datasets, spec: RunSpec, *,
                  precision: Precision = FP32) -> Callable[[], None]:
    """One forward+backward step of ``spec``'s model (built here) on the first training batch; gradients are
    dropped after each call, so it can be timed again and again."""
    device = torch.device(config.device)
    x, y = first_batch(data.train, config.batch_size, device)
    loss_fn = loss_function(config.loss)
    model = build_model(config, spec, train=data.train).to(device)

    def run() -> None:
        with precision.autocast(device):
            pred = model(x)
        loss_fn(pred.float(), y).backward()
        model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)
    return run


def choose_precision(config: StudyConfig, data: Datasets, *, rounds: int = _ROUNDS,
                     depths: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The precision ``config`` runs at, and why: as set, or for ``auto`` measured on this machine (one training step
    per depth of the grid, or of ``depths``, first norm and topology, fp32 beside bf16 in ``rounds`` interleaved
    rounds)."""
    if config.precision != "auto":
        return {"requested": config.precision, "precision": config.precision, "ratio": None, "why": "as set"}
    device = torch.device(config.device)
    lacking = bf16_hardware(device)
    if lacking is not None:
        return {"requested": "auto", "precision": "fp32", "ratio": None, "why": lacking}
    depths = config.depths if depths is None else depths
    calls = {}
    for depth in depths:
        spec = RunSpec(config.norms[0], config.topologies[0], depth, 0, 1.0)
        for precision in (FP32, BF16):
            calls[f"d{depth} {precision.name}"] = training_step(config, data, spec, precision=precision)
    samples = time_interleaved(calls, rounds=rounds, repeats=1, warmup=1,
                               groups=[[f"d{d} fp32", f"d{d} bf16"] for d in depths])
    totals = {p: [sum(r) for r in zip(*(samples[f"d{d} {p}"] for d in depths), strict=True)]
              for p in ("fp32", "bf16")}
    ratio = statistics.median(b / f for b, f in zip(totals["bf16"], totals["fp32"], strict=True))
    chosen = "bf16" if ratio <= PAYS else "fp32"
    return {"requested": "auto", "precision": chosen, "ratio": ratio,
            "why": f"a training step at every depth took {ratio:.2f}x fp32's time in bf16 (bf16 when <= {PAYS})"}
