"""A run's checkpoint on disk: read only if it is a normrnn study checkpoint of this study (``weights_only=True``),
otherwise moved aside, never deleted."""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

import torch

__all__ = ["CheckpointWarning", "read_checkpoint", "set_aside"]


class CheckpointWarning(UserWarning):
    """A checkpoint could not be used: it was moved aside and its run starts again."""


def set_aside(path: Path, why: str) -> Path:
    """Move an unusable file to ``PATH.unreadable[-N]`` (never delete it) and warn once, naming both."""
    target, n = path.with_name(path.name + ".unreadable"), 1
    while target.exists():
        n += 1
        target = path.with_name(f"{path.name}.unreadable-{n}")
    os.replace(path, target)
    warnings.warn(f"normrnn: {path} cannot be used ({why}); moved it to {target.name} and restarting that run "
                  "from its first epoch", CheckpointWarning, stacklevel=2)
    return target


def read_checkpoint(path: Path, config_hash: str) -> dict[str, Any] | None:
    """The checkpoint at ``path`` if it is there, loads (``weights_only=True``) and belongs to this study;
    otherwise ``None``, with an unusable file moved aside by :func:`set_aside`."""
    if not path.exists():
        return None
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # garbage, truncated or empty: whatever torch.load raises, the file is unusable
        set_aside(path, f"it cannot be loaded: {type(e).__name__}")
        return None
    if not isinstance(ckpt, dict) or not {"model", "optimizer", "scheduler", "history"} <= set(ckpt):
        set_aside(path, "it is not a normrnn study checkpoint")
        return None
    if ckpt.get("config_hash", config_hash) != config_hash:
        set_aside(path, f"it belongs to another study (config hash {ckpt['config_hash']}, this one {config_hash})")
        return None
    return ckpt
