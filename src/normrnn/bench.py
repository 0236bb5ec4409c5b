"""``normrnn bench``: side-by-side timings, reported as ratios measured in one run.

Method: every variant is checked against its reference for equal outputs first; then variants run
interleaved (round-robin over ``rounds``, each timing ``repeats`` calls after ``warmup`` calls), so slow
drifts of a noisy machine hit all variants alike. Reported: the median per call, min–max over rounds, and
the ratio of medians to the variant's reference. CI never runs this for timing.
"""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._io import atomic_write_text
from .norms import BatchNorm, GroupNorm, LayerNorm

__all__ = ["NormBenchConfig", "Variant", "bench_norms", "format_table", "time_interleaved", "write_json"]


@dataclass(frozen=True)
class NormBenchConfig:
    """What ``normrnn bench norms`` measures."""

    shape: tuple[int, ...] = (16, 256, 32, 32)  # ConvLSTM gate tensor: B=16, 4 gates x 64 channels, 32x32
    dtype: str = "float32"  # float32 | float64 | bfloat16 | float16
    rounds: int = 5  # interleaved rounds; min-max is over these
    repeats: int = 10  # timed calls per variant per round
    warmup: int = 2  # untimed calls per variant before the first round
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")  # forward only, or forward and backward


@dataclass(frozen=True)
class Variant:
    """One timed callable: ``norm`` maps x to y; ``reference`` names the variant its ratio is taken against."""

    name: str
    norm: Callable[[Tensor], Tensor]
    reference: str | None = None
    check: bool = True  # verify equal outputs with the reference before timing


def time_interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, repeats: int,
                     warmup: int) -> dict[str, list[float]]:
    """Seconds per call for each function, one sample per round, rounds interleaved across functions."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            start = time.perf_counter()
            for _ in range(repeats):
                fn()
            samples[name].append((time.perf_counter() - start) / repeats)
    return samples


def _norm_variants(C: int, layout: str, dtype: torch.dtype) -> list[Variant]:
    """normrnn norms next to the native torch calls with the same semantics, plus context rows."""
    w = torch.ones(C, dtype=dtype, requires_grad=True)
    b = torch.zeros(C, dtype=dtype, requires_grad=True)

    def naive_layer(x: Tensor) -> Tensor:  # the composite most hand-written cells use
        var, mean = torch.var_mean(x, dim=(1, 2, 3), correction=0, keepdim=True)
        return (x - mean) * torch.rsqrt(var + 1e-5) * w.view(1, C, 1, 1) + b.view(1, C, 1, 1)

    variants: list[Variant] = []
    ln = LayerNorm(C, layout=layout, dtype=dtype)
    variants += [
        Variant("native group_norm G=1 (layer over CHW)", lambda x: F.group_norm(x, 1, w, b)),
        Variant("normrnn layer", ln, reference="native group_norm G=1 (layer over CHW)"),
        Variant("nn.LayerNorm((C,H,W)) elementwise affine", None, check=False,
                reference="native group_norm G=1 (layer over CHW)"),
        Variant("naive composite layer (var_mean)", naive_layer, reference="native group_norm G=1 (layer over CHW)"),
    ]
    for g in [g for g in (4, 32) if C % g == 0]:
        gn = GroupNorm(C, num_groups=g, layout=layout, dtype=dtype)
        native = f"native group_norm G={g}"
        variants += [Variant(native, lambda x, g=g: F.group_norm(x, g, w, b)),
                     Variant(f"normrnn group:{g}", gn, reference=native)]
    bn_native = nn.BatchNorm2d(C, dtype=dtype)
    variants += [Variant("native BatchNorm2d (train)", bn_native),
                 Variant("normrnn batch (train)", BatchNorm(C, layout=layout, dtype=dtype),
                         reference="native BatchNorm2d (train)")]
    return variants


def bench_norms(config: NormBenchConfig = NormBenchConfig(),
                progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Time normrnn norms against torch native on ``config.shape`` (layout BCHW); one row per variant and mode."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    dtype = getattr(torch, config.dtype)
    if len(config.shape) != 4:
        raise ValueError(f"expected a (B, C, H, W) shape, got {config.shape}")
    C = config.shape[1]
    g = torch.Generator().manual_seed(0)
    x = torch.randn(config.shape, generator=g).to(dtype)
    dy = torch.randn(config.shape, generator=g).to(dtype)
    variants = _norm_variants(C, "BCHW", dtype)
    elementwise = nn.LayerNorm(tuple(config.shape[1:]), dtype=dtype)
    variants = [Variant(v.name, elementwise, v.reference, False) if v.norm is None else v for v in variants]
    by_name = {v.name: v for v in variants}
    with torch.no_grad():
        for v in variants:
            if v.check and v.reference is not None:
                got, want = v.norm(x), by_name[v.reference].norm(x)
                tol = 1e-4 if dtype in (torch.float32, torch.float64) else 2e-2
                if not torch.allclose(got.float(), want.float(), atol=tol, rtol=tol):
                    raise RuntimeError(f"{v.name} disagrees with {v.reference}: max |diff| "
                                       f"{float((got.float() - want.float()).abs().max()):.3g}")
    xg = x.clone().requires_grad_(True)
    rows: list[dict[str, object]] = []
    for mode in config.modes:
        if mode not in ("fwd", "fwd+bwd"):
            raise ValueError(f"expected modes from ('fwd', 'fwd+bwd'), got {mode!r}")

        def call(v: Variant, mode: str = mode) -> Callable[[], object]:
            if mode == "fwd":
                def run() -> None:
                    with torch.no_grad():
                        v.norm(x)
            else:
                def run() -> None:
                    v.norm(xg).backward(dy)
            return run

        if progress is not None:
            progress(f"timing {len(variants)} variants, {mode}, {config.rounds} rounds x {config.repeats} calls")
        samples = time_interleaved({v.name: call(v) for v in variants}, rounds=config.rounds,
                                   repeats=config.repeats, warmup=config.warmup)
        medians = {name: statistics.median(s) for name, s in samples.items()}
        for v in variants:
            s = samples[v.name]
            rows.append({
                "bench": "norms", "variant": v.name, "mode": mode, "shape": list(config.shape),
                "dtype": config.dtype, "median_ms": medians[v.name] * 1e3, "min_ms": min(s) * 1e3,
                "max_ms": max(s) * 1e3, "reference": v.reference,
                "ratio": None if v.reference is None else medians[v.name] / medians[v.reference],
            })
    return rows


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A fixed-width table of benchmark rows."""
    header = f"{'variant':<44} {'mode':<8} {'median ms':>10} {'min-max ms':>16} {'x ref':>7}"
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        span = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}"
        lines.append(f"{r['variant']:<44} {r['mode']:<8} {r['median_ms']:>10.3f} {span:>16} {ratio:>7}")
    return "\n".join(lines)


def write_json(path: str, rows: Sequence[dict[str, object]], config: object) -> None:
    """Write the rows and the configuration that produced them, atomically."""
    payload = {"config": asdict(config), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "rows": list(rows)}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
