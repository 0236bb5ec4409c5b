"""``normrnn.explain``: what a norm spec reduces, its statistics and parameters, and what it equals.

Equivalences are not asserted from a table: each candidate norm is run next to the explained one on the
same random float64 input (with offsets along every axis, so different reductions cannot agree by
accident), with the affine off, and reported as ``==`` or ``!=`` with the largest difference.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, cast

import torch
from torch import nn

from .base import Norm
from .create import NormLike, NormSpec, create_norm
from .layout import Layout
from .modules import GroupNorm

__all__ = ["Equivalence", "Explanation", "explain", "parse_shape"]

_TOLERANCE = 1e-9  # float64: equal norms agree to rounding, different ones differ by O(1)


@dataclass(frozen=True)
class Equivalence:
    """One comparison: ``label`` holds (``==``) or not, with the measured max |difference|."""

    label: str  # e.g. "layer over (C, H, W)"
    holds: bool | None  # None when the candidate cannot run on this shape
    max_abs_diff: float
    known_as: str = ""  # what frameworks call this candidate


@dataclass(frozen=True)
class Explanation:
    """The answer of :func:`explain`; ``str()`` renders it for people."""

    spec: str
    layout: Layout
    shape: tuple[int, ...]
    reduce: str  # canonical reduced letters ("" for none)
    stats_letters: str  # letters indexing the statistics ("G" for channel groups)
    stats_shape: tuple[int, ...]
    count: int  # elements per statistic
    param_letters: str
    param_shape: tuple[int, ...]
    kernel: str
    equivalences: tuple[Equivalence, ...]

    def __str__(self) -> str:
        L = self.layout
        lines = [f"{self.spec} on layout {L.spelled}, input shape {tuple(self.shape)}"]
        if not self.reduce:
            lines.append("  no normalization: the input passes through unchanged")
            return "\n".join(lines)
        reduced = ", ".join(L.spell(c) for c in self.reduce)
        grouped = f" (channels in {self.stats_shape[self.stats_letters.index('G')]} groups)" \
            if "G" in self.stats_letters else ""
        lines += [
            f"  reduces      {reduced}{grouped}: {self.count} elements per statistic",
            f"  statistics   {L.describe(self.stats_letters, self.stats_shape)}",
            f"  parameters   {L.describe(self.param_letters, self.param_shape) if self.param_letters else 'none'}",
            f"  kernel       {self.kernel}",
        ]
        if self.equivalences:
            lines.append("  equivalences (run side by side on one random float64 input, affine off):")
            width = max(len(e.label) for e in self.equivalences)
            for e in self.equivalences:
                sign = {True: "==", False: "!=", None: "--"}[e.holds]
                diff = "n/a on this shape" if e.holds is None else f"max |diff| {e.max_abs_diff:.3g}"
                known = f"   [{e.known_as}]" if e.known_as else ""
                lines.append(f"    {sign} {e.label:<{width}}  {diff}{known}")
        return "\n".join(lines)


MAX_ELEMENTS = 2**28  # a shape given on the command line: at most 1 GiB of float32, so no allocator traceback


def parse_shape(text: str | Sequence[int], *, max_elements: int = MAX_ELEMENTS) -> tuple[int, ...]:
    """``"4,2,3"`` -> ``(4, 2, 3)``; raise ``ValueError`` on anything but positive integers, or on a shape of
    more than ``max_elements`` elements."""
    parts = text.replace("x", ",").split(",") if isinstance(text, str) else list(text)
    try:
        shape = tuple(int(p) for p in parts)
    except (TypeError, ValueError):
        raise ValueError(f"expected a shape such as '4,2,3', got {text!r}") from None
    if not shape or any(s < 1 for s in shape):
        raise ValueError(f"expected a shape of positive sizes such as '4,2,3', got {text!r}")
    if math.prod(shape) > max_elements:
        raise ValueError(f"expected a shape of at most {max_elements:,} elements ({max_elements * 4 / 2**30:g} GiB of "
                         f"float32), got {text!r} ({math.prod(shape):,} elements)")
    return shape


def _as_normrnn(module: nn.Module, layout: Layout) -> Norm:
    """normrnn norms pass through; torch.nn norms are converted so their axes can be read."""
    if isinstance(module, Norm):
        return module
    from .convert import from_torch

    try:
        return cast(Norm, from_torch(module, layout))  # from_torch builds normrnn norms
    except ValueError as e:
        raise ValueError(f"explain needs a normrnn norm or a convertible torch.nn norm, got "
                         f"{type(module).__name__}: {e}") from None


def _probe_input(shape: tuple[int, ...], seed: int = 0) -> torch.Tensor:
    """Random float64 input with a different offset along every axis, so distinct reductions differ."""
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(shape, generator=g, dtype=torch.float64)
    for d, n in enumerate(shape):
        view = [1] * len(shape)
        view[d] = n
        x = x + 2.0 * torch.randn(n, generator=g, dtype=torch.float64).reshape(view)
    return x


def _candidates(layout: Layout, num_channels: int, subject: nn.Module) -> list[tuple[str, str, str | None, str]]:
    """(label, spec, reduce, known_as) for the norms worth comparing against on this layout."""
    letters = layout.letters
    per_step = "".join(c for c in letters if c not in "BT")
    non_batch = "".join(c for c in letters if c != "B")
    trailing_c = letters[-1] == "C"
    out: list[tuple[str, str, str | None, str]] = [(f"layer over {layout.describe(per_step)}", "layer", per_step,
            "Keras LayerNormalization(axis=-1)" if per_step == "C" and trailing_c else "")]
    if non_batch != per_step:
        out.append((f"layer over {layout.describe(non_batch)}", "layer", non_batch,
                    "TF1 layer_norm default, begin_norm_axis=1"))
    if per_step != "C" and trailing_c:
        out.append((f"layer over {layout.describe('C')}", "layer", "C",
                    "Keras LayerNormalization(axis=-1), TF1 layer_norm(begin_norm_axis=-1)"))
    out.append((f"group:1 over {layout.describe(per_step)}", "group:1", per_step, ""))
    if non_batch != per_step:
        out.append((f"group:1 over {layout.describe(non_batch)}", "group:1", non_batch,
                    "Keras/TF-Addons GroupNormalization(groups=1), Flax GroupNorm(num_groups=1)"))
    if isinstance(subject, GroupNorm) and subject.axes.groups not in (1, num_channels):
        g = subject.axes.groups
        out.append((f"group:{g} over {layout.describe(per_step)}", f"group:{g}", per_step, ""))
        if non_batch != per_step:
            out.append((f"group:{g} over {layout.describe(non_batch)}", f"group:{g}", non_batch,
                        "Keras GroupNormalization / Flax GroupNorm default axes"))
    if layout.spatial:
        out.append((f"instance over {layout.describe(layout.spatial)}", "instance", None, ""))
        out.append((f"group:{num_channels} over {layout.describe(per_step)}", f"group:{num_channels}", per_step,
                    "GroupNorm with one channel per group"))
    out.append((f"batch over {layout.describe(''.join(c for c in letters if c != 'C'))}", "batch", None,
                "nn.BatchNorm on x.reshape(-1, C, ...) in training mode" if letters[1] == "C" or trailing_c else ""))
    out.append((f"rms over {layout.describe(per_step)}", "rms", per_step, ""))
    return out


@torch.no_grad()
def _equivalences(spec: NormLike, module: nn.Module, layout: Layout, shape: tuple[int, ...], reduce: str | None,
                  kwargs: dict[str, Any]) -> list[Equivalence]:
    """Run each candidate next to the explained norm on one probe input, affine off."""
    C = shape[layout.dim("C")]
    equivalences: list[Equivalence] = []
    x = _probe_input(shape)
    reference = _as_normrnn(create_norm(spec, C, layout=layout, reduce=reduce, affine=False, **kwargs),
                            layout).double()(x)
    tolerance = _TOLERANCE * max(float(reference.abs().max()), 1.0)
    for label, cand_spec, cand_reduce, known in _candidates(layout, C, module):
        try:
            cand = create_norm(cand_spec, C, layout=layout, reduce=cand_reduce, affine=False).double()
        except ValueError:
            continue
        if type(cand) is type(module) and cand.axes == module.axes:
            continue  # the explained norm itself
        try:
            diff = float((cand(x) - reference).abs().max())
        except ValueError:
            equivalences.append(Equivalence(label, None, float("nan"), known))
            continue
        equivalences.append(Equivalence(label, diff <= tolerance, diff, known))
    return equivalences


def explain(
    spec: NormLike,
    *,
    layout: str | Layout,
    shape: str | Sequence[int],
    reduce: str | None = None,
    compare: bool = True,
    **kwargs: Any,
) -> Explanation:
    """Explain what a norm spec does to an input of ``shape`` in ``layout``.

    Args:
        spec: a norm spec (``"layer"``, ``"group:8"``, ...) or callable, as for :func:`create_norm`.
        layout: axis letters of the input, e.g. ``"BTF"``.
        shape: the input's shape, e.g. ``(4, 2, 3)`` or ``"4,2,3"``.
        reduce: letters to reduce. Default: the spec's default.
        compare: run the equivalence checks. Default: ``True``.
        **kwargs: passed to :func:`create_norm`.

    Example::

        >>> print(explain("layer", layout="BTF", shape=(4, 2, 3)).stats_shape)
        (4, 2)
    """
    parsed = Layout.parse(layout)
    shape = parse_shape(shape)
    if len(shape) != parsed.ndim:
        raise ValueError(f"expected a shape with {parsed.ndim} sizes for layout {parsed.spelled!r}, got {shape}")
    C = shape[parsed.dim("C")]
    module = _as_normrnn(create_norm(spec, C, layout=parsed, reduce=reduce, **kwargs), parsed)
    d = module.describe(shape)
    equivalences: list[Equivalence] = []
    if compare and d.reduce and d.comparable:
        equivalences = _equivalences(spec, module, parsed, shape, reduce, kwargs)
    spec_name = spec if isinstance(spec, str) else NormSpec.parse(spec).name
    return Explanation(
        spec=spec_name + (f" (reduce={parsed.spell(parsed.axes(reduce))})" if reduce else ""),
        layout=parsed,
        shape=shape,
        reduce=d.reduce,
        stats_letters=d.stats_letters,
        stats_shape=tuple(d.stats_shape),
        count=d.count,
        param_letters=d.param_letters,
        param_shape=tuple(d.param_shape) if d.param_letters else (),
        kernel=d.kernel,
        equivalences=tuple(equivalences),
    )


# A (4, 2, 3) input and what TF 1.14 layer_norm and TF 2.1 LayerNormalization printed for it (the reference
# printouts of the TensorFlow questions the tour answers).
TF_INPUT = [[[18.369314, 2.6570225, 20.402943], [10.403599, 2.7813416, 20.794857]],
              [[19.0327, 2.6398268, 6.3894367], [3.921237, 10.761424, 2.7887821]],
              [[11.466338, 20.210938, 8.242946], [22.77081, 11.555874, 11.183836]],
              [[8.976935, 10.204252, 11.20231], [-7.356888, 6.2725096, 1.1952505]]]
TF1_LAYER_NORM_OUT = [[[0.574993, -1.4064413, 0.8314482], [-0.12501884, -1.1574404, 1.2824591]],
                [[1.3801126, -0.9573896, -0.422723], [-0.5402143, 1.4019756, -0.86176145]],
                [[-0.36398554, 1.3654773, -1.0014919], [1.4136491, -0.67222667, -0.7414224]],
                [[-1.2645674, 0.08396816, 1.1806011], [-1.3146634, 1.108713, 0.20595042]]]
TF2_LAYER_NORMALIZATION_OUT = [[[0.574988365, -1.40643, 0.8314417], [-0.125017628, -1.15742981, 1.28244758]],
                  [[1.38009858, -0.957379758, -0.422718644], [-0.540192485, 1.40191901, -0.861726582]],
                  [[-0.363978326, 1.36545086, -1.00147223], [1.41362476, -0.672215044, -0.74140954]],
                  [[-1.26380491, 0.0839173347, 1.17988873], [-1.31464267, 1.10869551, 0.205947176]]]


def tour() -> str:
    """A short walk through the questions normrnn was built to answer (the TensorFlow ConvLSTM cell's "does layer norm
    matter?" and the axis questions around it), answered by running normrnn (``normrnn explain --tour``)."""
    from .batch import BatchNorm
    from .convert import from_keras, from_tf1_layer_norm

    out: list[str] = []

    def section(title: str) -> None:
        out.extend(["", f"== {title}", ""])

    x = torch.tensor(TF_INPUT)
    section("TF1 layer_norm vs Keras LayerNormalization: layer norm on a sequence (B, T, F)")
    out.append(str(explain("layer", layout="BTF", shape=x.shape)))
    tf1 = from_tf1_layer_norm(-1, -1, "BTF", num_channels=3)
    keras = from_keras("LayerNormalization", {"axis": -1}, "BTF", input_shape=x.shape)
    with torch.no_grad():
        d_tf1 = float((tf1(x) - torch.tensor(TF1_LAYER_NORM_OUT)).abs().max())
        d_keras = float((keras(x) - torch.tensor(TF2_LAYER_NORMALIZATION_OUT)).abs().max())
    out += ["",
            f"  vs TF 1.14 layer_norm(begin_norm_axis=-1), eps=1e-12, printed:   max |diff| {d_tf1:.1e}",
            f"  vs TF 2.1 LayerNormalization(axis=-1), eps=1e-3, printed:        max |diff| {d_keras:.1e}",
            "",
            "  TF1's *default* begin_norm_axis=1 reduces T as well, one statistic per sequence:"]
    out.append(str(explain("layer", layout="BTF", shape=x.shape, reduce="TF", compare=False)))

    section("Layer norm on images (B, H, W, C) over (H, W, C): one statistic per sample")
    out.append(str(explain("layer", layout="BHWC", shape=(4, 2, 2, 3))))

    section("Keras GroupNormalization(groups=1) equals LayerNorm only over every non-batch axis "
            "(https://github.com/tensorflow/addons/issues/2143)")
    out.append(str(explain("group:1", layout="BTF", shape=(2, 3, 4), reduce="TF")))
    v = torch.arange(24, dtype=torch.float64).pow(1.5).reshape(2, 3, 4)
    gn = create_norm("group:1", 4, layout="BTF", reduce="TF", affine=False).double()
    ln = create_norm("layer", 4, layout="BTF", affine=False).double()
    diff = float((gn(v) - ln(v)).abs().max())
    out += ["", f"  on x = arange(24)**1.5 of shape (2, 3, 4): max |GN(1) - LN(F)| = {diff:.4f}"]

    section("Batch norm momentum and running variance, PyTorch vs Keras 3")
    v = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    torch_bn = BatchNorm(1, layout="BC")
    keras_bn = from_keras("BatchNormalization", {"momentum": 0.99, "epsilon": 1e-5}, "BC", input_shape=(4, 1))
    with torch.no_grad():
        y = torch_bn(v).flatten().tolist()
        keras_bn(v)
    out += [f"  x = [1, 2, 3, 4], training step, eps=1e-5: y = [{', '.join(f'{a:.6f}' for a in y)}]",
            f"  PyTorch convention (momentum=0.1, unbiased):     running mean {_value(torch_bn.running_mean):.6g}, "
            f"running var {_value(torch_bn.running_var):.6g}",
            f"  Keras 3 momentum=0.99 -> normrnn momentum={keras_bn.momentum:.2f}, biased: running mean "
            f"{_value(keras_bn.running_mean):.6g}, running var {_value(keras_bn.running_var):.6g}"]

    section("Group norm (G=8) on ConvLSTM gates, per frame or across time")
    out.append(str(explain("group:8", layout="BTCHW", shape=(2, 3, 32, 8, 8))))
    out.append("")
    out.append(str(explain("group:8", layout="BTCHW", shape=(2, 3, 32, 8, 8), reduce="TCHW", compare=False)))
    out.append("")
    out.append("Try your own: normrnn explain SPEC --layout LAYOUT --shape 4,2,3 [--reduce LETTERS]")
    return "\n".join(out).lstrip("\n")


def _value(buffer: object) -> float:
    """A one-element buffer as a float (nn.Module types a buffer attribute as Tensor | Module)."""
    assert isinstance(buffer, torch.Tensor)
    return float(buffer)
