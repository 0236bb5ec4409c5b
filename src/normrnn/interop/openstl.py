"""OpenSTL's ConvLSTM in normrnn: one ``ConvLSTMCell``, a ``cell_list``, or a whole ``ConvLSTM_Model``.

`OpenSTL <https://github.com/chengtan9907/OpenSTL>`_'s cell (``openstl/modules/convlstm_modules.py``) computes

.. math::
    [i, f, g, o] = \\mathrm{LN}_x(W_x * x_t) + \\mathrm{LN}_h(W_h * h_{t-1}), \\qquad
    c_t = \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g), \\qquad h_t = \\sigma(o) \\odot \\tanh(c_t)

with no bias anywhere (the forget bias of 1.0 it defines is never added). With ``layer_norm=1`` each LN is
``nn.LayerNorm([4C, H, W])``: one statistic pooled over all four gates, and a scale and shift per position, which fix
the frame size; with ``layer_norm=0`` there is no norm. normrnn says the same with its own norms: ``norm="layer"``,
``norm_inputs="separate"``, ``norm_scope="all_gates"``, ``bias=False`` and
``norm_kwargs={"center": True, "param_axes": "CHW", "param_shape": (4C, H, W)}``. Each OpenSTL cell also builds a
``conv_o`` (with its own LayerNorm) and a ``conv_last`` that its forward never calls: they are left out.
"""

from __future__ import annotations

from typing import Any, cast

import torch
from torch import Tensor, nn

from ..cells import ConvLSTMCell
from ..layers import ConvLSTM

__all__ = ["OpenSTLConvLSTM", "convlstm_from_openstl"]


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
        kwargs |= {"param_axes": "CHW", "param_shape": tuple(norm.normalized_shape)}
    return {"norm": "layer", "norm_inputs": "separate", "norm_scope": "all_gates", "norm_kwargs": kwargs}


def _hidden(cell: nn.Module) -> int:
    return int(getattr(cell, "num_hidden"))  # noqa: B009  (nn.Module types attributes Tensor | Module)


def _cell_parts(cell: nn.Module) -> tuple[nn.Conv2d, nn.Conv2d, nn.LayerNorm | None, nn.LayerNorm | None]:
    for name in ("conv_x", "conv_h", "num_hidden"):
        if not hasattr(cell, name):
            raise ValueError(f"expected an OpenSTL ConvLSTMCell (conv_x, conv_h, num_hidden), got "
                             f"{type(cell).__name__} without {name!r}")
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
        if theirs is not None and theirs.elementwise_affine:
            ours.weight.copy_(theirs.weight)  # type: ignore[union-attr]  # built with per-position parameters
            if theirs.bias is not None:
                ours.bias.copy_(theirs.bias)  # type: ignore[union-attr]
    return new


class OpenSTLConvLSTM(nn.Module):
    r"""OpenSTL's ``ConvLSTM_Model`` on normrnn's layers: a :class:`~normrnn.layers.ConvLSTM` stack stepped one
    frame at a time and a 1×1 readout, with OpenSTL's inputs, outputs and scheduled sampling.

    Args:
        layers: the stack (its cells as OpenSTL's, from :func:`convlstm_from_openstl`).
        readout: the 1×1 convolution from the last layer's ``h`` to a frame.
        frames_in, frames_out: OpenSTL's ``pre_seq_length`` and ``aft_seq_length``.
        reverse_scheduled_sampling: OpenSTL's flag: the mask covers every step after the first. Default: ``False``.

    Shape:
        - frames: ``(B, T, H, W, C)`` channels last, already patched as OpenSTL feeds it, ``T = frames_in +
          frames_out``; mask_true: ``(B, frames_out − 1, H, W, C)`` (``T − 2`` steps with reverse sampling), 1
          where the true frame is fed and 0 where the model's own prediction is.
        - Output: ``(B, T − 1, H, W, C)``, the prediction of every frame after the first.
    """

    def __init__(self, layers: ConvLSTM, readout: nn.Conv2d, *, frames_in: int, frames_out: int,
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


def convlstm_from_openstl(module: nn.Module) -> ConvLSTMCell | ConvLSTM | OpenSTLConvLSTM:
    """normrnn's equal of an OpenSTL ConvLSTM, trained weights included, built from normrnn's own norms.

    Args:
        module: an OpenSTL ``ConvLSTMCell`` (→ :class:`~normrnn.cells.ConvLSTMCell`), its model's ``cell_list``
            (→ a :class:`~normrnn.layers.ConvLSTM` stack) or a ``ConvLSTM_Model`` (→ :class:`OpenSTLConvLSTM`),
            with ``layer_norm`` 0 or 1. What normrnn cannot express (stride, even kernels, biased convolutions)
            is refused with a ``ValueError``.

    Example::

        >>> cell = convlstm_from_openstl(openstl_cell)  # doctest: +SKIP
        >>> h, c = cell(x, (h, c))  # as openstl_cell(x, h, c)  # doctest: +SKIP
    """
    if hasattr(module, "cell_list") and hasattr(module, "conv_last"):
        return _model(module)
    if isinstance(module, nn.ModuleList):
        return _stack(list(module))
    options = _cell_options(module)
    ref = cast(nn.Conv2d, cast(nn.Sequential, module.conv_x)[0]).weight
    return _load_cell(ConvLSTMCell(**options, device=ref.device, dtype=ref.dtype), module)


def _stack(cells: list[nn.Module]) -> ConvLSTM:
    if not cells:
        raise ValueError("expected at least one OpenSTL ConvLSTMCell, got an empty cell_list")
    options = [_cell_options(c) for c in cells]
    shared = {k: v for k, v in options[0].items() if k not in ("in_channels", "hidden_channels")}
    for i, o in enumerate(options[1:], 1):
        if {k: v for k, v in o.items() if k not in ("in_channels", "hidden_channels")} != shared:
            raise ValueError(f"expected every cell of the cell_list built alike (kernel, norm, frame size); cell {i} "
                             f"differs from cell 0: {o} vs {options[0]}; convert each cell instead")
        if o["in_channels"] != options[i - 1]["hidden_channels"]:
            raise ValueError(f"expected cell {i} to read cell {i - 1}'s {options[i - 1]['hidden_channels']} channels, "
                             f"got {o['in_channels']}")
    ref = cast(nn.Conv2d, cast(nn.Sequential, cells[0].conv_x)[0]).weight
    stack = ConvLSTM(options[0]["in_channels"], [o["hidden_channels"] for o in options], shared.pop("kernel_size"),
                     num_layers=len(cells), **shared, device=ref.device, dtype=ref.dtype)
    for i, cell in enumerate(cells):
        _load_cell(cast(ConvLSTMCell, stack.cell(i)), cell)
    return stack


def _model(model: nn.Module) -> OpenSTLConvLSTM:
    configs = getattr(model, "configs", None)
    names = ("pre_seq_length", "aft_seq_length")
    if configs is None or not all(hasattr(configs, n) for n in names):
        raise ValueError(f"expected an OpenSTL ConvLSTM_Model with configs.{names[0]} and configs.{names[1]}")
    readout = model.conv_last
    if not isinstance(readout, nn.Conv2d) or readout.kernel_size != (1, 1) or readout.bias is not None:
        raise ValueError(f"expected conv_last to be a 1×1 nn.Conv2d without bias, got {readout}")
    new_readout = nn.Conv2d(readout.in_channels, readout.out_channels, 1, bias=False, device=readout.weight.device,
                            dtype=readout.weight.dtype)
    new_readout.load_state_dict(readout.state_dict())
    return OpenSTLConvLSTM(_stack(list(cast(nn.ModuleList, model.cell_list))), new_readout,
                           frames_in=int(configs.pre_seq_length), frames_out=int(configs.aft_seq_length),
                           reverse_scheduled_sampling=bool(getattr(configs, "reverse_scheduled_sampling", 0)))
