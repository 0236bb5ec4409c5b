"""OpenSTL's ConvLSTM converted to normrnn: outputs equal OpenSTL's own (fixtures made by its code, with perturbed
norm weights) for one cell stepped over a sequence and for a whole model with scheduled sampling."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from normrnn.cells import ConvLSTMCell
from normrnn.interop import OpenSTLModel, convlstm_from_openstl
from normrnn.layers import ConvLSTM
from normrnn.norms import LayerNorm
from openstl_mirror import (
    ConvLSTM_Model,
    ConvLSTMCell as OpenSTLCell,
    assert_model_equal,
    assert_steps_equal,
    converted,
    fixture,
)


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_one_cell_stepped_over_a_sequence_equals_openstls(layer_norm: int) -> None:
    _, cell, data = converted(OpenSTLCell, convlstm_from_openstl, f"openstl_convlstm_cell_ln{layer_norm}", 3, 8, 6, 5,
                              3, layer_norm)
    assert isinstance(cell, ConvLSTMCell)
    assert not any(isinstance(m, nn.LayerNorm) for m in cell.modules())  # normrnn's own norms only
    if layer_norm:
        assert isinstance(cell.norm_x, LayerNorm) and cell.norm_x.bias is not None  # the shift is kept
        assert cell.norm_x.weight.shape == (32, 6, 5)
    assert_steps_equal(cell, data, "hc")


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_a_whole_model_with_scheduled_sampling_equals_openstls(layer_norm: int) -> None:
    theirs, model, data = converted(ConvLSTM_Model, convlstm_from_openstl, f"openstl_convlstm_model_ln{layer_norm}",
                                    [8, 8], size=(6, 5), channels=4, frames=(4, 3), layer_norm=layer_norm)
    assert [int(v) for v in data["seq"]] == [4, 3]  # the frames the fixture was made with
    assert isinstance(model, OpenSTLModel) and isinstance(model.layers, ConvLSTM)
    assert_model_equal(model, data)
    stack = convlstm_from_openstl(theirs.cell_list)  # the cell_list alone: the same stack
    assert isinstance(stack, ConvLSTM)
    assert all(torch.equal(a, b) for a, b in zip(stack.state_dict().values(), model.layers.state_dict().values(),
                                                  strict=True))


def test_per_position_parameters_count_as_openstls() -> None:
    theirs = OpenSTLCell(3, 8, 6, 5, 3, 1)
    ours = convlstm_from_openstl(theirs)
    used = sum(p.numel() for n, p in theirs.named_parameters() if n.startswith(("conv_x", "conv_h")))
    assert sum(p.numel() for p in ours.parameters()) == used  # conv_o and conv_last are never called: left out


@pytest.mark.parametrize("change, words", [
    (lambda c: setattr(c.conv_x[0], "stride", (2, 2)), "stride 1"),
    (lambda c: setattr(c.conv_h, "0", nn.Conv2d(8, 32, 3, padding=1, bias=True)), "without bias"),
    (lambda c: c.conv_h.append(nn.ReLU()), "nn.LayerNorm"),
    (lambda c: delattr(c, "num_hidden"), "num_hidden"),
])
def test_what_normrnn_cannot_express_is_refused_in_one_line(change, words: str) -> None:
    cell = OpenSTLCell(3, 8, 6, 5, 3, 1)
    change(cell)
    with pytest.raises(ValueError, match=words) as err:
        convlstm_from_openstl(cell)
    assert "\n" not in str(err.value)


def test_center_and_scale_in_norm_kwargs_reach_the_norms() -> None:
    """``center``/``scale`` in ``norm_kwargs`` are the norms' affine flags: the cell's own default for separate
    inputs (no shift, the sum gets the bias) gives way to the user's."""
    kept = ConvLSTMCell(2, 4, 3, norm="layer", norm_inputs="separate", norm_kwargs={"center": True})
    assert kept.norm_x.bias is not None and kept.norm_h.bias is not None
    dropped = ConvLSTMCell(2, 4, 3, norm="layer", norm_kwargs={"center": False, "scale": False})
    assert dropped.norm_gates.bias is None and dropped.norm_gates.weight is None
    assert dropped.bias is not None  # no β in the norm: the cell's bias holds the forget bias
    assert torch.all(dropped.bias[4:8] == 1.0)


@pytest.mark.parametrize("layer_norm", [0, 1])
def test_the_mirror_the_audit_runs_steps_as_openstl_does(layer_norm: int) -> None:
    params, data = fixture(f"openstl_convlstm_cell_ln{layer_norm}")
    cell = OpenSTLCell(3, 8, 6, 5, 3, layer_norm)
    cell.load_state_dict(params)
    h = c = torch.zeros(2, 8, 6, 5)
    for t in range(4):
        h, c = cell(torch.from_numpy(data["x"][:, t]), h, c)
    torch.testing.assert_close(h, torch.from_numpy(data["h"][:, -1]), atol=1e-5, rtol=0)


def _audit_openstl(layer_norm: int, size: int = 8):
    from normrnn.auditing import audit

    model = ConvLSTM_Model([8, 8], size=(8, 8), channels=1, frames=(3, 3), layer_norm=layer_norm)
    return audit(model, torch.randn(2, 3, 1, size, size), layout="BTCHW")


def test_the_audit_reports_pooled_gates_the_frame_lock_and_the_unused_norm_of_layer_norm_1() -> None:
    report = _audit_openstl(1)
    found = sorted((f.module, f.code) for f in report.findings)
    want = sorted([(f"cell_list.{i}.conv_{p}.1", k) for i in range(2) for p in "xh"
                   for k in ("gates-share-statistics", "frame-size-lock")]
                  + [(f"cell_list.{i}.conv_o.1", "norm-never-called") for i in range(2)])
    assert found == want
    assert {u.spec for u in report.uses} == {"layer (reduce=CHW, param_axes=CHW)"}
    assert {u.param_shape for u in report.uses} == {(32, 8, 8)}


def test_the_audit_finds_only_the_missing_offset_on_layer_norm_0() -> None:
    report = _audit_openstl(0)
    assert sorted((f.module, f.code) for f in report.findings) == [("cell_list.0", "no-offset"),
                                                                   ("cell_list.1", "no-offset")]


def test_at_another_frame_size_the_audit_names_the_norm_that_fixed_it() -> None:
    report = _audit_openstl(1, size=16)
    assert report.fixed_by == "cell_list.0.conv_x.1"
    assert "[32, 8, 8]" in report.error and "[32, 16, 16]" in report.error


def test_normrnns_own_cells_audit_clean_and_print_their_groups() -> None:
    from normrnn.auditing import audit

    report = audit(ConvLSTM(1, 8, 3, norm="layer", num_layers=2), torch.randn(2, 3, 1, 8, 8))
    assert report.findings == []
    assert {u.spec for u in report.uses} == {"group:4"}  # one group per gate
    pooled = audit(ConvLSTM(1, 8, 3, norm="layer", norm_scope="all_gates"), torch.randn(2, 3, 1, 8, 8))
    assert [f.code for f in pooled.findings] == ["gates-share-statistics"]
    bare = audit(ConvLSTM(1, 8, 3, bias=False), torch.randn(2, 3, 1, 8, 8))
    assert [f.code for f in bare.findings] == ["no-offset"]


def test_the_cli_exits_1_on_findings_and_2_naming_the_norm_at_another_size(tmp_path) -> None:
    from helpers import cli

    (tmp_path / "openstl_factory.py").write_text(
        f"import sys\nsys.path.insert(0, {str(Path(__file__).parent)!r})\nfrom openstl_mirror import ConvLSTM_Model\n"
        "def build():\n    return ConvLSTM_Model([8], size=(8, 8), channels=1, frames=(3, 3), layer_norm=1)\n")
    ran = cli("audit", "openstl_factory:build", "--input-shape", "2,3,1,8,8", cwd=tmp_path)
    assert ran.returncode == 1 and "gates-share-statistics" in ran.stdout and "frame-size-lock" in ran.stdout
    ran = cli("audit", "openstl_factory:build", "--input-shape", "2,3,1,16,16", cwd=tmp_path)
    assert ran.returncode == 2 and "cell_list.0.conv_x.1" in ran.stderr and "--input-shape per" not in ran.stderr
