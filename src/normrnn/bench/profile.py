"""``normrnn bench profile``: where one CPU training step of ``bench cells``' ConvLSTM spends its time.

One forward+backward of the layer runs under ``torch.profiler``; each ATen op's own (self) CPU time goes to one
category: the convolutions forward and backward, the gate math (forward and backward), the norms, copies (``[x; h]``,
stacking the outputs, layout reorders), and the rest (autograd's bookkeeping, the loss).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..layers import ConvLSTM
from .layers import CELL_BENCH, LayerBenchConfig

__all__ = ["CATEGORIES", "ProfileRow", "categorize", "format_profile", "profile_step"]

# (category, the ATen op names whose self time it collects); the first match wins, "other" takes the rest
CATEGORIES: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("conv forward", ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution", "aten::conv2d",
                      "aten::_slow_conv2d_forward", "aten::thnn_conv2d")),
    ("conv backward (input and weight gradients)", ("aten::convolution_backward", "aten::mkldnn_convolution_backward",
                                                    "aten::_slow_conv2d_backward")),
    ("norm forward and backward", ("aten::native_group_norm", "aten::native_group_norm_backward",
                                   "aten::native_layer_norm", "aten::native_layer_norm_backward",
                                   "aten::native_batch_norm", "aten::native_batch_norm_backward",
                                   "aten::_fused_rms_norm",
                                   "aten::_batch_norm_impl_index", "aten::group_norm", "aten::layer_norm",
                                   "aten::batch_norm", "aten::rsqrt", "aten::var_mean", "aten::mean")),
    ("gate math, forward and backward (elementwise)", ("aten::sigmoid", "aten::tanh", "aten::mul", "aten::add",
                                                        "aten::sub", "aten::rsub", "aten::chunk", "aten::split",
                                                        "aten::unbind", "aten::where", "aten::addcmul",
                                                        "aten::sigmoid_backward", "aten::tanh_backward")),
    ("copies: [x; h], stacking, layout reorders", ("aten::cat", "aten::stack", "aten::copy_", "aten::clone",
                                                  "aten::contiguous", "aten::_to_copy", "aten::to",
                                                  "aten::empty_strided", "aten::permute", "aten::fill_",
                                                  "aten::zero_", "aten::zeros", "aten::new_zeros")),
)


@dataclass(frozen=True)
class ProfileRow:
    category: str
    ms: float  # self CPU time per training step
    share: float  # of the step's total self CPU time
    calls: int  # op calls per step


def categorize(name: str) -> str:
    """The category of an ATen op by its profiler name; ``"other"`` when none claims it."""
    for category, names in CATEGORIES:
        if name in names:
            return category
    return "other"


def profile_step(config: LayerBenchConfig = CELL_BENCH, *, norm: str = "none", steps: int = 2,
                 progress: Callable[[str], None] | None = None) -> list[ProfileRow]:
    """Profile ``steps`` forward+backward calls of a one-layer ConvLSTM at ``config``'s shape (after one untimed
    call) and return the self CPU time per category, per call, largest first."""
    if config.threads is not None:
        torch.set_num_threads(config.threads)
    torch.manual_seed(0)
    model: nn.Module = ConvLSTM(config.in_channels, config.hidden_channels, config.kernel_size, norm=norm,
                                backend="eager").train()
    g = torch.Generator().manual_seed(0)
    x = torch.randn(config.batch, config.steps, config.in_channels, *config.size, generator=g)
    dy = torch.randn(config.batch, config.steps, config.hidden_channels, *config.size, generator=g)

    def call() -> None:
        model(x)[0].backward(dy)
        model.zero_grad(set_to_none=True)

    call()  # oneDNN builds its primitives on the first call
    if progress is not None:
        progress(f"profiling {steps} fwd+bwd calls of ConvLSTM({config.in_channels}, {config.hidden_channels}, "
                 f"{config.kernel_size}, norm={norm!r}) on {tuple(x.shape)}")
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        for _ in range(steps):
            call()
    totals: dict[str, list[float]] = {}
    for event in prof.key_averages():
        entry = totals.setdefault(categorize(event.key), [0.0, 0])
        entry[0] += event.self_cpu_time_total / 1e3 / steps
        entry[1] += event.count / steps
    whole = sum(ms for ms, _ in totals.values()) or 1.0
    rows = [ProfileRow(c, ms, ms / whole, round(n)) for c, (ms, n) in totals.items()]
    return sorted(rows, key=lambda r: -r.ms)


def format_profile(rows: list[ProfileRow]) -> str:
    """The rows as a markdown table, with the total."""
    lines = ["| category | ms per step | share | op calls |", "|---|---|---|---|"]
    lines += [f"| {r.category} | {r.ms:.1f} | {100 * r.share:.0f}% | {r.calls} |" for r in rows]
    lines.append(f"| total (self CPU time) | {sum(r.ms for r in rows):.1f} | 100% | {sum(r.calls for r in rows)} |")
    return "\n".join(lines)
