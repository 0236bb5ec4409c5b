"""OpenSTL's ConvLSTM from a checkout of OpenSTL (https://github.com/chengtan9907/OpenSTL), for ``normrnn audit``
and for converting it to normrnn.

OpenSTL has no PyPI package. Point ``OPENSTL`` at a checkout; only the two files that define the ConvLSTM are
loaded (``openstl/modules/convlstm_modules.py`` and ``openstl/models/convlstm_model.py``), so OpenSTL's other
dependencies need not be installed. Audit its Moving MNIST model (4 layers of 128, 64×64 frames patched by 4)::

    OPENSTL=/path/to/OpenSTL normrnn audit examples.openstl_convlstm:build_ln1 --input-shape 2,20,16,16,16

Study it (``study`` is the model factory; ``norm = "layer"`` is OpenSTL's ``layer_norm=1``, ``"none"`` its ``0``)::

    OPENSTL=/path/to/OpenSTL normrnn study --config examples/openstl_convlstm.toml --out study-openstl
"""

from __future__ import annotations

import importlib.util
import os
import sys
import types
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["OpenSTLForecaster", "build", "build_ln0", "build_ln1", "load_openstl", "study"]


def _load(root: Path, relative: str, name: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, root / relative)
    if spec is None or spec.loader is None:
        raise ValueError(f"expected OpenSTL's {relative} under OPENSTL={root}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    spec.loader.exec_module(module)
    return module


_MODELS = {  # name: (its cell's file and class, its model's file and class)
    "convlstm": ("convlstm_modules", "ConvLSTMCell", "convlstm_model", "ConvLSTM_Model"),
    "predrnn": ("predrnn_modules", "SpatioTemporalLSTMCell", "predrnn_model", "PredRNN_Model"),
}


def load_openstl(root: str | Path | None = None, model: str = "convlstm") -> tuple[type, type]:
    """OpenSTL's cell and model classes of ``model`` (``"convlstm"``: ``ConvLSTMCell`` and ``ConvLSTM_Model``;
    ``"predrnn"``: ``SpatioTemporalLSTMCell`` and ``PredRNN_Model``), from ``root`` (default: ``$OPENSTL``)."""
    root = Path(root or os.environ.get("OPENSTL", ""))
    if not (root / "openstl").is_dir():
        raise ValueError(f"expected OPENSTL to name a checkout of OpenSTL (a folder holding openstl/), got "
                         f"{str(root)!r}")
    cell_file, cell_name, model_file, model_name = _MODELS[model]
    modules = _load(root, f"openstl/modules/{cell_file}.py", f"openstl_{cell_file}")
    # the model file imports the cell from openstl.modules, whose __init__ imports every model's dependencies
    sys.modules.setdefault("openstl", types.ModuleType("openstl"))
    sys.modules["openstl.modules"] = types.SimpleNamespace(**{cell_name: getattr(modules, cell_name)})  # type: ignore
    models = _load(root, f"openstl/models/{model_file}.py", f"openstl_{model_file}")
    return getattr(modules, cell_name), getattr(models, model_name)


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


class OpenSTLForecaster(nn.Module):
    """OpenSTL's ``ConvLSTM_Model`` under the study's contract: ``(B, T_in, C, H, W)`` frames in, ``(B, T_out, C, H,
    W)`` out, taught with the target as OpenSTL trains it: each future frame fed with probability ``teacher`` (per
    sample and step, OpenSTL's ``schedule_sampling``), and with none at evaluation (its test mask is all zeros)."""

    def __init__(self, model: nn.Module, *, patch: int, frames_in: int, frames_out: int) -> None:
        super().__init__()
        self.model, self.patch, self.frames_in, self.frames_out = model, patch, frames_in, frames_out

    def forward(self, x: Tensor, target: Tensor | None = None, teacher: float | None = None) -> Tensor:
        B, T_in, C, H, W = x.shape
        future = target if target is not None else x.new_zeros(B, self.frames_out, C, H, W)
        frames = torch.cat([x, future], 1)  # (B, T, C, H, W)
        z = F.pixel_unshuffle(frames.flatten(0, 1), self.patch)  # (B·T, C·p², H/p, W/p)
        z = z.unflatten(0, (B, frames.shape[1])).permute(0, 1, 3, 4, 2)  # (B, T, H/p, W/p, C·p²): OpenSTL's layout
        fed = teacher if target is not None and teacher is not None else 0.0
        mask = (torch.rand(B, self.frames_out - 1, device=x.device) < fed).to(x.dtype)  # (B, T_out − 1)
        mask = mask[:, :, None, None, None].expand(-1, -1, *z.shape[2:])  # (B, T_out − 1, H/p, W/p, C·p²)
        next_frames, _ = self.model(z, mask, return_loss=False)  # (B, T − 1, H/p, W/p, C·p²)
        y = next_frames[:, T_in - 1 :].permute(0, 1, 4, 2, 3).flatten(0, 1)  # (B·T_out, C·p², H/p, W/p)
        return F.pixel_shuffle(y, self.patch).unflatten(0, (B, self.frames_out))  # (B, T_out, C, H, W)


def study(*, norm: str, topology: str, depth: int, seed: int, size: int, channels: int, frames_in: int,
          frames_out: int, patch: int, width: int, kernel_size: int) -> nn.Module:
    """The study's model factory: OpenSTL's ConvLSTM with ``depth`` layers of ``width`` channels, ``norm`` "none"
    (OpenSTL's ``layer_norm=0``) or "layer" (``layer_norm=1``), for the study's frames (passed in by the study)."""
    if norm not in ("none", "layer") or topology != "stacked":
        raise ValueError(f"expected norm 'none' or 'layer' (OpenSTL's layer_norm 0 or 1) and topology 'stacked', got "
                         f"norm={norm!r}, topology={topology!r}")
    if not isinstance(size, int):
        raise ValueError(f"expected square frames, got size {size}")
    _, model_cls = load_openstl()
    configs = types.SimpleNamespace(in_shape=(frames_in + frames_out, channels, size, size), patch_size=patch,
                                    filter_size=kernel_size, stride=1, layer_norm=int(norm == "layer"),
                                    pre_seq_length=frames_in, aft_seq_length=frames_out, reverse_scheduled_sampling=0)
    return OpenSTLForecaster(model_cls(depth, [width] * depth, configs), patch=patch, frames_in=frames_in,
                             frames_out=frames_out)


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
