"""PredRNN's ST-LSTM: the cell's contract (factory keywords, initialization, repr, states, masks, bad input, a
gradcheck for each norm placement) and the stack's zigzag memory, checked against a loop of cells written out here.
Its outputs against OpenSTL's own code are in ``test_interop_predrnn.py``."""

from __future__ import annotations

import pytest
import torch

from normrnn.cells import STLSTMCell, cell_kind
from normrnn.layers import STLSTM, layer_for
from normrnn.study.precision import FP32


def test_it_is_a_registered_kind_with_its_layer() -> None:
    assert cell_kind("stlstm", spatial=True).cell is STLSTMCell and layer_for(STLSTMCell) is STLSTM


def test_factory_keywords_and_the_forget_bias_on_both_forget_gates() -> None:
    cell = STLSTMCell(3, 4, 3, norm="layer", forget_bias=2.0, dtype=torch.float64, device="cpu")
    assert all(p.dtype == torch.float64 for p in cell.parameters())
    assert cell.weight_x.shape == (28, 3, 3, 3) and cell.weight_h.shape == (16, 4, 3, 3)
    assert cell.weight_m.shape == (12, 4, 3, 3) and cell.weight_o.shape == (4, 8, 3, 3)
    expected = torch.zeros(28, dtype=torch.float64)
    expected[4:8] = expected[16:20] = 2.0  # f and f' of i f g i' f' g' o
    assert torch.equal(cell.bias, expected)
    with torch.no_grad():
        cell.bias.fill_(7.0)
        cell.weight_x.fill_(7.0)
    torch.manual_seed(0)
    cell.reset_parameters()
    assert torch.equal(cell.bias, expected) and cell.weight_x.abs().max() <= 1 / (3 * 9) ** 0.5
    # per gate W_h blocks are orthogonal: each block's rows orthonormal
    block = cell.weight_h[:4].reshape(4, -1)
    torch.testing.assert_close(block @ block.T, torch.eye(4, dtype=torch.float64), atol=1e-10, rtol=0)
    assert "norm='layer'" in repr(cell) and "forget_bias=2.0" in repr(cell)


@pytest.mark.parametrize(("norm", "inputs", "scope", "output"), [
    ("none", "separate", "per_gate", False),
    ("layer", "separate", "per_gate", False),
    ("layer", "separate", "all_gates", True),
    ("group:2", "joint", "per_gate", True),
    ("recurrent_batch:3", "separate", "per_gate", False),
])
def test_gradcheck_float64(norm: str, inputs: str, scope: str, output: bool) -> None:
    torch.manual_seed(0)
    cell = STLSTMCell(2, 4, 3, norm=norm, norm_inputs=inputs, norm_scope=scope, norm_output=output,
                      dtype=torch.float64)
    x = torch.randn(3, 2, 4, 5, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(3, 4, 4, 5, dtype=torch.float64, requires_grad=True) for _ in range(3))
    assert torch.autograd.gradcheck(lambda x, h, c, m: cell(x, (h, c, m), t=1), (x, *state))


def test_a_masked_sample_keeps_its_whole_state() -> None:
    cell = STLSTMCell(2, 4, 3, norm="layer")
    x = torch.randn(3, 2, 5, 5)
    state = tuple(torch.randn(3, 4, 5, 5) for _ in range(3))
    new = cell(x, state, mask=torch.tensor([True, False, True]))
    free = cell(x, state)
    for got, old, want in zip(new, state, free, strict=True):
        assert torch.equal(got[1], old[1]) and torch.equal(got[0], want[0]) and torch.equal(got[2], want[2])


@pytest.mark.parametrize(("call", "match"), [
    (lambda c: c(torch.randn(2, 3, 5, 5)), r"expected input \(B, C, H, W\) with C=2"),
    (lambda c: c(torch.randn(2, 2, 5, 5), (torch.zeros(2, 4, 5, 5),) * 2), r"tuple \(h, c, m\)"),
    (lambda c: c(torch.randn(2, 2, 5, 5), (torch.zeros(2, 4, 5, 6),) * 3), r"state h of shape \(2, 4, 5, 5\)"),
    (lambda c: STLSTMCell(2, 4, 3, backend="fused"), "backend 'auto' or 'eager'"),
    (lambda c: STLSTMCell(2, 4, 3, recurrent_dropout=0.1), "recurrent_dropout=0"),
    (lambda c: STLSTM(2, 4, 3, bidirectional=True), "forward in time"),
    (lambda c: STLSTM(2, [4, 6], 3, num_layers=2), "one hidden_channels for every ST-LSTM layer"),
])
def test_bad_input_is_one_clear_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match) as err:
        call(STLSTMCell(2, 4, 3))
    assert "\n" not in str(err.value)


def _zigzag(model: STLSTM, x: torch.Tensor) -> torch.Tensor:
    """PredRNN's loop, written out: at each step every layer in turn, ``m`` up the stack and then from the top to
    the bottom at the next step; the stack's output is the top layer's ``h``."""
    cells = list(model.cells())
    B, T = x.shape[:2]
    hc = [(torch.zeros(B, 4, *x.shape[3:]),) * 2 for _ in cells]
    m = torch.zeros(B, 4, *x.shape[3:])
    out = []
    for t in range(T):
        inp = x[:, t]
        for k, cell in enumerate(cells):
            h, c, m = cell(inp, (*hc[k], m), t=t)
            hc[k] = (h, c)
            inp = h
        out.append(inp)
    return torch.stack(out, 1)


def test_the_stack_passes_the_memory_in_a_zigzag_and_resumes_from_its_states() -> None:
    torch.manual_seed(0)
    model = STLSTM(2, 4, 3, num_layers=3, norm="group:2")
    x = torch.randn(2, 5, 2, 6, 6)
    y, states = model(x)
    torch.testing.assert_close(y, _zigzag(model, x), atol=1e-6, rtol=0)
    first, mid = model(x[:, :2])
    rest, end = model(x[:, 2:], mid)  # the top layer's m starts the next call's zigzag
    torch.testing.assert_close(torch.cat([first, rest], 1), y, atol=1e-6, rtol=0)
    for a, b in zip(end, states, strict=True):
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u, v, atol=1e-6, rtol=0)


def test_masked_steps_leave_the_stack_unchanged_and_output_zero() -> None:
    torch.manual_seed(0)
    model = STLSTM(2, 4, 3, num_layers=2, residual=True)
    x = torch.randn(2, 4, 2, 5, 5)
    lengths = [4, 2]
    y, states = model(x, lengths=lengths)
    y2, states2 = model(x[1:, :2])  # the second sequence alone, unpadded
    torch.testing.assert_close(y[1, :2], y2[0], atol=1e-6, rtol=0)
    assert torch.equal(y[1, 2:], torch.zeros_like(y[1, 2:]))
    for a, b in zip(states, states2, strict=True):
        for u, v in zip(a, b, strict=True):
            torch.testing.assert_close(u[1], v[0], atol=1e-6, rtol=0)


def test_every_norm_trains_a_step_in_the_study_model() -> None:
    from normrnn.study import StudyConfig
    from normrnn.study.grid import RunSpec
    from normrnn.study.model import build_model

    config = StudyConfig(cell="stlstm", size=8, patch=2, width=8, frames_in=3, frames_out=2, norm_inputs="separate")
    for norm in ("none", "layer", "group:8", "recurrent_batch"):
        model = build_model(config, RunSpec(norm, "residual", 2, 0, 1.0))
        x, y = torch.rand(2, 3, 1, 8, 8), torch.rand(2, 2, 1, 8, 8)
        torch.nn.functional.mse_loss(model(x), y).backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters()), norm


def test_a_study_run_trains_it_and_probes_its_gates(tmp_path) -> None:
    import dataclasses

    from normrnn.study import train_run
    from normrnn.study.datasets import load_datasets
    from normrnn.study.grid import RunSpec
    from normrnn.study.presets import load_config

    config = dataclasses.replace(load_config("smoke"), cell="stlstm", norm_inputs="separate")
    row = train_run(config, RunSpec("layer", "stacked", 1, 0, 1.0), load_datasets(config), tmp_path,
                    precision=FP32).to_dict()
    assert row["cell"] == "stlstm" and not row["diverged"]
    assert len(row["gate_saturation"]) == 2  # the encoder's cell and the forecaster's
    assert all(0.0 <= s <= 1.0 for s in row["gate_saturation"])


def test_the_audit_explains_its_norms_per_gate_and_flags_pooled_ones() -> None:
    from normrnn.auditing import audit

    x = torch.randn(2, 3, 1, 8, 8)
    report = audit(STLSTM(1, 8, 3, num_layers=2, norm="layer"), x)
    assert report.findings == []
    assert {u.path.rpartition(".")[2]: u.spec for u in report.uses} == {"norm_x": "group:7", "norm_h": "group:4",
                                                                         "norm_m": "group:3"}
    pooled = audit(STLSTM(1, 8, 3, norm="layer", norm_scope="all_gates"), x)
    assert sorted(f.module.rpartition(".")[2] for f in pooled.findings) == ["norm_h", "norm_m", "norm_x"]
