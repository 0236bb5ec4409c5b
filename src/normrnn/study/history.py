"""What a run records as it trains (:class:`RunHistory`, which its checkpoint holds) and the result row built from
it: :func:`result_row` computes, it does not evaluate or change anything."""

from __future__ import annotations

import dataclasses
import math
import statistics
from dataclasses import dataclass, field
from typing import Any

from .config import StudyConfig
from .grid import RunSpec
from .metrics import TestMetrics
from .precision import Precision
from .rows import ResultRow
from .thresholds import plateaued, steps_to_learn

__all__ = ["FinalMetrics", "RunHistory", "count_spikes", "grew", "result_row"]


@dataclass
class RunHistory:
    """A run's record so far, per step and per epoch; a checkpoint holds it as a dict (:meth:`to_dict`)."""

    loss: list[float | None] = field(default_factory=list)  # per step; None where a step's loss was not finite
    grad_norm: list[float] = field(default_factory=list)  # per step, before clipping
    step_time: list[float] = field(default_factory=list)  # per step, seconds
    train_curve: list[float] = field(default_factory=list)  # per epoch: mean training loss
    val_curve: list[float] = field(default_factory=list)  # per epoch: validation MSE
    val_steps: list[int] = field(default_factory=list)  # the step of each val_curve point
    gate_saturation_curve: list[float] = field(default_factory=list)  # per epoch: validation gate saturation
    diverged_step: int | None = None  # the step where the run diverged; None while it has not
    epoch: int = 0  # epochs finished

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, saved: dict[str, Any]) -> RunHistory:
        """A checkpoint's history; those written before ``gate_saturation_curve`` or ``val_steps`` were recorded get
        an empty curve and evenly spaced steps. A ``ValueError`` for keys this version does not know."""
        unknown = set(saved) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown history keys {sorted(unknown)}")
        history = cls(**saved)
        if "val_steps" not in saved:
            per_epoch = len(history.loss) // max(history.epoch, 1)
            history.val_steps = [per_epoch * (e + 1) for e in range(len(history.val_curve))]
        return history


@dataclass(frozen=True)
class FinalMetrics:
    """The trained model evaluated once, after its last epoch (``None`` everywhere when it had diverged)."""

    test: TestMetrics
    gate_saturation: list[float] | None  # per probed cell, on the test set; None: no cell exposes its gates
    train_mse: float | None

    @property
    def finite(self) -> bool:
        values = (self.test.mse, self.test.mae, self.train_mse)
        return all(v is not None and math.isfinite(v) for v in values)


NOT_EVALUATED = FinalMetrics(TestMetrics(), None, None)


def grew(value: float, reference: float, factor: float) -> bool:
    """Whether ``value`` rose above ``reference`` by more than ``(factor - 1) × |reference|``: for a positive loss,
    ``value > factor × reference``; defined for losses of any sign (a log-space or NLL loss may be negative)."""
    return value - reference > (factor - 1) * abs(reference)


def count_spikes(losses: list[float], *, factor: float = 3.0, window: int = 50, warmup: int = 10) -> int:
    """Steps whose loss :func:`grew` past ``factor`` × the running median of the previous ``window`` losses."""
    spikes = 0
    for i in range(warmup, len(losses)):
        if grew(losses[i], statistics.median(losses[max(0, i - window) : i]), factor):
            spikes += 1
    return spikes


def result_row(config: StudyConfig, spec: RunSpec, history: RunHistory, final: FinalMetrics, *, params: int,
               memory: float, floor: float | None, precision: Precision, processes: int,
               bias_params: int | None = None,
               cell: str | None = None) -> ResultRow:
    """The run's row. Weights that turned non-finite after the last step are a result: the run counts as diverged
    there (``final`` not finite), as it would have at a later step."""
    diverged_step = history.diverged_step
    if diverged_step is None and not final.finite:
        diverged_step = len(history.loss)
    diverged = diverged_step is not None
    if diverged:
        final = NOT_EVALUATED
    times = history.step_time[1:] or history.step_time  # the first step includes one-time set-up
    grads = [g for g in history.grad_norm if g is not None]
    saturation = final.gate_saturation
    losses = [v for v in history.loss if v is not None]
    note = None if floor is not None else (f"loss {config.loss} is not finite for the no-learning predictors "
                                           "(constant frames), so steps to learn is undefined")
    return ResultRow(
        run_id=spec.run_id, study=config.name, config_hash=config.config_hash, cell=cell, norm=spec.norm,
        topology=spec.topology, depth=spec.depth, seed=spec.seed, lr_mult=spec.lr_mult, **final.test.as_row(),
        train_mse=final.train_mse, diverged=diverged, diverged_step=diverged_step,
        step_time_s=statistics.median(times) if times else None, peak_mem_mb=memory,
        loss_spikes=count_spikes(losses), grad_norm_mean=statistics.fmean(grads) if grads else None,
        grad_norm_max=max(grads) if grads else None, gate_saturation=saturation,
        gate_saturation_mean=statistics.fmean(saturation) if saturation else None, params=params,
        epochs=history.epoch, train_curve=history.train_curve, val_curve=history.val_curve,
        val_steps=history.val_steps, plateau=None if diverged else plateaued(history.val_curve, history.val_steps),
        val_mse=history.val_curve[-1] if history.val_curve and not diverged else None, learn_floor_loss=floor,
        steps_to_learn=None if floor is None else steps_to_learn(history.loss, floor), learn_floor_note=note,
        gate_saturation_curve=history.gate_saturation_curve, precision=precision.name,
        processes=processes, bias_params=bias_params)
