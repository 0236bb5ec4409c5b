"""The audit's checks that need the model around a norm: the recurrent cell it sits in, and what was called.

A module counts as a recurrent cell when it has an integer ``num_hidden`` (OpenSTL), ``hidden_channels``
(normrnn) or ``hidden_size`` (``torch.nn``) attribute.
"""

from __future__ import annotations

import math

from torch import nn

from .records import Finding, NormUse

__all__ = ["cells_of", "frame_size_lock", "gates_pooled", "missing_offset", "never_called", "spatial_letters"]

_HIDDEN = ("num_hidden", "hidden_channels", "hidden_size")
_GATES = {3: "GRU", 4: "LSTM", 7: "ST-LSTM input"}  # gate blocks a projection holds, by count


def hidden_size(module: nn.Module) -> int | None:
    for name in _HIDDEN:
        value = getattr(module, name, None)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def cells_of(model: nn.Module) -> dict[str, nn.Module]:
    """Every recurrent cell of ``model`` by its dotted path."""
    return {path: m for path, m in model.named_modules() if hidden_size(m) is not None}


def _enclosing(path: str, cells: dict[str, nn.Module]) -> tuple[str, nn.Module] | None:
    parts = path.split(".")
    for n in range(len(parts) - 1, -1, -1):
        prefix = ".".join(parts[:n])
        if prefix in cells:
            return prefix, cells[prefix]
    return None


def spatial_letters(letters: str) -> str:
    return "".join(c for c in letters if c not in "BTCF?")


def _groups(module: nn.Module) -> int:
    axes = getattr(module, "axes", None)
    return int(getattr(axes, "groups", None) or getattr(module, "num_groups", None) or 1)


def gates_pooled(module: nn.Module, use: NormUse, cells: dict[str, nn.Module]) -> Finding | None:
    """A norm over a cell's gate projection whose statistics span several gates."""

    found = _enclosing(use.path, cells)
    if found is None or "C" not in use.reduce or "C" not in use.layout:
        return None
    hidden = hidden_size(found[1])
    channels = use.shapes[0][use.layout.index("C")]
    gates = channels // hidden if hidden and channels % hidden == 0 else 0
    if gates not in _GATES or _groups(module) % gates == 0:
        return None
    return Finding(use.path, "gates-share-statistics",
                   f"{use.cls} normalizes the {gates} gate blocks of {found[0] or 'the cell'} ({gates}×{hidden} "
                   f"channels) with {_groups(module)} statistic{'s' * (_groups(module) != 1)} per sample: every gate "
                   "is shifted and scaled by the others' mean and variance, so a gate's pre-activation depends on "
                   "what the other gates see. Per-gate statistics (Ba et al.; normrnn's norm_scope='per_gate') keep "
                   "them apart; TF-Addons refused the pooled form for its LayerNormLSTMCell "
                   "(https://github.com/tensorflow/addons/issues/2143).")


def frame_size_lock(use: NormUse, cells: dict[str, nn.Module]) -> Finding | None:
    """A recurrent cell's norm whose parameters span the frame's spatial axes: they fix the frame size. (Outside
    recurrent cells, ``nn.LayerNorm([C, H, W])`` is a common deliberate choice, and not reported.)"""

    letters = use.param_letters
    if _enclosing(use.path, cells) is None:
        return None
    spatial = spatial_letters(letters)
    if not spatial or len(letters) != len(use.param_shape):
        return None
    fixed = [s for s, c in zip(use.param_shape, letters, strict=True) if c in spatial]
    return Finding(use.path, "frame-size-lock",
                   f"{use.cls}'s scale and shift have shape {use.param_shape}, one per position over "
                   f"{', '.join(spatial)}: the model runs only at {'×'.join(map(str, fixed))} frames, with "
                   f"{math.prod(fixed)}× the parameters of a per-channel norm. Per-channel parameters (normrnn's "
                   "default, param_axes='C') work at every frame size.")


def missing_offset(cells: dict[str, nn.Module], called: set[nn.Module]) -> list[Finding]:
    """Recurrent cells with neither a bias nor a norm shift that is used."""

    out = []
    for path, cell in cells.items():
        owners = {sub for sub in cell.modules() if sub is cell or sub in called}
        offsets = [name for name, _ in cell.named_parameters()
                   if name.rpartition(".")[2].startswith("bias") and _owner(cell, name) in owners]
        if not offsets and any(True for _ in cell.parameters()):
            out.append(Finding(path or "(root)", "no-offset",
                               f"{type(cell).__name__} adds no bias and no norm shift to its gates: no gate has a "
                               "learned offset, so at x = h = 0 every gate sits at σ(0) = 0.5, and there is nowhere "
                               "to put a forget bias. Give the convolutions or the norms a bias (normrnn: bias=True, "
                               "forget_bias=1.0)."))
    return out


def _owner(root: nn.Module, name: str) -> nn.Module:
    path = name.rpartition(".")[0]
    return root.get_submodule(path) if path else root


def never_called(uses: list[NormUse]) -> list[Finding]:

    return [Finding(u.path, "norm-never-called",
                    f"{u.cls} is built but was never called in the forward pass: its parameters are trained by "
                    "nothing and counted in the model's size. Remove it, or call it where it was meant to be.")
            for u in uses if not u.calls]
