"""String -> factory -> module: ``create_norm("group:8", 64, layout="BTCHW")``.

Spec names are case-insensitive and ignore ``_``/``-`` (``"Recurrent-Batch:10"`` works). A class or any
callable is accepted too and is called as ``spec(num_channels, **kwargs)`` with the keyword arguments its
signature accepts, so ``nn.BatchNorm2d`` or a ``functools.partial`` plug in unchanged.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Union

from torch import nn

from .layout import Layout
from .modules import BatchNorm, GroupNorm, Identity, InstanceNorm, LayerNorm, RecurrentBatchNorm, RMSNorm

__all__ = ["NORM_SPECS", "NormSpec", "create_norm", "default_groups", "parse_spec", "spec_key"]

NormSpec = Union[str, Callable[..., nn.Module]]  # a spec string, a module class, or a factory

#: The valid spec names, as an error message lists them.
NORM_SPECS = ("none", "layer", "group[:G]", "instance", "batch", "recurrent_batch:T_MAX", "rms")

_NORMS: dict[str, type[nn.Module]] = {
    "none": Identity,
    "identity": Identity,
    "layer": LayerNorm,
    "group": GroupNorm,
    "instance": InstanceNorm,
    "batch": BatchNorm,
    "recurrentbatch": RecurrentBatchNorm,
    "rms": RMSNorm,
}
_BATCH = (BatchNorm, RecurrentBatchNorm)


def spec_key(name: str) -> str:
    """A spec name in canonical form: case, ``_`` and ``-`` ignored (``"Recurrent-Batch"`` → ``"recurrentbatch"``)."""
    return name.strip().lower().replace("_", "").replace("-", "")


def parse_spec(spec: str) -> tuple[type[nn.Module], int | None]:
    """Split ``"name[:N]"`` into the module class and its integer argument; raise ``ValueError`` if invalid."""
    if not isinstance(spec, str):
        raise ValueError(f"expected a norm spec string or callable, got {type(spec).__name__}")
    name, sep, arg = spec.strip().lower().partition(":")
    key = spec_key(name)
    if key not in _NORMS:
        raise ValueError(f"unknown norm spec {spec!r}; expected one of {', '.join(NORM_SPECS)}")
    cls = _NORMS[key]
    if not sep:
        if cls is RecurrentBatchNorm:
            raise ValueError(f"norm spec {spec!r} needs the number of per-step statistic slots, "
                             "e.g. 'recurrent_batch:10'")
        return cls, None
    if cls not in (GroupNorm, RecurrentBatchNorm):
        raise ValueError(f"norm spec {spec!r}: {name!r} takes no ':' argument; expected one of {', '.join(NORM_SPECS)}")
    if not arg.strip().isdigit() or int(arg) < 1:
        raise ValueError(f"norm spec {spec!r}: expected a positive integer after ':', got {arg!r}")
    return cls, int(arg)


def default_groups(num_channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``num_channels`` that is at most ``max_groups`` (the GN paper's 32)."""
    return max(g for g in range(1, min(max_groups, num_channels) + 1) if num_channels % g == 0)


def _accepted(fn: Callable[..., nn.Module], kwargs: dict[str, object]) -> dict[str, object]:
    """The subset of ``kwargs`` that ``fn``'s signature accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def create_norm(
    spec: NormSpec,
    num_channels: int,
    *,
    layout: str | Layout,
    reduce: str | None = None,
    eps: float = 1e-5,
    affine: bool = True,
    momentum: float | None = 0.1,
    **kwargs: object,
) -> nn.Module:
    """Build a normalization module from a spec string or callable.

    Args:
        spec: ``"none"``, ``"layer"``, ``"group"`` (32 groups clipped to a divisor of C) or ``"group:G"``,
            ``"instance"``, ``"batch"``, ``"recurrent_batch:T_MAX"``, ``"rms"``; or a class/callable.
        num_channels: C, the size of the channel axis.
        layout: axis letters of the input, e.g. ``"BTCHW"``.
        reduce: letters to reduce; ``None`` takes the norm's default (see :mod:`normrnn.norms.modules`).
        eps: added to the variance inside the square root. Default: ``1e-5``.
        affine: learn a per-channel scale and shift. Default: ``True``.
        momentum: running-average momentum for batch norms (PyTorch convention). Default: ``0.1``.
        **kwargs: passed on to the module, e.g. ``sync=True``, ``center=False``, ``gamma_init=0.1``.

    Example::

        >>> create_norm("Group:4", 16, layout="BTCHW")
        GroupNorm(16, layout='BTCHW', reduce='CHW', num_groups=4, eps=1e-05)
    """
    Layout.parse(layout)  # fail on a bad layout before anything else
    options: dict[str, object] = {"layout": layout, "eps": eps, "affine": affine, **kwargs}
    if reduce is not None:
        options["reduce"] = reduce
    if not isinstance(spec, str):
        if not callable(spec):
            raise ValueError(f"expected a norm spec string or callable, got {spec!r}")
        return spec(num_channels, **_accepted(spec, {**options, "momentum": momentum}))
    cls, arg = parse_spec(spec)
    if cls is Identity:
        return Identity(num_channels)
    if cls in _BATCH:
        options["momentum"] = momentum
    if cls is GroupNorm:
        options["num_groups"] = arg if arg is not None else default_groups(num_channels)
    if cls is RecurrentBatchNorm:
        options["max_steps"] = arg
    return cls(num_channels, **options)
