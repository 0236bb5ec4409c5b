"""The cell-kind registry: every kind names a cell whose layer stacks it, and a new kind reaches the study's config
and its model through the registry alone."""

from __future__ import annotations

import dataclasses
import re

import pytest
import torch

from normrnn.cells import (
    ConvGRUCell,
    ConvLSTMCell,
    GRUCell,
    LSTMCell,
    STLSTMCell,
    cell_kind,
    cell_kinds,
    register_cell_kind,
)
from normrnn.cells.kinds import _KINDS
from normrnn.layers import GRU, LSTM, STLSTM, ConvGRU, ConvLSTM, layer_for
from normrnn.study import StudyConfig
from normrnn.study.grid import RunSpec
from normrnn.study.model import build_model


def test_each_registered_kind_names_its_cell_and_the_layer_that_stacks_it() -> None:
    expected = {"convlstm": (ConvLSTMCell, ConvLSTM), "convgru": (ConvGRUCell, ConvGRU), "lstm": (LSTMCell, LSTM),
                "gru": (GRUCell, GRU), "stlstm": (STLSTMCell, STLSTM)}
    assert set(expected) <= set(cell_kinds())  # the built-ins; a new cell type registers beside them
    assert {"convlstm", "convgru", "stlstm"} <= set(cell_kinds(spatial=True))
    assert not {"lstm", "gru"} & set(cell_kinds(spatial=True))
    for name, (cell, layer) in expected.items():
        assert cell_kind(name).cell is cell and layer_for(cell) is layer


def test_an_unknown_kind_lists_the_registered_ones() -> None:
    listed = ", ".join(map(repr, cell_kinds(spatial=True)))  # the registry's: 'convgru', 'convlstm', 'stlstm', ...
    with pytest.raises(ValueError, match=re.escape(f"expected cell to be one of {listed}, got 'convlsm' (did you mean "
                                                   "'convlstm'?)")):
        cell_kind("convlsm", spatial=True)
    with pytest.raises(ValueError, match=re.escape(f"expected cell to be one of {listed}")):
        StudyConfig(cell="lstm")  # a dense cell cannot run the study's video forecaster
    with pytest.raises(ValueError, match="registered already"):
        register_cell_kind("convlstm", ConvGRUCell, spatial=True)


def test_a_registered_kind_reaches_the_study_through_the_registry_alone(monkeypatch) -> None:
    class PeepholeConvLSTMCell(ConvLSTMCell):
        def __init__(self, *args, **kwargs) -> None:
            super().__init__(*args, peephole=True, **kwargs)

    class PeepholeConvLSTM(ConvLSTM):
        cell_class = PeepholeConvLSTMCell

    monkeypatch.setitem(_KINDS, "peephole", _KINDS["convlstm"].__class__("peephole", PeepholeConvLSTMCell, True))
    config = dataclasses.replace(StudyConfig(size=8, patch=2, width=4, frames_in=2, frames_out=1), cell="peephole")
    model = build_model(config, RunSpec("layer", "stacked", 1, 0, 1.0))
    cells = list(model.encoder.cells())
    assert all(type(c) is PeepholeConvLSTMCell and c.peephole for c in cells)
    assert model(torch.rand(2, 2, 1, 8, 8)).shape == (2, 1, 1, 8, 8)
