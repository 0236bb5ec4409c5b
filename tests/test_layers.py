"""Sequence layers against torch.nn.LSTM/GRU (packed sequences included), stepping cells by hand, and properties."""

from __future__ import annotations

import pytest
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from normrnn.cells.base import joint_projection
from normrnn.interop import rnn_from_torch
from normrnn.layers import GRU, LSTM, ConvGRU, ConvLSTM, reverse_order


def _torch_state(states: list, bidirectional: bool, lstm: bool):
    """normrnn's per-layer final states in torch's (L·D, B, H) layout."""
    flat = [s for layer in states for s in (layer if bidirectional else (layer,))]
    if lstm:
        return torch.stack([h for h, _ in flat]), torch.stack([c for _, c in flat])
    return torch.stack(flat)


# --- torch.nn.LSTM / GRU ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["lstm", "gru"])
@pytest.mark.parametrize(("layers", "bidirectional", "batch_first"),
                         [(1, False, True), (2, True, False), (3, True, True)])
def test_equals_torch_rnn(kind: str, layers: int, bidirectional: bool, batch_first: bool) -> None:
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(4, 6, num_layers=layers, bidirectional=bidirectional,
                                                   batch_first=batch_first)
    ours = (LSTM if kind == "lstm" else GRU)(4, 6, num_layers=layers, bidirectional=bidirectional,
                                             batch_first=batch_first)
    ours.load_state_dict(ref.state_dict())
    x = torch.randn(3, 5, 4) if batch_first else torch.randn(5, 3, 4)
    y, states = ours(x)
    y_ref, s_ref = ref(x)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    got = _torch_state(states, bidirectional, kind == "lstm")
    for g, w in zip(got if kind == "lstm" else (got,), s_ref if kind == "lstm" else (s_ref,), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_rnn_from_torch_copies_weights_and_options() -> None:
    ref = nn.GRU(3, 4, num_layers=2, bidirectional=True, bias=False)
    ours = rnn_from_torch(ref)
    x = torch.randn(6, 2, 3)
    torch.testing.assert_close(ours(x)[0], ref(x)[0], rtol=1e-5, atol=1e-6)
    with pytest.raises(ValueError, match="proj_size"):
        rnn_from_torch(nn.LSTM(3, 4, proj_size=2))
    with pytest.raises(ValueError, match="norm='none'"):
        LSTM(3, 4, norm="layer").load_state_dict(nn.LSTM(3, 4, batch_first=True).state_dict())


@pytest.mark.parametrize("kind", ["lstm", "gru"])
def test_lengths_equal_torch_packed_sequences_in_both_directions(kind: str) -> None:
    """The backward direction starts at each sequence's own end, exactly as pack_padded_sequence does."""
    ref = (nn.LSTM if kind == "lstm" else nn.GRU)(3, 5, num_layers=2, bidirectional=True, batch_first=True)
    ours = rnn_from_torch(ref)
    x = torch.randn(4, 7, 3)
    lengths = torch.tensor([7, 3, 5, 1])
    packed = pack_padded_sequence(x, lengths, batch_first=True, enforce_sorted=False)
    y_ref, s_ref = ref(packed)
    y_ref, _ = pad_packed_sequence(y_ref, batch_first=True, total_length=7)
    y, states = ours(x, lengths=lengths)
    torch.testing.assert_close(y, y_ref, rtol=1e-5, atol=1e-6)
    got = _torch_state(states, True, kind == "lstm")
    for g, w in zip(got if kind == "lstm" else (got,), s_ref if kind == "lstm" else (s_ref,), strict=True):
        torch.testing.assert_close(g, w, rtol=1e-5, atol=1e-6)


def test_initial_state_matches_torch() -> None:
    ref = nn.LSTM(3, 4, num_layers=2, batch_first=True)
    ours = rnn_from_torch(ref)
    x, h0, c0 = torch.randn(2, 5, 3), torch.randn(2, 2, 4), torch.randn(2, 2, 4)
    y, _ = ours(x, [(h0[0], c0[0]), (h0[1], c0[1])])
    torch.testing.assert_close(y, ref(x, (h0, c0))[0], rtol=1e-5, atol=1e-6)


# --- definitions: hoisting, bidirectional, residual, state ----------------------------------------------------

def test_layer_equals_stepping_its_cell_by_hand() -> None:
    """Input-projection hoisting changes nothing: the layer equals cell(x_t, state, t=t) in a Python loop."""
    model = ConvLSTM(2, 4, 3, norm="recurrent_batch:3", peephole=True, norm_cell="carried").train()
    cell = model.layers[0][0]
    x = torch.randn(3, 5, 2, 6, 6)
    y, [state] = model(x)
    model.reset_running_stats()
    s, outs = None, []
    for t in range(5):
        s = cell(x[:, t], s, t=t)
        outs.append(s[0])
    torch.testing.assert_close(y, torch.stack(outs, 1))
    torch.testing.assert_close(state[1], s[1])


@pytest.mark.parametrize("merge", ["concat", "sum"])
def test_bidirectional_is_a_forward_and_a_time_reversed_pass(merge: str) -> None:
    model = ConvGRU(2, 3, 3, bidirectional=True, merge=merge, norm="group:1").eval()
    fwd, bwd = model.layers[0]
    x = torch.randn(2, 4, 2, 5, 5)
    y, [(h_f, h_b)] = model(x)

    def run(cell, seq):
        h, outs = None, []
        for t in range(seq.shape[1]):
            h = cell(seq[:, t], h, t=t)
            outs.append(h)
        return torch.stack(outs, 1), h

    y_f, last_f = run(fwd, x)
    y_b, last_b = run(bwd, x.flip(1))
    y_b = y_b.flip(1)
    want = torch.cat([y_f, y_b], 2) if merge == "concat" else y_f + y_b
    torch.testing.assert_close(y, want)
    torch.testing.assert_close(h_f, last_f)
    torch.testing.assert_close(h_b, last_b)


def test_residual_adds_the_input_or_its_projection() -> None:
    plain = ConvLSTM(4, 4, 3)
    res = ConvLSTM(4, 4, 3, residual=True)
    res.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 4, 5, 5)
    torch.testing.assert_close(res(x)[0], plain(x)[0] + x)
    proj = ConvLSTM(2, 4, 3, residual=True)
    assert isinstance(proj.skips[0], nn.Conv2d) and proj.skips[0].kernel_size == (1, 1)
    stacked = ConvLSTM(2, [4, 4], 3, num_layers=2, residual=True, bidirectional=True, merge="sum")
    assert isinstance(stacked.skips[1], nn.Identity)
    assert stacked(torch.randn(1, 2, 2, 4, 4))[0].shape == (1, 2, 4, 4, 4)


@pytest.mark.parametrize("cls", [ConvLSTM, ConvGRU])
def test_passing_the_state_back_equals_one_long_sequence(cls) -> None:
    model = cls(2, [3, 4], 3, num_layers=2, norm="group:1", residual=True).eval()
    x = torch.randn(2, 7, 2, 6, 5)
    y, states = model(x)
    y1, s1 = model(x[:, :3])
    y2, s2 = model(x[:, 3:], s1)
    torch.testing.assert_close(torch.cat([y1, y2], 1), y)
    for a, b in zip(s2, states, strict=True):
        for ta, tb in zip(a if isinstance(a, tuple) else (a,), b if isinstance(b, tuple) else (b,), strict=True):
            torch.testing.assert_close(ta, tb)


def test_reset_parameters_keeps_the_forget_bias_in_the_norm_shift() -> None:
    model = ConvLSTM(2, 3, 3, num_layers=2, norm="layer", residual=True, forget_bias=2.0)
    with torch.no_grad():
        for p in model.parameters():
            p.fill_(0.5)
    model.reset_parameters()
    for (cell,) in model.layers:
        torch.testing.assert_close(cell.norm_gates.bias.detach(), torch.tensor([0.0] * 3 + [2.0] * 3 + [0.0] * 6))
        torch.testing.assert_close(cell.norm_gates.weight.detach(), torch.ones(12))
    assert not torch.equal(model.skips[0].weight, torch.full_like(model.skips[0].weight, 0.5))


def test_any_resolution_and_hidden_per_layer() -> None:
    model = ConvLSTM(1, [8, 4], (2, 3), num_layers=2, norm="layer")
    for size in ((16, 16), (9, 23), (1, 1)):
        y, states = model(torch.randn(2, 3, 1, *size))
        assert y.shape == (2, 3, 4, *size)
        assert [s[0].shape[1] for s in states] == [8, 4]
    for dims, size in ((1, (10,)), (3, (3, 4, 5))):
        y, _ = ConvGRU(2, 3, 3, spatial_dims=dims)(torch.randn(2, 2, 2, *size))
        assert y.shape == (2, 2, 3, *size)


# --- masks ----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("norm", ["batch", "recurrent_batch:4", "layer"])
def test_padding_values_never_reach_valid_outputs(norm: str) -> None:
    model = ConvLSTM(2, 3, 3, num_layers=2, norm=norm, bidirectional=True, residual=True).train()
    x = torch.randn(3, 5, 2, 4, 4)
    mask = torch.tensor([[1, 1, 1, 1, 1], [1, 1, 1, 0, 0], [1, 1, 0, 0, 0]], dtype=torch.bool)
    y1, s1 = model(x, mask=mask)
    x2 = x.clone()
    x2[~mask] = torch.randn_like(x2[~mask]) * 100
    y2, s2 = model(x2, mask=mask)
    torch.testing.assert_close(y1, y2)
    assert (y1[~mask] == 0).all()
    for a, b in zip(s1[-1], s2[-1], strict=True):
        torch.testing.assert_close(a[0], b[0])


def test_masked_sequence_equals_the_sequence_cut_to_its_length() -> None:
    model = ConvGRU(2, 3, 3, bidirectional=True, norm="group:3")
    x = torch.randn(2, 6, 2, 5, 5)
    y, [(h_f, h_b)] = model(x, lengths=[6, 4])
    y_short, [(hs_f, hs_b)] = model(x[1:, :4])
    torch.testing.assert_close(y[1:, :4], y_short)
    torch.testing.assert_close(h_f[1:], hs_f)
    torch.testing.assert_close(h_b[1:], hs_b)


def test_reverse_order_reads_each_sequence_from_its_end() -> None:
    mask = torch.tensor([[True, True, True], [True, False, True], [False, False, False]])
    assert reverse_order(mask, 3).tolist() == [[2, 1, 0], [2, 0, 1], [0, 1, 2]]


# --- dropout, export, precision, gradients -------------------------------------------------------------------------

@pytest.mark.parametrize("projection", ["hoisted", "joint"])
def test_recurrent_dropout_uses_one_mask_per_sequence(monkeypatch, projection: str) -> None:
    model = ConvLSTM(2, 3, 3, recurrent_dropout=0.5, projection=projection).train()
    cell = model.layers[0][0]
    seen = []
    if projection == "hoisted":
        original = cell.project_hidden
        monkeypatch.setattr(cell, "project_hidden", lambda h, m=None: seen.append(m) or original(h, m))
    else:
        original = cell.project_joint
        monkeypatch.setattr(cell, "project_joint", lambda x, h, w, m=None: seen.append(m) or original(x, h, w, m))
    model(torch.randn(2, 4, 2, 5, 5))
    assert len(seen) == 4 and all(m is seen[0] for m in seen)
    assert set(seen[0].unique().tolist()) <= {0.0, 2.0}
    seen.clear()
    model.eval()(torch.randn(2, 4, 2, 5, 5))
    assert all(m is None for m in seen)


def test_dropout_between_layers_only_in_training() -> None:
    model = ConvGRU(2, 3, 3, num_layers=2, dropout=0.5)
    x = torch.randn(2, 3, 2, 4, 4)
    model.eval()
    torch.testing.assert_close(model(x)[0], model(x)[0])
    model.train()
    assert not torch.allclose(model(x)[0], model(x)[0])


def test_export_with_fixed_t() -> None:
    model = ConvLSTM(2, 3, 3, num_layers=2, norm="group:1", residual=True).eval()
    x = torch.randn(2, 4, 2, 6, 6)
    exported = torch.export.export(model, (x,))
    torch.testing.assert_close(exported.module()(x)[0], model(x)[0])


@pytest.mark.parametrize("cls", [ConvLSTM, ConvGRU])
def test_bf16_autocast_outputs_and_states_share_a_dtype(cls) -> None:
    model = cls(2, 4, 3, num_layers=2, norm="group:2", residual=True, bidirectional=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, states = model(torch.randn(2, 3, 2, 5, 5))
    flat = [t for layer in states for d in layer for t in (d if isinstance(d, tuple) else (d,))]
    assert {y.dtype, *(t.dtype for t in flat)} == {torch.bfloat16}


def test_gradcheck_through_a_masked_bidirectional_stack() -> None:
    model = ConvLSTM(2, 2, 3, num_layers=2, norm="layer", bidirectional=True, residual=True, peephole=True,
                     dtype=torch.float64)
    x = torch.randn(2, 3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[True, True, True], [True, True, False]])
    assert torch.autograd.gradcheck(lambda x: model(x, mask=mask)[0], (x,))


# --- errors -----------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "match"), [
    (lambda m: m(torch.randn(2, 3, 5, 4, 4)), "C=2 channels"),
    (lambda m: m(torch.randn(2, 3, 2, 4)), "rank 5"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), [None]), r"one entry per layer \(2\)"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), [None, torch.zeros(2, 3, 4, 4)]), r"tuple \(h, c\)"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), [None, (torch.zeros(2, 3, 4, 4),) * 2]), r"shape \(2, 4, 4, 4\)"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), mask=torch.ones(2, 4, dtype=torch.bool)), r"shape \(B, T\) = \(2, 3\)"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), mask=torch.ones(2, 3)), "boolean mask"),
    (lambda m: m(torch.randn(2, 3, 2, 4, 4), lengths=[4, 1]), "lengths"),
])
def test_bad_input_raises_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ConvLSTM(2, [3, 4], 3, num_layers=2))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "layernorm"}, "unknown norm spec"),
    ({"hidden_channels": [3]}, "one per layer"),
    ({"merge": "mean"}, "merge"),
    ({"num_layers": 0}, "num_layers"),
])
def test_bad_construction_raises_value_error(kwargs, match: str) -> None:
    args = {"hidden_channels": 3, "num_layers": 2, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvLSTM(2, kernel_size=3, **args)


def test_bidirectional_state_must_be_a_pair() -> None:
    model = ConvGRU(2, 3, 3, bidirectional=True)
    with pytest.raises(ValueError, match=r"\(forward, backward\) pair"):
        model(torch.randn(1, 2, 2, 4, 4), [torch.zeros(1, 3, 4, 4)])


@pytest.mark.parametrize("options", [
    {"norm": "none"},
    {"norm": "group:2", "bidirectional": True, "num_layers": 2, "residual": True},
    {"norm": "recurrent_batch:4", "peephole": True, "norm_cell": "output", "dilation": 2},
    {"norm": "layer", "recurrent_dropout": 0.0, "spatial_dims": 1},
])
def test_joint_projection_equals_hoisted(options: dict) -> None:
    """One conv of [x; h] per step computes W_x*x + W_h*h: outputs, final states and every gradient agree."""
    spatial = options.get("spatial_dims", 2)
    torch.manual_seed(0)
    hoisted = ConvLSTM(2, 4, 3, projection="hoisted", dtype=torch.float64, **options)
    joint = ConvLSTM(2, 4, 3, projection="joint", dtype=torch.float64, **options)
    joint.load_state_dict(hoisted.state_dict())
    x = torch.randn(3, 5, 2, *(6,) * spatial, dtype=torch.float64)
    lengths = [5, 3, 4]
    results = []
    for model in (hoisted, joint):
        xx = x.clone().requires_grad_()
        y, states = model(xx, lengths=lengths)
        loss = y.square().sum() + sum(s.square().sum() for s in torch.utils._pytree.tree_leaves(states))
        loss.backward()
        results.append([y, *torch.utils._pytree.tree_leaves(states), xx.grad, *(p.grad for p in model.parameters())])
    for got, want in zip(results[1], results[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_projection_auto_is_joint_on_cpu_where_the_cell_allows_it() -> None:
    assert joint_projection(ConvLSTM(2, 3, 3).layers[0][0], torch.device("cpu"))
    assert not joint_projection(ConvLSTM(2, 3, 3).layers[0][0], torch.device("cuda"))
    assert not joint_projection(ConvGRU(2, 3, 3).layers[0][0], torch.device("cpu"))
    assert not joint_projection(ConvLSTM(2, 3, 3, norm="layer", norm_inputs="separate").layers[0][0],
                                torch.device("cpu"))
    with pytest.raises(ValueError, match="reset gate multiplies W_h"):
        ConvGRU(2, 3, 3, projection="joint")
    with pytest.raises(ValueError, match=r"needs recurrent_dilation == dilation, got \(1, 1\) and \(2, 2\)"):
        ConvLSTM(2, 3, 3, dilation=2, recurrent_dilation=1, projection="joint")


def test_cells_iterates_every_cell_and_cell_picks_one() -> None:
    model = ConvLSTM(2, [3, 5], 3, num_layers=2, bidirectional=True)
    cells = list(model.cells())
    assert [c.hidden_channels for c in cells] == [3, 3, 5, 5]
    assert model.cell(1, 1) is cells[3] and model.cell(0) is cells[0]
    assert sorted(k for k in model.state_dict() if k.endswith("weight_x")) == \
        [f"layers.{k}.{d}.weight_x" for k in range(2) for d in range(2)]  # checkpoints keep their keys
    with pytest.raises(ValueError, match="expected layer in"):
        model.cell(2)


def test_a_resampling_input_conv_sizes_the_state_and_refuses_what_cannot_line_up() -> None:
    """padding='valid' and strides shrink the state; states passed back in are checked at that size."""
    model = ConvLSTM(2, 3, 3, num_layers=2, padding="valid", stride=(1, 2))
    x = torch.randn(2, 4, 2, 9, 10)
    y, states = model(x)
    # valid 3x3 with stride (1, 2): H 9 -> 7 -> 5, W 10 -> (10 - 2 - 1) // 2 + 1 = 4 -> (4 - 2 - 1) // 2 + 1 = 1
    assert y.shape == (2, 4, 3, 5, 1)
    assert states[0][0].shape == (2, 3, 7, 4) and states[1][0].shape == (2, 3, 5, 1)
    y2, _ = model(x[:, 2:], [s for s in model(x[:, :2])[1]])  # chunks chain at the resampled size
    torch.testing.assert_close(y2, y[:, 2:])
    with pytest.raises(ValueError, match="expected state"):
        model(x, [(torch.zeros(2, 3, 9, 10),) * 2, None])
    with pytest.raises(ValueError, match="residual=True"):
        ConvLSTM(2, 3, 3, padding="valid", residual=True)
    with pytest.raises(ValueError, match="go_backwards without bidirectional"):
        ConvLSTM(2, 3, 3, go_backwards=True, bidirectional=True)
    assert not joint_projection(model.cell(0), torch.device("cpu"))  # [x; h] differ in size


def test_go_backwards_reads_last_step_first_and_outputs_in_that_order() -> None:
    torch.manual_seed(0)
    fwd = ConvGRU(2, 3, 3)
    bwd = ConvGRU(2, 3, 3, go_backwards=True)
    bwd.load_state_dict(fwd.state_dict())
    x = torch.randn(2, 5, 2, 4, 4)
    y_b, (h_b,) = bwd(x)
    y_f, (h_f,) = fwd(x.flip(1))
    torch.testing.assert_close(y_b, y_f)  # Keras' order: the outputs as read, not re-reversed
    torch.testing.assert_close(h_b, h_f)
    lengths = torch.tensor([5, 3])
    y_m, _ = bwd(x, lengths=lengths)
    assert float(y_m[1, :2].detach().abs().sum()) == 0.0  # reversed, the padding (steps 3, 4) comes first
