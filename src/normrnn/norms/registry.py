"""The norm registry: one :class:`NormEntry` per spec name. Each norm registers itself beside its class
(``register_norm(NormEntry("layer", LayerNorm, ...))`` at the end of its module); this module imports no norm,
so a norm defined anywhere, in normrnn or outside it, registers the same way."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from torch import nn

__all__ = ["NormEntry", "default_groups", "find_norm", "norm_entries", "norm_of_class", "norm_spec_names",
           "register_norm", "registered_norm", "spec_key", "unregister_norm"]


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
        return "C" in module.describe((2, 4, 3)).reduce  # type: ignore[operator]  # a registered class is a Norm
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


def find_norm(name: str) -> NormEntry | None:
    """The entry registered as ``name`` (any spelling :func:`spec_key` accepts), or None."""
    return _REGISTRY.get(spec_key(name))


def norm_of_class(cls: type) -> NormEntry | None:
    """The entry whose class is exactly ``cls``, or None."""
    return _BY_CLASS.get(cls)


def norm_entries() -> list[NormEntry]:
    """Every registered norm, once each, in registration order."""
    return list(dict.fromkeys(_REGISTRY.values()))


def norm_spec_names() -> tuple[str, ...]:
    """The valid spec names as error messages list them, e.g. ``group[:G]``; computed now, so norms registered
    after import are in."""
    return tuple(e.usage for e in norm_entries())
