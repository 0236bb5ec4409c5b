"""The study's model: an encoder-forecaster of stacked ConvLSTM/ConvGRU layers (Shi et al. 2015).

The encoder reads the ``frames_in`` given frames; its final states start the forecaster, which runs
``frames_out`` steps with no input and a 1×1 head maps each step to a frame. Optional space-to-depth
patching (``patch``, as OpenSTL does) trades resolution for channels and speed.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .._checks import first_line
from .._loader import FactoryExit, accepted, no_exit, resolve
from ..cells import cell_kind
from ..layers import layer_for

if TYPE_CHECKING:
    from .config import StudyConfig
    from .grid import RunSpec

__all__ = ["Forecaster", "ModelConfig", "bias_elements", "build_model", "frame_settings", "model_settings",
           "reaches_model", "teaches"]

ModelFactory = Callable[..., nn.Module]



@dataclass(frozen=True)
class ModelConfig:
    """What the encoder-forecaster is built from."""

    cell: str = "convlstm"  # a convolutional cell kind: convlstm | convgru (normrnn.cells.cell_kinds)
    depth: int = 2  # stacked layers in the encoder and in the forecaster
    width: int = 16  # hidden channels of every layer
    kernel_size: int = 3  # k x k recurrent convolutions
    norm: str = "none"  # any normrnn norm spec ("recurrent_batch" alone has T_MAX = 100 slots)
    norm_inputs: str = "joint"  # joint | separate
    norm_scope: str = "per_gate"  # per_gate | all_gates
    residual: bool = False  # False: plainly stacked; True: residual connections between layers
    patch: int = 1  # space-to-depth factor; H and W must be divisible by it
    channels: int = 1  # image channels
    forget_bias: float = 1.0  # added to the forget gate's bias at initialization
    recurrent_init: str = "orthogonal"  # orthogonal | default (uniform)
    head: str = "linear"  # linear: the 1×1 head's output as is (PredRNN, OpenSTL) | sigmoid: outputs in [0, 1]

    @classmethod
    def for_run(cls, config: StudyConfig, spec: RunSpec) -> ModelConfig:
        """The study's model part for one run: every field the config's model part names (by name, so a model
        setting added to both reaches the model with no copying), and the run's depth, norm and topology."""
        names = {f.name for f in dataclasses.fields(cls)}
        shared = {key: value for key, value in config.part("model").items() if key in names}
        return cls(**shared, depth=spec.depth, norm=spec.norm, residual=spec.topology == "residual")


class Forecaster(nn.Module):
    """Predict ``frames_out`` future frames from ``frames_in`` given ones.

    Shape:
        - Input: ``(B, T_in, C, H, W)`` in [0, 1].
        - Output: ``(B, T_out, C, H, W)`` (in [0, 1] with ``head="sigmoid"``).

    Example::

        >>> model = Forecaster(ModelConfig(norm="group:2", width=8, patch=2), frames_in=3, frames_out=2)
        >>> model(torch.rand(2, 3, 1, 8, 8)).shape
        torch.Size([2, 2, 1, 8, 8])
    """

    def __init__(self, config: ModelConfig, *, frames_in: int = 10, frames_out: int = 10) -> None:
        super().__init__()
        kind = cell_kind(config.cell, spatial=True)  # a ValueError naming the registered kinds
        if config.head not in ("sigmoid", "linear"):
            raise ValueError(f"expected head to be 'sigmoid' or 'linear', got {config.head!r}")
        self.config = config
        self.frames_out = frames_out
        c = config.channels * config.patch**2
        layer = layer_for(kind.cell)
        options: dict[str, Any] = {"num_layers": config.depth, "norm": config.norm, "norm_inputs": config.norm_inputs,
                   "norm_scope": config.norm_scope, "residual": config.residual,
                   "forget_bias": config.forget_bias, "recurrent_init": config.recurrent_init}
        self.encoder = layer(c, config.width, config.kernel_size, **options)
        self.forecaster = layer(c, config.width, config.kernel_size, **options)
        self.head = nn.Conv2d(config.width, c, 1)

    def cells(self) -> list[nn.Module]:
        """Every recurrent cell, encoder layers first."""
        return [*self.encoder.cells(), *self.forecaster.cells()]

    def forward(self, x: Tensor) -> Tensor:
        B, T, C, H, W = x.shape
        p = self.config.patch
        if H % p or W % p:
            raise ValueError(f"expected H and W divisible by patch={p}, got {H}x{W}")
        z = F.pixel_unshuffle(x.reshape(B * T, C, H, W), p)  # (B·T, C·p², H/p, W/p)
        z = z.reshape(B, T, *z.shape[1:])  # (B, T, C·p², h, w)
        _, states = self.encoder(z)
        blank = z.new_zeros(B, self.frames_out, *z.shape[2:])  # the forecaster has no input
        y, _ = self.forecaster(blank, states)  # (B, T_out, width, h, w)
        y = self.head(y.reshape(B * self.frames_out, *y.shape[2:]))  # (B·T_out, C·p², h, w)
        y = F.pixel_shuffle(y, p).reshape(B, self.frames_out, C, H, W)
        return torch.sigmoid(y) if self.config.head == "sigmoid" else y


def build_model(config: StudyConfig, spec: RunSpec, factory: ModelFactory | None = None, *,
                train: Any = None) -> nn.Module:
    """The run's model, initialized from its seed: normrnn's :class:`Forecaster`, or ``factory(norm=...,
    topology=..., depth=..., seed=..., **model settings)`` (a user's own model, e.g. one without normrnn's
    cells); the factory receives the config's model settings that its signature accepts (or all, if it takes
    ``**kwargs``), and the frames it will see (:func:`frame_settings`, from ``train``, the training set, when
    given)."""
    torch.manual_seed(spec.seed)
    if factory is None and config.model is not None:
        factory = resolve(config.model, "model factory")
    if factory is not None:
        name = config.model or getattr(factory, "__qualname__", repr(factory))
        try:
            with no_exit(f"model factory {name}"):
                return factory(norm=spec.norm, topology=spec.topology, depth=spec.depth, seed=spec.seed,
                               **accepted(factory, model_settings(config, train)))
        except FactoryExit:
            raise
        except Exception as e:  # the user's code: name it, in one line
            raise ValueError(f"model factory {name} raised for {spec.run_id}: {type(e).__name__}: "
                             f"{first_line(e)}") from None
    return Forecaster(ModelConfig.for_run(config, spec), frames_in=config.frames_in, frames_out=config.frames_out)


def reaches_model(config: StudyConfig, name: str, factory: ModelFactory | None = None) -> bool:
    """Whether the model setting ``name`` reaches the run's model: always for normrnn's forecaster; for a model
    factory, where its signature takes it (or ``**kwargs``). Rows record only the settings that do."""
    if factory is None and config.model is None:
        return True
    return name in accepted(factory or resolve(config.model or "", "model factory"), {name: None})


def bias_elements(model: nn.Module) -> int:
    """The elements of the model's bias parameters (named ``bias*``: convolutions', norms' shifts, ``bias_hn``)."""
    return sum(p.numel() for name, p in model.named_parameters() if name.rpartition(".")[2].startswith("bias"))


def teaches(model: nn.Module) -> bool:
    """Whether ``model.forward`` takes ``target=`` and ``teacher=`` by name: then training passes it the true future
    frames and the probability of feeding each (scheduled sampling, :attr:`StudyConfig.teacher_decay`)."""
    import inspect

    try:
        params = inspect.signature(model.forward).parameters
    except (TypeError, ValueError):
        return False
    return "target" in params and "teacher" in params


def model_settings(config: StudyConfig, train: Any = None) -> dict[str, Any]:
    """The config's model part (less the factory's own name and version) and :func:`frame_settings`, as a model
    factory may take them."""
    settings = {k: v for k, v in config.part("model").items() if k not in ("model", "model_version")}
    return {**settings, **frame_settings(config, train)}


def frame_settings(config: StudyConfig, train: Any = None) -> dict[str, Any]:
    """What a model factory may take about its input: ``frames_in``, ``frames_out`` and, for frames ``(T, C, H,
    W)``, their ``size`` (``H``, or ``(H, W)`` when not square) and ``channels``; from the first sample of
    ``train`` (a data factory's) when given, else from the config (built-in data: one channel, ``size``)."""
    out: dict[str, Any] = {"frames_in": config.frames_in, "frames_out": config.frames_out}
    if train is None or config.data is None:
        return {**out, "size": config.size, "channels": 1}
    x, y = train[0][:2]
    out |= {"frames_in": int(x.shape[0]), "frames_out": int(y.shape[0])}
    if x.dim() == 4:  # (T, C, H, W) frames
        _, C, H, W = x.shape
        out |= {"size": int(H) if H == W else (int(H), int(W)), "channels": int(C)}
    return out
