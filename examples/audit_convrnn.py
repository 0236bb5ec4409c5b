"""A hand-written ConvLSTM of the kind ``normrnn audit`` is for (see the README).

    normrnn audit examples.audit_convrnn:build --input-shape 4,10,1,64,64 --layout BTCHW

Its gate norm is right (layer norm over each gate's (C, H, W), written as GroupNorm with one group per gate),
but it reuses one BatchNorm2d on the hidden state at every time step: the audit finds that one.
"""

from __future__ import annotations

import torch
from torch import nn


class HandWrittenConvLSTM(nn.Module):
    def __init__(self, in_channels: int = 1, hidden: int = 16) -> None:
        super().__init__()
        self.hidden = hidden
        self.gates = nn.Conv2d(in_channels + hidden, 4 * hidden, 3, padding=1)
        self.gate_norm = nn.GroupNorm(4, 4 * hidden)  # per-gate layer norm: correct
        self.out_norm = nn.BatchNorm2d(hidden)  # one module for every step: its running statistics mix the steps
        self.head = nn.Conv2d(hidden, in_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, _, H, W = x.shape
        h = c = x.new_zeros(B, self.hidden, H, W)
        outputs = []
        for t in range(T):
            i, f, g, o = self.gate_norm(self.gates(torch.cat([x[:, t], h], dim=1))).chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = self.out_norm(torch.sigmoid(o) * torch.tanh(c))
            outputs.append(self.head(h))
        return torch.stack(outputs, dim=1)  # (B, T, C, H, W)


def build() -> nn.Module:
    return HandWrittenConvLSTM()
