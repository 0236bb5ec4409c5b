"""The fused gate block against the eager gate function: values, gradients (gradcheck) and saved memory."""

from __future__ import annotations

import pytest
import torch

from normrnn.cells import ConvGRUCell, ConvLSTMCell, lstm_gates
from normrnn.kernels import fused_lstm_gates
from normrnn.layers import LSTM, ConvLSTM
from normrnn.norms import GroupNorm


@pytest.mark.parametrize(("shape", "groups"), [((3, 16, 5, 4), 4), ((2, 32, 6), 8), ((2, 8, 2, 3, 2), 4), ((4, 8), 4)])
def test_fused_equals_eager_values_and_gradients(shape, groups: int) -> None:
    dtype = torch.float64
    C4 = shape[1]
    layout = {2: "BC", 3: "BCL", 4: "BCHW", 5: "BCDHW"}[len(shape)]
    norm = GroupNorm(C4, num_groups=groups, layout=layout, dtype=dtype)
    with torch.no_grad():
        norm.weight.copy_(torch.randn(C4, dtype=dtype))
        norm.bias.copy_(torch.randn(C4, dtype=dtype))
    pre = torch.randn(shape, dtype=dtype, requires_grad=True)
    c = torch.randn(shape[0], C4 // 4, *shape[2:], dtype=dtype, requires_grad=True)
    want = lstm_gates(pre, c, norm=norm)
    got = fused_lstm_gates(pre, c, norm.weight, norm.bias, groups=groups)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    dh, dc = torch.randn_like(want[0]), torch.randn_like(want[1])
    inputs = (pre, c, norm.weight, norm.bias)
    grads_want = torch.autograd.grad(want, inputs, (dh, dc))
    grads_got = torch.autograd.grad(got, inputs, (dh, dc))
    for g, w in zip(grads_got, grads_want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-10, atol=1e-10)
    assert torch.autograd.gradcheck(lambda p, c, w, b: fused_lstm_gates(p, c, w, b, groups=groups), inputs)


def test_fused_saves_only_inputs_and_statistics() -> None:
    pre, c = torch.randn(4, 64, 8, 8, requires_grad=True), torch.randn(4, 16, 8, 8, requires_grad=True)
    w, b = torch.ones(64, requires_grad=True), torch.zeros(64, requires_grad=True)
    norm = GroupNorm(64, num_groups=4, layout="BCHW")

    def saved_bytes(fn) -> int:
        storages: dict[int, int] = {}

        def pack(t: torch.Tensor) -> torch.Tensor:
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            fn()
        return sum(storages.values())

    fused = saved_bytes(lambda: fused_lstm_gates(pre, c, w, b, groups=4))
    eager = saved_bytes(lambda: lstm_gates(pre, c, norm=norm))
    assert fused <= pre.nbytes + c.nbytes + w.nbytes + b.nbytes + 2 * 4 * 4 * 8  # inputs + (N, G) mean, rstd
    assert eager > 1.5 * fused  # measured: about 2x (164 vs 83 kB here)


def test_fused_checks_shapes() -> None:
    with pytest.raises(ValueError, match="groups dividing 4C"):
        fused_lstm_gates(torch.randn(2, 8, 3), torch.randn(2, 3, 3), torch.ones(8), torch.zeros(8), groups=4)


@pytest.mark.parametrize(("cls", "norm"), [(ConvLSTM, "layer"), (ConvLSTM, "group:2"), (LSTM, "layer")])
def test_fused_backend_layer_equals_eager(cls, norm: str) -> None:
    conv = cls is ConvLSTM
    args = (3, 4, 3) if conv else (3, 4)
    eager = cls(*args, num_layers=2, norm=norm, residual=True, dtype=torch.float64)
    fused = cls(*args, num_layers=2, norm=norm, residual=True, backend="fused", dtype=torch.float64)
    fused.load_state_dict(eager.state_dict())
    x = torch.randn(2, 4, 3, 5, 5, dtype=torch.float64) if conv else torch.randn(2, 4, 3, dtype=torch.float64)
    mask = torch.tensor([[True] * 4, [True, True, True, False]])
    y_e, y_f = eager(x, mask=mask)[0], fused(x, mask=mask)[0]
    torch.testing.assert_close(y_f, y_e, rtol=1e-12, atol=1e-12)
    g_e = torch.autograd.grad(y_e.square().sum(), list(eager.parameters()))
    g_f = torch.autograd.grad(y_f.square().sum(), list(fused.parameters()))
    for a, b in zip(g_f, g_e, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "batch"}, "norm='batch'"), ({"norm": "none"}, "norm='none'"),
    ({"norm": "layer", "norm_inputs": "separate"}, "separate"), ({"norm": "layer", "peephole": True}, "peephole"),
])
def test_fused_backend_refuses_what_it_cannot_run(kwargs, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ConvLSTMCell(3, 4, 3, backend="fused", **kwargs)
    with pytest.raises(ValueError, match="no fused GRU"):
        ConvGRUCell(3, 4, 3, backend="fused")


def test_fused_backend_under_bf16_autocast() -> None:
    fused = ConvLSTM(2, 4, 3, norm="layer", backend="fused")
    eager = ConvLSTM(2, 4, 3, norm="layer")
    eager.load_state_dict(fused.state_dict())
    x = torch.randn(2, 3, 2, 5, 5)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        (y, [(h, c)]), (y_e, _) = fused(x), eager(x)
    assert {y.dtype, h.dtype, c.dtype} == {torch.bfloat16}
    torch.testing.assert_close(y, y_e)
    y.float().sum().backward()
    y_e.float().sum().backward()
    for p, q in zip(fused.parameters(), eager.parameters(), strict=True):
        assert p.grad.dtype == torch.float32
        torch.testing.assert_close(p.grad, q.grad, rtol=0, atol=0.02 * float(q.grad.abs().max()))  # bf16 rounding
