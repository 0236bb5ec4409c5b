"""The study's numeric precision: fp32, bf16 autocast, or ``auto``, bf16 only where it measured faster.

bf16 autocast runs a ConvLSTM's convolutions on the CPU's bf16 dot-product instructions (AVX512-BF16, AMX) or a
GPU's tensor cores; norm statistics stay fp32 under it (:mod:`normrnn.norms.functional`). Whether it pays depends on
the shapes: at small convolutions the casts around each op can cost what the faster convolution saves. ``auto``
times one training step of the study's own models at each of its depths, fp32 and bf16 side by side in interleaved
rounds, and picks bf16 only when its total step time is at most :data:`PAYS` of fp32's. The choice is made once per
study and kept in ``DIR/precision.json``, so a study resumed on another machine keeps the precision it began with.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from ..bench.precision import bf16_hardware
from ..bench.timing import time_interleaved
from .config import StudyConfig
from .factories import first_batch, loss_function
from .grid import RunSpec

if TYPE_CHECKING:
    from .data import Datasets

__all__ = ["PAYS", "PRECISION_FILE", "choose_precision", "load_precision"]

PRECISION_FILE = "precision.json"
PAYS = 0.9  # auto picks bf16 when its paired step time is at most this fraction of fp32's
_ROUNDS = 5  # interleaved rounds


def _step(model: torch.nn.Module, x: torch.Tensor, y: torch.Tensor, loss: Callable[..., torch.Tensor],
          bf16: bool) -> Callable[[], None]:
    def run() -> None:
        with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
            pred = model(x)
        loss(pred.float(), y).backward()
        model.zero_grad(set_to_none=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
    return run


def choose_precision(config: StudyConfig, data: Datasets, *, rounds: int = _ROUNDS,
                     depths: tuple[int, ...] | None = None) -> dict[str, Any]:
    """The precision ``config`` runs at, and why: as set, or for ``auto`` measured on this machine (one training step
    per depth of the grid, or of ``depths``, first norm and topology, fp32 beside bf16 in ``rounds`` interleaved
    rounds)."""
    from .model import build_model

    if config.precision != "auto":
        return {"requested": config.precision, "precision": config.precision, "ratio": None, "why": "as set"}
    device = torch.device(config.device)
    lacking = bf16_hardware(device)
    if lacking is not None:
        return {"requested": "auto", "precision": "fp32", "ratio": None, "why": lacking}
    x, y = first_batch(data.train, config.batch_size, device)
    loss = loss_function(config.loss)
    depths = config.depths if depths is None else depths
    calls = {}
    for depth in depths:
        spec = RunSpec(config.norms[0], config.topologies[0], depth, 0, 1.0)
        model = build_model(config, spec, train=data.train).to(device)
        for bf16 in (False, True):
            calls[f"d{depth} {'bf16' if bf16 else 'fp32'}"] = _step(model, x, y, loss, bf16)
    samples = time_interleaved(calls, rounds=rounds, repeats=1, warmup=1,
                               groups=[[f"d{d} fp32", f"d{d} bf16"] for d in depths])
    totals = {p: [sum(r) for r in zip(*(samples[f"d{d} {p}"] for d in depths), strict=True)]
              for p in ("fp32", "bf16")}
    ratio = statistics.median(b / f for b, f in zip(totals["bf16"], totals["fp32"], strict=True))
    chosen = "bf16" if ratio <= PAYS else "fp32"
    return {"requested": "auto", "precision": chosen, "ratio": ratio,
            "why": f"a training step at every depth took {ratio:.2f}x fp32's time in bf16 (bf16 when <= {PAYS})"}


def load_precision(out: str | Path, config: StudyConfig) -> str | None:
    """The precision recorded in ``DIR/precision.json`` for this study, or ``None``."""
    try:
        record = json.loads((Path(out) / PRECISION_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get("config_hash") == config.config_hash
    return record.get("precision") if ok and record.get("precision") in ("fp32", "bf16") else None
