"""Modules with the parameters of OpenSTL's ConvLSTM, by the same names and structure: what the converter reads and
the audit inspects. Their forward is the ConvLSTM step written here (tested equal to OpenSTL's stored outputs); the
converter's reference outputs come from OpenSTL's own code, stored by ``tests/fixtures/make_openstl.py``."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn


def _stage(c_in: int, c_out: int, size: tuple[int, int], k: int, layer_norm: int) -> nn.Sequential:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, bias=False)
    return nn.Sequential(conv, nn.LayerNorm([c_out, *size])) if layer_norm else nn.Sequential(conv)


class ConvLSTMCell(nn.Module):
    def __init__(self, in_channel: int, num_hidden: int, height: int, width: int, filter_size: int,
                 layer_norm: int) -> None:
        super().__init__()
        self.num_hidden = num_hidden
        size = (height, width)
        self.conv_x = _stage(in_channel, 4 * num_hidden, size, filter_size, layer_norm)
        self.conv_h = _stage(num_hidden, 4 * num_hidden, size, filter_size, layer_norm)
        self.conv_o = _stage(2 * num_hidden, num_hidden, size, filter_size, layer_norm)  # built, never called
        self.conv_last = nn.Conv2d(2 * num_hidden, num_hidden, 1, bias=False)  # built, never called

    def forward(self, x: Tensor, h: Tensor, c: Tensor) -> tuple[Tensor, Tensor]:
        i, f, g, o = torch.split(self.conv_x(x) + self.conv_h(h), self.num_hidden, dim=1)
        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
        return torch.sigmoid(o) * torch.tanh(c), c


class _Model(nn.Module):
    """An OpenSTL model's parameters: its ``cell_list`` of ``cell_class`` and the 1×1 ``conv_last``."""

    cell_class: type[nn.Module]

    def __init__(self, num_hidden: list[int], *, size: tuple[int, int], channels: int, frames: tuple[int, int],
                 layer_norm: int, filter_size: int = 3) -> None:
        super().__init__()
        self.configs = types.SimpleNamespace(pre_seq_length=frames[0], aft_seq_length=frames[1], layer_norm=layer_norm,
                                             reverse_scheduled_sampling=0)
        self.num_hidden = num_hidden
        self.cell_list = nn.ModuleList(
            self.cell_class(channels if i == 0 else num_hidden[i - 1], c, *size, filter_size, layer_norm)
            for i, c in enumerate(num_hidden))
        self.conv_last = nn.Conv2d(num_hidden[-1], channels, 1, bias=False)


class ConvLSTM_Model(_Model):  # OpenSTL's name
    cell_class = ConvLSTMCell

    def forward(self, frames: Tensor) -> Tensor:
        """``(B, T, C, H, W)`` → the next frame after each, without scheduled sampling (for the audit)."""
        B, T, _, H, W = frames.shape
        h = [frames.new_zeros(B, c, H, W) for c in self.num_hidden]
        c = [frames.new_zeros(B, n, H, W) for n in self.num_hidden]
        out = []
        for t in range(T):
            x = frames[:, t]
            for i, cell in enumerate(self.cell_list):
                h[i], c[i] = cell(x, h[i], c[i])
                x = h[i]
            out.append(self.conv_last(x))
        return torch.stack(out, 1)


class SpatioTemporalLSTMCell(nn.Module):
    """The parameters of OpenSTL's PredRNN cell (``openstl/modules/predrnn_modules.py``), by the same names."""

    def __init__(self, in_channel: int, num_hidden: int, height: int, width: int, filter_size: int,
                 layer_norm: int) -> None:
        super().__init__()
        self.num_hidden, self._forget_bias = num_hidden, 1.0
        size = (height, width)
        self.conv_x = _stage(in_channel, 7 * num_hidden, size, filter_size, layer_norm)
        self.conv_h = _stage(num_hidden, 4 * num_hidden, size, filter_size, layer_norm)
        self.conv_m = _stage(num_hidden, 3 * num_hidden, size, filter_size, layer_norm)
        self.conv_o = _stage(2 * num_hidden, num_hidden, size, filter_size, layer_norm)
        self.conv_last = nn.Conv2d(2 * num_hidden, num_hidden, 1, bias=False)


class PredRNN_Model(_Model):  # OpenSTL's name
    cell_class = SpatioTemporalLSTMCell


def fixture(name: str) -> tuple[dict[str, torch.Tensor], dict[str, np.ndarray]]:
    """``tests/fixtures/NAME.npz``: the OpenSTL module's state dict, and the rest (inputs, outputs, settings)."""
    data = np.load(Path(__file__).parent / "fixtures" / f"{name}.npz")
    params = {k[len("param/"):]: torch.from_numpy(data[k]) for k in data.files if k.startswith("param/")}
    return params, {k: data[k] for k in data.files if not k.startswith("param/")}


def converted(mirror: type[nn.Module], convert: Any, name: str, *args: Any, **kwargs: Any) -> tuple[Any, Any, dict]:
    """OpenSTL's module ``mirror(*args, **kwargs)`` loaded with fixture ``name``'s weights, normrnn's conversion of
    it, and the fixture's arrays."""
    params, data = fixture(name)
    theirs = mirror(*args, **kwargs)
    theirs.load_state_dict(params)
    return theirs, convert(theirs), data


def assert_steps_equal(cell: nn.Module, data: dict[str, np.ndarray], names: str) -> None:
    """``cell`` stepped over the fixture's ``x`` gives its state (``names``: "hc" or "hcm") at every step, to 1e-5."""
    x = torch.from_numpy(data["x"])
    state = None
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, t=t)
        for name, got in zip(names, state, strict=True):
            torch.testing.assert_close(got, torch.from_numpy(data[name][:, t]), atol=1e-5, rtol=0)


def assert_model_equal(model: nn.Module, data: dict[str, np.ndarray]) -> None:
    """The converted model on the fixture's frames and mask equals OpenSTL's ``next_frames`` to 1e-5."""
    with torch.no_grad():
        out = model(torch.from_numpy(data["frames"]), torch.from_numpy(data["mask_true"]))
    torch.testing.assert_close(out, torch.from_numpy(data["next_frames"]), atol=1e-5, rtol=0)
