"""Where a cell's norms go: the gate norm over all gates at once (per gate or pooled), and its shift."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from torch import Tensor, nn

from .._checks import one_of
from ..norms import NormLike, NormSpec, call_norm, create_norm

__all__ = ["NORM_INPUTS", "NORM_SCOPES", "bound", "cell_gate_norm", "gate_norm", "shift_of"]

NORM_INPUTS = ("joint", "separate")
NORM_SCOPES = ("per_gate", "all_gates")


def gate_norm(spec: NormLike, hidden_channels: int, num_gates: int, *, scope: str, layout: str, center: bool = True,
              **norm_kwargs: Any) -> nn.Module:
    """One module that normalizes a ``(B, num_gates·C, *S)`` gate tensor, per gate or pooled, in one call.

    Per gate, ``layer`` and ``rms`` get one group per gate and ``group:G`` gets ``num_gates·G`` groups, so
    no statistic ever spans two gates (:meth:`normrnn.norms.NormSpec.for_gates`). ``center=False`` drops β
    where the norm has one.

    Example::

        >>> gate_norm("layer", 16, 4, scope="per_gate", layout="BCHW")
        GroupNorm(64, layout='BCHW', reduce='CHW', num_groups=4, eps=1e-05)
    """
    one_of("norm_scope", scope, NORM_SCOPES)
    parsed = NormSpec.parse(spec)
    kwargs = dict(norm_kwargs)
    if not center and parsed.has_shift:
        kwargs["center"] = False
    return create_norm(parsed.for_gates(hidden_channels, num_gates, scope=scope), num_gates * hidden_channels,
                       layout=layout, **kwargs)


def cell_gate_norm(spec: NormLike, hidden_channels: int, num_gates: int, *, scope: str, layout: str,
                   default_center: bool, norm_kwargs: Mapping[str, Any], factory: Mapping[str, Any]) -> nn.Module:
    """:func:`gate_norm` as a cell builds it from the user's ``norm_kwargs``: their ``center`` wins over the cell's
    ``default_center`` (separate norms drop β where the cell's bias is the one shift)."""
    kwargs = {**norm_kwargs, "center": norm_kwargs.get("center", default_center)}
    return gate_norm(spec, hidden_channels, num_gates, scope=scope, layout=layout, **factory, **kwargs)


def shift_of(module: nn.Module | None) -> nn.Parameter | None:
    """The module's learned per-channel shift β, if it has one."""
    b = getattr(module, "bias", None)
    return b if isinstance(b, nn.Parameter) and b.dim() == 1 else None


def bound(module: nn.Module | None, t: int, mask: Tensor | None) -> Callable[[Tensor], Tensor] | None:
    """``module`` as a one-argument function of the tensor for step ``t`` with the (B,) ``mask``; None for None."""
    if module is None:
        return None
    return lambda x: call_norm(module, x, mask, t)
