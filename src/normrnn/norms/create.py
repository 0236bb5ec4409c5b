"""String -> spec -> module: ``create_norm("group:8", 64, layout="BTCHW")``, through one registry.

A norm spec is parsed once into a :class:`NormSpec`: the registry entry (:class:`NormEntry`) plus its
``":N"`` argument. Spec names are case-insensitive and ignore ``_``/``-`` (``"Recurrent-Batch:10"`` works).
A normrnn norm class (``LayerNorm``) is the same spec as its name (``"layer"``). Any other callable, such as
``nn.BatchNorm2d`` or a ``functools.partial``, is a *foreign* spec: it is called as
``spec(num_channels, **kwargs)`` with the keyword arguments its signature accepts, and a recurrent cell gives
it the whole gate tensor (it cannot know how to split it per gate).

To add a norm: write its class (derived from :class:`normrnn.norms.base.Norm`) and one :func:`register_norm`
line for it, in the same file.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Any, Union

from torch import nn

from .batch import BatchNorm, RecurrentBatchNorm
from .layout import Layout
from .modules import GroupNorm, Identity, InstanceNorm, LayerNorm, RMSNorm

__all__ = [
    "NORM_SPECS",
    "NormEntry",
    "NormLike",
    "NormSpec",
    "create_norm",
    "default_groups",
    "norm_entries",
    "norm_spec_names",
    "register_norm",
    "registered_norm",
    "spec_key",
    "unregister_norm",
]


def default_groups(num_channels: int, max_groups: int = 32) -> int:
    """The largest divisor of ``num_channels`` that is at most ``max_groups`` (the GN paper's 32)."""
    return max(g for g in range(1, min(max_groups, num_channels) + 1) if num_channels % g == 0)


@dataclass(frozen=True)
class NormEntry:
    """One registered norm: its class, its ``":N"`` argument, and what recurrent cells need to know.

    ``gate_groups(arg, C)`` is the number of channel groups one gate of ``C`` channels gets when a cell
    normalizes each gate on its own (``None``: the statistics are per channel already, so per gate is free);
    the grouped form is then built by the entry named ``grouped_as`` with ``num_groups = gates · groups``.
    """

    name: str  # canonical spelling, e.g. "recurrent_batch"
    cls: type[nn.Module]
    arg: str | None = None  # the keyword that ":N" sets, e.g. "num_groups"
    default: Callable[[int], int] | None = None  # the argument's value from C when the spec has no ":N"
    gate_groups: Callable[[int | None, int], int] | None = None  # per-gate groups, see above
    grouped_as: str | None = None  # the entry that builds the per-gate grouped form
    shift: bool = True  # learns a shift β (cells drop it with center=False where their bias is the shift)
    aliases: tuple[str, ...] = ()
    arg_label: str | None = None  # how messages name the ":N" argument; default: G, T_MAX, or the keyword

    @property
    def usage(self) -> str:
        """How an error message lists this entry, e.g. ``group[:G]``."""
        if self.arg is None:
            return self.name
        label = self.arg_label or {"num_groups": "G", "max_steps": "T_MAX"}.get(self.arg, self.arg.upper())
        return f"{self.name}[:{label}]"


_REGISTRY: dict[str, NormEntry] = {}  # spec_key -> entry, aliases included
_BY_CLASS: dict[type, NormEntry] = {}


def spec_key(name: str) -> str:
    """A spec name in canonical form: case, ``_`` and ``-`` ignored (``"Recurrent-Batch"`` → ``"recurrentbatch"``)."""
    return name.strip().lower().replace("_", "").replace("-", "")


def _spans_channels(entry: NormEntry) -> bool:
    """Whether the entry's norm, built with its defaults, keeps statistics over C (so all four gates of a cell
    would share them unless the entry says how to group it per gate)."""
    try:
        kwargs = {entry.arg: entry.default(4)} if entry.arg and entry.default else {}
        module = entry.cls(4, layout="BCL", **kwargs)
        return "C" in module.describe((2, 4, 3)).reduce
    except Exception:  # a norm that cannot be built or described this way: nothing to tell
        return False


def register_norm(entry: NormEntry) -> NormEntry:
    """Add ``entry`` to the registry under its name and aliases; a name taken twice is an error, and so is a norm
    whose statistics span the channels registered without ``gate_groups`` (cells would pool one statistic over
    all four gates while saying ``norm_scope='per_gate'``)."""
    if entry.gate_groups is None and _spans_channels(entry):
        raise ValueError(f"norm {entry.name!r} keeps statistics over the channels, so a cell that normalizes each "
                         "gate apart must know how to split them: give NormEntry(gate_groups=lambda arg, C: "
                         "<groups per gate>, grouped_as=<an entry taking num_groups>), as 'layer' does")
    for name in (entry.name, *entry.aliases):
        key = spec_key(name)
        if key in _REGISTRY and _REGISTRY[key] != entry:
            raise ValueError(f"norm spec name {name!r} is already registered for {_REGISTRY[key].cls.__name__}")
        _REGISTRY[key] = entry
    _BY_CLASS[entry.cls] = entry
    return entry


def unregister_norm(name: str) -> NormEntry:
    """Remove the entry registered as ``name`` (and its aliases); returns it. For tests and plugins that
    register temporarily (see :func:`registered_norm`)."""
    entry = _REGISTRY.get(spec_key(name))
    if entry is None:
        raise ValueError(f"no norm is registered as {name!r}; registered: {', '.join(norm_spec_names())}")
    for key in [k for k, e in _REGISTRY.items() if e is entry]:
        del _REGISTRY[key]
    _BY_CLASS.pop(entry.cls, None)
    return entry


@contextlib.contextmanager
def registered_norm(entry: NormEntry) -> Iterator[NormEntry]:
    """Register ``entry`` for the duration of a ``with`` block."""
    register_norm(entry)
    try:
        yield entry
    finally:
        unregister_norm(entry.name)


def norm_entries() -> list[NormEntry]:
    """Every registered norm, once each, in registration order."""
    return list(dict.fromkeys(_REGISTRY.values()))


def norm_spec_names() -> tuple[str, ...]:
    """The valid spec names as error messages list them, e.g. ``group[:G]``; computed now, so norms registered
    after import are in."""
    return tuple(e.usage for e in norm_entries())


register_norm(NormEntry("none", Identity, shift=False, aliases=("identity",)))
register_norm(NormEntry("layer", LayerNorm, gate_groups=lambda arg, C: 1, grouped_as="group"))
register_norm(NormEntry("group", GroupNorm, arg="num_groups", default=default_groups,
                        gate_groups=lambda arg, C: default_groups(C) if arg is None else arg, grouped_as="group"))
register_norm(NormEntry("instance", InstanceNorm))
register_norm(NormEntry("batch", BatchNorm))
register_norm(NormEntry("recurrent_batch", RecurrentBatchNorm, arg="max_steps"))
register_norm(NormEntry("rms", RMSNorm, gate_groups=lambda arg, C: 1, grouped_as="rms", shift=False))

#: The built-in spec names, as an error message lists them (a snapshot at import: use norm_spec_names()).
NORM_SPECS = norm_spec_names()

NormLike = Union[str, "NormSpec", Callable[..., nn.Module]]  # a spec string, a parsed spec, a class or a factory


def _accepted(fn: Callable[..., nn.Module], kwargs: dict[str, object]) -> dict[str, object]:
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
        if isinstance(spec, type) and spec in _BY_CLASS:
            return cls(_BY_CLASS[spec])
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
        entry = _REGISTRY.get(spec_key(name))
        if entry is None:
            raise ValueError(f"unknown norm spec {spec!r}; expected one of {', '.join(norm_spec_names())}")
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
        grouped = _REGISTRY[spec_key(self.entry.grouped_as)]
        return replace(self, entry=grouped, arg=None, kwargs={"num_groups": num_gates * groups})

    def build(self, num_channels: int, *, layout: str | Layout, **kwargs: Any) -> nn.Module:
        """The module for ``num_channels`` channels in ``layout``; ``kwargs`` go to its constructor."""
        if self.entry is None:
            return self.factory(num_channels, **_accepted(self.factory, {"layout": layout, **kwargs}))
        if self.entry.cls is Identity:
            return Identity(num_channels)
        options = {**kwargs, **self.kwargs}
        if self.entry.arg is not None:
            if self.arg is not None:
                options[self.entry.arg] = self.arg
            elif self.entry.arg not in options and self.entry.default is not None:
                options[self.entry.arg] = self.entry.default(num_channels)
        return self.entry.cls(num_channels, layout=layout, **options)


_BATCH_STATS = (BatchNorm,)  # classes whose constructor takes momentum


def create_norm(
    spec: NormLike,
    num_channels: int,
    *,
    layout: str | Layout,
    reduce: str | None = None,
    eps: float = 1e-5,
    affine: bool = True,
    momentum: float | None = 0.1,
    **kwargs: object,
) -> nn.Module:
    """Build a normalization module from a spec string, a parsed spec, a class or a callable.

    Args:
        spec: ``"none"``, ``"layer"``, ``"group"`` (32 groups clipped to a divisor of C) or ``"group:G"``,
            ``"instance"``, ``"batch"``, ``"recurrent_batch"`` (T_MAX = 100) or ``"recurrent_batch:T_MAX"``,
            ``"rms"``; a normrnn norm class (the same as its name); or any callable ``f(C, **kwargs)``.
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
    parsed = NormSpec.parse(spec)
    options: dict[str, object] = {"eps": eps, "affine": affine, **kwargs}
    if reduce is not None:
        options["reduce"] = reduce
    if parsed.entry is None or issubclass(parsed.entry.cls, _BATCH_STATS):
        options["momentum"] = momentum
    return parsed.build(num_channels, layout=layout, **options)
