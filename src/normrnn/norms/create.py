"""String -> spec -> module: ``create_norm("group:8", 64, layout="BTCHW")``, through one registry.

A norm spec is parsed once into a :class:`NormSpec`: the registry entry (:class:`NormEntry`) plus its
``":N"`` argument. Spec names are case-insensitive and ignore ``_``/``-`` (``"Recurrent-Batch:10"`` works).
A normrnn norm class (``LayerNorm``) is the same spec as its name (``"layer"``). Any other callable, such as
``nn.BatchNorm2d`` or a ``functools.partial``, is a *foreign* spec: it is called as
``spec(num_channels, **kwargs)`` with the keyword arguments its signature accepts, and a recurrent cell gives
it the whole gate tensor (it cannot know how to split it per gate).

To add a norm: write its class (derived from :class:`normrnn.norms.base.Norm`, or
:class:`normrnn.norms.AxisNorm` for per-sample statistics) and one :func:`register_norm` line beside it, as
the built-ins do (:mod:`normrnn.norms.registry`).
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any, Union

from torch import nn

from .._checks import did_you_mean
from .layout import Layout
from .modules import Identity
from .registry import (
    NormEntry,
    default_groups,
    find_norm,
    norm_entries,
    norm_of_class,
    norm_spec_names,
    register_norm,
    registered_norm,
    spec_key,
    unregister_norm,
)

__all__ = [
    "NORM_SPECS",
    "NormEntry",
    "NormLike",
    "NormSpec",
    "create_norm",
    "default_groups",
    "find_norm",
    "norm_entries",
    "norm_spec_names",
    "register_norm",
    "registered_norm",
    "spec_key",
    "unregister_norm",
]


NORM_SPECS = norm_spec_names()
"""The built-in spec names as error messages list them: a snapshot at import; :func:`norm_spec_names` is current."""

NormLike = Union[str, "NormSpec", Callable[..., nn.Module]]  # a spec string, a parsed spec, a class or a factory
"""What ``norm=`` accepts: a spec string, a parsed :class:`NormSpec`, a normrnn norm class or any factory."""


def _accepted(fn: Callable[..., nn.Module], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The subset of ``kwargs`` that ``fn``'s signature accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return kwargs
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


@dataclass(frozen=True)
class NormSpec:
    """A parsed norm spec: a registry entry and its argument, or a foreign callable.

    Example::

        >>> spec = NormSpec.parse("Group:4")
        >>> spec.name, spec.arg, spec.build(16, layout="BCHW").axes.groups
        ('group:4', 4, 4)
        >>> NormSpec.parse("layer").for_gates(8, 4).build(32, layout="BCHW")  # one group per gate
        GroupNorm(32, layout='BCHW', reduce='CHW', num_groups=4, eps=1e-05)
    """

    entry: NormEntry | None  # None: a foreign callable
    arg: int | None = None
    factory: Callable[..., nn.Module] | None = None  # the foreign callable
    kwargs: dict[str, Any] = field(default_factory=dict, compare=False)  # fixed keyword arguments (per-gate groups)

    @classmethod
    def parse(cls, spec: NormLike) -> NormSpec:
        """Parse a spec string, a normrnn norm class or any callable; raise ``ValueError`` if invalid."""
        if isinstance(spec, NormSpec):
            return spec
        if isinstance(spec, str):
            return cls._parse_string(spec)
        entry = norm_of_class(spec) if isinstance(spec, type) else None
        if entry is not None:
            return cls(entry)
        if isinstance(spec, nn.Module):  # callable, but it would be called as a factory and fail deep in torch
            raise ValueError(f"expected a norm spec string, class or factory, got the module instance {spec!r}; "
                             f"pass its class or a factory such as functools.partial({type(spec).__name__}, ...), "
                             "called with the number of channels")
        if callable(spec):
            return cls(None, factory=spec)
        raise ValueError(f"expected a norm spec string or callable, got {spec!r}")

    @classmethod
    def _parse_string(cls, spec: str) -> NormSpec:
        name, sep, arg = spec.strip().partition(":")
        entry = find_norm(name)
        if entry is None:
            raise ValueError(f"unknown norm spec {spec!r}{did_you_mean(name.strip(), norm_spec_names())}; "
                             f"expected one of {', '.join(norm_spec_names())}")
        if not sep:
            return cls(entry)
        if entry.arg is None:
            raise ValueError(f"norm spec {spec!r}: {name.strip()!r} takes no ':' argument; expected one of "
                             f"{', '.join(norm_spec_names())}")
        if not arg.strip().isdigit() or int(arg) < 1:
            raise ValueError(f"norm spec {spec!r}: expected a positive integer after ':', got {arg!r}")
        return cls(entry, int(arg))

    @property
    def name(self) -> str:
        """The canonical spelling, e.g. ``"group:4"``; a foreign callable's ``__name__``."""
        if self.entry is None:
            return getattr(self.factory, "__name__", repr(self.factory))
        return self.entry.name if self.arg is None else f"{self.entry.name}:{self.arg}"

    @property
    def is_identity(self) -> bool:
        return self.entry is not None and self.entry.cls is Identity

    @property
    def has_shift(self) -> bool:
        """Whether the built norm learns a shift β that ``center=False`` can drop (unknown: assume so)."""
        return self.entry is None or self.entry.shift

    def for_gates(self, hidden_channels: int, num_gates: int, *, scope: str = "per_gate") -> NormSpec:
        """The spec of one module normalizing a ``(B, gates·C, *S)`` gate tensor, per gate or pooled.

        Per gate, a grouped entry gets ``gates × (its groups per gate)`` groups, so no statistic spans two
        gates; per-channel norms need nothing. Pooled (``"all_gates"``) and foreign specs see the whole tensor.
        """
        if scope == "all_gates" or self.entry is None or self.entry.gate_groups is None:
            return self
        groups = self.entry.gate_groups(self.arg, hidden_channels)
        if hidden_channels % groups:
            raise ValueError(f"norm {self.name!r}: expected the groups to divide hidden_channels={hidden_channels}, "
                             f"got {groups} groups per gate")
        assert self.entry.grouped_as is not None  # register_norm requires it beside gate_groups
        grouped = find_norm(self.entry.grouped_as)
        return replace(self, entry=grouped, arg=None, kwargs={"num_groups": num_gates * groups})

    def build(self, num_channels: int, *, layout: str | Layout, **kwargs: Any) -> nn.Module:
        """The module for ``num_channels`` channels in ``layout``; ``kwargs`` go to its constructor."""
        if self.entry is None:
            assert self.factory is not None  # a spec is an entry or a foreign callable
            return self.factory(num_channels, **_accepted(self.factory, {"layout": layout, **kwargs}))
        if issubclass(self.entry.cls, Identity):  # no statistics, so the norms' arguments mean nothing to it
            return self.entry.cls(num_channels, **_accepted(self.entry.cls, {"layout": layout, **kwargs}))
        options: dict[str, Any] = {**kwargs, **self.kwargs}
        if self.entry.arg is not None:
            if self.arg is not None:
                options[self.entry.arg] = self.arg
            elif self.entry.arg not in options and self.entry.default is not None:
                options[self.entry.arg] = self.entry.default(num_channels)
        return self.entry.cls(num_channels, layout=layout, **options)


def create_norm(spec: NormLike, num_channels: int, *, layout: str | Layout, **kwargs: Any) -> nn.Module:
    """Build a normalization module from a spec string, a parsed spec, a class or a callable.

    Args:
        spec: a registered name, case-insensitive, with its optional ``":N"`` argument (``"group:8"``,
            ``"recurrent_batch:50"``; :func:`norm_spec_names` lists the names, ``normrnn norms`` what each takes);
            a normrnn norm class (the same as its name); or any callable ``f(C, **kwargs)``.
        num_channels: C, the size of the channel axis.
        layout: axis letters of the input, e.g. ``"BTCHW"``.
        **kwargs: passed on to the module as given, and nothing more, so each norm keeps its own defaults (the
            built-ins': ``reduce`` its default axes (see :mod:`normrnn.norms.modules`), ``eps=1e-5``,
            ``affine=True``, a batch norm's ``momentum=0.1``); e.g. ``reduce="TCHW"``, ``eps=1e-3``, ``sync=True``,
            ``center=False``, ``gamma_init=0.1``. A callable receives those its signature takes.

    Raises:
        ValueError: an unknown spec, a bad layout, or an argument the norm does not take (naming those it does).

    Example::

        >>> create_norm("Group:4", 16, layout="BTCHW")
        GroupNorm(16, layout='BTCHW', reduce='CHW', num_groups=4, eps=1e-05)
    """
    Layout.parse(layout)  # fail on a bad layout before anything else
    parsed = NormSpec.parse(spec)
    if parsed.entry is not None and not issubclass(parsed.entry.cls, Identity):
        taken = inspect.signature(parsed.entry.cls).parameters
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in taken.values()):
            unknown = sorted(set(kwargs) - set(taken))
            if unknown:
                valid = ", ".join(n for n in taken if n not in ("num_channels", "layout"))
                raise ValueError(f"norm {parsed.name!r} takes no argument {', '.join(map(repr, unknown))}; "
                                 f"expected some of: {valid}")
    return parsed.build(num_channels, layout=layout, **kwargs)
