"""The cells' keyword options as ``TypedDict``s, and the signatures they spell out.

Cell subclasses and layers take them as ``**kwargs: Unpack[...]``, so IDEs and type checkers see every option by
name and type (:class:`~normrnn.cells.base.RecurrentCell` documents what each does). :func:`spelled_out` also puts
them in ``inspect.signature`` (and so ``help()``), each with its default, in place of ``**kwargs``.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any, TypedDict, TypeVar

import torch

from ..norms import NormLike

__all__ = ["CellOptions", "ConvGRUOptions", "ConvLSTMOptions", "ConvOptions", "GRUOptions", "LSTMOptions",
           "spelled_out"]

T = TypeVar("T", bound=type)


class CellOptions(TypedDict, total=False):
    """Every cell's keyword options (see :class:`~normrnn.cells.base.RecurrentCell`)."""

    bias: bool
    forget_bias: float
    norm: NormLike
    norm_inputs: str
    norm_scope: str
    norm_kwargs: Mapping[str, Any] | None
    recurrent_init: str
    recurrent_dropout: float
    backend: str
    projection: str
    activation: str
    recurrent_activation: str
    device: torch.device | str | None
    dtype: torch.dtype | None


class ConvOptions(CellOptions, total=False):
    """A convolutional cell's keyword options: every cell's, and the convolution's."""

    dilation: int | tuple[int, ...]
    recurrent_dilation: int | tuple[int, ...] | None
    padding: str
    stride: int | tuple[int, ...]


class LSTMOptions(CellOptions, total=False):
    """A dense LSTM cell's options: every cell's, and the peepholes and the cell-state norm."""

    peephole: bool | str
    peephole_size: tuple[int, ...] | None
    peephole_placement: str
    norm_cell: str


class GRUOptions(CellOptions, total=False):
    """A dense GRU cell's options: every cell's, and where the reset gate applies."""

    reset_after: bool


class ConvLSTMOptions(LSTMOptions, ConvOptions, total=False):
    """A ConvLSTM cell's options: the LSTM's and the convolution's."""


class ConvGRUOptions(GRUOptions, ConvOptions, total=False):
    """A ConvGRU cell's options: the GRU's and the convolution's."""


class _Signature:
    """``cls.__signature__`` for the class :func:`spelled_out` decorated alone: a subclass with its own
    ``__init__``, or an instance, gets None, so ``inspect`` reads their own."""

    def __get__(self, obj: object, owner: type) -> inspect.Signature | None:
        return owner.__dict__.get("_spelled_signature") if obj is None else None


def spelled_out(options: type) -> Callable[[T], T]:
    """A class decorator: ``inspect.signature(cls)`` names every option of ``options`` (a ``TypedDict``) where
    ``cls.__init__`` has ``**kwargs``, each with the default and type of the ``__init__`` that consumes it: one of
    the class's bases, or of its ``cell_class``'s (a layer passes its cells' options on), in their order."""

    def apply(cls: T) -> T:
        own = inspect.signature(cls.__init__)  # type: ignore[misc]  # the class's constructor, self first
        params = [p for p in list(own.parameters.values())[1:] if p.kind is not inspect.Parameter.VAR_KEYWORD]
        wanted = set(options.__annotations__) - {p.name for p in params}
        for source in [*cls.__mro__[1:], *getattr(cls, "cell_class", object).__mro__]:
            init = source.__dict__.get("__init__")
            for p in inspect.signature(init).parameters.values() if init is not None else ():
                if p.name in wanted:
                    params.append(p.replace(kind=inspect.Parameter.KEYWORD_ONLY))
                    wanted.discard(p.name)
        if wanted:
            raise TypeError(f"{cls.__name__}: no __init__ takes the options {sorted(wanted)}")
        cls._spelled_signature = own.replace(parameters=params)  # type: ignore[attr-defined]
        cls.__signature__ = _Signature()  # type: ignore[attr-defined]  # read by inspect
        return cls

    return apply
