"""Garbage in padded steps (NaN, Inf, 1e30) never reaches a gradient or a valid output, in every layer kind,
backend and masked norm; and a batch whose sequences are all padded at some step is legal for batch norm."""

from __future__ import annotations

import copy

import pytest
import torch

from normrnn.layers import GRU, LSTM, ConvGRU, ConvLSTM
from normrnn.norms import BatchNorm, LayerNorm, RecurrentBatchNorm

LENGTHS = torch.tensor([4, 2, 3])  # B = 3, T = 4


def _poison(x: torch.Tensor, value: float) -> torch.Tensor:
    """``x`` with ``value`` at every padded step."""
    mask = torch.arange(x.shape[1]) < LENGTHS[:, None]  # (B, T)
    return torch.where(mask.view(*mask.shape, *([1] * (x.dim() - 2))), x, torch.full_like(x, value))


LAYERS = {
    "LSTM none": lambda: LSTM(3, 5, num_layers=2, norm="none"),
    "LSTM layer": lambda: LSTM(3, 5, num_layers=2, norm="layer"),
    "GRU batch": lambda: GRU(3, 5, norm="batch"),
    "ConvLSTM layer": lambda: ConvLSTM(2, 4, 3, num_layers=2, norm="layer", residual=True),
    "ConvGRU group": lambda: ConvGRU(2, 4, 3, norm="group:2"),
    "ConvLSTM fused": lambda: ConvLSTM(2, 4, 3, norm="group:2", backend="fused"),
    "ConvLSTM recurrent_batch": lambda: ConvLSTM(2, 4, 3, norm="recurrent_batch:4"),
}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), 1e30], ids=["nan", "inf", "1e30"])
@pytest.mark.parametrize("name", list(LAYERS))
def test_padding_never_reaches_a_gradient(name: str, value: float) -> None:
    torch.manual_seed(0)
    layer = LAYERS[name]().double()
    shape = (3, 4, 3) if "Conv" not in name else (3, 4, 2, 5, 5)
    clean = torch.randn(shape, dtype=torch.float64)
    outputs, grads = [], []
    for x in (_poison(clean, 0.0), _poison(clean, value)):  # the reference pads with zeros
        x = x.requires_grad_()
        model = copy.deepcopy(layer)
        y, _ = model(x, lengths=LENGTHS)
        y.square().sum().backward()
        outputs.append(y.detach())
        grads.append([x.grad, *(p.grad for p in model.parameters())])
    torch.testing.assert_close(outputs[1], outputs[0], rtol=0, atol=0)
    for got, want in zip(grads[1], grads[0], strict=True):
        assert torch.isfinite(got).all()
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("norm", [lambda: BatchNorm(3, layout="BTC"), lambda: LayerNorm(3, layout="BTC", reduce="TC")],
                         ids=["batch over B,T", "layer over T,C"])
def test_a_masked_norm_keeps_padding_out_of_every_gradient(norm) -> None:
    module = norm().double()
    x = torch.randn(3, 4, 3, dtype=torch.float64)
    mask = torch.arange(4) < LENGTHS[:, None]
    grads = []
    for fill in (0.0, float("nan")):
        xi = _poison(x, fill).requires_grad_()
        m = copy.deepcopy(module)
        y = m(xi, mask)
        (y * mask[..., None]).square().sum().backward()  # a loss over the valid steps only
        grads.append([xi.grad, *(p.grad for p in m.parameters())])
    for got, want in zip(grads[1], grads[0], strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_batch_norm_accepts_a_step_where_every_sequence_is_padded() -> None:
    lengths = torch.tensor([2, 2])  # steps 2 and 3 are padded in every sequence
    for layer in (LSTM(3, 4, norm="batch"), ConvLSTM(2, 3, 3, norm="batch")):
        x = torch.randn(2, 4, *((3,) if isinstance(layer, LSTM) else (2, 4, 4)))
        y, _ = layer(x, lengths=lengths)
        assert torch.isfinite(y).all() and (y[:, 2:] == 0).all()
        short, _ = copy.deepcopy(layer)(x[:, :2])  # the same as running only the valid steps
        torch.testing.assert_close(y[:, :2], short)
    bn = BatchNorm(3, layout="BTC", track_running_stats=False)
    mask = torch.zeros(2, 4, dtype=torch.bool)
    assert (bn(torch.randn(2, 4, 3), mask) == 0).all()  # nothing valid: nothing to normalize
    rbn = RecurrentBatchNorm(3, layout="BTC", max_steps=4)
    assert torch.isfinite(rbn(torch.randn(2, 4, 3), torch.arange(4) < torch.tensor([[2], [2]]))).all()


def test_state_dtypes_are_checked_and_follow_autocast() -> None:
    layer = ConvLSTM(2, 3, 3)
    x = torch.randn(2, 4, 2, 5, 5)
    zeros = torch.zeros(2, 3, 5, 5)
    for bad, match in ((zeros.long(), "floating-point tensor like the input"), (zeros.double(), "dtype torch.float32")):
        with pytest.raises(ValueError, match=match):
            layer(x, [(bad, zeros)])
        with pytest.raises(ValueError, match=match):
            layer.cell(0, 0)(x[:, 0], (zeros, bad))
    y_given, _ = layer(x, [(zeros, zeros)])
    torch.testing.assert_close(y_given, layer(x)[0])  # a zero state equals no state
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y, states = layer(x, [(zeros, zeros)])
    assert y.dtype == torch.bfloat16 and all(s.dtype == torch.bfloat16 for s in states[0])


@pytest.mark.parametrize("name", list(LAYERS))
def test_inputs_of_another_dtype_or_device_are_refused_like_nn_lstm(name: str) -> None:
    layer = LAYERS[name]()
    x = torch.randn((3, 4, 3) if "Conv" not in name else (3, 4, 2, 5, 5))
    with pytest.raises(ValueError, match="does not match weight dtype"):  # as the reference does
        torch.nn.LSTM(3, 5, batch_first=True)(torch.randn(3, 4, 3, dtype=torch.float64))
    with pytest.raises(ValueError, match=r"expected input of dtype torch.float32 \(the layer's parameters\), got "
                                         r"torch.float64"):
        layer(x.double())
    with pytest.raises(ValueError, match=r"expected a floating-point input, got torch\.int64"):
        layer(x.long())
    with pytest.raises(ValueError, match="expected input on the layer's device cpu, got meta"):
        layer(x.to("meta"))
    with torch.autocast("cpu", dtype=torch.bfloat16):  # under autocast another dtype is fine
        assert layer(x.bfloat16())[0].dtype == torch.bfloat16
    assert layer.double()(x.double())[0].dtype == torch.float64
    cell = layer.cell(0, 0)  # a cell called on its own checks the same
    with pytest.raises(ValueError, match=r"expected input of dtype torch\.float64 \(the cell's parameters\)"):
        cell(x[:, 0])


@pytest.mark.parametrize("norm", ["layer", "group:2", "instance", "rms", "batch", "recurrent_batch"])
def test_a_nan_or_infinite_eps_is_refused(norm: str) -> None:
    from normrnn import create_norm

    for eps in (float("nan"), float("inf"), -1.0):
        with pytest.raises(ValueError, match="expected eps to be a finite number >= 0"):
            create_norm(norm, 4, layout="BTCHW", eps=eps)


def test_double_batch_norm_keeps_float64_running_statistics_like_torch() -> None:
    ours, theirs = BatchNorm(3, layout="BCHW").double(), torch.nn.BatchNorm2d(3).double()
    for _ in range(3):
        x = 5 + 1e-9 * torch.randn(4, 3, 2, 2, dtype=torch.float64)  # differences below float32's resolution
        ours(x), theirs(x)
    assert ours.running_mean.dtype == torch.float64
    torch.testing.assert_close(ours.running_var, theirs.running_var, rtol=1e-12, atol=0)
    x = 5 + 1e-9 * torch.randn(4, 3, 2, 2, dtype=torch.float64)
    torch.testing.assert_close(ours.eval()(x), theirs.eval()(x), rtol=1e-9, atol=1e-9)
    assert BatchNorm(3, layout="BC").half().running_mean.dtype == torch.float32  # never below fp32
