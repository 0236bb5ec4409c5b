"""The study config's value checks: one-line ``ValueError`` messages that name the key, what was expected and what
was got; and the tokens that norms and LR multipliers take in run ids."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Sequence
from typing import Any

from .._checks import one_of

__all__ = [
    "MAX_SEED",
    "canonical_norm",
    "check_device",
    "choice",
    "device_name",
    "distinct",
    "fraction",
    "integer",
    "mult_token",
    "norm_spec",
    "norm_token",
    "number",
    "of_type",
]

MAX_SEED = 2**31 - 1  # per-epoch seeds are derived from it and must stay within torch's 64-bit range


def integer(key: str, value: object, *, minimum: int, maximum: int | None = None) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum or (maximum and value > maximum):
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"expected {key} to be {what}{f' and <= {maximum}' if maximum else ''}, got {value!r}")


def number(key: str, value: object, *, minimum: float, strict: bool = False) -> None:
    if (isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value)
            or value < minimum or (strict and value == minimum)):
        bound = f"> {minimum:g}" if strict else f">= {minimum:g}"
        raise ValueError(f"expected {key} to be a finite number {bound}, got {value!r}")


def fraction(key: str, value: object) -> None:
    number(key, value, minimum=0.0, strict=True)
    if value >= 1:  # type: ignore[operator]  # a number: checked on the line above
        raise ValueError(f"expected {key} to be a fraction in (0, 1), got {value!r}")


def choice(key: str, value: object, options: Sequence[str]) -> None:
    one_of(key, value, tuple(options))  # type: ignore[arg-type]  # a wrong type is refused as a wrong value


def of_type(key: str, value: object, expected: type, what: str, *, optional: bool = False) -> None:
    """A ``value`` of type ``expected`` (``None`` too when ``optional``); strings must not be empty."""
    if (optional and value is None) or (isinstance(value, expected) and value != ""):
        return
    raise ValueError(f"expected {key} to be {what}{' or None' if optional else ''}, got {value!r}")


def canonical_norm(spec: str) -> str:
    """A norm spec as the registry names it: ``"Layer"`` is ``"layer"``, ``"group:08"`` is ``"group:8"``."""
    from ..norms import NormSpec  # the registry loads every norm (and torch): only when a spec is checked

    return NormSpec.parse(spec).name


def norm_token(norm: str) -> str:
    """A norm spec as it appears in run ids: lower case, runs of other characters as one ``-``."""
    return re.sub(r"[^a-z0-9]+", "-", norm.lower()).strip("-")


def mult_token(mult: float) -> str:
    """An LR multiplier as it appears in run ids: ``:g`` where that is exact (``1``, ``0.3``), else every digit."""
    short = f"{mult:g}"
    return short if float(short) == mult else repr(float(mult))


def distinct(key: str, values: Sequence[Any], token: Callable[[Any], str]) -> None:
    """Two grid values that name the same runs would make the later ones vanish: refuse them."""
    seen: dict[str, Any] = {}
    for value in values:
        if token(value) in seen:
            raise ValueError(f"{key}: {seen[token(value)]!r} and {value!r} name the same runs "
                             f"(run ids use {token(value)!r}); list each value once")
        seen[token(value)] = value


def device_name(key: str, value: object) -> None:
    if not isinstance(value, str) or not re.fullmatch(r"cpu|cuda(:\d+)?", value):
        raise ValueError(f"expected {key} to be 'cpu', 'cuda' or 'cuda:N', got {value!r}")


def norm_spec(key: str, value: object) -> None:
    if not isinstance(value, str):
        raise ValueError(f"expected each of {key} to be a norm spec string, got {value!r}")
    try:
        canonical_norm(value)
    except ValueError as e:
        raise ValueError(f"{key}: {e}") from None


def check_device(device: str) -> None:
    """A ``ValueError`` unless ``device`` is usable here (CUDA present, index in range), before any work."""
    device_name("device", device)
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            raise ValueError(f"expected a CUDA device for device={device!r}, but torch sees none here; "
                             "use device = 'cpu' (or --device cpu)")
        index = int(device.partition(":")[2] or 0)
        if index >= torch.cuda.device_count():
            raise ValueError(f"expected device={device!r} among the {torch.cuda.device_count()} CUDA devices")
