"""``normrnn bench``: side-by-side timings, reported as ratios measured in one run.

Method: every variant is first checked against its reference for equal outputs. Then all variants run
interleaved: every round times ``repeats`` calls of each (after ``warmup`` untimed calls), with a variant
and its reference back to back in a shuffled order, so the drifts of a noisy machine hit them alike.
Reported: the median time per call with its min–max over rounds, and the median (min–max) over rounds of
the ratio to the reference timed in the same round. CI never runs this for timing.
"""

from __future__ import annotations

import json
import random
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, replace

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from ._checks import one_of
from ._io import atomic_write_text
from .kernels import BACKENDS
from .layers import ConvLSTM
from .norms import BatchNorm, GroupNorm, LayerNorm

__all__ = [
    "ConvOnly",
    "LayerBenchConfig",
    "NaiveConvLSTM",
    "NormBenchConfig",
    "Variant",
    "bench_layers",
    "bench_norms",
    "check_agreement",
    "format_table",
    "paired_ratios",
    "saved_tensor_bytes",
    "time_interleaved",
    "write_json",
]


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


@dataclass(frozen=True)
class Variant:
    """One timed callable: ``norm`` maps x to y; ``reference`` names the variant its ratio is taken against."""

    name: str
    norm: Callable[[Tensor], Tensor]
    reference: str | None = None
    check: bool = True  # verify equal outputs with the reference before timing


def time_interleaved(fns: dict[str, Callable[[], object]], *, rounds: int, repeats: int, warmup: int,
                     groups: Sequence[Sequence[str]] | None = None, seed: int = 0) -> dict[str, list[float]]:
    """Seconds per call for each function, one sample per round, rounds interleaved across functions.

    ``groups`` lists names compared with each other (a reference and its variants); each round shuffles
    the groups and the order inside each, but a group's members always run back to back, so their
    per-round ratios compare adjacent timings. On our noisy 2-core machines, fixed orders and unrelated
    neighbours biased ratios by more than 15%.
    """
    groups = [list(g) for g in groups] if groups is not None else [[name] for name in fns]
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    samples: dict[str, list[float]] = {name: [] for name in fns}
    rng = random.Random(seed)
    for _ in range(rounds):
        rng.shuffle(groups)
        for group in groups:
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


def check_agreement(variants: Sequence[Variant], x: Tensor) -> None:
    """Raise ``RuntimeError`` unless every checked variant gives its reference's output on ``x``."""
    by_name = {v.name: v for v in variants}
    tol = 1e-4 if x.dtype in (torch.float32, torch.float64) else 2e-2
    with torch.no_grad():
        for v in variants:
            if v.check and v.reference is not None:
                got, want = v.norm(x).float(), by_name[v.reference].norm(x).float()
                if not torch.allclose(got, want, atol=tol, rtol=tol):
                    raise RuntimeError(f"{v.name} disagrees with {v.reference}: max |diff| "
                                       f"{float((got - want).abs().max()):.3g}; not timing a wrong result")


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
            s = samples[v.name]
            ratios = None if v.reference is None else paired_ratios(samples, v.name, v.reference)
            rows.append({
                "bench": "norms", "variant": v.name, "mode": mode, "shape": list(config.shape),
                "dtype": config.dtype, "median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3,
                "max_ms": max(s) * 1e3, "reference": v.reference,
                "ratio": None if ratios is None else statistics.median(ratios),
                "ratio_min": None if ratios is None else min(ratios),
                "ratio_max": None if ratios is None else max(ratios),
            })
    return rows


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
    device: str = "cpu"  # cpu | cuda (adds the allocator's peak memory per variant)
    rounds: int = 5  # interleaved rounds, order shuffled per round
    repeats: int = 1  # timed calls per variant per round
    warmup: int = 1  # untimed calls per variant first
    threads: int | None = None  # torch.set_num_threads; None keeps torch's default


class NaiveConvLSTM(nn.Module):
    """The ConvLSTM most PyTorch code writes: one biased conv on ``[x; h]`` per step, then eager gate math.

    Built from a bias-only :class:`normrnn.layers.ConvLSTM` (``weight = [W_x, W_h]``), so the two compute
    the same function and the benchmark can check that before timing them.
    """

    def __init__(self, model: ConvLSTM) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for (cell,) in model.layers:
            if cell.normalized or cell.bias is None:
                raise ValueError("NaiveConvLSTM mirrors a bias-only ConvLSTM (norm='none', bias=True)")
            k = cell.kernel_size
            conv = nn.Conv2d(cell.in_channels + cell.hidden_channels, 4 * cell.hidden_channels, k,
                             padding=tuple(v // 2 for v in k), dtype=cell.weight_x.dtype)
            with torch.no_grad():
                conv.weight.copy_(torch.cat([cell.weight_x, cell.weight_h], dim=1))
                conv.bias.copy_(cell.bias)
            self.convs.append(conv)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _, H, W = x.shape
        for conv in self.convs:
            C = conv.out_channels // 4
            h = c = x.new_zeros(B, C, H, W)
            outputs = []
            for t in range(T):
                gates = conv(torch.cat([x[:, t], h], dim=1))  # (B, 4C, H, W)
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outputs.append(h)
            x = torch.stack(outputs, dim=1)  # (B, T, C, H, W)
        return x


NAIVE = "naive reference (conv on [x; h], eager gates)"
HOISTED = "none, projection=hoisted"
FLOOR = "conv-only (the floor)"


class ConvOnly(nn.Module):
    """The floor of a ConvLSTM step: its convolutions and nothing else. They are the ones the model runs: one
    conv of ``[x; h]`` per step (joint projection), or a hoisted ``W_x*x`` plus a per-step ``W_h*h`` and their
    sum. ``h`` is the first C channels of the result, so the recurrence still chains the steps."""

    def __init__(self, model: ConvLSTM) -> None:
        super().__init__()
        self.model = model  # shares the bias-only model's weights

    def forward(self, x: Tensor) -> Tensor:
        for (cell,) in self.model.layers:
            B, T, C_in, *S = x.shape
            C = cell.hidden_channels
            h, outputs = x.new_zeros(B, C, *S), []
            if cell.joint_projection(x.device):  # the model's own choice: one conv of [x_t; h] per step
                weight = cell.joint_weight()
                for x_t in x.unbind(1):
                    h = cell.project_joint(x_t, h, weight)[:, :C]  # (B, C, *S)
                    outputs.append(h)
            else:
                gx = cell.project_input(x.reshape(B * T, C_in, *S)).reshape(B, T, 4 * C, *S)  # (B, T, 4C, *S)
                for gx_t in gx.unbind(1):
                    h = (gx_t + cell.project_hidden(h))[:, :C]  # (B, C, *S)
                    outputs.append(h)
            x = torch.stack(outputs, dim=1)  # (B, T, C, *S)
        return x


def saved_tensor_bytes(fn: Callable[[], object]) -> int:
    """Bytes of the distinct storages autograd saves for backward while ``fn`` runs: the activation memory
    a training step holds, measured the same way on every device."""
    storages: dict[int, int] = {}

    def pack(t: Tensor) -> Tensor:
        storage = t.untyped_storage()
        storages[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return sum(storages.values())


CELLS = LayerBenchConfig(num_layers=1, norms=("none", "layer", "group:8"), backends=("eager", "fused", "compiled"),
                         floor=True, hoisted=True)
# CI: a tiny shape and one round; no compiled variants, whose first call compiles for about half a minute
CELLS_QUICK = replace(CELLS, batch=2, in_channels=2, hidden_channels=8, size=(8, 8), steps=3, rounds=1, warmup=0,
                      backends=("eager", "fused"))


def bench_layers(config: LayerBenchConfig = LayerBenchConfig(),
                 progress: Callable[[str], None] | None = None) -> list[dict[str, object]]:
    """Time forward+backward of a ConvLSTM for each norm (and backend), next to bias-only and a naive loop.

    Every variant is in one interleaved group; each row's ``ratio`` is against bias-only (``norm="none"``),
    ``ratio_vs_naive`` against :class:`NaiveConvLSTM` and ``ratio_vs_floor`` against :class:`ConvOnly`, all
    medians of per-round paired ratios. ``activation_mb`` is what autograd saves in one forward.
    """
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    if "none" not in config.norms:
        raise ValueError(f"expected 'none' (the bias-only reference) among the norms, got {config.norms}")
    if config.kernel_size % 2 == 0:
        raise ValueError(f"the naive reference pads k // 2, so expected an odd kernel_size, got {config.kernel_size}")
    for backend in config.backends:
        one_of("backend", backend, BACKENDS)
    device = torch.device(config.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"expected a CUDA device for device={config.device!r}, but torch sees none")
    dtype = getattr(torch, config.dtype)
    g = torch.Generator().manual_seed(0)
    shape = (config.batch, config.steps, config.in_channels, *config.size)
    x = torch.randn(shape, generator=g).to(device, dtype)
    models: dict[str, nn.Module] = {}
    for norm in config.norms:
        for backend in dict.fromkeys(("eager", *config.backends)):  # eager first: the reference of the others
            if backend == "fused" and norm == "none":
                continue  # nothing to fuse without a norm
            torch.manual_seed(0)
            name = norm if backend == "eager" else f"{norm} {backend}"
            try:
                models[name] = ConvLSTM(config.in_channels, config.hidden_channels, config.kernel_size,
                                        num_layers=config.num_layers, norm=norm, backend=backend, device=device,
                                        dtype=dtype).train()
            except ValueError as e:
                if progress is not None:
                    progress(f"skipping {name}: {e}")
                continue
            if backend != "eager":
                _check_same(models[norm], models[name], x, f"{name} disagrees with {norm}")
    if config.hoisted:
        models[HOISTED] = ConvLSTM(config.in_channels, config.hidden_channels, config.kernel_size,
                                   num_layers=config.num_layers, backend="eager", projection="hoisted",
                                   device=device, dtype=dtype)
        models[HOISTED].load_state_dict(models["none"].state_dict())
        _check_same(models["none"], models[HOISTED], x, "hoisted projection disagrees with the default")
    models[NAIVE] = NaiveConvLSTM(models["none"]).to(device)
    _check_same(models["none"], models[NAIVE], x, "bias-only ConvLSTM disagrees with the naive reference")
    if config.floor:
        models[FLOOR] = ConvOnly(models["none"])
    dy = torch.randn(*shape[:2], config.hidden_channels, *config.size, generator=g).to(device, dtype)

    def call(name: str) -> Callable[[], None]:
        model = models[name]

        def run() -> None:
            out = model(x)
            (out[0] if isinstance(out, tuple) else out).backward(dy)
            model.zero_grad(set_to_none=True)
            if device.type == "cuda":
                torch.cuda.synchronize(device)  # time the kernels, not their launches
        return run

    if progress is not None:
        progress(f"timing {len(models)} variants, fwd+bwd of {config.num_layers} layers x T={config.steps}, "
                 f"{config.rounds} rounds x {config.repeats} calls")
    samples = time_interleaved({name: call(name) for name in models}, rounds=config.rounds, repeats=config.repeats,
                               warmup=config.warmup, groups=[list(models)])
    memory = {name: saved_tensor_bytes(lambda model=model: model(x)) / 2**20 for name, model in models.items()}
    peak = {name: _cuda_peak_mb(call(name), device) for name in models} if device.type == "cuda" else {}
    rows: list[dict[str, object]] = []
    for name in models:
        s = samples[name]
        ratios, naive = paired_ratios(samples, name, "none"), paired_ratios(samples, name, NAIVE)
        row = {
            "bench": "cells" if config.num_layers == 1 else "layers",
            "variant": name if name in (NAIVE, FLOOR) else f"normrnn ConvLSTM norm={name}",
            "norm": name, "mode": "fwd+bwd", "shape": list(shape), "dtype": config.dtype,
            "median_ms": statistics.median(s) * 1e3, "min_ms": min(s) * 1e3, "max_ms": max(s) * 1e3,
            "reference": "none", "ratio": statistics.median(ratios), "ratio_min": min(ratios),
            "ratio_max": max(ratios), "ratio_vs_naive": statistics.median(naive),
            "activation_mb": memory[name], "memory_ratio": memory[name] / memory["none"],
        }
        if config.floor:
            row["ratio_vs_floor"] = statistics.median(paired_ratios(samples, name, FLOOR))
        if peak:
            row["cuda_peak_mb"] = peak[name]
        backend = name.rpartition(" ")[2] if " " in name and name not in (NAIVE, FLOOR, HOISTED) else None
        if backend is not None and f"none {backend}" in models:  # bias-only with the same gate backend
            row["ratio_vs_bias_backend"] = statistics.median(paired_ratios(samples, name, f"none {backend}"))
        rows.append(row)
    return rows


def _cuda_peak_mb(run: Callable[[], None], device: torch.device) -> float:
    """The allocator's peak during one forward+backward, above what was allocated before it."""
    torch.cuda.synchronize(device)
    torch.cuda.reset_peak_memory_stats(device)
    base = torch.cuda.memory_allocated(device)
    run()
    return (torch.cuda.max_memory_allocated(device) - base) / 2**20


def _check_same(reference: nn.Module, model: nn.Module, x: Tensor, what: str) -> None:
    """Refuse to time a variant whose output differs from its reference's."""
    with torch.no_grad():
        out_ref, out = reference(x), model(x)
        got = out[0] if isinstance(out, tuple) else out
        want = out_ref[0] if isinstance(out_ref, tuple) else out_ref
        if not torch.allclose(got, want, atol=1e-4, rtol=1e-4):
            raise RuntimeError(f"{what}: max |diff| {float((got - want).abs().max()):.3g}; not timing a wrong result")


_EXTRA_COLUMNS = (("ratio_vs_bias_backend", "x bias*", "{:.3f}"), ("ratio_vs_naive", "x naive", "{:.3f}"),
                  ("ratio_vs_floor", "x floor", "{:.3f}"),
                  ("activation_mb", "act MB", "{:.1f}"), ("memory_ratio", "x mem", "{:.3f}"),
                  ("cuda_peak_mb", "peak MB", "{:.1f}"))


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A fixed-width table of benchmark rows, with the extra columns (naive, floor, memory) the rows have."""
    extra = [(k, title, fmt) for k, title, fmt in _EXTRA_COLUMNS if any(k in r for r in rows)]
    header = f"{'variant':<48} {'mode':<8} {'median ms':>10} {'min-max ms':>16} {'x ref':>6} {'ratio min-max':>14}"
    header += "".join(f" {title:>8}" for _, title, _ in extra)
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        ratio_span = "" if r["ratio"] is None else f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        span = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}"
        line = (f"{r['variant']:<48} {r['mode']:<8} {r['median_ms']:>10.3f} {span:>16} {ratio:>6} "
                f"{ratio_span:>14}")
        lines.append(line + "".join(f" {fmt.format(r[k]) if k in r else '':>8}" for k, _, fmt in extra))
    return "\n".join(lines)


def write_json(path: str, rows: Sequence[dict[str, object]], config: object) -> None:
    """Write the rows and the configuration that produced them, atomically."""
    payload = {"config": asdict(config), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "rows": list(rows)}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
