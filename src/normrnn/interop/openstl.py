"""OpenSTL's ConvLSTM and PredRNN in normrnn: one cell, a model's ``cell_list``, or a whole model.

`OpenSTL <https://github.com/chengtan9907/OpenSTL>`_'s cell (``openstl/modules/convlstm_modules.py``) computes

.. math::
    [i, f, g, o] = \\mathrm{LN}_x(W_x * x_t) + \\mathrm{LN}_h(W_h * h_{t-1}), \\qquad
    c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad h_t = \\sigma(o) \\odot \\tanh(c_t)

with no bias anywhere (the forget bias of 1.0 it defines is never added). With ``layer_norm=1`` each LN is
``nn.LayerNorm([4C, H, W])``: one statistic pooled over all four gates, and a scale and shift per position, which fix
the frame size; with ``layer_norm=0`` there is no norm. normrnn says the same with its own norms: ``norm="layer"``,
``norm_inputs="separate"``, ``norm_scope="all_gates"``, ``bias=False`` and
``norm_kwargs={"center": True, "param_axes": "CHW", "param_shape": (H, W)}``. Each OpenSTL cell also builds a
``conv_o`` (with its own LayerNorm) and a ``conv_last`` that its forward never calls: they are left out.

PredRNN's ``SpatioTemporalLSTMCell`` is normrnn's :class:`~normrnn.cells.STLSTMCell`: its fixed forget bias of 1.0
becomes the cell's bias (``forget_bias=1.0``, the other gates' 0), and with ``layer_norm=1`` its per-position
LayerNorms over ``[7C, H, W]``, ``[4C, H, W]``, ``[3C, H, W]`` and (on ``conv_o``) ``[C, H, W]`` become
``norm="layer"``, ``norm_inputs="separate"``, ``norm_scope="all_gates"``, ``norm_output=True`` with the same
``norm_kwargs``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple, cast

import torch
from torch import Tensor, nn

from ..cells import ConvLSTMCell, STLSTMCell
from ..layers import STLSTM, ConvLSTM

__all__ = ["OpenSTLModel", "convlstm_from_openstl", "predrnn_from_openstl"]


def _conv(module: nn.Module, what: str) -> nn.Conv2d:
    """The plain "same" convolution OpenSTL's cell uses; anything else refused in one line."""
    if not isinstance(module, nn.Conv2d):
        raise ValueError(f"expected {what} to be an nn.Conv2d, got {type(module).__name__}")
    k = module.kernel_size
    if module.bias is not None or module.groups != 1 or module.dilation != (1, 1):
        raise ValueError(f"expected {what} without bias, groups or dilation (as OpenSTL builds it), got "
                         f"{' '.join(str(module).split())}")
    if module.stride != (1, 1) or k[0] != k[1] or k[0] % 2 == 0 or module.padding != (k[0] // 2, k[1] // 2):
        raise ValueError(f"expected {what} with stride 1 and an odd square kernel padded to keep the frame size "
                         f"(OpenSTL's stride and even kernels change the size from step to step), got "
                         f"{' '.join(str(module).split())}")
    return module


def _layer_norm(stage: nn.Sequential, gates: int, what: str) -> nn.LayerNorm | None:
    if len(stage) == 1:
        return None
    norm = stage[1]
    if len(stage) != 2 or not isinstance(norm, nn.LayerNorm) or len(norm.normalized_shape) != 3 \
            or norm.normalized_shape[0] != gates:
        got = " + ".join(type(m).__name__ for m in stage)
        shape = list(norm.normalized_shape) if isinstance(norm, nn.LayerNorm) else None
        raise ValueError(f"expected {what} to be Conv2d or Conv2d + nn.LayerNorm([{gates}, H, W]) as in OpenSTL, "
                         f"got {got}" + (f" with normalized_shape {shape}" if shape else ""))
    return norm


def _norm_options(norm: nn.LayerNorm | None) -> dict[str, Any]:
    if norm is None:
        return {"norm": "none"}
    kwargs: dict[str, Any] = {"eps": norm.eps, "center": norm.bias is not None, "affine": norm.elementwise_affine}
    if norm.elementwise_affine:
        kwargs |= {"param_axes": "CHW", "param_shape": tuple(norm.normalized_shape[1:])}  # (H, W): C is each norm's
    return {"norm": "layer", "norm_inputs": "separate", "norm_scope": "all_gates", "norm_kwargs": kwargs}


def _needs(cell: nn.Module, names: tuple[str, ...], what: str) -> None:
    for name in names:
        if not hasattr(cell, name):
            raise ValueError(f"expected an OpenSTL {what} ({', '.join(names)}), got {type(cell).__name__} without "
                             f"{name!r}")


def _hidden(cell: nn.Module) -> int:
    return int(getattr(cell, "num_hidden"))  # noqa: B009  (nn.Module types attributes Tensor | Module)


def _cell_parts(cell: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d, nn.LayerNorm | None, nn.LayerNorm | None]:
    _needs(cell, ("conv_x", "conv_h", "num_hidden"), "ConvLSTMCell")
    gates = 4 * _hidden(cell)
    conv_x, conv_h = cast(nn.Sequential, cell.conv_x), cast(nn.Sequential, cell.conv_h)
    return (_conv(conv_x[0], "conv_x[0]"), _conv(conv_h[0], "conv_h[0]"),
            _layer_norm(conv_x, gates, "conv_x"), _layer_norm(conv_h, gates, "conv_h"))


def _cell_options(cell: nn.Module) -> dict[str, Any]:
    wx, _, norm_x, norm_h = _cell_parts(cell)
    if (norm_x is None) != (norm_h is None):
        raise ValueError("expected a LayerNorm after both conv_x and conv_h or after neither (layer_norm 1 or 0)")
    return {"in_channels": wx.in_channels, "hidden_channels": _hidden(cell), "kernel_size": wx.kernel_size[0],
            "bias": False, **_norm_options(norm_x)}


@torch.no_grad()
def _load_cell(new: ConvLSTMCell, cell: nn.Module) -> ConvLSTMCell:
    wx, wh, norm_x, norm_h = _cell_parts(cell)
    new.weight_x.copy_(wx.weight)
    new.weight_h.copy_(wh.weight)
    for ours, theirs in ((getattr(new, "norm_x", None), norm_x), (getattr(new, "norm_h", None), norm_h)):
        _copy_norm(ours, theirs)
    return new


def _st_parts(cell: nn.Module) -> tuple[list[nn.Conv2d], list[nn.LayerNorm | None]]:
    """The convolutions (x, h, m, o, last) and the LayerNorms (x, h, m, o) of a SpatioTemporalLSTMCell."""
    _needs(cell, ("conv_x", "conv_h", "conv_m", "conv_o", "conv_last", "num_hidden"), "SpatioTemporalLSTMCell")
    C = _hidden(cell)
    stages = [cast(nn.Sequential, getattr(cell, f"conv_{n}")) for n in "xhmo"]
    convs = [_conv(stage[0], f"conv_{n}[0]") for stage, n in zip(stages, "xhmo", strict=True)]
    norms = [_layer_norm(stage, g * C, f"conv_{n}") for stage, n, g in zip(stages, "xhmo", (7, 4, 3, 1), strict=True)]
    last = cell.conv_last
    if not isinstance(last, nn.Conv2d) or last.kernel_size != (1, 1) or last.bias is not None:
        raise ValueError(f"expected conv_last to be a 1×1 nn.Conv2d without bias, got {last}")
    if len({n is None for n in norms}) != 1:
        raise ValueError("expected a LayerNorm after every convolution of the cell or after none (layer_norm 1 or 0)")
    return [*convs, last], norms


def _st_options(cell: nn.Module) -> dict[str, Any]:
    convs, norms = _st_parts(cell)
    options = _norm_options(norms[0])
    if norms[0] is not None:
        options["norm_output"] = True
    return {"in_channels": convs[0].in_channels, "hidden_channels": _hidden(cell),
            "kernel_size": convs[0].kernel_size[0], "forget_bias": float(getattr(cell, "_forget_bias", 1.0)),
            **options}


@torch.no_grad()
def _load_st_cell(new: STLSTMCell, cell: nn.Module) -> STLSTMCell:
    convs, norms = _st_parts(cell)
    for weight, conv in zip((new.weight_x, new.weight_h, new.weight_m, new.weight_o, new.weight_fuse), convs,
                            strict=True):
        weight.copy_(conv.weight)
    for ours, theirs in zip((new.norm_x, new.norm_h, new.norm_m, new.norm_o), norms, strict=True):
        _copy_norm(ours, theirs)
    return new


def _copy_norm(ours: nn.Module | None, theirs: nn.LayerNorm | None) -> None:
    """OpenSTL's LayerNorm γ and β into the norm built for it (with per-position parameters), where it learns them."""
    if theirs is None or not theirs.elementwise_affine:
        return
    assert ours is not None  # built from the same cell's options: a norm wherever OpenSTL has one
    cast(Tensor, ours.weight).copy_(theirs.weight)
    if theirs.bias is not None:
        cast(Tensor, ours.bias).copy_(theirs.bias)


class OpenSTLModel(nn.Module):
    r"""OpenSTL's ``ConvLSTM_Model`` or ``PredRNN_Model`` on normrnn's layers: a :class:`~normrnn.layers.ConvLSTM`
    or :class:`~normrnn.layers.STLSTM` stack stepped one frame at a time and a 1×1 readout, with OpenSTL's inputs,
    outputs and scheduled sampling.

    Args:
        layers: the stack (its cells as OpenSTL's, from :func:`convlstm_from_openstl` or
            :func:`predrnn_from_openstl`).
        readout: the 1×1 convolution from the last layer's ``h`` to a frame.
        frames_in, frames_out: OpenSTL's ``pre_seq_length`` and ``aft_seq_length``.
        reverse_scheduled_sampling: OpenSTL's flag: the mask covers every step after the first. Default: ``False``.

    Shape:
        - frames: ``(B, T, H, W, C)`` channels last, already patched as OpenSTL feeds it, ``T = frames_in +
          frames_out``; mask_true: ``(B, frames_out − 1, H, W, C)`` (``T − 2`` steps with reverse sampling), 1
          where the true frame is fed and 0 where the model's own prediction is.
        - Output: ``(B, T − 1, H, W, C)``, the prediction of every frame after the first.
    """

    def __init__(self, layers: ConvLSTM | STLSTM, readout: nn.Conv2d, *, frames_in: int, frames_out: int,
                 reverse_scheduled_sampling: bool = False) -> None:
        super().__init__()
        self.layers, self.readout = layers, readout
        self.frames_in, self.frames_out = frames_in, frames_out
        self.reverse_scheduled_sampling = bool(reverse_scheduled_sampling)

    def forward(self, frames: Tensor, mask_true: Tensor) -> Tensor:
        T = frames.shape[1]  # frames: (B, T, H, W, C)
        if frames.dim() != 5 or T != self.frames_in + self.frames_out:
            raise ValueError(f"expected frames (B, {self.frames_in} + {self.frames_out}, H, W, C), got "
                             f"{tuple(frames.shape)}")
        x = frames.permute(0, 1, 4, 2, 3)  # (B, T, C, H, W)
        mask = mask_true.permute(0, 1, 4, 2, 3)  # (B, T_mask, C, H, W)
        start = 1 if self.reverse_scheduled_sampling else self.frames_in  # the first step the mask decides
        state = None
        out: list[Tensor] = []
        for t in range(T - 1):
            net = x[:, t] if t < start else mask[:, t - start] * x[:, t] + (1 - mask[:, t - start]) * out[-1]
            y, state = self.layers(net[:, None], state)  # y: (B, 1, C_hidden, H, W)
            out.append(self.readout(y[:, 0]))  # (B, C, H, W)
        return torch.stack(out, 1).permute(0, 1, 3, 4, 2)  # (B, T − 1, H, W, C)

    def extra_repr(self) -> str:
        return f"frames_in={self.frames_in}, frames_out={self.frames_out}" + (
            ", reverse_scheduled_sampling=True" if self.reverse_scheduled_sampling else "")


def convlstm_from_openstl(module: nn.Module) -> ConvLSTMCell | ConvLSTM | OpenSTLModel:
    """normrnn's equal of an OpenSTL ConvLSTM, trained weights included, built from normrnn's own norms.

    Args:
        module: an OpenSTL ``ConvLSTMCell`` (→ :class:`~normrnn.cells.ConvLSTMCell`), its model's ``cell_list``
            (→ a :class:`~normrnn.layers.ConvLSTM` stack) or a ``ConvLSTM_Model`` (→ :class:`OpenSTLModel`),
            with ``layer_norm`` 0 or 1. What normrnn cannot express (stride, even kernels, biased convolutions)
            is refused with a ``ValueError``.

    Example::

        >>> cell = convlstm_from_openstl(openstl_cell)  # doctest: +SKIP
        >>> h, c = cell(x, (h, c))  # as openstl_cell(x, h, c)  # doctest: +SKIP
    """
    return cast("ConvLSTMCell | ConvLSTM | OpenSTLModel", _convert(module, _CONVLSTM))


def predrnn_from_openstl(module: nn.Module) -> STLSTMCell | STLSTM | OpenSTLModel:
    """normrnn's equal of OpenSTL's PredRNN, trained weights included, built from normrnn's own norms.

    Args:
        module: an OpenSTL ``SpatioTemporalLSTMCell`` (→ :class:`~normrnn.cells.STLSTMCell`), its model's
            ``cell_list`` (→ a :class:`~normrnn.layers.STLSTM` stack) or a ``PredRNN_Model``
            (→ :class:`OpenSTLModel`), with ``layer_norm`` 0 or 1; refused in one line as
            :func:`convlstm_from_openstl` refuses.

    Example::

        >>> cell = predrnn_from_openstl(openstl_cell)  # doctest: +SKIP
        >>> h, c, m = cell(x, (h, c, m))  # as openstl_cell(x, h, c, m)  # doctest: +SKIP
    """
    return cast("STLSTMCell | STLSTM | OpenSTLModel", _convert(module, _PREDRNN))


class _Family(NamedTuple):
    cell: type[nn.Module]
    layer: type[nn.Module]
    options: Callable[[nn.Module], dict[str, Any]]
    load: Callable[[Any, nn.Module], nn.Module]


_CONVLSTM = _Family(ConvLSTMCell, ConvLSTM, _cell_options, _load_cell)
_PREDRNN = _Family(STLSTMCell, STLSTM, _st_options, _load_st_cell)


def _convert(module: nn.Module, family: _Family) -> Any:
    if hasattr(module, "cell_list") and hasattr(module, "conv_last"):
        return _model(module, family)
    if isinstance(module, nn.ModuleList):
        return _stack(list(module), family)
    ref = _reference(module)
    return family.load(family.cell(**family.options(module), device=ref.device, dtype=ref.dtype), module)


def _reference(cell: nn.Module) -> Tensor:
    _needs(cell, ("conv_x",), "cell")
    return cast(nn.Conv2d, cast(nn.Sequential, cell.conv_x)[0]).weight


def _stack(cells: list[nn.Module], family: _Family) -> Any:
    if not cells:
        raise ValueError("expected at least one OpenSTL cell, got an empty cell_list")
    options = [family.options(c) for c in cells]
    shared = {k: v for k, v in options[0].items() if k not in ("in_channels", "hidden_channels")}
    for i, o in enumerate(options[1:], 1):
        if {k: v for k, v in o.items() if k not in ("in_channels", "hidden_channels")} != shared:
            raise ValueError(f"expected every cell of the cell_list built alike (kernel, norm, frame size); cell {i} "
                             f"differs from cell 0: {o} vs {options[0]}; convert each cell instead")
        if o["in_channels"] != options[i - 1]["hidden_channels"]:
            raise ValueError(f"expected cell {i} to read cell {i - 1}'s {options[i - 1]['hidden_channels']} channels, "
                             f"got {o['in_channels']}")
    ref = _reference(cells[0])
    stack = family.layer(options[0]["in_channels"], [o["hidden_channels"] for o in options], shared.pop("kernel_size"),
                       num_layers=len(cells), **shared, device=ref.device, dtype=ref.dtype)
    for i, cell in enumerate(cells):
        family.load(stack.cell(i), cell)  # type: ignore[operator]  # RecurrentLayer.cell
    return stack


def _model(model: nn.Module, family: _Family) -> OpenSTLModel:
    configs = getattr(model, "configs", None)
    names = ("pre_seq_length", "aft_seq_length")
    if configs is None or not all(hasattr(configs, n) for n in names):
        raise ValueError(f"expected an OpenSTL model with configs.{names[0]} and configs.{names[1]}")
    readout = model.conv_last
    if not isinstance(readout, nn.Conv2d) or readout.kernel_size != (1, 1) or readout.bias is not None:
        raise ValueError(f"expected conv_last to be a 1×1 nn.Conv2d without bias, got {readout}")
    new_readout = nn.Conv2d(readout.in_channels, readout.out_channels, 1, bias=False, device=readout.weight.device,
                            dtype=readout.weight.dtype)
    new_readout.load_state_dict(readout.state_dict())
    return OpenSTLModel(_stack(list(cast(nn.ModuleList, model.cell_list)), family), new_readout,
                        frames_in=int(configs.pre_seq_length), frames_out=int(configs.aft_seq_length),
                        reverse_scheduled_sampling=bool(getattr(configs, "reverse_scheduled_sampling", 0)))
