"""Argument checks shared by the modules: a ``ValueError`` that says what was expected and what was got."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, TypedDict

if TYPE_CHECKING:
    import torch
    from torch import Tensor, nn

__all__ = ["Factory", "autocasting", "did_you_mean", "first_line", "input_like_parameters", "install_hint",
           "non_negative", "one_of", "positive_int"]


class Factory(TypedDict):
    """The ``device`` and ``dtype`` keywords a module passes on to the tensors and modules it creates (what torch
    calls ``factory_kwargs``); typed, so that ``torch.empty(..., **factory)`` type-checks."""

    device: torch.device | str | None
    dtype: torch.dtype | None


def did_you_mean(value: object, options: Iterable[str]) -> str:
    """``" (did you mean 'x'?)"`` for the option closest to a misspelled ``value``, or ``""`` when none is close."""
    if not isinstance(value, str):
        return ""
    close = difflib.get_close_matches(value.lower(), [str(o) for o in options], n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def first_line(error: BaseException) -> str:
    """The first line of an exception's message ("" for none): what a one-line error quotes of a deep one."""
    text = str(error)
    return text.splitlines()[0] if text else ""


def positive_int(name: str, value: object) -> int:
    """``value`` if it is an int >= 1 (not a bool)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"expected {name} to be a positive int, got {value!r}")
    return value


def non_negative(name: str, value: object) -> float:
    """``value`` as a float if it is a finite real number >= 0 (not a bool): NaN would pass a plain ``< 0`` check."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < float("inf"):
        raise ValueError(f"expected {name} to be a finite number >= 0, got {value!r}")
    return float(value)


def one_of(name: str, value: str, options: tuple[str, ...]) -> str:
    """``value`` if it is one of ``options``."""
    if value not in options:
        raise ValueError(f"expected {name} to be one of {', '.join(map(repr, options))}, got {value!r}"
                         f"{did_you_mean(value, options)}")
    return value


def input_like_parameters(x: Tensor, module: nn.Module, what: str) -> None:
    """As ``nn.LSTM``: ``x`` is a float on ``module``'s device, of its parameters' dtype unless autocast is on."""

    weight = next(module.parameters(), None)
    if weight is None:
        return
    if x.device != weight.device:
        raise ValueError(f"expected input on the {what}'s device {weight.device}, got {x.device}")
    if not x.is_floating_point():
        raise ValueError(f"expected a floating-point input, got {x.dtype}")
    if x.dtype != weight.dtype and not autocasting(x):
        raise ValueError(f"expected input of dtype {weight.dtype} (the {what}'s parameters), got {x.dtype}; cast one "
                         f"to the other (x.to({weight.dtype}) or {what}.to({x.dtype})) or run under autocast")


def autocasting(x: Tensor) -> bool:
    """Whether autocast is on for ``x``'s device type (False for types autocast does not know, such as meta, where
    ``torch.is_autocast_enabled`` raises)."""
    import torch

    try:
        return torch.is_autocast_enabled(x.device.type)
    except RuntimeError:
        return False


def install_hint(extra: str, missing: Iterable[str], package: Path | None = None) -> str:
    """The command that installs ``extra`` the way normrnn was installed: from its checkout (an editable install:
    the package sits in ``src/`` beside ``pyproject.toml``) with the tested versions, or else the missing packages
    themselves into this environment (which keeps its own torch)."""
    root = (Path(__file__).resolve().parent if package is None else package).parents[1]
    if (root / "pyproject.toml").is_file() and (root / "constraints.txt").is_file():
        return f"cd {root} && pip install -c constraints.txt \".[{extra}]\""
    return "pip install " + " ".join(missing)
