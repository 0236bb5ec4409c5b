"""Layouts: strings of axis letters that name every dimension of a tensor.

A layout such as ``"BTCHW"`` says what each dimension of a tensor is: ``B`` batch, ``T`` time, ``C``
channels (``F``, features, is accepted as an alias), and the spatial axes ``D``, ``H``, ``W`` (or ``L``
for 1-D). Normalizations in :mod:`normrnn.norms` are defined by which of these letters they reduce, so
the same module works for ``"BTF"`` sequences, ``"BHWC"`` images and ``"BTCDHW"`` volumes alike.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from .._checks import autocasting

__all__ = ["LETTERS", "LETTER_NAMES", "SPATIAL", "Layout", "NormAxes"]

SPATIAL = "DHWL"  # spatial letters; L is the length axis of 1-D signals
LETTERS = "BTCF" + SPATIAL  # every letter a layout may use
_NAMES = {"B": "batch", "T": "time", "C": "channels", "D": "depth", "H": "height", "W": "width", "L": "length"}
LETTER_NAMES = {**_NAMES, "F": "features (the same axis as C)"}  # what each layout letter names


@dataclass(frozen=True)
class Layout:
    """A parsed layout string.

    ``letters`` is canonical (``F`` is stored as ``C``); ``spelled`` keeps the user's spelling for messages,
    so an error about a ``"BTF"`` tensor talks about ``F``, not ``C``.

    Example::

        >>> Layout.parse("BTF").dim("C")
        2
    """

    spelled: str  # the layout as the user wrote it, e.g. "BTF"
    letters: str  # canonical letters, "F" mapped to "C", e.g. "BTC"

    @classmethod
    def parse(cls, layout: str | Layout) -> Layout:
        """Parse and validate ``layout``; raise ``ValueError`` naming the problem."""
        if isinstance(layout, Layout):
            return layout
        if not isinstance(layout, str) or not layout:
            raise ValueError(f"expected a layout string such as 'BTCHW', got {layout!r}")
        spelled = layout.strip().upper()
        unknown = sorted(set(spelled) - set(LETTERS))
        if unknown:
            raise ValueError(
                f"layout {layout!r} has unknown letters {unknown}; expected letters from {LETTERS!r} "
                "(B batch, T time, C or F channels, D/H/W/L spatial)"
            )
        letters = spelled.replace("F", "C")
        repeated = sorted({c for c in letters if letters.count(c) > 1})
        if repeated:
            raise ValueError(f"layout {layout!r} repeats {repeated}; each axis may appear once (F is an alias of C)")
        for required in "BC":
            if required not in letters:
                raise ValueError(f"layout {layout!r} has no {_NAMES[required]} axis; expected a '{required}'")
        return cls(spelled=spelled, letters=letters)

    @property
    def ndim(self) -> int:
        return len(self.letters)

    def dim(self, letter: str) -> int:
        """The dimension index of a canonical letter."""
        return self.letters.index(letter)

    def has(self, letter: str) -> bool:
        return letter in self.letters

    @property
    def spatial(self) -> str:
        """The spatial letters, in layout order."""
        return "".join(c for c in self.letters if c in SPATIAL)

    def spell(self, letters: str) -> str:
        """Write canonical letters the way the user spelled the layout (``C`` becomes ``F`` for ``"BTF"``)."""
        channel = "F" if "F" in self.spelled else "C"
        return "".join(channel if c == "C" else c for c in letters)

    def axes(self, letters: str, *, what: str = "reduce") -> str:
        """Canonicalize ``letters`` to layout order; raise ``ValueError`` if any letter is not in the layout."""
        if not isinstance(letters, str):
            raise ValueError(f"expected {what} as a string of axis letters such as 'CHW', got {letters!r}")
        canonical = letters.strip().upper().replace("F", "C")
        missing = [c for c in canonical if c not in self.letters]
        if missing:
            raise ValueError(
                f"{what}={letters!r} names axes {missing} that are not in layout {self.spelled!r}; "
                f"expected letters from {self.spelled!r}"
            )
        if len(set(canonical)) != len(canonical):
            raise ValueError(f"{what}={letters!r} repeats an axis")
        return "".join(c for c in self.letters if c in canonical)

    def sizes(self, shape: Sequence[int], letters: str) -> tuple[int, ...]:
        """The sizes of ``letters`` in a tensor of this layout with ``shape``."""
        return tuple(int(shape[self.dim(c)]) for c in letters)

    def check(self, x: torch.Tensor, num_channels: int | None = None, *,
              param_dtype: torch.dtype | None = None) -> None:
        """Raise ``ValueError`` unless ``x`` has this layout's rank and ``num_channels`` channels, and is a float that
        parameters of ``param_dtype`` can take (what PyTorch's norm kernels accept, said before they fail)."""
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"expected a torch.Tensor with layout {self.spelled!r}, got {type(x).__name__}")
        if not x.is_floating_point():
            raise ValueError(f"expected a floating-point input, got {x.dtype}")
        if param_dtype is not None and not _takes(param_dtype, x):
            raise ValueError(f"expected input of dtype {param_dtype} (the norm's parameters; float16 and bfloat16 "
                             f"inputs may also use float32 ones), got {x.dtype}")
        if x.dim() != self.ndim:
            raise ValueError(
                f"expected a {self.ndim}-D input for layout {self.spelled!r}, got a {x.dim()}-D input of shape "
                f"{tuple(x.shape)}"
            )
        if num_channels is not None and x.shape[self.dim("C")] != num_channels:
            channel = self.spell("C")
            raise ValueError(
                f"expected {num_channels} channels on axis {channel} (dim {self.dim('C')}) of layout "
                f"{self.spelled!r}, got {x.shape[self.dim('C')]} in input of shape {tuple(x.shape)}"
            )

    def describe(self, letters: str, shape: Sequence[int] | None = None) -> str:
        """Render ``letters`` as ``(B, T)`` or, with a shape, ``(B, T) = (4, 2)``; ``G`` is allowed for groups."""
        names = ", ".join(self.spell(c) for c in letters)
        text = f"({names}{',' if len(letters) == 1 else ''})"
        if shape is not None:
            sizes = ", ".join(str(s) for s in shape)
            text += f" = ({sizes}{',' if len(shape) == 1 else ''})"
        return text


def _takes(param_dtype: torch.dtype, x: torch.Tensor) -> bool:
    """Whether PyTorch's norm kernels take ``x`` with parameters of ``param_dtype``: the same dtype, half-precision
    input with float32 parameters, or anything under autocast."""
    if x.dtype == param_dtype or (x.dtype in (torch.float16, torch.bfloat16) and param_dtype == torch.float32):
        return True
    return autocasting(x)


@dataclass(frozen=True)
class NormAxes:
    """What a normalization reduces: ``reduce`` letters, with channels split into ``groups`` when reduced.

    ``"C" in reduce`` means the channels are reduced, in ``groups`` groups (1: all together, as layer norm;
    ``G``: group norm). Without ``"C"`` every channel has its own statistics (batch and instance norm).
    """

    layout: Layout
    reduce: str  # canonical letters in layout order
    groups: int | None = None  # channel groups when "C" is reduced, else None

    def __post_init__(self) -> None:
        if ("C" in self.reduce) != (self.groups is not None):
            raise ValueError(f"groups must be set exactly when C is reduced; got reduce={self.reduce!r}, "
                             f"groups={self.groups!r}")
        if self.groups is not None and self.groups < 1:
            raise ValueError(f"expected groups >= 1, got {self.groups}")

    @property
    def stats_letters(self) -> str:
        """The axes that index the statistics: unreduced letters, plus ``G`` when channels are grouped."""
        out = []
        for c in self.layout.letters:
            if c not in self.reduce:
                out.append(c)
            elif c == "C" and self.groups is not None and self.groups > 1:
                out.append("G")
        return "".join(out)

    def stats_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """The statistics' sizes for an input of ``shape``."""
        return tuple((self.groups or 1) if c == "G" else shape[self.layout.dim(c)] for c in self.stats_letters)

    def count(self, shape: tuple[int, ...]) -> int:
        """Elements per statistic (before masking) for an input of ``shape``."""
        n = math.prod([shape[self.layout.dim(c)] for c in self.reduce if c != "C"])
        if self.groups is not None:
            n *= shape[self.layout.dim("C")] // self.groups
        return n

    @property
    def mask_matters(self) -> bool:
        """Whether a ``(B, T)`` mask changes any statistic: only if B or T is reduced."""
        return "B" in self.reduce or "T" in self.reduce
