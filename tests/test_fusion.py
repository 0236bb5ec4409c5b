"""The cell's description of its gate block for fused kernels: a whitelist of its options, owned by the cell."""

from __future__ import annotations

import pytest
import torch

from normrnn.cells import ConvGRUCell, ConvLSTMCell, LSTMCell
from normrnn.cells.fusion import LSTM_FUSABLE, fused_lstm_block
from normrnn.cells.lstm import _OPTIONS
from normrnn.cells.options import ConvLSTMOptions
from normrnn.kernels import FusedLSTMBlock


def test_every_lstm_option_is_classified_for_the_fused_blocks() -> None:
    """A new option must be decided on (listed, with the values a fused kernel computes exactly) before any
    fused kernel may run a cell: one missing here is a refusal, which this test turns into a failure."""
    assert set(ConvLSTMOptions.__optional_keys__) == set(LSTM_FUSABLE) == set(_OPTIONS)


def test_an_option_the_whitelist_does_not_know_refuses_the_cell() -> None:
    cell = ConvLSTMCell(2, 4, 3, norm="layer")
    assert isinstance(cell.fused_block(), FusedLSTMBlock)
    assert fused_lstm_block(cell, (*_OPTIONS, "some_new_option"), cell.norm_gates) == (
        "the fused blocks do not know the option 'some_new_option'")


@pytest.mark.parametrize(("cell", "expected"), [
    (lambda: ConvLSTMCell(2, 8, 3, norm="group:2"), ("stats", "group_norm", "bias-free")),
    (lambda: ConvLSTMCell(2, 8, 3, norm="rms"), ("stats",)),
    (lambda: ConvLSTMCell(2, 8, 3, norm="instance"), ()),
    (lambda: LSTMCell(3, 5), ("bias",)),
])
def test_the_block_carries_the_views_the_norm_allows(cell, expected: tuple[str, ...]) -> None:
    c = cell()
    block = c.fused_block()
    assert isinstance(block, FusedLSTMBlock)
    assert (block.stats is not None) == ("stats" in expected)
    assert (block.group_norm is not None) == ("group_norm" in expected)
    assert block.normalized == c.normalized
    assert block.bias is c.gate_bias  # None where the projection adds it (a bias-only cell folds it there)
    if "bias" in expected:
        assert block.bias is None and c.project_input(torch.zeros(1, 3)).abs().sum() > 0  # the folded bias
    if block.stats is not None and "bias-free" in expected:  # the norm's shift is the gate bias
        assert block.stats.bias is not None


@pytest.mark.parametrize(("make", "reason"), [
    (lambda: ConvGRUCell(2, 4, 3), "there is no fused block for ConvGRUCell yet"),
    (lambda: ConvLSTMCell(2, 4, 3, norm="layer", norm_inputs="separate"),
     "it needs norm_inputs='joint', got norm_inputs='separate'"),
    (lambda: ConvLSTMCell(2, 4, 3, activation="relu"), "it computes tanh and sigmoid only"),
    (lambda: ConvLSTMCell(2, 4, 3, peephole=True), "it has no peepholes or cell norm, got peephole=channel"),
])
def test_a_cell_a_fused_kernel_cannot_express_says_why(make, reason: str) -> None:
    block = make().fused_block()
    assert isinstance(block, str) and block.startswith(reason)


def test_a_foreign_gate_norm_has_no_view_and_the_fused_kernels_refuse_it() -> None:
    """A norm given as any callable (here torch's own GroupNorm) is no normrnn norm: neither view, and a reason."""
    from torch import nn

    from normrnn.kernels import get_backend

    cell = ConvLSTMCell(2, 8, 3, norm=lambda C, **kwargs: nn.GroupNorm(4, C))
    block = cell.fused_block()
    assert isinstance(block, FusedLSTMBlock) and block.normalized
    assert block.stats is None and block.group_norm is None
    assert "needs a joint group or layer gate norm" in get_backend("fused").unsupported(cell)
