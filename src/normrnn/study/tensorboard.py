"""Optional TensorBoard logging of a run (``normrnn study --tensorboard``, extra ``normrnn[tensorboard]``).

Per step: the training loss and the gradient norm. Per epoch: the validation MSE, and on one validation batch
each layer's gate saturation (the share of sigmoid gates below 0.01 or above 0.99, as in the report) and a
histogram of its gate values, what the TF1 ConvLSTM cell of carlthome/tensorflow-convlstm-cell offered through
``tf.summary``. Events go to ``RUN_DIR/tensorboard``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._checks import install_hint
from .metrics import probed_cells
from .thresholds import SATURATED

__all__ = ["RunLogger"]



class RunLogger:
    """A ``SummaryWriter`` for one run; a clear ``ValueError`` when TensorBoard is not installed."""

    def __init__(self, run_dir: Path, *, purge_step: int | None = None) -> None:
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ValueError("expected the tensorboard package for --tensorboard; install it with: "
                             f"{install_hint('tensorboard', ['tensorboard'])}") from e
        self.writer = SummaryWriter(str(run_dir / "tensorboard"), purge_step=purge_step)

    def step(self, step: int, loss: float, grad_norm: float) -> None:
        self.writer.add_scalar("train/loss", loss, step)
        self.writer.add_scalar("train/grad_norm", grad_norm, step)

    @torch.no_grad()
    def epoch(self, epoch: int, val_mse: float, model: Any, x: Tensor) -> None:
        """The epoch's validation MSE, then gate saturation and histograms on the validation batch ``x``."""
        self.writer.add_scalar("val/mse", val_mse, epoch)
        cells = probed_cells(model)  # a user's model may have none
        seen: list[list[Tensor]] = [[] for _ in cells]
        for k, cell in enumerate(cells):
            cell.gate_probe = lambda gates, k=k: seen[k].append(torch.cat([g.flatten().float() for g in gates]))
        was_training = model.training
        model.eval()
        try:
            model(x)
        finally:
            for cell in cells:
                cell.gate_probe = None
            model.train(was_training)
        for k, values in enumerate(seen):
            if values:
                v = torch.cat(values)
                self.writer.add_scalar(f"gates/saturation_layer{k}", float(((v < SATURATED) | (v > 1 - SATURATED))
                                                                           .float().mean()), epoch)
                self.writer.add_histogram(f"gates/layer{k}", v, epoch)

    def close(self) -> None:
        self.writer.close()
