"""The projections ``W_x * x`` and ``W_h * h``: 'same'-padded convolutions (1-3-D) or matrix products.

:class:`Geometry` holds what the convolutions need (kernel, dilations, the padding computed once), so a
cell's projections are one call each and no padding is recomputed per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch.nn.functional as F
from torch import Tensor

__all__ = ["Geometry", "as_tuple", "same_padding", "step_layout"]

_SPATIAL_LETTERS = {0: "", 1: "L", 2: "HW", 3: "DHW"}
Padding = tuple[tuple[int, ...], tuple[int, ...]]  # zeros (before, after) each spatial axis


def step_layout(spatial_dims: int) -> str:
    """The layout of one step's tensors: ``"BC"``, ``"BCL"``, ``"BCHW"`` or ``"BCDHW"``."""
    return "BC" + _SPATIAL_LETTERS[spatial_dims]


def as_tuple(name: str, value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    """Expand an int to ``n`` ints and check that every entry is a positive int."""
    if isinstance(value, int) and not isinstance(value, bool):
        out: tuple = (value,) * n
    elif isinstance(value, (tuple, list)):
        out = tuple(value)
    else:
        out = ()
    if len(out) != n or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in out):
        raise ValueError(f"expected {name} to be a positive int or {n} positive ints, got {value!r}")
    return out


def same_padding(kernel: tuple[int, ...], dilation: tuple[int, ...]) -> Padding:
    """Zeros before and after each spatial axis that keep its size: ``d·(k-1)`` in all, the odd one after."""
    total = [d * (k - 1) for k, d in zip(kernel, dilation, strict=True)]
    return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)


@dataclass(frozen=True)
class Geometry:
    """The convolution geometry of a cell; ``spatial_dims=0`` means dense (matrix products).

    Example::

        >>> g = Geometry.create(2, 3)
        >>> g.kernel_size, g.padding_x
        ((3, 3), ((1, 1), (1, 1)))
    """

    spatial_dims: int  # 0 (dense), 1, 2 or 3
    kernel_size: tuple[int, ...]
    dilation: tuple[int, ...]  # of W_x * x
    recurrent_dilation: tuple[int, ...]  # of W_h * h
    padding_x: Padding = field(init=False)
    padding_h: Padding = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "padding_x", same_padding(self.kernel_size, self.dilation))
        object.__setattr__(self, "padding_h", same_padding(self.kernel_size, self.recurrent_dilation))

    @classmethod
    def create(cls, spatial_dims: int, kernel_size: int | tuple[int, ...], dilation: int | tuple[int, ...] = 1,
               recurrent_dilation: int | tuple[int, ...] | None = None) -> Geometry:
        """Validate and expand the arguments as a cell takes them."""
        if spatial_dims not in _SPATIAL_LETTERS:
            raise ValueError(f"expected spatial_dims to be 0 (dense), 1, 2 or 3, got {spatial_dims!r}")
        dil = as_tuple("dilation", dilation, spatial_dims)
        rec = dil if recurrent_dilation is None else as_tuple("recurrent_dilation", recurrent_dilation, spatial_dims)
        return cls(spatial_dims, as_tuple("kernel_size", kernel_size, spatial_dims), dil, rec)

    def project(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *, recurrent: bool = False) -> Tensor:
        """``weight * x``: a 'same'-padded convolution, or a matrix product for dense cells."""
        if self.spatial_dims == 0:
            return F.linear(x, weight, bias)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
        before, after = self.padding_h if recurrent else self.padding_x
        if before != after:  # an even span: the extra row/column of zeros goes after, as in TF and Keras
            x = F.pad(x, [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)])
            before = (0,) * self.spatial_dims
        return conv(x, weight, bias, padding=before, dilation=self.recurrent_dilation if recurrent else self.dilation)
