"""The study's numeric precision: :class:`Precision`, the one object that owns the forward's autocast context, the name
a row records and the key the config hash holds; and the choice ``auto`` recorded in ``DIR/precision.json``
(:func:`~normrnn.study.cost.choose_precision` measures it)."""

from __future__ import annotations

import json
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .._checks import one_of

if TYPE_CHECKING:
    import torch

__all__ = ["BF16", "FP32", "PRECISION_FILE", "Precision", "load_precision"]

PRECISION_FILE = "precision.json"


@dataclass(frozen=True)
class Precision:
    """What a run computes in: ``"fp32"``, or ``"bf16"`` autocast (norm statistics stay fp32 under it).

    Example::

        >>> Precision("bf16").hash_key()
        {'bf16': True}
    """

    name: str  # "fp32" | "bf16": what a result row and cost.json record

    def __post_init__(self) -> None:
        one_of("precision", self.name, ("fp32", "bf16"))

    @property
    def bf16(self) -> bool:
        return self.name == "bf16"

    def autocast(self, device: torch.device | str) -> AbstractContextManager[Any]:
        """The context a forward runs in on ``device``: bf16 autocast, or nothing (fp32)."""
        import torch  # the report side names precisions without loading torch

        device_type = device if isinstance(device, str) else device.type
        return torch.autocast(device_type, dtype=torch.bfloat16, enabled=self.bf16)

    def hash_key(self) -> dict[str, bool]:
        """What the config hash holds for it: the boolean ``bf16`` key that came before ``precision``, so studies of
        either spelling keep one hash."""
        return {"bf16": self.bf16}


FP32, BF16 = Precision("fp32"), Precision("bf16")


def load_precision(out: str | Path, config_hash: str) -> Precision | None:
    """The precision recorded in ``DIR/precision.json`` for the study of ``config_hash``, or ``None``."""
    try:
        record = json.loads((Path(out) / PRECISION_FILE).read_text())
    except (OSError, ValueError):
        return None
    ok = isinstance(record, dict) and record.get("config_hash") == config_hash
    return Precision(record["precision"]) if ok and record.get("precision") in ("fp32", "bf16") else None
