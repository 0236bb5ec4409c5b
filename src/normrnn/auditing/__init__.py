"""``normrnn.audit`` (this module: ``normrnn.auditing``): what every normalization layer of your own model reduces,
and the mistakes among them.

One forward pass with hooks on every norm module (``torch.nn`` LayerNorm, GroupNorm, BatchNorm1d/2d/3d,
SyncBatchNorm, InstanceNorm1d/2d/3d, RMSNorm, and every normrnn norm) records the shapes each one sees, how
often it is called, its mode and whether it keeps running statistics. Each input's layout is inferred from
the example input's ``layout`` and sizes, PyTorch's channels-first convention for conv features, and the
module's own channel count; where that leaves a choice, the layout is reported as ambiguous and no finding
rests on it. The model is audited on a deep copy, so its parameters and running statistics stay untouched.

Findings (``AuditReport.findings``, each with ``module``, ``code`` and ``message``):

- ``layer-norm-skips-channels``: a LayerNorm or RMSNorm whose reduced axes leave out the channel axis of a
  conv-feature tensor, such as ``nn.LayerNorm(W)`` on ``(B, C, H, W)``, which normalizes each row of pixels;
- ``shared-running-stats``: a norm with running statistics called more than once per forward, such as one
  ``BatchNorm2d`` at every step of a recurrent loop, whose averages then mix the steps;
- ``batch-of-one``: batch statistics over one sample, or one value per channel;
- ``group-norm-spans-time``: ``GroupNorm(1, C)`` whose statistics span T, where the layout suggests per-step
  statistics were meant (the "GroupNorm(1) is LayerNorm" confusion of
  `a report to TF-Addons <https://github.com/tensorflow/addons/issues/2143>`_);
- ``gates-share-statistics``: a norm over a recurrent cell's gate projection (3, 4 or 7 gate blocks of its hidden
  size) with one statistic for several gates, such as OpenSTL's ``nn.LayerNorm([4C, H, W])``;
- ``frame-size-lock``: a recurrent cell's norm with scale and shift per position (over H, W), which fix the frame
  size;
- ``no-offset``: a recurrent cell (a module with an integer ``num_hidden``, ``hidden_channels`` or ``hidden_size``)
  whose gates get neither a bias nor a norm shift;
- ``norm-never-called``: a norm built but not called in the forward pass (OpenSTL's ``conv_o``).

A forward pass that fails in a norm whose parameters fix the input's sizes names that norm
(``AuditReport.fixed_by``).

Example::

    >>> model = torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.LayerNorm(6))
    >>> report = audit(model, torch.randn(2, 3, 8, 8), layout="BCHW")
    >>> [(f.module, f.code) for f in report.findings]
    [('1', 'layer-norm-skips-channels')]
"""

from __future__ import annotations

import copy
import math
import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from ..norms import Layout, Norm, NormSpec
from .records import Finding, NormUse
from .recurrent import cells_of, frame_size_lock, gates_pooled, missing_offset, never_called

__all__ = ["AuditReport", "Finding", "NormUse", "audit"]

_TORCH_NORMS = (nn.LayerNorm, nn.GroupNorm, nn.modules.batchnorm._BatchNorm, nn.modules.instancenorm._InstanceNorm,
                nn.RMSNorm)


@dataclass
class AuditReport:
    """The audit's answer: one :class:`NormUse` per norm module and the :class:`Finding` list."""

    uses: list[NormUse]
    findings: list[Finding]
    error: str | None = None  # the forward pass's error, when it failed inside a norm
    fixed_by: str | None = None  # the norm whose parameters fix the sizes the forward pass did not have

    def __str__(self) -> str:
        head = ("module", "class", "input layout", "reduces", "statistics", "parameters", "calls", "normrnn spec")
        rows = [head] + [(u.path, u.cls, u.layout + (" (ambiguous)" if u.ambiguous else ""), u.reduce or "?",
                          str(u.stats_shape) if u.reduce else "?", str(u.param_shape) if u.param_shape else "none",
                          str(u.calls), u.spec or "?") for u in self.uses]
        widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
        lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip() for r in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        if not self.uses:
            lines = ["no normalization modules were called in the forward pass"]
        for u in self.uses:
            if u.ambiguous:
                lines.append(f"note: {u.path}: layout ambiguous: {u.ambiguous}")
        if self.error:
            lines.append(f"the forward pass failed: {self.error}")
        lines.append("")
        if self.findings:
            lines.append(f"{len(self.findings)} finding{'s' * (len(self.findings) != 1)}:")
            lines += [textwrap.fill(f"- [{f.code}] {f.module}: {f.message}", width=110, subsequent_indent="  ")
                      for f in self.findings]
        else:
            lines.append("no findings")
        return "\n".join(lines)


def _is_norm(module: nn.Module) -> bool:
    return isinstance(module, _TORCH_NORMS) or (isinstance(module, Norm) and NormSpec.parse(type(module)).name
                                                 != "none")


def _first_tensor(args: tuple[Any, ...]) -> Tensor | None:
    return next((a for a in args if isinstance(a, Tensor)), None)


def audit(model: nn.Module, *example_inputs: Any, layout: str = "BTCHW", **kwargs: Any) -> AuditReport:
    """Run ``model(*example_inputs, **kwargs)`` once, on a copy, and check every normalization layer.

    Args:
        model: any ``nn.Module``; its mode (train or eval) is the one audited.
        example_inputs: the forward's positional arguments; the first tensor is described by ``layout``.
        layout: the letters of the first example input, e.g. ``"BTCHW"`` or ``"BTF"``. Default: ``"BTCHW"``.
        kwargs: the forward's keyword arguments.

    Returns:
        An :class:`AuditReport`; ``str(report)`` is the table and the findings.
    """
    parsed = Layout.parse(layout)
    first = _first_tensor(example_inputs)
    if first is None or first.dim() != parsed.ndim:
        got = "no tensor" if first is None else f"shape {tuple(first.shape)}"
        raise ValueError(f"expected a first example input of rank {parsed.ndim} for layout {parsed.spelled!r}, "
                         f"got {got}")
    sizes = dict(zip(parsed.letters, first.shape, strict=True))
    model = copy.deepcopy(model)  # running statistics and parameters of the user's model stay untouched
    uses = {module: NormUse(path or "(root)", type(module).__name__, training=module.training,
                            running_stats=bool(getattr(module, "track_running_stats", False)),
                            per_step=bool(getattr(module, "per_step_statistics", False)))
            for path, module in model.named_modules() if _is_norm(module)}
    called: list[nn.Module] = []  # every module called, in order
    handles = [module.register_forward_pre_hook(lambda mod, args: _record(mod, args, uses, called))
               for module in model.modules()]
    report = AuditReport([], [])
    try:
        with torch.no_grad():
            model(*example_inputs, **kwargs)
    except (RuntimeError, ValueError) as e:
        last = next((uses[m] for m in reversed(called) if m in uses), None)
        if last is None:
            raise
        fixed = next((u for u in uses.values() if u.fixed_sizes), None)
        report.error = f"in {last.path} ({last.cls}): {str(e).splitlines()[0]}"
        if fixed is not None:
            report.fixed_by = fixed.path
            report.error = f"{fixed.path} ({fixed.cls}) {fixed.fixed_sizes}"
    finally:
        for h in handles:
            h.remove()
    report.uses = [u for u in uses.values() if u.calls]
    cells = cells_of(model)
    for module, use in uses.items():
        if use.calls:
            _describe(module, use, parsed, sizes)
            report.findings += _check(module, use)
            report.findings += [f for f in (gates_pooled(module, use, cells), frame_size_lock(use, cells)) if f]
    if report.error is None:  # what was called is known only after a whole forward pass
        report.findings += missing_offset(cells, set(called)) + never_called(list(uses.values()))
    return report


def _record(module: nn.Module, args: tuple[Any, ...], uses: dict[nn.Module, NormUse], called: list[nn.Module]) -> None:
    """The forward pre-hook: what was called, each norm's input shape, and sizes its parameters do not fit."""
    called.append(module)
    use, x = uses.get(module), _first_tensor(args)
    if use is None or x is None:
        return
    use.shapes.append(tuple(x.shape))
    fixed = tuple(getattr(module, "normalized_shape", ()) or ()) if isinstance(module, nn.LayerNorm) else ()
    if isinstance(module, Norm) and getattr(module, "param_axes", "C") != "C":
        letters = str(getattr(module, "param_axes"))  # noqa: B009  an AxisNorm with per-position parameters
        fixed, got = tuple(getattr(module, "param_shape")), tuple(module.layout.sizes(x.shape, letters))  # noqa: B009
        if fixed != got and not use.fixed_sizes:
            use.fixed_sizes = (f"fixes the sizes of {module.layout.spell(letters)} to {list(fixed)} (param_axes), "
                               f"got {list(got)}: the model runs only at that size")
        return
    if fixed and len(fixed) > 1 and tuple(x.shape[-len(fixed):]) != fixed and not use.fixed_sizes:
        use.fixed_sizes = (f"fixes the last {len(fixed)} sizes of its input to {list(fixed)} (its parameters are one "
                           f"per position), got {list(x.shape[-len(fixed):])}: the model runs only at that size")


# -- inferring the layout of a norm's input -----------------------------------------------------------------------

def _trailing_letter(size: int, j: int, n: int, parsed: Layout, sizes: dict[str, int]) -> tuple[str, str]:
    """The letter of trailing axis ``j`` of ``n`` (the axes after C), and why it is ambiguous ("" if it is not).

    Trailing axes of channels-first features keep the layout's spatial order, so position decides among the
    spatial letters; a size equal to T (and not to that spatial axis) is T.
    """
    spatial = parsed.spatial[-(n - j)] if 0 < n - j <= len(parsed.spatial) else None
    is_t = "T" in sizes and size == sizes["T"]
    if spatial is not None and size == sizes[spatial]:
        return (spatial, "") if not is_t else ("?", f"an axis of size {size} could be T or {spatial}")
    if is_t:
        return "T", ""
    if spatial is not None:
        return spatial, ""  # a resampled spatial axis, told by its position
    return "?", f"no axis of the input has size {size}"


def _infer(shape: tuple[int, ...], channels: int | None, channel_dim: int | None, parsed: Layout,
           sizes: dict[str, int]) -> tuple[str, str]:
    """Letters for a norm input of ``shape``, and why they are ambiguous (empty when they are not)."""
    rank = len(shape)
    per_step = "".join(c for c in parsed.letters if c != "T")
    if tuple(shape) == tuple(sizes[c] for c in parsed.letters):
        return parsed.letters, ""  # the model's input itself
    if tuple(shape) == tuple(sizes[c] for c in per_step):
        return per_step, ""  # one step of it
    if channel_dim is None:  # LayerNorm/RMSNorm: torch's convention puts channels at dim 1 of conv features
        if rank >= 4 or (rank == 3 and parsed.letters[-1] != "C"):
            channel_dim = 1
        elif rank == 2:
            channel_dim = 1
        else:
            return "?" * rank, (f"a rank-3 input {shape} may be (B, C, L) or (B, T, C); pass the layout of a "
                                "tensor of this rank to tell")
    letters, why = [], []
    for d, size in enumerate(shape):
        if d == 0:
            letters.append("B")
        elif d == channel_dim:
            letters.append("C")
            if channels is not None and size != channels:
                why.append(f"dim {d} has {size} channels, the module {channels}")
        elif d < channel_dim:
            letters.append("T" if size == sizes.get("T") else "?")
            if letters[-1] == "?":
                why.append(f"dim {d} of size {size} comes before the channels")
        else:
            letter, reason = _trailing_letter(size, d - channel_dim - 1, rank - channel_dim - 1, parsed, sizes)
            letters.append(letter)
            if reason:
                why.append(reason)
    text = "".join(letters)
    if len(set(text.replace("?", ""))) != len(text.replace("?", "")):
        why.append(f"letters {text} repeat")
    return text, "; ".join(why)


def _describe(module: nn.Module, use: NormUse, parsed: Layout, sizes: dict[str, int]) -> None:
    """Fill in the layout, reduced axes, statistics, parameters and normrnn spec of ``use``."""
    shape = use.shapes[0]
    if isinstance(module, Norm):
        use.layout = module.layout.letters
        d = module.describe(shape)
        use.reduce, use.stats_shape, use.param_shape = d.reduce, tuple(d.stats_shape), tuple(d.param_shape)
        use.param_letters = module.layout.spell(getattr(module, "param_axes", "C")) if use.param_shape else ""
        use.spec = _own_spec(module, use.param_letters)
        return
    rank = len(shape)
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        letters, use.ambiguous = _infer(shape, None, None, parsed, sizes)
        k = len(module.normalized_shape)
        reduced = letters[rank - k :]
        use.param_shape = tuple(module.normalized_shape) if module.elementwise_affine else ()
        use.param_letters = reduced if use.param_shape else ""
        name = "rms" if isinstance(module, nn.RMSNorm) else "layer"
        per_position = f", param_axes={reduced}" if len(reduced) > 1 and use.param_shape else ""
        use.spec = f"{name} (reduce={reduced}{per_position})" if "?" not in reduced else ""
    else:
        channels = getattr(module, "num_features", getattr(module, "num_channels", None))
        letters, use.ambiguous = _infer(shape, channels, 1, parsed, sizes)
        use.param_shape = ()
        if channels is not None and getattr(module, "weight", None) is not None:
            use.param_shape, use.param_letters = (int(channels),), "C"
        if isinstance(module, nn.GroupNorm):
            reduced, use.spec = letters[1:], f"group:{module.num_groups} (reduce={letters[1:]})"
        elif isinstance(module, nn.modules.instancenorm._InstanceNorm):
            reduced, use.spec = letters[2:], "instance"
        else:
            reduced, use.spec = letters[:1] + letters[2:], "batch"
    use.layout, use.reduce = letters, reduced
    kept = [i for i, c in enumerate(letters) if c not in reduced]
    use.stats_shape = tuple(shape[i] for i in kept)
    if isinstance(module, nn.GroupNorm) and module.num_groups > 1:
        use.stats_shape += (module.num_groups,)


def _own_spec(module: Norm, param_letters: str) -> str:
    """The spec that rebuilds a normrnn norm: ``group:4`` with its groups, and its parameters' axes beyond C."""
    name = NormSpec.parse(type(module)).name
    groups = getattr(getattr(module, "axes", None), "groups", None)
    if name == "group" and groups:
        name = f"group:{groups}"
    return name + (f" (param_axes={param_letters})" if len(param_letters) > 1 else "")


# -- the checks ---------------------------------------------------------------------------------------------------

def _check(module: nn.Module, use: NormUse) -> list[Finding]:
    out: list[Finding] = []
    layout, reduced, shape = use.layout, use.reduce, use.shapes[0]
    conv_features = len(shape) >= 3 and "C" in layout and layout.index("C") < len(layout) - 1
    if (isinstance(module, (nn.LayerNorm, nn.RMSNorm)) and not use.ambiguous and conv_features
            and "C" not in reduced):
        out.append(Finding(use.path, "layer-norm-skips-channels",
                           f"{use.cls}({tuple(module.normalized_shape)}) on a {layout} tensor of shape {shape} reduces "
                           f"only {', '.join(reduced)}: every (B, C{', ' if len(layout) > len(reduced) + 2 else ''}"
                           f"{', '.join(c for c in layout if c not in 'BC' + reduced)}) is normalized on its own and "
                           "channels are never mixed. Layer norm over (C, H, W) is nn.GroupNorm(1, C), or normrnn "
                           f"create_norm('layer', C, layout={layout!r})."))
    if use.running_stats and use.calls > 1 and not use.per_step:
        out.append(Finding(use.path, "shared-running-stats",
                           f"{use.cls} keeps running statistics and was called {use.calls} times in one forward: its "
                           "running mean and variance average over all of those calls (e.g. every time step), and "
                           "inference then normalizes every step with the same mixture. Use normrnn's "
                           "'recurrent_batch' (statistics per step) or one module per step."))
    batch_stats = use.reduce and "B" in use.reduce and (use.training or not use.running_stats)
    if batch_stats and not use.ambiguous:
        per_channel = math.prod(s for s, c in zip(shape, layout, strict=True) if c in use.reduce)
        samples = math.prod(s for s, c in zip(shape, layout, strict=True) if c in "BT" and c in use.reduce)
        if per_channel <= 1 or samples == 1:
            what = "one value per channel" if per_channel <= 1 else "a batch of one sample"
            out.append(Finding(use.path, "batch-of-one",
                               f"{use.cls} computes batch statistics over {what} (input {shape}): they "
                               + ("are undefined; training raises." if per_channel <= 1 else
                                  "are that sample's own, an instance norm in disguise, and the running averages "
                                  "learn single samples.") + " Use a larger batch, eval mode, or a per-sample norm "
                               "(group, layer)."))
    if isinstance(module, nn.GroupNorm) and module.num_groups == 1 and "T" in reduced and not use.ambiguous:
        out.append(Finding(use.path, "group-norm-spans-time",
                           f"GroupNorm(1, {module.num_channels}) on a {layout} tensor reduces {', '.join(reduced)}: "
                           "one statistic per sample spanning every time step. GroupNorm(1) equals layer norm only "
                           "over the same axes; per-step layer norm reduces the features of each step alone "
                           f"(in Python: normrnn.create_norm('layer', C, layout={layout!r})); see "
                           "https://github.com/tensorflow/addons/issues/2143"))
    return out


def parse_shapes(texts: Sequence[str]) -> list[tuple[int, ...]]:
    """``["4,10,1,64,64"]`` -> ``[(4, 10, 1, 64, 64)]`` for the CLI's ``--input-shape``."""
    from ..norms.explaining import parse_shape

    return [parse_shape(t) for t in texts]
