"""A ConvLSTM forecaster of the kind users write by hand, and the study's model and data factories for it.

No normrnn cells: each step is one ``nn.Conv2d`` over ``[x_t; h]`` (Shi et al. 2015, without peepholes),
the gates are split in four, and the only normrnn piece is the norm, made by ``normrnn.create_norm`` from
the study's spec string and applied to each gate on its own. The model has the same shape as the study's
built-in one (an encoder, a forecaster started from the encoder's states and fed no input, a 1×1 head,
space-to-depth patching; a linear or a sigmoid output), so the two can be compared in the study's own loop.

``init`` picks the initialization:

- ``"torch"``: PyTorch's ``nn.Conv2d`` defaults (uniform weights and biases, bound 1/sqrt(fan_in)).
- ``"keras"``: Keras' ``ConvLSTM2D`` defaults: a Glorot-uniform input kernel, an orthogonal recurrent
  kernel, zero biases but a unit forget bias (``unit_forget_bias=True``).

The data factory, :func:`load`, returns a plain ``TensorDataset`` of ``(input, target)`` pairs, as one would
for one's own recordings: here bouncing balls, 5 frames in and 5 out, at 32×32.

Study it::

    normrnn study --model examples.own_model:build --data examples.own_model:load --config examples/own_model.toml \
        --out study-own

Example::

    >>> import torch
    >>> model = build(norm="layer", topology="residual", depth=2, seed=0, width=8)
    >>> model(torch.rand(2, 3, 1, 16, 16)).shape
    torch.Size([2, 10, 1, 16, 16])
    >>> x, y = load(split="val", seed=0)[0]
    >>> tuple(x.shape), tuple(y.shape)
    ((5, 1, 32, 32), (5, 1, 32, 32))
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import TensorDataset

import normrnn
from normrnn.data import bouncing_balls

SAMPLES = {"train": 192, "val": 32, "test": 64}  # sequences per split


class ConvLSTMCell(nn.Module):
    """One ConvLSTM step: ``i, f, g, o = split(conv([x; h]))``, each gate normalized on its own."""

    def __init__(self, in_channels: int, hidden: int, kernel_size: int, *, norm: str = "none",
                 init: str = "torch") -> None:
        super().__init__()
        self.in_channels, self.hidden = in_channels, hidden
        self.conv = nn.Conv2d(in_channels + hidden, 4 * hidden, kernel_size, padding=kernel_size // 2)
        self.norms = nn.ModuleList(normrnn.create_norm(norm, hidden, layout="BCHW") for _ in range(4))
        self.gate_probe = None  # the study sets this to measure gate saturation
        if init == "keras":
            self._keras_init(kernel_size)
        elif init != "torch":
            raise ValueError(f"expected init to be 'torch' or 'keras', got {init!r}")

    def _keras_init(self, k: int) -> None:
        C, c_in = self.hidden, self.in_channels
        w = self.conv.weight  # (4C, c_in + C, k, k)
        with torch.no_grad():
            bound = math.sqrt(6 / (c_in * k * k + 4 * C * k * k))  # glorot_uniform of the input kernel
            w[:, :c_in].uniform_(-bound, bound)
            recurrent = torch.empty(C * k * k, 4 * C)  # Keras' (k, k, C, 4C) kernel, flattened to a matrix
            nn.init.orthogonal_(recurrent)
            w[:, c_in:] = recurrent.T.reshape(4 * C, C, k, k)
            self.conv.bias.zero_()
            self.conv.bias[C : 2 * C] = 1.0  # unit_forget_bias

    def forward(self, x: Tensor, state: tuple[Tensor, Tensor], step: int) -> tuple[Tensor, Tensor]:
        h, c = state
        z = self.conv(torch.cat([x, h], dim=1))  # (B, 4C, H, W)
        i, f, g, o = (norm(part, step=step) for norm, part in zip(self.norms, z.chunk(4, dim=1), strict=True))
        i, f, o = torch.sigmoid(i), torch.sigmoid(f), torch.sigmoid(o)
        if self.gate_probe is not None:
            self.gate_probe((i, f, o))
        c = f * c + i * torch.tanh(g)
        return o * torch.tanh(c), c


class Forecaster(nn.Module):
    """Encoder-forecaster of ``depth`` hand-written ConvLSTM layers; ``residual`` adds each layer's input to its
    output where the shapes agree.

    Shape: ``(B, T_in, C, H, W)`` → ``(B, T_out, C, H, W)`` (in [0, 1] with ``head="sigmoid"``).
    """

    def __init__(self, *, depth: int, width: int, kernel_size: int = 3, norm: str = "none", residual: bool = False,
                 patch: int = 2, channels: int = 1, frames_out: int = 10, init: str = "torch",
                 head: str = "linear") -> None:
        super().__init__()
        self.patch, self.frames_out, self.residual, self.sigmoid = patch, frames_out, residual, head == "sigmoid"
        c = channels * patch**2

        def stack() -> nn.ModuleList:
            return nn.ModuleList(ConvLSTMCell(c if k == 0 else width, width, kernel_size, norm=norm, init=init)
                                 for k in range(depth))

        self.encoder, self.forecaster = stack(), stack()
        self.head = nn.Conv2d(width, c, 1)

    def _run(self, cells: nn.ModuleList, z: Tensor, states: list[tuple[Tensor, Tensor]]) -> Tensor:
        T = z.shape[1]
        outputs = []
        for t in range(T):
            x = z[:, t]
            for k, cell in enumerate(cells):
                h, c = cell(x, states[k], t)
                states[k] = (h, c)
                x = x + h if self.residual and x.shape == h.shape else h
            outputs.append(x)
        return torch.stack(outputs, dim=1)  # (B, T, width, h, w)

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        p = self.patch
        z = F.pixel_unshuffle(x.reshape(B * T, C, H, W), p)  # (B·T, C·p², H/p, W/p)
        z = z.reshape(B, T, *z.shape[1:])  # (B, T, C·p², h, w)
        width = self.head.in_channels
        states = [(z.new_zeros(B, width, *z.shape[3:]),) * 2 for _ in self.encoder]
        self._run(self.encoder, z, states)
        blank = z.new_zeros(B, self.frames_out, *z.shape[2:])  # the forecaster has no input
        y = self._run(self.forecaster, blank, states)  # (B, T_out, width, h, w)
        y = self.head(y.reshape(B * self.frames_out, *y.shape[2:]))  # (B·T_out, C·p², h, w)
        y = F.pixel_shuffle(y, p).reshape(B, self.frames_out, C, H, W)
        return torch.sigmoid(y) if self.sigmoid else y


def build(*, norm: str, topology: str, depth: int, seed: int, width: int = 16, kernel_size: int = 3,
          patch: int = 2, frames_out: int = 10, init: str = "torch", head: str = "linear",
          **_: object) -> Forecaster:
    """The study's model factory: ``normrnn study --model examples.own_model:build``. It reads the study's
    ``width``, ``kernel_size``, ``patch``, ``frames_out`` and ``head`` settings and ignores the rest."""
    torch.manual_seed(seed)
    return Forecaster(depth=depth, width=width, kernel_size=kernel_size, norm=norm, residual=topology == "residual",
                      patch=patch, frames_out=frames_out, init=init, head=head)


def build_keras_init(**kwargs: object) -> Forecaster:
    """:func:`build` with Keras' ConvLSTM2D initialization."""
    return build(**kwargs, init="keras")  # type: ignore[arg-type]


def load(*, split: str, seed: int) -> TensorDataset:
    """The study's data factory: ``(5 frames in, 5 frames out)`` pairs of bouncing balls at 32×32, per split."""
    video = bouncing_balls(SAMPLES[split], split=split, seed=seed, size=32, steps=10)  # (N, 10, 1, 32, 32)
    return TensorDataset(video[:, :5], video[:, 5:])
