"""OpenSTL's PredRNN converted to normrnn's ST-LSTM: outputs equal OpenSTL's own (fixtures made by its code, with
perturbed norm weights), for one cell stepped over a sequence and for a whole model with scheduled sampling."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from normrnn.cells import STLSTMCell
from normrnn.interop import OpenSTLModel, predrnn_from_openstl
from normrnn.layers import STLSTM
from openstl_mirror import PredRNN_Model, SpatioTemporalLSTMCell, fixture


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_one_cell_stepped_over_a_sequence_equals_openstls(layer_norm: int) -> None:
    params, data = fixture(f"openstl_predrnn_cell_ln{layer_norm}")
    theirs = SpatioTemporalLSTMCell(3, 8, 6, 5, 3, layer_norm)
    theirs.load_state_dict(params)
    cell = predrnn_from_openstl(theirs)
    assert isinstance(cell, STLSTMCell)
    assert not any(isinstance(m, nn.LayerNorm) for m in cell.modules())  # normrnn's own norms only
    assert (cell.norm_o is not None) == bool(layer_norm)  # PredRNN normalizes conv_o too
    x = torch.from_numpy(data["x"])
    state = None
    for t in range(x.shape[1]):
        state = cell(x[:, t], state, t=t)
        for name, got in zip("hcm", state, strict=True):
            torch.testing.assert_close(got, torch.from_numpy(data[name][:, t]), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_a_whole_model_with_the_zigzag_memory_equals_openstls(layer_norm: int) -> None:
    params, data = fixture(f"openstl_predrnn_model_ln{layer_norm}")
    frames_in, frames_out = (int(v) for v in data["seq"])
    theirs = PredRNN_Model([8, 8], size=(6, 5), channels=4, frames=(frames_in, frames_out), layer_norm=layer_norm)
    theirs.load_state_dict(params)
    model = predrnn_from_openstl(theirs)
    assert isinstance(model, OpenSTLModel) and isinstance(model.layers, STLSTM)
    with torch.no_grad():
        out = model(torch.from_numpy(data["frames"]), torch.from_numpy(data["mask_true"]))
    torch.testing.assert_close(out, torch.from_numpy(data["next_frames"]), atol=1e-5, rtol=0)


def test_a_cell_list_of_mixed_widths_is_refused_in_one_line() -> None:
    cells = nn.ModuleList([SpatioTemporalLSTMCell(3, 8, 6, 5, 3, 0), SpatioTemporalLSTMCell(8, 12, 6, 5, 3, 0)])
    with pytest.raises(ValueError, match="one hidden_channels for every ST-LSTM layer") as err:
        predrnn_from_openstl(cells)
    assert "\n" not in str(err.value)
