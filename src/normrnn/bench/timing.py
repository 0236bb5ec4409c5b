"""The timing engine of ``normrnn bench``: interleaved rounds, paired ratios, and checks before timing.

Method: every variant is first checked against its reference for equal outputs (:func:`check_close`). Then
all variants run interleaved: every round times ``repeats`` calls of each (after ``warmup`` untimed calls),
with a variant and its reference back to back in a shuffled order, so the drifts of a noisy machine hit
them alike. Reported: the median time per call with its min–max over rounds, and the median (min–max) over
rounds of the ratio to the reference timed in the same round. CI never runs this for timing.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol

import torch
from torch import Tensor

__all__ = ["check_close", "check_timing", "paired_ratios", "time_interleaved", "timing_row"]


class TimingSettings(Protocol):
    """What every bench config has: its frozen dataclass fields for the timing."""

    @property
    def rounds(self) -> int: ...
    @property
    def repeats(self) -> int: ...
    @property
    def warmup(self) -> int: ...
    @property
    def threads(self) -> int | None: ...


def check_timing(config: TimingSettings) -> None:
    """The timing settings every bench config shares: positive rounds and repeats, warmup >= 0, threads >= 1,
    device cpu or cuda[:N]. One-line ``ValueError`` before anything is built or timed."""
    import re

    from .._checks import positive_int

    positive_int("rounds", config.rounds)
    positive_int("repeats", config.repeats)
    warmup = config.warmup
    if isinstance(warmup, bool) or not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"expected warmup to be an int >= 0, got {warmup!r}")
    if config.threads is not None:
        positive_int("threads", config.threads)
    device = getattr(config, "device", "cpu")
    if not isinstance(device, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", device):
        raise ValueError(f"expected device to be 'cpu', 'cuda' or 'cuda:N', got {device!r}")


def time_interleaved(fns: Mapping[str, Callable[[], object]], *, rounds: int, repeats: int, warmup: int,
                     groups: Sequence[Sequence[str]] | None = None, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call for each function, one sample per round, rounds interleaved across functions.

    ``groups`` lists names compared with each other (a reference and its variants); each round shuffles
    the groups and the order inside each, but a group's members always run back to back, so their
    per-round ratios compare adjacent timings. On our noisy 2-core machines, fixed orders and unrelated
    neighbours biased ratios by more than 15%.
    """
    order: list[list[str]] = [list(g) for g in groups] if groups is not None else [[name] for name in fns]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(order)
        for group in order:
            rng.shuffle(group)
            for name in group:
                fn = fns[name]
                start = time.perf_counter()
                for _ in range(repeats):
                    fn()
                samples[name].append((time.perf_counter() - start) / repeats)
    return samples


def paired_ratios(samples: dict[str, list[float]], name: str, reference: str) -> list[float]:
    """Per-round ratios ``name / reference``: each pair ran in the same round, so machine drift cancels."""
    return [a / b for a, b in zip(samples[name], samples[reference], strict=True)]


def timing_row(samples: dict[str, list[float]], name: str,
               reference: str | None) -> dict[str, float | str | None]:
    """The timing columns of one variant: median and min-max ms, and the paired ratio to ``reference``."""
    s = samples[name]
    ratios = None if reference is None else paired_ratios(samples, name, reference)
    return {"median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3, "max_ms": max(s) * 1e3,
            "reference": reference,
            "ratio": None if ratios is None else statistics.median(ratios),
            "ratio_min": None if ratios is None else min(ratios),
            "ratio_max": None if ratios is None else max(ratios)}


def check_close(got: Tensor, want: Tensor, *, what: str, atol: float = 1e-4, rtol: float = 1e-4) -> None:
    """Refuse to time a wrong result: ``RuntimeError`` unless ``got`` equals ``want`` within the tolerances."""
    got, want = got.float(), want.float()
    if not torch.allclose(got, want, atol=atol, rtol=rtol):
        raise RuntimeError(f"{what}: max |diff| {float((got - want).abs().max()):.3g}; not timing a wrong result")
