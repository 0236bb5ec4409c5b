"""Video-prediction metrics in the OpenSTL/PredRNN convention.

- **MSE, MAE**: per frame, the error is *summed* over the pixels (and channels), then averaged over frames
  and samples: ``mean_{b,t} sum_{c,h,w} (pred - true)^2``. On 64×64 Moving MNIST with pixels in [0, 1]
  this is the scale of the published tables (ConvLSTM ≈ 30, PredRNN ≈ 24).
- **PSNR**: ``10·log10(1 / mean_{c,h,w}(pred - true)^2)`` per frame (data range 1), averaged.
- **SSIM** (Wang et al. 2004): ``skimage.metrics.structural_similarity`` with its defaults and
  ``data_range=1``, as OpenSTL calls it: a 7×7 uniform window, sample covariance, K1 = 0.01, K2 = 0.03,
  averaged over the valid region, per frame and channel, then averaged.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = ["Evaluation", "TestMetrics", "frame_mae", "frame_mse", "no_learning_guesses", "prediction_metrics",
           "probed_cells", "psnr", "ssim"]



def no_learning_guesses(x: Tensor, y: Tensor) -> dict[str, Tensor]:
    """Predictions of ``y`` (B, T_out, C, H, W) that learn nothing from training: all-zero frames, the last given
    frame of ``x`` (B, T_in, C, H, W) repeated, and the mean pixel value of the targets everywhere."""
    guesses = {"blank": torch.zeros_like(y), "mean frame": torch.full_like(y, float(y.mean()))}
    if x.dim() == y.dim() == 5 and x.shape[2:] == y.shape[2:]:  # frames in, frames out: the last one may repeat
        guesses["copy last frame"] = x[:, -1:].expand_as(y).contiguous()
    return guesses


@dataclass(frozen=True)
class TestMetrics:
    """A model's test metrics, declared once: each field ``NAME`` is the result row's ``test_NAME``
    (:class:`~normrnn.study.rows.ResultRow`, which gives its unit, direction and report column). ``None``: not
    evaluated (a diverged run), or not defined for the targets (SSIM and PSNR need frames)."""

    __test__ = False  # a name pytest would otherwise collect

    mse: float | None = None
    mae: float | None = None
    ssim: float | None = None
    psnr: float | None = None

    def as_row(self) -> dict[str, float | None]:
        """The metrics under their result-row names: ``{"test_mse": ..., ...}``."""
        return {f"test_{f.name}": getattr(self, f.name) for f in dataclasses.fields(self)}


@dataclass(frozen=True)
class Evaluation:
    """A model evaluated on one split: its metrics, and the fraction of saturated gates per probed cell (``None`` when
    not asked for, or when no cell exposes its gates)."""

    metrics: TestMetrics
    gate_saturation: list[float] | None = None


def prediction_metrics(pred: Tensor, target: Tensor) -> TestMetrics:
    """MSE and MAE per frame (summed over pixels), SSIM and PSNR for ``(B, T, C, H, W)`` targets; for any other
    shape, the mean squared and absolute error per element, and no SSIM or PSNR."""
    if target.dim() == 5 and min(target.shape[-2:]) >= 3:
        return TestMetrics(mse=frame_mse(pred, target), mae=frame_mae(pred, target), ssim=ssim(pred, target),
                           psnr=psnr(pred, target))
    pred, target = pred.double(), target.double()
    return TestMetrics(mse=float(F.mse_loss(pred, target)), mae=float(F.l1_loss(pred, target)))


def _frames(pred: Tensor, target: Tensor) -> tuple[Tensor, Tensor]:
    if pred.shape != target.shape or pred.dim() != 5:
        raise ValueError(f"expected pred and target of one shape (B, T, C, H, W), got {tuple(pred.shape)} and "
                         f"{tuple(target.shape)}")
    return pred.double(), target.double()


def frame_mse(pred: Tensor, target: Tensor) -> float:
    """Squared error summed over each frame's pixels, averaged over frames and samples."""
    p, t = _frames(pred, target)
    return float((p - t).square().sum(dim=(2, 3, 4)).mean())


def frame_mae(pred: Tensor, target: Tensor) -> float:
    """Absolute error summed over each frame's pixels, averaged over frames and samples."""
    p, t = _frames(pred, target)
    return float((p - t).abs().sum(dim=(2, 3, 4)).mean())


def psnr(pred: Tensor, target: Tensor, *, data_range: float = 1.0) -> float:
    """Peak signal-to-noise ratio in dB per frame, averaged; a perfect frame counts as 100 dB."""
    p, t = _frames(pred, target)
    mse = (p - t).square().mean(dim=(2, 3, 4))  # (B, T)
    value = 10 * torch.log10(data_range**2 / mse.clamp_min(1e-10))
    return float(value.clamp_max(100.0).mean())


def ssim(pred: Tensor, target: Tensor, *, data_range: float = 1.0, win_size: int = 7) -> float:
    """Mean structural similarity per frame and channel (skimage defaults), averaged over all of them."""
    p, t = _frames(pred, target)
    B, T, C, H, W = p.shape
    win = min(win_size, H, W)
    win -= 1 - win % 2  # odd, as skimage requires
    if win < 3:
        raise ValueError(f"expected frames of at least 3x3 for SSIM, got {H}x{W}")
    x = p.reshape(B * T * C, 1, H, W)  # (N, 1, H, W): every frame and channel on its own
    y = t.reshape(B * T * C, 1, H, W)

    def mean(z: Tensor) -> Tensor:  # the uniform window over the valid region
        return F.avg_pool2d(z, win, stride=1)

    n = win * win
    cov = n / (n - 1)  # sample covariance
    ux, uy = mean(x), mean(y)
    vx = cov * (mean(x * x) - ux * ux)
    vy = cov * (mean(y * y) - uy * uy)
    vxy = cov * (mean(x * y) - ux * uy)
    c1, c2 = (0.01 * data_range) ** 2, (0.03 * data_range) ** 2
    s = ((2 * ux * uy + c1) * (2 * vxy + c2)) / ((ux * ux + uy * uy + c1) * (vx + vy + c2))
    return float(s.mean(dim=(1, 2, 3)).mean())


def probed_cells(model: nn.Module) -> list[Any]:
    """The model's recurrent cells that report their sigmoid gates, in module order: normrnn cells, and a user's
    modules that hold a ``gate_probe`` attribute they call with their gates (``self.gate_probe = None`` in
    ``__init__``). Found by what they are, never by calling an attribute of the model by name (a user's own
    ``cells`` may be anything)."""
    return [m for m in model.modules() if "gate_probe" in vars(m)]  # typed Any: a module's gate_probe is an
    # attribute of its own (normrnn's gated cells and ST-LSTM set one), which nn.Module's type does not declare


