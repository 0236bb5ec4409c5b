"""The study on your own model and data: ``MODULE:FACTORY`` strings, resolved, hashed and checked before any work.

- ``model = "pkg.mod:build"`` is called as ``build(norm=..., topology=..., depth=..., seed=..., **settings)`` and
  returns an ``nn.Module`` whose ``forward(x)`` returns a tensor shaped like the target. It receives the study's
  model settings (``width``, ``kernel_size``, ``patch``, …) that its signature names, or all with ``**kwargs``.
- ``data = "pkg.mod:load"`` is called as ``load(split=..., seed=...)`` for ``"train"``, ``"val"`` and ``"test"``
  and returns a ``torch.utils.data.Dataset`` of ``(input, target)`` tensor pairs.
- ``loss = "mse" | "mae" | "pkg.mod:fn"``, ``fn(pred, target)`` returning a scalar tensor.

MODULE is imported as Python imports it, with the current directory first on the path. A study's config hash
covers each factory's name and the content of its source file, so an edited model is a different study.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset, Subset, TensorDataset, default_collate

from .._checks import first_line
from .._loader import FactoryExit, accepted, no_exit, resolve
from ..data import SequenceDataset

__all__ = ["LOSSES", "batch", "check_model", "first_batch", "load_user_data", "loss_function", "size_of", "subset"]

LOSSES: dict[str, Callable[[Tensor, Tensor], Tensor]] = {"mse": F.mse_loss, "mae": F.l1_loss}


def loss_function(spec: str) -> Callable[[Tensor, Tensor], Tensor]:
    """``"mse"``, ``"mae"`` or a ``MODULE:FUNC`` loss. A user's loss is checked at every call, wherever it is
    called (training, in this process or a pool's, the cost table, evaluation): one that raises, exits or returns
    something other than a scalar tensor is a one-line ``ValueError`` naming it, never a traceback."""
    if spec in LOSSES:
        return LOSSES[spec]
    fn = resolve(spec, "loss")

    def checked(pred: Tensor, target: Tensor) -> Tensor:
        try:
            with no_exit(f"loss {spec}"):
                value = fn(pred, target)
        except FactoryExit:
            raise
        except Exception as e:
            raise ValueError(f"loss {spec} raised: {type(e).__name__}: {first_line(e)}") from None
        if not (isinstance(value, Tensor) and value.numel() == 1):
            got = f"a tensor of shape {tuple(value.shape)}" if isinstance(value, Tensor) else type(value).__name__
            raise ValueError(f"loss {spec}: expected a scalar tensor (reduce it, e.g. .mean()), got {got}")
        return value

    return checked


def batch(data: Dataset[Any], idx: Tensor, device: torch.device) -> tuple[Tensor, Tensor]:
    """The ``(input, target)`` batch of ``data`` at indices ``idx``: sliced from a built-in video dataset, or
    collated from a user's ``(input, target)`` pairs."""
    if isinstance(data, SequenceDataset):
        video = data.video[idx].to(device)  # (b, T, C, H, W)
        return video[:, : data.frames_in], video[:, data.frames_in : data.frames_in + data.frames_out]
    x, y = default_collate([data[int(i)] for i in idx])
    return x.to(device), y.to(device)


def size_of(data: Dataset[Any]) -> int:
    """How many samples a map-style dataset holds (torch's ``Dataset`` type does not declare ``__len__``)."""
    return len(data)  # type: ignore[arg-type]  # map-style datasets define __len__


def first_batch(data: Dataset[Any], n: int, device: torch.device) -> tuple[Tensor, Tensor]:
    """The first ``n`` samples of ``data`` (all of them, if it holds fewer) as one batch on ``device``."""
    return batch(data, torch.arange(min(n, size_of(data))), device)


def subset(data: Dataset[Any], n: int) -> Dataset[Any]:
    """The first ``n`` samples of ``data``."""
    if isinstance(data, SequenceDataset):
        return SequenceDataset(data.video[:n], frames_in=data.frames_in, frames_out=data.frames_out)
    return Subset(data, range(min(n, size_of(data))))


def load_user_data(text: str, split: str, seed: int) -> Dataset[Any]:
    """Call the data factory for one split and check what it returns."""
    fn = resolve(text, "data factory")
    try:
        with no_exit(f"data factory {text}"):
            data = fn(**accepted(fn, {"split": split, "seed": seed}))
    except FactoryExit:
        raise
    except Exception as e:
        raise ValueError(f"data factory {text} raised for split={split!r}: {type(e).__name__}: {e}") from None
    if not (hasattr(data, "__getitem__") and hasattr(data, "__len__")):
        raise ValueError(f"data factory {text}: expected a torch.utils.data.Dataset for split={split!r}, "
                         f"got {type(data).__name__}")
    if len(data) == 0:
        raise ValueError(f"data factory {text}: the {split!r} split is empty")
    try:
        with no_exit(f"data factory {text}'s dataset"):
            sample = data[0]
    except FactoryExit:
        raise
    except Exception as e:  # a dict, or a __getitem__ that raises: not a map-style Dataset indexed 0..len-1
        raise ValueError(f"data factory {text}: expected a Dataset indexed 0..len-1, but item 0 of split {split!r} "
                         f"raised {type(e).__name__}: {first_line(e)}") from None
    if not (isinstance(sample, (tuple, list)) and len(sample) == 2 and all(isinstance(t, Tensor) for t in sample)):
        raise ValueError(f"data factory {text}: expected (input, target) tensor pairs, got a "
                         f"{type(sample).__name__} in split {split!r}")
    if not all(t.is_floating_point() for t in sample):
        raise ValueError(f"data factory {text}: expected floating-point (input, target) tensors, got "
                         f"{sample[0].dtype} and {sample[1].dtype} in split {split!r} (convert them, e.g. / 255)")
    _check_finite(text, split, data, (sample[0], sample[1]))
    return cast(Dataset[Any], data)  # indexable and sized, checked above: what the study reads of a Dataset


def _check_tensors(text: str, model: nn.Module, device: torch.device) -> None:
    """A model whose parameters or buffers are shapes without values (``meta``), or on a device the study does not
    use, would pass a forward check and fail later, in the cost table or the optimizer."""
    tensors = [*model.named_parameters(), *model.named_buffers()]
    meta = [name for name, t in tensors if t.is_meta]
    if meta:
        raise ValueError(f"model factory {text}: expected a model with values, but {meta[0]!r}"
                         f"{f' and {len(meta) - 1} more' if len(meta) > 1 else ''} is on the meta device (shapes "
                         f"only); build it on 'cpu', or call .to_empty(device='cpu') and initialize it")
    elsewhere = sorted({str(t.device) for _, t in tensors if t.device.type != "cpu"
                        and not (t.device.type == device.type and device.index in (None, t.device.index))})
    if elsewhere:
        raise ValueError(f"model factory {text}: expected its parameters on 'cpu' or the study's device "
                         f"{str(device)!r}, got {', '.join(map(repr, elsewhere))}")


def _check_finite(text: str, split: str, data: Dataset[Any], first: tuple[Tensor, Tensor]) -> None:
    """NaN or Inf in the data would be recorded as a run diverging at step 0: refuse it, naming the sample. A
    ``TensorDataset``'s tensors are checked whole (cheap); any other dataset, its ``first`` sample."""
    tensors = data.tensors if isinstance(data, TensorDataset) else [t[None] for t in first]
    for name, t in zip(("input", "target"), tensors, strict=True):
        bad = ~torch.isfinite(t.reshape(len(t), -1)).all(dim=1)  # (N,): samples holding NaN or Inf
        if bad.any():
            raise ValueError(f"data factory {text}: the {name} of sample {int(bad.nonzero()[0])} in split {split!r} "
                             f"holds NaN or Inf; expected finite values")


def check_model(text: str, model: object, x: Tensor, y: Tensor, *, grad: bool = True,
                device: torch.device | None = None) -> Tensor:
    """One batch through a user's model: its output, shaped like the target, on the input's device and (``grad``)
    differentiable with respect to its trainable parameters (else training would fail deep in autograd after the
    study began), or a ValueError. Its tensors must hold values (not on the ``meta`` device) on the CPU or the
    study's ``device``, where the study moves them."""
    if not isinstance(model, nn.Module):
        raise ValueError(f"model factory {text}: expected an nn.Module, got {type(model).__name__}")
    _check_tensors(text, model, x.device if device is None else device)
    try:
        with no_exit(f"model factory {text}'s model"):
            out = model(x)
    except FactoryExit:
        raise
    except Exception as e:
        raise ValueError(f"model factory {text}: the forward pass on a batch of shape {tuple(x.shape)} raised "
                         f"{type(e).__name__}: {first_line(e)}") from None
    if not isinstance(out, Tensor) or out.shape != y.shape:
        got = tuple(out.shape) if isinstance(out, Tensor) else type(out).__name__
        raise ValueError(f"model factory {text}: expected an output shaped like the target {tuple(y.shape)}, "
                         f"got {got}")
    if out.device != x.device:
        raise ValueError(f"model factory {text}: expected the output on the input's device {x.device}, got "
                         f"{out.device}")
    if not any(p.requires_grad for p in model.parameters()):
        raise ValueError(f"model factory {text}: expected a model with trainable parameters, got none")
    if not out.is_floating_point() or (grad and out.grad_fn is None):
        got = f"dtype {out.dtype}" if not out.is_floating_point() else "an output with no grad_fn"
        raise ValueError(f"model factory {text}: expected a floating-point output computed from the trainable "
                         f"parameters, got {got}")
    return out
