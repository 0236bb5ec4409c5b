"""The Triton gate backend against eager PyTorch: values, final states and gradients, float32 and float64, odd
sizes, 1-D to 3-D and dense cells, and the reasons it gives for what it cannot run.

Without CUDA the kernels run under Triton's CPU interpreter (``TRITON_INTERPRET=1``, which conftest.py sets
before Triton is first imported); where Triton is not installed (not Linux x86_64) the tests skip with that reason.
"""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from normrnn.cells import ConvGRUCell, ConvLSTMCell, LSTMCell, lstm_gates
from normrnn.kernels.triton import triton_lstm_gates, triton_unavailable
from normrnn.layers import LSTM, ConvLSTM
from normrnn.norms import GroupNorm, RMSNorm

pytestmark = pytest.mark.slow  # processes, a site build or an interpreter: make test-fast skips them

if triton_unavailable() is not None:
    pytest.skip(triton_unavailable(), allow_module_level=True)

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
TOL = {torch.float64: {"rtol": 1e-10, "atol": 1e-12}, torch.float32: {"rtol": 1e-4, "atol": 1e-5}}


def _close(got: torch.Tensor, want: torch.Tensor, dtype: torch.dtype) -> None:
    """Elementwise within TOL; float32 gradients, sums of thousands of terms in another order, within 1e-4 of
    the reference's norm."""
    if dtype == torch.float32 and want.numel() > 1:
        assert float((got - want).norm() / want.norm()) <= 1e-4
        torch.testing.assert_close(got, want, rtol=1e-3, atol=1e-4)
    else:
        torch.testing.assert_close(got, want, **TOL[dtype])
NORMS = ["none", "layer", "group:3", "rms"]


def _pair(layer_cls, *args, norm: str, dtype: torch.dtype, **kwargs):
    """A layer on the triton backend and an identical eager copy."""
    torch.manual_seed(0)
    triton = layer_cls(*args, norm=norm, backend="triton", dtype=dtype, device=DEVICE, **kwargs)
    with torch.no_grad():  # non-trivial affine parameters, so a wrong γ or β index shows
        for name, p in triton.named_parameters():
            if "norm" in name or name.endswith("bias"):
                p.add_(0.3 * torch.randn_like(p))
    eager = copy.deepcopy(triton)
    for cell in eager.cells():
        cell.backend = "eager"
    return triton, eager


def _check_layers(triton, eager, x: torch.Tensor, dtype: torch.dtype) -> None:
    out_t, states_t = triton(x)
    out_e, states_e = eager(x)
    torch.testing.assert_close(out_t, out_e, **TOL[dtype])
    for (h_t, c_t), (h_e, c_e) in zip(states_t, states_e, strict=True):
        torch.testing.assert_close(h_t, h_e, **TOL[dtype])
        torch.testing.assert_close(c_t, c_e, **TOL[dtype])
    probe_y, probe_c = torch.randn_like(out_e), torch.randn_like(states_e[-1][1])
    loss_t = (out_t * probe_y).sum() + (states_t[-1][1] * probe_c).sum()
    loss_e = (out_e * probe_y).sum() + (states_e[-1][1] * probe_c).sum()
    grads_t = torch.autograd.grad(loss_t, [x, *triton.parameters()])
    grads_e = torch.autograd.grad(loss_e, [x, *eager.parameters()])
    for g_t, g_e in zip(grads_t, grads_e, strict=True):
        _close(g_t, g_e, dtype)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("norm", NORMS)
def test_convlstm_outputs_states_and_gradients_equal_eager(norm: str, dtype: torch.dtype) -> None:
    # C = 6 (not a power of two), H·W = 5·7 = 35 (not a multiple of any block), two stacked layers
    triton, eager = _pair(ConvLSTM, 3, 6, 3, num_layers=2, norm=norm, dtype=dtype)
    x = torch.randn(2, 3, 3, 5, 7, dtype=dtype, device=DEVICE, requires_grad=True)
    _check_layers(triton, eager, x, dtype)


@pytest.mark.parametrize(("spatial_dims", "shape"), [(1, (1, 3, 2, 9)), (3, (1, 2, 2, 3, 4, 5))],
                         ids=["1d-batch1", "3d-batch1"])
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_1d_and_3d_cells_with_batch_one(spatial_dims: int, shape: tuple, norm: str) -> None:
    triton, eager = _pair(ConvLSTM, 2, 5, 3, spatial_dims=spatial_dims, norm=norm, dtype=torch.float64)
    x = torch.randn(shape, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _check_layers(triton, eager, x, torch.float64)


@pytest.mark.parametrize("norm", ["none", "layer"])
def test_dense_lstm_and_a_masked_batch(norm: str) -> None:
    triton, eager = _pair(LSTM, 4, 7, norm=norm, dtype=torch.float64, num_layers=2)
    x = torch.randn(3, 5, 4, dtype=torch.float64, device=DEVICE, requires_grad=True)
    _check_layers(triton, eager, x, torch.float64)
    lengths = torch.tensor([5, 2, 4])  # per-sample statistics: padding never enters another sample's
    y_t, y_e = triton(x, lengths=lengths)[0], eager(x, lengths=lengths)[0]
    torch.testing.assert_close(y_t, y_e, **TOL[torch.float64])


@pytest.mark.parametrize(("norm", "groups", "rms"), [("layer", 4, False), ("group:3", 12, False), ("rms", 4, True)])
def test_the_kernel_alone_equals_the_eager_gate_block_and_gradcheck(norm: str, groups: int, rms: bool) -> None:
    C4, shape = 12, (2, 12, 3, 5)
    norm_module = (RMSNorm(C4, num_groups=groups, layout="BCHW", dtype=torch.float64) if rms
                   else GroupNorm(C4, num_groups=groups, layout="BCHW", dtype=torch.float64))
    shift = torch.randn(C4, dtype=torch.float64, requires_grad=True)
    with torch.no_grad():
        norm_module.weight.copy_(1 + 0.5 * torch.randn(C4, dtype=torch.float64))
    pre = torch.randn(shape, dtype=torch.float64, device=DEVICE, requires_grad=True)
    c = torch.randn(2, 3, 3, 5, dtype=torch.float64, device=DEVICE, requires_grad=True)
    bias = shift if rms else None  # RMS has no β: the cell's bias follows the norm
    if not rms:
        with torch.no_grad():
            norm_module.bias.copy_(shift)
    want = lstm_gates(pre, c, norm=norm_module, bias=bias)
    got = triton_lstm_gates(pre, c, norm_module.weight, shift if rms else norm_module.bias, groups=groups, rms=rms)
    for g, w in zip(got, want, strict=True):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
    small = [t.detach()[:1, :, :1, :2].clone().requires_grad_() for t in (pre, c)]  # the interpreter is slow
    w, b = norm_module.weight.detach().clone().requires_grad_(), shift.detach().clone().requires_grad_()
    assert torch.autograd.gradcheck(lambda p, c, w, b: triton_lstm_gates(p, c, w, b, groups=groups, rms=rms),
                                    (*small, w, b))


def test_bfloat16_runs_and_stays_close() -> None:
    pre, c = torch.randn(2, 16, 4, 4), torch.randn(2, 4, 4, 4)
    w, b = torch.ones(16), torch.zeros(16)
    want = lstm_gates(pre, c, norm=GroupNorm(16, num_groups=4, layout="BCHW"))
    got = triton_lstm_gates(pre.bfloat16(), c.bfloat16(), w.bfloat16(), b.bfloat16(), groups=4)
    assert got[0].dtype == torch.bfloat16
    torch.testing.assert_close(got[0].float(), want[0], rtol=0.02, atol=0.02)


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"norm": "instance"}, "per-sample statistics over channel groups"),
    ({"norm": "batch"}, "per-sample statistics over channel groups"),
    ({"norm": "recurrent_batch"}, "per-sample statistics over channel groups"),
    ({"norm": "layer", "norm_inputs": "separate"}, "norm_inputs='joint'"),
    ({"norm": "layer", "peephole": True}, "no peepholes or cell norm"),
    ({"norm": "layer", "norm_cell": "output"}, "no peepholes or cell norm"),
    ({"norm": "layer", "activation": "relu"}, "tanh and sigmoid only"),
])
def test_unsupported_cells_get_a_one_line_reason(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match) as info:
        ConvLSTMCell(3, 4, 3, backend="triton", **kwargs)
    assert "\n" not in str(info.value)
    with pytest.raises(ValueError, match="no fused block for ConvGRUCell"):
        ConvGRUCell(3, 4, 3, backend="triton")


def test_auto_never_picks_triton_and_the_shapes_are_checked() -> None:
    from normrnn.kernels import auto_backend

    assert auto_backend(torch.device("cuda"), LSTMCell(3, 4, norm="layer")) != "triton"
    with pytest.raises(ValueError, match="expected pre"):
        triton_lstm_gates(torch.randn(2, 10, 3), torch.randn(2, 3, 3), groups=4)


def test_cpu_tensors_without_the_interpreter_get_a_clear_error() -> None:
    code = ("import torch; from normrnn.kernels.triton import triton_lstm_gates as f\n"
            "try: f(torch.randn(1, 8, 2), torch.randn(1, 2, 2))\n"
            "except ValueError as e: print(e)")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120,
                         cwd=Path(__file__).parent)
    assert "TRITON_INTERPRET=1" in out.stdout, out.stderr


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_cuda_the_bench_shape_trains_like_eager() -> None:
    # the gpu-check target shape: B=16, 16 → 64 channels, 64×64, T=10, float32
    triton, eager = _pair(ConvLSTM, 16, 64, 3, norm="group:8", dtype=torch.float32)
    x = torch.randn(16, 10, 16, 64, 64, device=DEVICE, requires_grad=True)
    _check_layers(triton, eager, x, torch.float32)
