"""One run of the study: train, checkpoint every epoch, resume, evaluate, and return a result row."""

from __future__ import annotations

import copy
import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import BatchSampler, Dataset, DistributedSampler

from .._checks import first_line
from .._io import atomic_write
from ..norms import convert_sync_batchnorm
from ..profiling import saved_tensor_bytes
from .checkpoint import read_checkpoint, set_aside
from .config import StudyConfig
from .datasets import Datasets, fresh_train_set, train_subset
from .distributed import Rank, broadcast, current, global_mean, local_batch_size
from .factories import batch, loss_function, size_of
from .grid import RunSpec
from .history import NOT_EVALUATED, FinalMetrics, RunHistory, grew, result_row
from .metrics import Evaluation, no_learning_guesses, prediction_metrics, probed_cells
from .model import ModelFactory, bias_elements, build_model, reaches_model, teaches
from .precision import FP32, Precision
from .rows import ResultRow
from .tensorboard import RunLogger
from .thresholds import SATURATED

__all__ = ["saved_tensor_megabytes", "train_run"]



def _mse_at(model: nn.Module, x: Tensor, y: Tensor, precision: Precision) -> Tensor:
    """The MSE of one forward as a training step runs it: at the run's precision, taught
    with the target (as its first step) when the model takes it."""
    taught = {"target": y, "teacher": 1.0} if teaches(model) else {}
    with precision.autocast(x.device):
        pred = model(x, **taught)
    return F.mse_loss(pred.float(), y)


def saved_tensor_megabytes(model: nn.Module, x: Tensor, y: Tensor, *, precision: Precision = FP32) -> float:
    """Training memory on CPU: parameters, gradients and AdamW state (4 copies of the parameters) plus the
    distinct storages autograd saves in one forward (:func:`normrnn.profiling.saved_tensor_bytes`), at the run's
    precision."""
    saved = saved_tensor_bytes(lambda: _mse_at(model, x, y, precision))
    params = sum(p.numel() * p.element_size() for p in model.parameters())
    return (4 * params + saved) / 2**20


def _sampler(n: int, seed: int, rank: Rank) -> DistributedSampler[int]:
    """Shuffles ``range(n)`` by (seed, epoch) alone and deals rank r every world_size-th index, so local batch k
    of all ranks together is global batch k of one process: results and resuming do not depend on the world
    size (for n divisible by it; otherwise the sampler repeats a few samples to even out the ranks)."""
    indices: Any = range(n)  # a map-style dataset of indices to the sampler, which reads only its length
    return DistributedSampler(indices, num_replicas=rank.world_size, rank=rank.rank, shuffle=True,
                              seed=seed * 100_003, drop_last=False)


def _batches(sampler: DistributedSampler[int], local_batch: int, epoch: int) -> list[Tensor]:
    """This rank's index batches for the epoch."""
    sampler.set_epoch(epoch)
    return [torch.tensor(b) for b in BatchSampler(sampler, local_batch, drop_last=False)]


EVAL_BATCH = 32  # evaluation keeps no activations for backward: batches this large make fewer, larger calls


def eval_batch(config: StudyConfig) -> int:
    """The batch size of a study's evaluations: the training batch, or :data:`EVAL_BATCH` if that is larger (the
    same numbers up to float reordering: in eval mode every norm's statistics are per sample or running)."""
    return max(config.batch_size, EVAL_BATCH)


@torch.no_grad()
def evaluate(model: nn.Module, data: Dataset[Any], *, batch_size: int, device: torch.device,
             precision: Precision = FP32, gates: bool = False) -> Evaluation:
    """Test metrics over ``data`` (and the per-layer fraction of saturated gates when ``gates``)."""
    model.eval()
    cells = probed_cells(model)
    counts = [[0, 0] for _ in cells]
    if gates:
        for k, cell in enumerate(cells):
            def probe(gs: tuple[Tensor, ...], k: int = k) -> None:
                for g in gs:
                    counts[k][0] += int(((g < SATURATED) | (g > 1 - SATURATED)).sum())
                    counts[k][1] += g.numel()
            cell.gate_probe = probe
    preds, targets = [], []
    try:
        for idx in torch.arange(size_of(data)).split(batch_size):
            x, y = batch(data, idx, device)
            with precision.autocast(device):
                preds.append(model(x).float().cpu())
            targets.append(y.cpu())
    finally:
        for cell in cells:
            cell.gate_probe = None
    model.train()
    pred, target = torch.cat(preds), torch.cat(targets)
    saturation = [s / n for s, n in counts if n]  # a cell whose probe never ran has no gates to report
    return Evaluation(prediction_metrics(pred, target), saturation if gates and saturation else None)


def no_learning_loss(data: Dataset[Any], loss: str = "mse") -> float:
    """The training loss of the best predictor that learns nothing, on ``data``: the floor that
    ``steps_to_learn`` is measured against."""
    x, y = batch(data, torch.arange(size_of(data)), torch.device("cpu"))
    fn = loss_function(loss)
    return min(float(fn(guess, y)) for guess in no_learning_guesses(x, y).values())


def _make_scheduler(config: StudyConfig, opt: torch.optim.Optimizer, lr: float,
                    total: int) -> torch.optim.lr_scheduler.LRScheduler:
    if config.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(total, 1),
                                                   pct_start=config.warmup)
    if config.schedule == "constant":
        return torch.optim.lr_scheduler.ConstantLR(opt, factor=1.0, total_iters=0)
    return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(total, 1))


def train_run(
    config: StudyConfig,
    spec: RunSpec,
    data: Datasets,
    run_dir: Path,
    *,
    on_epoch: Callable[[int], None] | None = None,
    on_step: Callable[[int], None] | None = None,
    rank: Rank | None = None,
    tensorboard: bool = False,
    model_factory: ModelFactory | None = None,
    precision: Precision | None = None,
) -> ResultRow:
    """Train one run, resuming from ``run_dir/checkpoint.pt`` if it is there, and return its result row.

    A checkpoint is written atomically after every epoch, so an interrupted run loses at most the epoch in
    progress. ``on_epoch(epochs_done)`` runs after each checkpoint, ``on_step(steps_done)`` after each optimizer
    step (an exception there stops the run as Ctrl-C would). A diverged run stops early and is returned as a
    result. ``tensorboard`` logs the run to ``run_dir/tensorboard`` (:mod:`normrnn.study.tensorboard`).
    ``model_factory`` builds the model in place of normrnn's :class:`Forecaster` (see :func:`build_model`).
    ``precision`` is the study's (``precision.json``); ``None``: the config's, ``auto`` decided here. The row's
    ``to_dict()`` is what ``results.jsonl`` holds.

    In a process group (``rank``, default: :func:`~normrnn.study.distributed.current`) the model is wrapped in
    ``DistributedDataParallel`` with cross-rank batch statistics, each rank trains on its share of every global
    batch, and rank 0 alone writes the checkpoint. Every rank evaluates the whole validation and test sets
    (the same numbers everywhere), which keeps eval free of collectives. Nothing saved depends on the world
    size, so a run may resume with a different one.
    """
    rank = current() if rank is None else rank
    device = rank.device(config.device)
    if precision is None:
        from .cost import choose_precision

        precision = Precision(choose_precision(config, data)["precision"])
    run_dir.mkdir(parents=True, exist_ok=True)
    sampler = _sampler(size_of(data.train), spec.seed, rank)
    local_batch = local_batch_size(config.batch_size, rank.world_size)
    total_steps = config.epochs * math.ceil(len(sampler) / local_batch)
    ckpt_path = run_dir / "checkpoint.pt"
    state = _resume(lambda: _start(config, spec, model_factory, device, rank, total_steps, data.train), ckpt_path,
                    config.config_hash, rank)
    history = state.history
    logger = RunLogger(run_dir, purge_step=len(history.loss)) if tensorboard and rank.is_main else None
    loop = _Loop(config, spec, data, device, rank, sampler, local_batch, loss_function(config.loss),
                 _data_parallel(state.model, device) if rank.active else state.model, logger, on_step,
                 precision=precision, teach=teaches(state.model))
    _train_epochs(loop, state, ckpt_path, on_epoch)
    if loop.memory is None:  # resumed after the last epoch: measure on one batch
        first = batch(data.train, torch.arange(min(local_batch, size_of(data.train))), device)
        loop.memory = _peak_memory(state.model, *first, device, precision=loop.precision)
    if logger is not None:
        logger.close()
    final = NOT_EVALUATED if history.diverged_step is not None else _evaluate_final(config, state.model, data, device,
                                                                                     precision=loop.precision)
    row = result_row(config, spec, history, final, params=sum(p.numel() for p in state.model.parameters()),
                     memory=loop.memory, floor=_learn_floor(config, data), precision=loop.precision,
                     processes=rank.world_size, bias_params=bias_elements(state.model),
                     cell=config.cell if reaches_model(config, "cell", model_factory) else None)
    return row


@dataclass
class _State:
    """What a checkpoint holds: the model, its optimizer and schedule, and the history of the run."""

    model: nn.Module
    opt: torch.optim.Optimizer
    sched: Any
    history: RunHistory


@dataclass
class _Loop:
    """What every step of one run uses, and the little it measures on the way."""

    config: StudyConfig
    spec: RunSpec
    data: Datasets
    device: torch.device
    rank: Rank
    sampler: DistributedSampler[int]
    local_batch: int
    loss_fn: Callable[[Tensor, Tensor], Tensor]
    net: nn.Module  # the model, or its DistributedDataParallel wrapper
    logger: RunLogger | None
    on_step: Callable[[int], None] | None
    precision: Precision = FP32  # the study's
    memory: float | None = None  # peak training MB, measured on the first batch of this call
    teach: bool = False  # the model takes target= and teacher= (scheduled sampling)


def _start(config: StudyConfig, spec: RunSpec, factory: ModelFactory | None, device: torch.device, rank: Rank,
           total_steps: int, train: Any) -> _State:
    """A fresh run: the model from its seed, AdamW, the schedule and an empty history."""
    lr = config.lr * spec.lr_mult
    model = build_model(config, spec, factory, train=train).to(device)
    if rank.active:
        convert_sync_batchnorm(model)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=config.weight_decay)
    return _State(model, opt, _make_scheduler(config, opt, lr, total_steps), RunHistory())


def _resume(start: Callable[[], _State], path: Path, config_hash: str, rank: Rank) -> _State:
    """``start()`` with the checkpoint at ``path`` loaded; a checkpoint that does not fit is set aside."""
    state = start()
    # rank 0 reads the checkpoint and hands it to the others, which need not share its file system
    ckpt = broadcast(read_checkpoint(path, config_hash) if rank.is_main else None, rank)
    if ckpt is None:
        return state
    try:
        state.model.load_state_dict(ckpt["model"])
        state.opt.load_state_dict(ckpt["optimizer"])
        state.sched.load_state_dict(ckpt["scheduler"])
        state.history = RunHistory.from_dict(ckpt["history"])
        return state
    except (RuntimeError, KeyError, ValueError, TypeError) as e:
        if rank.is_main:
            set_aside(path, f"it does not fit this run: {first_line(e) or repr(e)}")
        return start()


def _train_epochs(loop: _Loop, state: _State, path: Path, on_epoch: Callable[[int], None] | None) -> None:
    """The run's remaining epochs, each checkpointed to ``path``; stops early where the run diverges."""
    history = state.history
    while history.epoch < loop.config.epochs and history.diverged_step is None:
        losses = _train_epoch(loop, state)
        if losses is None or not _end_epoch(loop, state, losses, path):
            return
        if on_epoch is not None:
            on_epoch(history.epoch)


def _train_epoch(loop: _Loop, state: _State) -> list[float] | None:
    """One epoch of optimizer steps: their losses, or None when the run diverged (the history says where)."""
    epoch = state.history.epoch
    torch.manual_seed(_step_seed(loop.spec.seed, epoch, loop.rank.rank))  # dropout etc.: per rank, per epoch
    losses = []
    train = fresh_train_set(loop.config, loop.spec.seed, epoch) if loop.config.fresh_train else loop.data.train
    for idx in _batches(loop.sampler, loop.local_batch, epoch):
        x, y = batch(train, idx, loop.device)
        if loop.memory is None:
            loop.memory = _peak_memory(state.model, x, y, loop.device, precision=loop.precision)
        value = _step(loop, state, x, y, len(idx))
        if value is None:
            return None
        losses.append(value)
    return losses


def _step(loop: _Loop, state: _State, x: Tensor, y: Tensor, n: int) -> float | None:
    """One optimizer step on ``n`` samples: the global batch's loss, or None when it diverged."""
    config, history = loop.config, state.history
    start = time.perf_counter()
    # scheduled sampling: the true future frames, fed with a probability that falls by teacher_decay per step
    taught = {"target": y, "teacher": max(0.0, 1.0 - config.teacher_decay * len(history.loss))} if loop.teach else {}
    with loop.precision.autocast(loop.device):
        pred = loop.net(x, **taught)
    loss = loop.loss_fn(pred.float(), y)
    loss.backward()
    grad_norm = float(nn.utils.clip_grad_norm_(state.model.parameters(), config.clip or math.inf))  # 0: no clip
    value = global_mean(loss.detach(), n, loop.rank)  # the loss of the global batch
    first = history.loss[0] if history.loss else value
    assert first is not None  # a first step that was not finite stopped the run there
    if not (math.isfinite(value) and math.isfinite(grad_norm)) or grew(value, first, config.divergence_bound):
        history.diverged_step = len(history.loss)
        history.loss.append(value if math.isfinite(value) else None)
        return None
    state.opt.step()
    state.sched.step()
    state.opt.zero_grad(set_to_none=True)
    if loop.device.type == "cuda":
        torch.cuda.synchronize()
    history.step_time.append(time.perf_counter() - start)
    history.loss.append(value)
    history.grad_norm.append(grad_norm)
    if loop.logger is not None:
        loop.logger.step(len(history.loss) - 1, value, grad_norm)
    if loop.on_step is not None:
        loop.on_step(len(history.loss))
    return value


def _end_epoch(loop: _Loop, state: _State, losses: list[float], path: Path) -> bool:
    """Validate, record the epoch and checkpoint it; False when its last step diverged, which shows only here."""
    config, history, model = loop.config, state.history, state.model
    val = evaluate(model, loop.data.val, batch_size=eval_batch(config), device=loop.device, precision=loop.precision,
                   gates=True)
    mse = val.metrics.mse
    if mse is None or not math.isfinite(mse):
        history.diverged_step = len(history.loss)
        return False
    history.train_curve.append(statistics.fmean(losses))
    history.val_curve.append(mse)
    history.val_steps.append(len(history.loss))
    if val.gate_saturation:
        history.gate_saturation_curve.append(statistics.fmean(val.gate_saturation))
    history.epoch += 1
    if loop.rank.is_main:
        checkpoint = {"model": model.state_dict(), "optimizer": state.opt.state_dict(),
                      "scheduler": state.sched.state_dict(), "history": history.to_dict(),
                      "config_hash": config.config_hash}
        atomic_write(path, lambda f: torch.save(checkpoint, f))
    if loop.logger is not None:
        first_batch = torch.arange(min(config.batch_size, size_of(loop.data.val)))
        loop.logger.epoch(history.epoch, history.val_curve[-1], model,
                          batch(loop.data.val, first_batch, loop.device)[0])
    return True


def _step_seed(seed: int, epoch: int, rank: int) -> int:
    return (seed * 100_003 + epoch) * 1_009 + rank


def _data_parallel(model: nn.Module, device: torch.device) -> nn.Module:
    from torch.nn.parallel import DistributedDataParallel

    return DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)


def _peak_memory(model: nn.Module, x: Tensor, y: Tensor, device: torch.device, *,
                 precision: Precision = FP32) -> float:
    """Peak training memory at the run's precision, measured on a copy so that batch-norm buffers and the run stay
    untouched."""
    model = copy.deepcopy(model)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
        _mse_at(model, x, y, precision).backward()
        model.zero_grad(set_to_none=True)
        return torch.cuda.max_memory_allocated(device) / 2**20
    return saved_tensor_megabytes(model, x, y, precision=precision)


def _evaluate_final(config: StudyConfig, model: nn.Module, data: Datasets, device: torch.device, *,
                    precision: Precision) -> FinalMetrics:
    """The test metrics (with gate saturation) and the train MSE of the trained model."""
    test = evaluate(model, data.test, batch_size=eval_batch(config), device=device, precision=precision, gates=True)
    train = evaluate(model, train_subset(data), batch_size=eval_batch(config), device=device, precision=precision)
    return FinalMetrics(test.metrics, test.gate_saturation, train.metrics.mse)


def _learn_floor(config: StudyConfig, data: Datasets) -> float | None:
    """The no-learning loss on the training subset, or None where the loss is not finite for those predictors."""
    floor = no_learning_loss(train_subset(data), config.loss)
    return floor if math.isfinite(floor) else None  # e.g. 1 - correlation, undefined for a constant prediction
