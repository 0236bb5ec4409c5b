"""``normrnn bench norms``: normrnn norms next to the native torch calls with the same semantics."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ..norms import BatchNorm, GroupNorm, LayerNorm
from .timing import check_close, check_timing, time_interleaved, timing_row

__all__ = ["NormBenchConfig", "Variant", "bench_norms", "check_agreement"]


@dataclass(frozen=True)
class NormBenchConfig:
    """What ``normrnn bench norms`` measures."""

    shape: tuple[int, ...] = (16, 256, 32, 32)  # ConvLSTM gate tensor: B=16, 4 gates x 64 channels, 32x32
    dtype: str = "float32"  # float32 | float64 | bfloat16 | float16
    rounds: int = 15  # interleaved rounds, order shuffled per round; min-max is over these
    repeats: int = 10  # timed calls per variant per round
    warmup: int = 2  # untimed calls per variant before the first round
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default
    modes: tuple[str, ...] = ("fwd", "fwd+bwd")  # forward only, or forward and backward

    def __post_init__(self) -> None:
        check_timing(self)


@dataclass(frozen=True)
class Variant:
    """One timed callable: ``norm`` maps x to y; ``reference`` names the variant its ratio is taken against."""

    name: str
    norm: Callable[[Tensor], Tensor]
    reference: str | None = None
    check: bool = True  # verify equal outputs with the reference before timing


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
        Variant("nn.LayerNorm((C,H,W)) elementwise affine", None, check=False,  # type: ignore[arg-type]  # set
                # by bench_norms once x's shape is known
                reference="native group_norm G=1 (layer over CHW)"),
        Variant("naive composite layer (var_mean)", naive_layer, reference="native group_norm G=1 (layer over CHW)"),
    ]
    for g in [g for g in (4, 32) if C % g == 0]:
        gn = GroupNorm(C, num_groups=g, layout=layout, dtype=dtype)
        native = f"native group_norm G={g}"
        variants += [Variant(native, functools.partial(_group_norm, groups=g, weight=w, bias=b)),
                     Variant(f"normrnn group:{g}", gn, reference=native)]
    bn_native = nn.BatchNorm2d(C, dtype=dtype)
    variants += [Variant("native BatchNorm2d (train)", bn_native),
                 Variant("normrnn batch (train)", BatchNorm(C, layout=layout, dtype=dtype),
                         reference="native BatchNorm2d (train)")]
    return variants


def _group_norm(x: Tensor, *, groups: int, weight: Tensor, bias: Tensor) -> Tensor:
    return F.group_norm(x, groups, weight, bias)


def check_agreement(variants: Sequence[Variant], x: Tensor) -> None:
    """Raise ``RuntimeError`` unless every checked variant gives its reference's output on ``x``."""
    by_name = {v.name: v for v in variants}
    tol = 1e-4 if x.dtype in (torch.float32, torch.float64) else 2e-2
    with torch.no_grad():
        for v in variants:
            if v.check and v.reference is not None:
                check_close(v.norm(x), by_name[v.reference].norm(x), what=f"{v.name} disagrees with {v.reference}",
                            atol=tol, rtol=tol)


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
    check_agreement(variants, x)
    xg = x.clone().requires_grad_(True)
    groups = [[v.name] + [u.name for u in variants if u.reference == v.name] for v in variants if v.reference is None]
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
                                   repeats=config.repeats, warmup=config.warmup, groups=groups)
        for v in variants:
            rows.append({"bench": "norms", "variant": v.name, "mode": mode, "shape": list(config.shape),
                         "dtype": config.dtype, **timing_row(samples, v.name, v.reference)})
    return rows
