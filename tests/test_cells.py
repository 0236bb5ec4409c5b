"""Cells against independent references: torch.nn.LSTMCell/GRUCell, eager textbook equations, gradcheck."""

from __future__ import annotations

import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from normrnn.cells import ConvGRUCell, ConvLSTMCell, GRUCell, LSTMCell, gate_norm
from normrnn.norms import GroupNorm, RMSNorm

NORMS = ["none", "layer", "group:2", "instance", "batch", "recurrent_batch:3", "rms"]


def _randomize(module: nn.Module, scale: float = 0.5) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * scale)
    return module


# --- equality with torch.nn cells -----------------------------------------------------------------------------

def _copy_lstm(cell: nn.Module, ref: nn.LSTMCell | nn.GRUCell, spatial: int) -> None:
    view = (*ref.weight_ih.shape, *([1] * spatial))
    with torch.no_grad():
        cell.weight_x.copy_(ref.weight_ih.reshape(view))
        cell.weight_h.copy_(ref.weight_hh.reshape(*ref.weight_hh.shape, *([1] * spatial)))
        if isinstance(ref, nn.LSTMCell):
            cell.bias.copy_(ref.bias_ih + ref.bias_hh)
        else:
            C = ref.hidden_size
            cell.bias.copy_(torch.cat([ref.bias_ih[: 2 * C] + ref.bias_hh[: 2 * C], ref.bias_ih[2 * C :]]))
            cell.bias_hn.copy_(ref.bias_hh[2 * C :])


@pytest.mark.parametrize("spatial", [0, 1, 2, 3])
def test_lstm_cell_equals_torch_lstm_cell(spatial: int) -> None:
    ref = nn.LSTMCell(5, 7)
    cell = LSTMCell(5, 7) if spatial == 0 else ConvLSTMCell(5, 7, 1, spatial_dims=spatial)
    _copy_lstm(cell, ref, spatial)
    x, h, c = torch.randn(4, 5), torch.randn(4, 7), torch.randn(4, 7)
    ones = (1,) * spatial
    h1, c1 = cell(x.view(4, 5, *ones), (h.view(4, 7, *ones), c.view(4, 7, *ones)))
    rh, rc = ref(x, (h, c))
    torch.testing.assert_close(h1.reshape(4, 7), rh, rtol=1e-6, atol=1e-6)
    torch.testing.assert_close(c1.reshape(4, 7), rc, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("spatial", [0, 1, 2, 3])
def test_gru_cell_equals_torch_gru_cell(spatial: int) -> None:
    ref = nn.GRUCell(5, 7)
    cell = GRUCell(5, 7) if spatial == 0 else ConvGRUCell(5, 7, 1, spatial_dims=spatial)
    _copy_lstm(cell, ref, spatial)
    x, h = torch.randn(4, 5), torch.randn(4, 7)
    ones = (1,) * spatial
    out = cell(x.view(4, 5, *ones), h.view(4, 7, *ones))
    torch.testing.assert_close(out.reshape(4, 7), ref(x, h), rtol=1e-6, atol=1e-6)


# --- an eager, textbook ConvLSTM step as the reference for every placement ----------------------------------

def _same_conv2d(x: torch.Tensor, w: torch.Tensor, dilation: int = 1) -> torch.Tensor:
    """'same' padding written out: the extra pad of an even kernel goes after (TF and Keras convention)."""
    pads = []
    for k in reversed(w.shape[2:]):
        total = dilation * (k - 1)
        pads += [total // 2, total - total // 2]
    return F.conv2d(F.pad(x, pads), w, dilation=dilation)


def _ln(x: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Layer norm over every axis but the batch, no affine."""
    return F.layer_norm(x, x.shape[1:], eps=eps)


def _reference_step(cell: ConvLSTMCell, x, h, c, *, per_gate: bool, separate: bool):
    """The LN-ConvLSTM written gate by gate: LN via F.layer_norm, per gate or over all gates."""
    C = cell.hidden_channels
    gx = _same_conv2d(x, cell.weight_x)
    gh = _same_conv2d(h, cell.weight_h)

    def norm(z: torch.Tensor, module: nn.Module) -> torch.Tensor:
        if per_gate:
            y = torch.cat([_ln(chunk) for chunk in z.chunk(4, dim=1)], dim=1)
        else:
            y = _ln(z)
        w = module.weight.view(1, -1, 1, 1) if module.weight is not None else 1.0
        b = module.bias.view(1, -1, 1, 1) if module.bias is not None else 0.0
        return y * w + b

    if separate:
        a = norm(gx, cell.norm_x) + norm(gh, cell.norm_h) + cell.bias.view(1, -1, 1, 1)
    else:
        a = norm(gx + gh, cell.norm_gates)
    i, f, g, o = a[:, :C], a[:, C : 2 * C], a[:, 2 * C : 3 * C], a[:, 3 * C :]
    if cell.peephole:
        w_ci, w_cf, w_co = (w.view(1, -1, 1, 1) for w in cell.weight_peephole)
        i, f = i + w_ci * c, f + w_cf * c
    c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
    cn = cell.state_norm
    if cell.norm_cell == "carried":
        c_new = _ln(c_new) * cn.weight.view(1, -1, 1, 1) + cn.bias.view(1, -1, 1, 1)
    if cell.peephole:
        o = o + w_co * c_new
    shown = c_new
    if cell.norm_cell == "output":
        shown = _ln(c_new) * cn.weight.view(1, -1, 1, 1) + cn.bias.view(1, -1, 1, 1)
    return torch.sigmoid(o) * torch.tanh(shown), c_new


@pytest.mark.parametrize(("scope", "inputs", "norm_cell", "peephole", "kernel"), [
    ("per_gate", "joint", "none", False, 3),
    ("all_gates", "joint", "none", False, 3),
    ("per_gate", "separate", "none", False, 3),
    ("per_gate", "joint", "output", True, 2),
    ("all_gates", "separate", "carried", True, (2, 3)),
])
def test_layer_norm_placements_match_textbook_equations(scope, inputs, norm_cell, peephole, kernel) -> None:
    cell = ConvLSTMCell(3, 4, kernel, norm="layer", norm_scope=scope, norm_inputs=inputs, norm_cell=norm_cell,
                        peephole=peephole, dtype=torch.float64)
    _randomize(cell)
    x, h, c = (torch.randn(2, n, 5, 6, dtype=torch.float64) for n in (3, 4, 4))
    got = cell(x, (h, c))
    want = _reference_step(cell, x, h, c, per_gate=scope == "per_gate", separate=inputs == "separate")
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)


def test_dense_ln_lstm_is_layer_norm_per_gate_on_the_4h_vector() -> None:
    """norm-semantics (c)15: LN-LSTM per gate = GroupNorm(4) on the 4H pre-activation; all gates = LN over 4H."""
    for scope, groups in (("per_gate", 4), ("all_gates", 1)):
        cell = _randomize(LSTMCell(3, 5, norm="layer", norm_scope=scope, dtype=torch.float64))
        x, h = torch.randn(6, 3, dtype=torch.float64), torch.randn(6, 5, dtype=torch.float64)
        c = torch.zeros(6, 5, dtype=torch.float64)
        pre = x @ cell.weight_x.T + h @ cell.weight_h.T  # (B, 4H)
        a = torch.cat([F.layer_norm(z, z.shape[1:]) for z in pre.chunk(groups, dim=1)], dim=1)
        a = a * cell.norm_gates.weight + cell.norm_gates.bias
        i, _, g, o = a.chunk(4, dim=1)  # f multiplies the zero c
        want_c = torch.sigmoid(i) * torch.tanh(g)
        got_h, got_c = cell(x, (h, c))
        torch.testing.assert_close(got_c, want_c, rtol=1e-12, atol=1e-12)
        torch.testing.assert_close(got_h, torch.sigmoid(o) * torch.tanh(want_c), rtol=1e-12, atol=1e-12)


# --- norm construction, bias placement, initialization ---------------------------------------------------------

@pytest.mark.parametrize(("spec", "scope", "kind", "groups"), [
    ("layer", "per_gate", GroupNorm, 4),
    ("layer", "all_gates", "LayerNorm", None),
    ("group:2", "per_gate", GroupNorm, 8),
    ("group:2", "all_gates", GroupNorm, 2),
    ("rms", "per_gate", RMSNorm, 4),
])
def test_gate_norm_groups_never_span_two_gates(spec, scope, kind, groups) -> None:
    norm = gate_norm(spec, 6, 4, scope=scope, layout="BCHW")
    assert type(norm).__name__ == (kind if isinstance(kind, str) else kind.__name__)
    if groups is not None:
        assert norm.axes.groups == groups
    if scope == "per_gate":
        # perturbing one gate's channels leaves every other gate's output unchanged
        x = torch.randn(2, 24, 3, 3)
        y = x.clone()
        y[:, 6:12] += torch.randn(2, 6, 3, 3) * 5
        torch.testing.assert_close(norm(x)[:, 12:], norm(y)[:, 12:])
        torch.testing.assert_close(norm(x)[:, :6], norm(y)[:, :6])


@pytest.mark.parametrize(("norm", "inputs", "where"), [
    ("none", "joint", "bias"), ("layer", "joint", "norm_gates"), ("rms", "joint", "bias"),
    ("layer", "separate", "bias"), ("recurrent_batch:4", "joint", "norm_gates"), ("batch", "separate", "bias"),
])
def test_one_shift_and_the_forget_bias_lives_in_it(norm: str, inputs: str, where: str) -> None:
    cell = ConvLSTMCell(2, 3, 3, norm=norm, norm_inputs=inputs, forget_bias=1.5)
    shifts = [name for name, p in cell.named_parameters() if name.endswith("bias") and p.shape == (12,)]
    assert shifts == ([f"{where}.bias"] if where != "bias" else ["bias"])
    shift = dict(cell.named_parameters())[shifts[0]]
    torch.testing.assert_close(shift.detach(), torch.tensor([0.0] * 3 + [1.5] * 3 + [0.0] * 6))


def test_gru_forget_bias_goes_to_the_update_gate() -> None:
    cell = ConvGRUCell(2, 3, 3, forget_bias=2.0)
    torch.testing.assert_close(cell.bias.detach(), torch.tensor([0.0] * 3 + [2.0] * 3 + [0.0] * 3))
    joint = ConvGRUCell(2, 3, 3, norm="layer")
    assert joint.bias is None
    torch.testing.assert_close(joint.norm_rz.bias.detach(), torch.tensor([0.0] * 3 + [1.0] * 3))


@pytest.mark.parametrize("kernel", [1, 3, (2, 3)])
def test_orthogonal_recurrent_init_per_gate(kernel) -> None:
    cell = ConvLSTMCell(2, 4, kernel)
    for w in cell.weight_h.detach().chunk(4, dim=0):
        m = w.reshape(4, -1)  # (C, C·k·k): orthonormal rows
        torch.testing.assert_close(m @ m.T, torch.eye(4), atol=1e-5, rtol=0)
    default = ConvLSTMCell(2, 4, 3, recurrent_init="default")
    assert default.weight_h.abs().max() <= 1 / (4 * 9) ** 0.5


# --- geometry, gradients, compile, precision -------------------------------------------------------------------

@pytest.mark.parametrize(("spatial", "kernel", "size", "dilation"), [
    (1, 4, (11,), 1), (2, 2, (7, 9), 1), (2, (4, 3), (8, 5), 2), (3, 2, (3, 4, 5), 1), (2, 5, (3, 3), 1),
])
def test_any_kernel_keeps_the_size(spatial, kernel, size, dilation) -> None:
    cell = ConvGRUCell(2, 3, kernel, spatial_dims=spatial, dilation=dilation)
    assert cell(torch.randn(2, 2, *size)).shape == (2, 3, *size)


def test_even_kernel_pads_like_keras() -> None:
    cell = _randomize(ConvLSTMCell(2, 3, (2, 4), bias=False, dtype=torch.float64))
    x = torch.randn(1, 2, 5, 6, dtype=torch.float64)
    torch.testing.assert_close(cell.project_input(x), _same_conv2d(x, cell.weight_x))


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
@pytest.mark.parametrize("norm", ["layer", "group:2", "recurrent_batch:2", "rms", "batch"])
def test_gradcheck_float64(cls, norm: str) -> None:
    extra = {"peephole": True, "norm_cell": "output"} if cls is ConvLSTMCell else {}
    cell = _randomize(cls(2, 2, 3, norm=norm, dtype=torch.float64, **extra))
    x = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    h = torch.randn(3, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    state = (h, torch.randn_like(h).requires_grad_()) if cls is ConvLSTMCell else h

    def step(x, *state):
        out = cell(x, state if len(state) > 1 else state[0], t=1)
        return out if isinstance(out, tuple) else (out,)

    assert torch.autograd.gradcheck(step, (x, *(state if isinstance(state, tuple) else (state,))))


def test_cell_step_compiles_fullgraph() -> None:
    cell = ConvLSTMCell(3, 4, 3, norm="group:2", peephole=True, norm_cell="output")
    x = torch.randn(2, 3, 8, 8)
    state = cell(x)
    compiled = torch.compile(cell, fullgraph=True, backend="aot_eager")
    for g, w in zip(compiled(x, state), cell(x, state), strict=True):
        torch.testing.assert_close(g, w)


@pytest.mark.parametrize("cls", [ConvLSTMCell, ConvGRUCell])
@pytest.mark.parametrize("norm", ["none", "layer", "batch"])
def test_bf16_autocast_keeps_one_state_dtype(cls, norm: str) -> None:
    cell = cls(3, 4, 3, norm=norm)
    x = torch.randn(2, 3, 6, 6)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        state = cell(x)
        for t in range(1, 3):
            state = cell(x, state, t=t)
    tensors = state if isinstance(state, tuple) else (state,)
    assert {s.dtype for s in tensors} == {torch.bfloat16}


def test_mask_freezes_the_state_and_hides_padding_from_batch_statistics() -> None:
    cell = ConvLSTMCell(2, 3, 3, norm="batch")
    x, h, c = torch.randn(4, 2, 5, 5), torch.randn(4, 3, 5, 5), torch.randn(4, 3, 5, 5)
    mask = torch.tensor([True, True, False, True])
    h1, c1 = cell(x, (h, c), mask=mask)
    torch.testing.assert_close(h1[2], h[2])
    torch.testing.assert_close(c1[2], c[2])
    x2 = x.clone()
    x2[2] = 1e3
    h2, _ = cell(x2, (h, c), mask=mask)
    torch.testing.assert_close(h2[mask], h1[mask])


# --- every combination trains ------------------------------------------------------------------------------------

@pytest.mark.parametrize(("cls", "norm", "scope", "inputs"), [
    (cls, norm, scope, inputs)
    for cls, norm, scope, inputs in itertools.product(
        [ConvLSTMCell, ConvGRUCell, LSTMCell, GRUCell], NORMS, ["per_gate", "all_gates"], ["joint", "separate"])
    if not (norm == "instance" and cls in (LSTMCell, GRUCell))  # no spatial axes: a ValueError, tested below
])
def test_every_combination_takes_a_training_step(cls, norm, scope, inputs) -> None:
    conv = cls in (ConvLSTMCell, ConvGRUCell)
    extra = {"peephole": True, "norm_cell": "output"} if cls in (ConvLSTMCell, LSTMCell) and norm != "none" else {}
    cell = cls(3, 4, 3, norm=norm, norm_scope=scope, norm_inputs=inputs, **extra) if conv else \
        cls(3, 4, norm=norm, norm_scope=scope, norm_inputs=inputs, **extra)
    opt = torch.optim.SGD(cell.parameters(), lr=0.1)
    xs = torch.randn(3, 4, 3, 5, 5) if conv else torch.randn(3, 4, 3)
    state = None
    for t in range(3):
        state = cell(xs[t], state, t=t)
    out = state[0] if isinstance(state, tuple) else state
    out.square().mean().backward()
    for name, p in cell.named_parameters():
        assert p.grad is not None, f"{name} got no gradient (a dead parameter)"
        assert torch.isfinite(p.grad).all(), name
    opt.step()


# --- errors -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("call", "match"), [
    (lambda c: c(torch.randn(2, 5, 4, 4)), "C=3 channels"),
    (lambda c: c(torch.randn(2, 3, 4)), "rank 4"),
    (lambda c: c(torch.randn(2, 3, 4, 4), (torch.randn(2, 4, 4, 4),)), r"tuple \(h, c\)"),
    (lambda c: c(torch.randn(2, 3, 4, 4), (torch.randn(2, 4, 4, 4), torch.randn(2, 4, 5, 4))), "state c of shape"),
    (lambda c: c(torch.randn(2, 3, 4, 4), mask=torch.ones(3, dtype=torch.bool)), "mask of shape"),
])
def test_bad_input_raises_value_error(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(ConvLSTMCell(3, 4, 3))


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "lyer"}, "unknown norm spec"),
    ({"norm_scope": "gates"}, "norm_scope"),
    ({"norm_inputs": "both"}, "norm_inputs"),
    ({"norm_cell": "yes"}, "norm_cell"),
    ({"kernel_size": 0}, "kernel_size"),
    ({"spatial_dims": 4}, "spatial_dims"),
    ({"norm": "group:3"}, "groups to divide"),
])
def test_bad_construction_raises_value_error(kwargs, match: str) -> None:
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(ValueError, match=match):
        ConvLSTMCell(3, 4, **args)


def test_instance_norm_on_a_dense_cell_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="spatial axes"):
        LSTMCell(3, 4, norm="instance")


def test_peephole_and_reset_options_refuse_what_they_cannot_compute() -> None:
    with pytest.raises(ValueError, match="peephole_size"):
        ConvLSTMCell(3, 4, 3, peephole="elementwise")
    with pytest.raises(ValueError, match="per-gate norm without running statistics"):
        ConvLSTMCell(3, 4, 3, norm="batch", peephole=True, peephole_placement="before_norm")
    with pytest.raises(ValueError, match="per-gate norm"):
        ConvLSTMCell(3, 4, 3, norm="layer", norm_scope="all_gates", peephole_placement="before_norm")
    with pytest.raises(ValueError, match="recurrent_dropout=0 with reset_after=False"):
        ConvGRUCell(3, 4, 3, reset_after=False, recurrent_dropout=0.1)
    cell = ConvLSTMCell(3, 4, 3, peephole="elementwise", peephole_size=(5, 6))
    assert cell.weight_peephole.shape == (3, 4, 5, 6)
    h, _ = cell(torch.randn(2, 3, 5, 6))
    assert h.shape == (2, 4, 5, 6)
    gru = ConvGRUCell(3, 4, 3, reset_after=False)
    assert gru.bias_hn is None and "reset_after=False" in repr(gru)


def test_peepholes_before_the_norm_keep_gradients_exact() -> None:
    cell = ConvLSTMCell(2, 2, 3, norm="layer", norm_cell="carried", peephole="elementwise", peephole_size=(3, 3),
                        peephole_placement="before_norm").double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True)
    state = tuple(torch.randn(2, 2, 3, 3, dtype=torch.float64, requires_grad=True) for _ in range(2))
    assert torch.autograd.gradcheck(lambda x, h, c: cell(x, (h, c)), (x, *state))


def test_a_checkpoint_that_names_the_state_norm_cell_norm_still_loads() -> None:
    """0.1 called the cell-state norm module ``cell_norm``; its checkpoints load into ``state_norm``."""
    from normrnn.layers import ConvLSTM

    old = _randomize(ConvLSTM(2, 4, 3, norm="layer", norm_cell="output", num_layers=2))
    renamed = {k.replace(".state_norm.", ".cell_norm."): v for k, v in old.state_dict().items()}
    assert any(".cell_norm." in k for k in renamed)
    new = ConvLSTM(2, 4, 3, norm="layer", norm_cell="output", num_layers=2)
    new.load_state_dict(renamed)  # strict: every key found
    x = torch.randn(2, 3, 2, 5, 5)
    torch.testing.assert_close(new(x)[0], old(x)[0])


_CONV_ONLY = {"kernel_size", "spatial_dims", "dilation", "recurrent_dilation", "padding", "stride"}


@pytest.mark.parametrize("name", ["ConvLSTMCell", "ConvGRUCell", "LSTMCell", "GRUCell"])
def test_a_cell_spells_out_every_keyword_with_its_default(name: str) -> None:
    """``inspect.signature`` (so help() and the site) names every option, each with the default the cell really
    uses: passing every default explicitly builds the same cell as passing none."""
    import inspect

    from normrnn import cells

    cls = getattr(cells, name)
    params = inspect.signature(cls).parameters
    assert all(p.kind is not inspect.Parameter.VAR_KEYWORD for p in params.values()), list(params)
    options = cells.ConvLSTMOptions if "LSTM" in name else cells.ConvGRUOptions
    conv = name.startswith("Conv")
    assert set(params) - {"in_channels", "hidden_channels"} == (set(options.__annotations__) | _CONV_ONLY
                                                                if conv else set(options.__annotations__) - _CONV_ONLY)
    positional = (3, 4, 3) if conv else (3, 4)
    defaults = {n: p.default for n, p in params.items() if p.default is not inspect.Parameter.empty}
    torch.manual_seed(0)
    plain = cls(*positional)
    torch.manual_seed(0)
    explicit = cls(*positional, **defaults)
    assert repr(explicit) == repr(plain)
    pairs = zip(plain.state_dict().values(), explicit.state_dict().values(), strict=True)
    assert all(torch.equal(a, b) for a, b in pairs)
    assert [p.kind for p in params.values()].count(inspect.Parameter.KEYWORD_ONLY) == len(params) - len(positional)


def test_a_subclass_with_its_own_init_keeps_its_own_signature() -> None:
    import inspect

    from normrnn.cells import ConvLSTMCell

    class Mine(ConvLSTMCell):
        def __init__(self, channels: int) -> None:
            super().__init__(channels, channels, 3)

    assert list(inspect.signature(Mine).parameters) == ["channels"]
