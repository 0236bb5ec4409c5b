"""OpenSTL's PredRNN converted to normrnn's ST-LSTM: outputs equal OpenSTL's own (fixtures made by its code, with
perturbed norm weights), for one cell stepped over a sequence and for a whole model with scheduled sampling."""

from __future__ import annotations

import pytest
from torch import nn

from normrnn.cells import STLSTMCell
from normrnn.interop import OpenSTLModel, predrnn_from_openstl
from normrnn.layers import STLSTM
from openstl_mirror import PredRNN_Model, SpatioTemporalLSTMCell, assert_model_equal, assert_steps_equal, converted


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_one_cell_stepped_over_a_sequence_equals_openstls(layer_norm: int) -> None:
    _, cell, data = converted(SpatioTemporalLSTMCell, predrnn_from_openstl, f"openstl_predrnn_cell_ln{layer_norm}", 3,
                              8, 6, 5, 3, layer_norm)
    assert isinstance(cell, STLSTMCell)
    assert not any(isinstance(m, nn.LayerNorm) for m in cell.modules())  # normrnn's own norms only
    assert (cell.norm_o is not None) == bool(layer_norm)  # PredRNN normalizes conv_o too
    assert_steps_equal(cell, data, "hcm")


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_a_whole_model_with_the_zigzag_memory_equals_openstls(layer_norm: int) -> None:
    _, model, data = converted(PredRNN_Model, predrnn_from_openstl, f"openstl_predrnn_model_ln{layer_norm}", [8, 8],
                               size=(6, 5), channels=4, frames=(4, 3), layer_norm=layer_norm)
    assert [int(v) for v in data["seq"]] == [4, 3]  # the frames the fixture was made with
    assert isinstance(model, OpenSTLModel) and isinstance(model.layers, STLSTM)
    assert_model_equal(model, data)


def test_a_cell_list_of_mixed_widths_is_refused_in_one_line() -> None:
    cells = nn.ModuleList([SpatioTemporalLSTMCell(3, 8, 6, 5, 3, 0), SpatioTemporalLSTMCell(8, 12, 6, 5, 3, 0)])
    with pytest.raises(ValueError, match="one hidden_channels for every ST-LSTM layer") as err:
        predrnn_from_openstl(cells)
    assert "\n" not in str(err.value)
