"""``normrnn bench cells`` and ``bench layers``: a ConvLSTM's (or another convolutional cell kind's, ``cell``)
forward+backward per norm and gate backend, next to bias-only, the naive loop and the conv-only floor, with
activation memory."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, replace
from typing import Any, cast

import torch
from torch import Tensor, nn

from .._checks import one_of, positive_int
from ..cells import cell_kind
from ..kernels import get_backend
from ..layers import ConvLSTM, layer_for
from ..norms.explaining import MAX_ELEMENTS
from ..profiling import cuda_peak_mb, saved_tensor_bytes
from .hardware import bf16_hardware
from .reference import ConvOnly, NaiveConvLSTM
from .timing import check_close, check_timing, paired_ratios, time_interleaved, timing_row

__all__ = ["CELL_BENCH", "CELL_BENCH_QUICK", "FLOOR", "HOISTED", "NAIVE", "LayerBenchConfig", "bench_layers"]

NAIVE = "naive reference (conv on [x; h], eager gates)"
HOISTED = "none, projection=hoisted"
FLOOR = "conv-only (the floor)"
BF16 = "bf16"  # the suffix of a variant timed under bf16 autocast beside its fp32 self


@dataclass(frozen=True)
class LayerBenchConfig:
    """What ``normrnn bench layers`` (and, with one layer, ``bench cells``) measures: forward+backward of a
    ConvLSTM over a sequence, per norm and gate backend, next to bias-only, a naive loop and the conv floor."""

    batch: int = 16  # B
    in_channels: int = 16  # C_in of the first layer
    hidden_channels: int = 64  # C of every layer
    size: tuple[int, int] = (32, 32)  # H, W
    steps: int = 10  # T
    kernel_size: int = 3  # k x k convolutions
    num_layers: int = 2  # stacked layers
    norms: tuple[str, ...] = ("none", "layer", "group:8", "recurrent_batch:10")  # "none" is the bias-only reference
    backends: tuple[str, ...] = ("eager",)  # gate blocks to time for each norm that supports them
    floor: bool = False  # also time conv-only: the same convolutions without gates or norms
    hoisted: bool = False  # also time bias-only with projection="hoisted" (the default is joint on CPU)
    dtype: str = "float32"  # float32 | float64 | bfloat16
    # fp32 | bf16: every variant under bf16 autocast | auto: where the device has fast bf16 (AVX512-BF16, AMX, a
    # bf16 GPU), each variant also under bf16 autocast (" bf16"), timed beside fp32 so the ratios show where it pays
    precision: str = "fp32"
    device: str = "cpu"  # cpu | cuda (adds the allocator's peak memory per variant)
    rounds: int = 5  # interleaved rounds, order shuffled per round
    repeats: int = 1  # timed calls per variant per round
    warmup: int = 1  # untimed calls per variant first
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    # the convolutional cell kind: convlstm | convgru | stlstm (PredRNN); the naive loop, the conv-only floor and
    # the hoisted variant are ConvLSTM's, so other kinds are timed against bias-only alone
    cell: str = "convlstm"

    def __post_init__(self) -> None:
        check_timing(self)
        cell_kind(self.cell, spatial=True)  # a ValueError naming the registered kinds
        one_of("precision", self.precision, ("fp32", "bf16", "auto"))
        if self.precision != "fp32" and self.dtype != "float32":
            raise ValueError(f"expected dtype float32 with precision={self.precision!r} (autocast casts fp32 "
                             f"models), got dtype={self.dtype!r}")
        for name in ("batch", "in_channels", "hidden_channels", "steps", "kernel_size", "num_layers"):
            positive_int(name, getattr(self, name))
        gates = (self.batch, self.steps, 4 * max(self.in_channels, self.hidden_channels), *self.size)
        if math.prod(gates) > MAX_ELEMENTS:  # the gate tensors of every step are kept for backward
            raise ValueError(f"expected at most {MAX_ELEMENTS:,} gate values per layer (B·T·4C·H·W), got "
                             f"{math.prod(gates):,} for batch={self.batch}, steps={self.steps}, size={self.size}")


CELL_BENCH = LayerBenchConfig(num_layers=1, norms=("none", "layer", "group:8"),
                              backends=("eager", "fused", "compiled"), floor=True, hoisted=True)
# CI: a tiny shape and one round; no compiled variants, whose first call compiles for about half a minute
CELL_BENCH_QUICK = replace(CELL_BENCH, batch=2, in_channels=2, hidden_channels=8, size=(8, 8), steps=3, rounds=1,
                           warmup=0, backends=("eager", "fused"))


def bench_layers(config: LayerBenchConfig = LayerBenchConfig(),
                 progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Time forward+backward of a ConvLSTM for each norm (and backend), next to bias-only and a naive loop.

    Every variant is in one interleaved group; each row's ``ratio`` is against bias-only (``norm="none"``),
    ``ratio_vs_naive`` against :class:`NaiveConvLSTM` and ``ratio_vs_floor`` against :class:`ConvOnly`, all
    medians of per-round paired ratios. ``activation_mb`` is what autograd saves in one forward.
    """
    device = _check_runnable(config)
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dtype = getattr(torch, config.dtype)
    g = torch.Generator().manual_seed(0)
    shape = (config.batch, config.steps, config.in_channels, *config.size)
    x = torch.randn(shape, generator=g).to(device, dtype)
    dy = torch.randn(*shape[:2], config.hidden_channels, *config.size, generator=g).to(device, dtype)
    models = _models(config, x, progress)
    calls = {name: _fwd_bwd(model, x, dy, bf16=config.precision == "bf16") for name, model in models.items()}
    if config.precision == "auto" and bf16_hardware(device) is None:
        twins = {f"{name} {BF16}": model for name, model in models.items() if name not in (NAIVE, FLOOR)}
        calls |= {name: _fwd_bwd(model, x, dy, bf16=True) for name, model in twins.items()}
        models |= twins
    if progress is not None:
        progress(f"timing {len(models)} variants, fwd+bwd of {config.num_layers} layers x T={config.steps}, "
                 f"{config.rounds} rounds x {config.repeats} calls")
    samples = time_interleaved(calls, rounds=config.rounds, repeats=config.repeats, warmup=config.warmup,
                               groups=[list(calls)])
    memory = {name: saved_tensor_bytes(functools.partial(_forward, model, x, _bf16(config, name))) / 2**20
              for name, model in models.items()}
    peak = {name: cuda_peak_mb(call, device) for name, call in calls.items()} if device.type == "cuda" else {}
    return [_row(config, name, list(shape), samples, memory, peak, models) for name in models]


def _check_runnable(config: LayerBenchConfig) -> torch.device:
    """The config's device, after the checks that need no model: a ValueError says what is missing."""
    if "none" not in config.norms:
        raise ValueError(f"expected 'none' (the bias-only reference) among the norms, got {config.norms}")
    for backend in config.backends:
        get_backend(backend)  # a ValueError naming the valid backends
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"expected a CUDA device for device={config.device!r}, but torch sees none")
    return device


def _models(config: LayerBenchConfig, x: Tensor, progress: Callable[[str], None] | None) -> dict[str, nn.Module]:
    """Every variant, each checked equal to its reference on ``x`` before anything is timed."""
    build: dict[str, Any] = dict(num_layers=config.num_layers, device=x.device, dtype=x.dtype)
    C_in, C, k = config.in_channels, config.hidden_channels, config.kernel_size
    models: dict[str, nn.Module] = {}
    layer = layer_for(cell_kind(config.cell, spatial=True).cell)
    for norm in config.norms:
        for backend in dict.fromkeys(("eager", *config.backends)):  # eager first: the reference of the others
            if backend == "fused" and norm == "none":
                continue  # nothing to fuse without a norm
            torch.manual_seed(0)
            name = norm if backend == "eager" else f"{norm} {backend}"
            try:
                models[name] = layer(C_in, C, k, norm=norm, backend=backend, **build).train()
            except ValueError as e:
                if progress is not None:
                    progress(f"skipping {name}: {e}")
                continue
            if backend != "eager":
                _check_same(models[norm], models[name], x, f"{name} disagrees with {norm}")
    if config.cell != "convlstm":
        return models
    if config.hoisted:
        models[HOISTED] = ConvLSTM(C_in, C, k, backend="eager", projection="hoisted", **build)
        models[HOISTED].load_state_dict(models["none"].state_dict())
        _check_same(models["none"], models[HOISTED], x, "hoisted projection disagrees with the default")
    reference = cast(ConvLSTM, models["none"])  # built above: every model is a ConvLSTM
    models[NAIVE] = NaiveConvLSTM(reference).to(x.device)
    _check_same(models["none"], models[NAIVE], x, "bias-only ConvLSTM disagrees with the naive reference")
    if config.floor:
        models[FLOOR] = ConvOnly(reference)
    return models


def _bf16(config: LayerBenchConfig, name: str) -> bool:
    """Whether the variant ``name`` runs under bf16 autocast."""
    return config.precision == "bf16" or name.endswith(f" {BF16}")


def _forward(model: nn.Module, x: Tensor, bf16: bool) -> Tensor:
    with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=bf16):
        out = model(x)
    y: Tensor = out[0] if isinstance(out, tuple) else out
    return y.float() if bf16 else y


def _fwd_bwd(model: nn.Module, x: Tensor, dy: Tensor, *, bf16: bool = False) -> Callable[[], None]:
    """One timed call: forward (under bf16 autocast when ``bf16``), backward of ``dy``, and (on CUDA) a sync, so the
    kernels are timed, not queued."""
    def run() -> None:
        _forward(model, x, bf16).backward(dy)
        model.zero_grad(set_to_none=True)
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
    return run


def _row(config: LayerBenchConfig, name: str, shape: list[int], samples: dict[str, list[float]],
         memory: dict[str, float], peak: dict[str, float], models: dict[str, nn.Module]) -> dict[str, object]:
    """One variant's result: its time, its paired ratios to bias-only, the naive loop and the floor, and memory."""
    row: dict[str, object] = {
        "bench": "cells" if config.num_layers == 1 else "layers",
        "variant": (name if name in (NAIVE, FLOOR) else f"normrnn {layer_for(cell_kind(config.cell).cell).__name__} "
                    f"norm={name}")
        + (f" {BF16}" if config.precision == "bf16" else ""),
        "norm": name.removesuffix(f" {BF16}"), "mode": "fwd+bwd", "shape": shape, "dtype": config.dtype,
        "precision": "bf16" if _bf16(config, name) else "fp32",
        **timing_row(samples, name, "none"),
        "activation_mb": memory[name], "memory_ratio": memory[name] / memory["none"],
    }
    if NAIVE in samples:
        row["ratio_vs_naive"] = statistics.median(paired_ratios(samples, name, NAIVE))
    if name.endswith(f" {BF16}"):  # the same model in fp32, timed beside it
        row["ratio_vs_fp32"] = statistics.median(paired_ratios(samples, name, name.removesuffix(f" {BF16}")))
    if FLOOR in samples:
        row["ratio_vs_floor"] = statistics.median(paired_ratios(samples, name, FLOOR))
    if peak:
        row["cuda_peak_mb"] = peak[name]
    base = name.removesuffix(f" {BF16}")
    backend = base.rpartition(" ")[2] if " " in base and base not in (NAIVE, FLOOR, HOISTED) else None
    if backend is not None and f"none {backend}" in models:  # bias-only with the same gate backend
        row["ratio_vs_bias_backend"] = statistics.median(paired_ratios(samples, name, f"none {backend}"))
    return row


def _check_same(reference: nn.Module, model: nn.Module, x: Tensor, what: str) -> None:
    """Refuse to time a variant whose output differs from its reference's."""
    with torch.no_grad():
        out_ref, out = reference(x), model(x)
        check_close(out[0] if isinstance(out, tuple) else out, out_ref[0] if isinstance(out_ref, tuple) else out_ref,
                    what=what)
