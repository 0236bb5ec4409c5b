"""OpenSTL's ConvLSTM from a checkout of OpenSTL (https://github.com/chengtan9907/OpenSTL), for ``normrnn audit``
and for converting it to normrnn.

OpenSTL has no PyPI package. Point ``OPENSTL`` at a checkout; only the two files that define the ConvLSTM are
loaded (``openstl/modules/convlstm_modules.py`` and ``openstl/models/convlstm_model.py``), so OpenSTL's other
dependencies need not be installed. Audit its Moving MNIST model (4 layers of 128, 64×64 frames patched by 4)::

    OPENSTL=/path/to/OpenSTL normrnn audit examples.openstl_convlstm:build_ln1 --input-shape 2,10,16,16,16
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import torch
from torch import nn

__all__ = ["build", "build_ln0", "build_ln1", "load_openstl"]


def _load(root: Path, relative: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, root / relative)
    if spec is None or spec.loader is None:
        raise ValueError(f"expected OpenSTL's {relative} under OPENSTL={root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


def load_openstl(root: str | Path | None = None) -> tuple[type, type]:
    """OpenSTL's ``ConvLSTMCell`` and ``ConvLSTM_Model`` classes, from ``root`` (default: ``$OPENSTL``)."""
    root = Path(root or os.environ.get("OPENSTL", ""))
    if not (root / "openstl").is_dir():
        raise ValueError(f"expected OPENSTL to name a checkout of OpenSTL (a folder holding openstl/), got "
                         f"{str(root)!r}")
    modules = _load(root, "openstl/modules/convlstm_modules.py", "openstl_convlstm_modules")
    # the model file imports the cell from openstl.modules, whose __init__ imports every model's dependencies
    sys.modules.setdefault("openstl", types.ModuleType("openstl"))
    sys.modules["openstl.modules"] = types.SimpleNamespace(ConvLSTMCell=modules.ConvLSTMCell)  # type: ignore
    model = _load(root, "openstl/models/convlstm_model.py", "openstl_convlstm_model")
    return modules.ConvLSTMCell, model.ConvLSTM_Model


class _Sequence(nn.Module):
    """OpenSTL's model on a plain ``(B, T, C, H, W)`` sequence (its channels-last input, an all-ones mask)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: torch.Tensor) -> torch.Tensor:
        B, _, C, H, W = frames.shape  # (B, T, C, H, W)
        cfg = self.model.configs
        mask = frames.new_ones(B, cfg.aft_seq_length - 1, H, W, C)
        next_frames, _ = self.model(frames.permute(0, 1, 3, 4, 2), mask, return_loss=False)
        return next_frames.permute(0, 1, 4, 2, 3)  # (B, T − 1, C, H, W)


def build(layer_norm: int = 0, *, size: int = 64, channels: int = 1, patch: int = 4, frames: int = 10,
          num_hidden: tuple[int, ...] = (128, 128, 128, 128)) -> nn.Module:
    """OpenSTL's ``ConvLSTM_Model`` as its Moving MNIST config builds it (``layer_norm`` 0), on ``(B, T, C, H, W)``
    inputs already patched: ``C = patch² · channels``, ``H = W = size / patch``, ``T = 2 · frames``."""
    _, model_cls = load_openstl()
    configs = types.SimpleNamespace(in_shape=(2 * frames, channels, size, size), patch_size=patch, filter_size=5,
                                    stride=1, layer_norm=layer_norm, pre_seq_length=frames, aft_seq_length=frames,
                                    reverse_scheduled_sampling=0)
    return _Sequence(model_cls(len(num_hidden), list(num_hidden), configs))


def build_ln0() -> nn.Module:
    return build(0)


def build_ln1() -> nn.Module:
    return build(1)
