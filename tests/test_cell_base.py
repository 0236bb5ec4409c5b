"""The cell base: small (at most 20 methods through its bases), and enough for a cell with no gates at all. A plain
ConvRNN, ``h' = tanh(norm(W_x * x + W_h * h) + b)``, written against it here needs no forget gate, runs every gate
backend's registry path and the layers, and reports no gate saturation in a study row."""

from __future__ import annotations

import inspect

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from normrnn.cells import ConvGRUCell, ConvLSTMCell, RecurrentCell
from normrnn.cells.base import Conv, make_gate_norm
from normrnn.cells.gate_norms import bound
from normrnn.layers.recurrence import run_direction
from normrnn.norms import NormSpec
from normrnn.study.metrics import probed_cells


def _methods(cls: type) -> set[str]:
    """The functions and properties ``cls`` defines through its bases, up to ``nn.Module``."""
    names: set[str] = set()
    for base in cls.__mro__[: cls.__mro__.index(nn.Module)]:
        names |= {n for n, v in vars(base).items() if inspect.isfunction(v) or isinstance(v, (property, staticmethod,
                                                                                                  classmethod))}
    return names


def test_the_cell_base_has_at_most_20_methods_and_no_gate_family_in_it() -> None:
    methods = _methods(RecurrentCell)
    assert len(methods) <= 20, sorted(methods)
    gated = {"forget_gate", "forget_bias", "gate_probe", "gate_bias", "fused_block", "zero_init", "forget_norm"}
    assert not gated & (methods | set(vars(RecurrentCell))), gated & (methods | set(vars(RecurrentCell)))


class ConvRNNCell(Conv):
    """A plain ConvRNN step, the sketch a gateless cell needs: its block count, state size and gate block."""

    num_gates = 1  # one block: the candidate
    state_size = 1  # h

    def _build_norms(self, spec: NormSpec, factory: dict) -> None:
        super()._build_norms(spec, factory)
        joint = self.norm_inputs == "joint"  # separate: the base built norm_x and norm_h
        self.norm_pre = make_gate_norm(self, spec, 1, center=True, factory=factory) if joint else None

    def _shift_norm(self) -> nn.Module | None:
        return self.norm_pre

    def gate_block(self, gx: Tensor, gh: Tensor | None, state: Tensor, t: int, mask: Tensor | None) -> Tensor:
        if self.norm_inputs == "separate":
            gx, gh = self.norm_x(gx, mask, step=t), self.norm_h(gh, mask, step=t)
        pre = gx if gh is None else gx + gh
        norm = bound(self.norm_pre, t, mask)
        a = norm(pre) if norm is not None else pre
        return self.act(a if self.bias is None or self._fold_bias else a + self.bias.view(1, -1, 1, 1))


def _reference(cell: ConvRNNCell, xs: Tensor) -> Tensor:
    """The same recurrence from torch ops alone: conv2d, group norm with one group (layer norm over C, H, W)."""
    h = xs.new_zeros(xs.shape[0], cell.hidden_channels, *xs.shape[3:])
    for x in xs.unbind(1):
        pre = F.conv2d(x, cell.weight_x, padding=1) + F.conv2d(h, cell.weight_h, padding=1)
        norm = cell.norm_pre
        h = torch.tanh(F.group_norm(pre, 1, norm.weight, norm.bias, eps=1e-5))
    return h


def test_a_gateless_cell_needs_no_forget_gate_and_matches_its_reference() -> None:
    cell = ConvRNNCell(3, 4, 3, norm="layer")
    assert not hasattr(cell, "forget_gate") and not hasattr(cell, "gate_probe") and cell.bias is None  # β is it
    with torch.no_grad():
        for p in cell.parameters():
            p.add_(0.1 * torch.randn_like(p))
    xs = torch.randn(2, 5, 3, 6, 6)
    ys, h = run_direction(cell, xs, None, None)
    torch.testing.assert_close(h, _reference(cell, xs))
    torch.testing.assert_close(cell(xs[:, 0]), ys[:, 0])  # one step through forward() is the layer's first


def test_a_gateless_cell_is_not_probed_so_it_reports_no_saturation() -> None:
    model = nn.Sequential(ConvRNNCell(3, 4, 3), ConvLSTMCell(3, 4, 3), ConvGRUCell(3, 4, 3))
    assert [type(m).__name__ for m in probed_cells(model)] == ["ConvLSTMCell", "ConvGRUCell"]
    assert probed_cells(ConvRNNCell(3, 4, 3)) == []


def test_a_gateless_cell_keeps_the_bases_options() -> None:
    """No norm: a zero bias of its own; separate norms: the base's pair, and a joint projection refused as for any
    cell."""
    cell = ConvRNNCell(3, 4, 3)
    assert cell.bias is not None and torch.equal(cell.bias, torch.zeros(4))
    separate = ConvRNNCell(3, 4, 3, norm="layer", norm_inputs="separate")
    x = torch.randn(2, 3, 5, 5)
    want = torch.tanh(separate.norm_x(F.conv2d(x, separate.weight_x, padding=1)) + separate.bias.view(1, -1, 1, 1))
    torch.testing.assert_close(separate(x), want)  # h = 0: W_h * h is zero, and so is its norm
    with pytest.raises(ValueError, match="projection='joint'"):
        ConvRNNCell(3, 4, 3, norm="layer", norm_inputs="separate", projection="joint")
