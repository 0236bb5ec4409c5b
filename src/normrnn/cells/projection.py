"""The projections ``W_x * x`` and ``W_h * h``: 'same'-padded convolutions (1-3-D) or matrix products.

:class:`Geometry` holds what the convolutions need (kernel, dilations, the padding computed once), so a
cell's projections are one call each and no padding is recomputed per step.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch.nn.functional as F
from torch import Tensor

__all__ = ["PADDINGS", "Geometry", "as_tuple", "same_padding", "step_layout"]

PADDINGS = ("same", "valid")  # of the input convolution; the recurrent one is always "same"

_SPATIAL_LETTERS = {0: "", 1: "L", 2: "HW", 3: "DHW"}
Padding = tuple[tuple[int, ...], tuple[int, ...]]  # zeros (before, after) each spatial axis


def step_layout(spatial_dims: int) -> str:
    """The layout of one step's tensors: ``"BC"``, ``"BCL"``, ``"BCHW"`` or ``"BCDHW"``."""
    return "BC" + _SPATIAL_LETTERS[spatial_dims]


def as_tuple(name: str, value: int | tuple[int, ...], n: int) -> tuple[int, ...]:
    """Expand an int to ``n`` ints and check that every entry is a positive int."""
    if isinstance(value, int) and not isinstance(value, bool):
        out: tuple[Any, ...] = (value,) * n
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
    padding: str = "same"  # of W_x * x: "same" keeps the size (at stride 1), "valid" adds no zeros
    stride: tuple[int, ...] = ()  # of W_x * x; W_h * h has stride 1
    padding_x: Padding = field(init=False)
    padding_h: Padding = field(init=False)

    def __post_init__(self) -> None:
        if not self.stride:
            object.__setattr__(self, "stride", (1,) * self.spatial_dims)
        zeros = ((0,) * self.spatial_dims,) * 2
        object.__setattr__(self, "padding_x", same_padding(self.kernel_size, self.dilation)
                           if self.padding == "same" else zeros)
        object.__setattr__(self, "padding_h", same_padding(self.kernel_size, self.recurrent_dilation))

    @classmethod
    def create(cls, spatial_dims: int, kernel_size: int | tuple[int, ...], dilation: int | tuple[int, ...] = 1,
               recurrent_dilation: int | tuple[int, ...] | None = None, *, padding: str = "same",
               stride: int | tuple[int, ...] = 1) -> Geometry:
        """Validate and expand the arguments as a cell takes them."""
        if spatial_dims not in _SPATIAL_LETTERS:
            raise ValueError(f"expected spatial_dims to be 0 (dense), 1, 2 or 3, got {spatial_dims!r}")
        if padding not in PADDINGS:
            raise ValueError(f"expected padding to be one of {', '.join(map(repr, PADDINGS))}, got {padding!r}")
        dil = as_tuple("dilation", dilation, spatial_dims)
        rec = dil if recurrent_dilation is None else as_tuple("recurrent_dilation", recurrent_dilation, spatial_dims)
        strides = as_tuple("stride", stride, spatial_dims)
        if spatial_dims == 0 and (padding != "same"):
            raise ValueError("a dense cell has no padding to choose; expected padding='same'")
        return cls(spatial_dims, as_tuple("kernel_size", kernel_size, spatial_dims), dil, rec, padding, strides)

    @property
    def resamples(self) -> bool:
        """Whether ``W_x * x`` changes the spatial size (valid padding or a stride), so the state's size differs."""
        return (self.padding == "valid" and any(k > 1 for k in self.kernel_size)) or any(s > 1 for s in self.stride)

    def output_size(self, spatial: tuple[int, ...]) -> tuple[int, ...]:
        """The spatial size of ``W_x * x`` (and so of the state) for an input of size ``spatial``."""
        out = []
        for n, k, d, s in zip(spatial, self.kernel_size, self.dilation, self.stride, strict=True):
            span = n if self.padding == "same" else n - d * (k - 1)
            out.append(max(0, (span - 1) // s + 1))
        return tuple(out)

    def _strided_same(self, x: Tensor) -> Padding:
        """TensorFlow's 'same' padding at a stride: the output has ceil(n / s) positions, the odd zero after."""
        spatial = x.shape[2:]
        total = [max((-(-n // s) - 1) * s + d * (k - 1) + 1 - n, 0)
                 for n, k, d, s in zip(spatial, self.kernel_size, self.dilation, self.stride, strict=True)]
        return tuple(t // 2 for t in total), tuple(t - t // 2 for t in total)

    def project(self, x: Tensor, weight: Tensor, bias: Tensor | None = None, *, recurrent: bool = False) -> Tensor:
        """``weight * x``: a convolution ('same'-padded unless the input's padding is 'valid'), or a matrix
        product for dense cells."""
        if self.spatial_dims == 0:
            return F.linear(x, weight, bias)
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.spatial_dims - 1]
        stride = (1,) * self.spatial_dims if recurrent else self.stride
        if recurrent:
            before, after = self.padding_h
        elif self.padding == "same" and any(s > 1 for s in stride):
            before, after = self._strided_same(x)
        else:
            before, after = self.padding_x
        if before != after:  # an even span: the extra row/column of zeros goes after, as in TF and Keras
            x = F.pad(x, [p for b, a in zip(reversed(before), reversed(after), strict=True) for p in (b, a)])
            before = (0,) * self.spatial_dims
        return conv(x, weight, bias, stride=stride, padding=before,
                    dilation=self.recurrent_dilation if recurrent else self.dilation)
