"""Reference models for ``normrnn bench``: the naive ConvLSTM loop most code writes, and the conv-only floor."""

from __future__ import annotations

from typing import cast

import torch
from torch import Tensor, nn

from ..cells.base import joint_projection, joint_weight
from ..layers import ConvLSTM

__all__ = ["ConvOnly", "NaiveConvLSTM"]


class NaiveConvLSTM(nn.Module):
    """The ConvLSTM most PyTorch code writes: one biased conv on ``[x; h]`` per step, then eager gate math.

    Built from a bias-only :class:`normrnn.layers.ConvLSTM` (``weight = [W_x, W_h]``), so the two compute
    the same function and the benchmark can check that before timing them.
    """

    def __init__(self, model: ConvLSTM) -> None:
        super().__init__()
        self.convs = nn.ModuleList()
        for cell in model.cells():
            if cell.normalized or cell.bias is None:
                raise ValueError("NaiveConvLSTM mirrors a bias-only ConvLSTM (norm='none', bias=True)")
            k = cell.kernel_size
            conv = nn.Conv2d(cell.in_channels + cell.hidden_channels, 4 * cell.hidden_channels, (k[0], k[1]),
                             padding="same", dtype=cell.weight_x.dtype)  # even k: the extra zero after, as ours
            with torch.no_grad():
                conv.weight.copy_(torch.cat([cell.weight_x, cell.weight_h], dim=1))
                assert conv.bias is not None  # nn.Conv2d's default bias=True
                conv.bias.copy_(cell.bias)
            self.convs.append(conv)

    def forward(self, x: Tensor) -> Tensor:
        B, T, _, H, W = x.shape
        for conv in cast(list[nn.Conv2d], list(self.convs)):  # nn.ModuleList types its items as Module
            C = conv.out_channels // 4
            h = c = x.new_zeros(B, C, H, W)
            outputs = []
            for t in range(T):
                gates = conv(torch.cat([x[:, t], h], dim=1))  # (B, 4C, H, W)
                i, f, g, o = gates.chunk(4, dim=1)
                c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
                h = torch.sigmoid(o) * torch.tanh(c)
                outputs.append(h)
            x = torch.stack(outputs, dim=1)  # (B, T, C, H, W)
        return x




class ConvOnly(nn.Module):
    """The floor of a ConvLSTM step: its convolutions and nothing else. They are the ones the model runs: one
    conv of ``[x; h]`` per step (joint projection), or a hoisted ``W_x*x`` plus a per-step ``W_h*h`` and their
    sum. ``h`` is the first C channels of the result, so the recurrence still chains the steps."""

    def __init__(self, model: ConvLSTM) -> None:
        super().__init__()
        self.model = model  # shares the bias-only model's weights

    def forward(self, x: Tensor) -> Tensor:
        for cell in self.model.cells():
            B, T, C_in, *S = x.shape
            C = cell.hidden_channels
            h, outputs = x.new_zeros(B, C, *S), []
            if joint_projection(cell, x.device):  # the model's own choice: one conv of [x_t; h] per step
                weight = joint_weight(cell)
                for x_t in x.unbind(1):
                    h = cell.project_joint(x_t, h, weight)[:, :C]  # (B, C, *S)
                    outputs.append(h)
            else:
                gx = cell.project_input(x.reshape(B * T, C_in, *S)).reshape(B, T, 4 * C, *S)  # (B, T, 4C, *S)
                for gx_t in gx.unbind(1):
                    h = (gx_t + cell.project_hidden(h))[:, :C]  # (B, C, *S)
                    outputs.append(h)
            x = torch.stack(outputs, dim=1)  # (B, T, C, *S)
        return x
