"""The cell kinds by name: the one registry the study and the layers read. A cell type registers itself beside its
class (``register_cell_kind``); a layer class names its cell (``cell_class``) and is found from it
(:func:`normrnn.layers.layer_for`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from .._checks import one_of

if TYPE_CHECKING:
    from .base import RecurrentCell

__all__ = ["CellKind", "cell_kind", "cell_kinds", "register_cell_kind"]


@dataclass(frozen=True)
class CellKind:
    """A registered cell type."""

    name: str  # what a study config's ``cell`` names, e.g. "convlstm"
    cell: type[RecurrentCell]
    spatial: bool  # convolutional (takes kernel_size and (B, C, *S) inputs), or dense ((B, C))


_KINDS: dict[str, CellKind] = {}


def register_cell_kind(name: str, cell: type[RecurrentCell], *, spatial: bool) -> None:
    """Make ``cell`` known as ``name``; a second registration of a name is an error."""
    if name in _KINDS and _KINDS[name].cell is not cell:
        raise ValueError(f"cell kind {name!r} is registered already, for {_KINDS[name].cell.__name__}")
    _KINDS[name] = CellKind(name, cell, spatial)


def cell_kinds(*, spatial: bool | None = None) -> tuple[str, ...]:
    """The registered names (only the convolutional ones with ``spatial=True``, the dense ones with ``False``)."""
    return tuple(sorted(k.name for k in _KINDS.values() if spatial is None or k.spatial == spatial))


def cell_kind(name: str, *, spatial: bool | None = None) -> CellKind:
    """The kind registered as ``name``; a ``ValueError`` listing the valid names (of that ``spatial``) otherwise."""
    return _KINDS[one_of("cell", name, cell_kinds(spatial=spatial))]
