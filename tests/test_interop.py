"""Converters against the frameworks' own semantics.

PyTorch modules are run directly. Keras, TF1 and Flax are not installed here, so their norm layers are
checked against NumPy transcriptions of their documented formulas (shared/docs/norm-semantics.md, read
from their source) and against the vectors those frameworks print in the seeds; the Keras ConvLSTM layers
against arrays a real Keras produced (tests/fixtures).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from normrnn import BatchNorm, GroupNorm, Identity, InstanceNorm, LayerNorm, RMSNorm
from normrnn.interop import convlstm_from_keras
from normrnn.norms import from_flax, from_keras, from_tf1_layer_norm, from_torch

SEED_X = np.array([[[18.369314, 2.6570225, 20.402943], [10.403599, 2.7813416, 20.794857]],
                   [[19.0327, 2.6398268, 6.3894367], [3.921237, 10.761424, 2.7887821]],
                   [[11.466338, 20.210938, 8.242946], [22.77081, 11.555874, 11.183836]],
                   [[8.976935, 10.204252, 11.20231], [-7.356888, 6.2725096, 1.1952505]]], dtype=np.float32)


def _randomize(module: nn.Module) -> nn.Module:
    with torch.no_grad():
        for p in module.parameters():
            p.copy_(torch.randn_like(p) * 0.5 + 1.0)
    return module


# --- PyTorch ---------------------------------------------------------------------------------------------------

TORCH_CASES = [
    (nn.LayerNorm((8, 5, 5)), "BCHW", (3, 8, 5, 5), LayerNorm),
    (nn.LayerNorm(8), "BTF", (3, 4, 8), LayerNorm),
    (nn.LayerNorm(8, bias=False), "BTF", (3, 4, 8), LayerNorm),
    (nn.GroupNorm(2, 8), "BCHW", (3, 8, 5, 5), GroupNorm),
    (nn.GroupNorm(4, 8), "BCDHW", (3, 8, 2, 3, 3), GroupNorm),
    (nn.InstanceNorm2d(8, affine=True), "BCHW", (3, 8, 5, 5), InstanceNorm),
    (nn.InstanceNorm1d(8), "BCL", (3, 8, 6), InstanceNorm),
    (nn.RMSNorm(8, eps=1e-6), "BTF", (3, 4, 8), RMSNorm),
    (nn.RMSNorm((8, 5, 5)), "BCHW", (3, 8, 5, 5), RMSNorm),
    (nn.BatchNorm1d(8), "BC", (6, 8), BatchNorm),
    (nn.BatchNorm1d(8, momentum=None), "BCL", (6, 8, 4), BatchNorm),
    (nn.BatchNorm2d(8, momentum=0.3), "BCHW", (3, 8, 5, 5), BatchNorm),
    (nn.BatchNorm3d(8, affine=False), "BCDHW", (3, 8, 2, 3, 3), BatchNorm),
    (nn.Identity(), "BCHW", (3, 8, 5, 5), Identity),
]


@pytest.mark.parametrize(("module", "layout", "shape", "cls"), TORCH_CASES, ids=lambda v: getattr(v, "__name__", None))
def test_from_torch_matches_the_module_in_train_and_eval(module, layout, shape, cls):
    source = _randomize(module)
    converted = from_torch(source, layout)
    assert type(converted) is cls
    for step in range(3):
        x = torch.randn(shape) * 2 + step
        torch.testing.assert_close(converted(x), source(x), atol=1e-5, rtol=1e-5)
    converted.eval(), source.eval()
    x = torch.randn(shape)
    torch.testing.assert_close(converted(x), source(x), atol=1e-5, rtol=1e-5)
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        if getattr(source, name, None) is not None:
            torch.testing.assert_close(getattr(converted, name), getattr(source, name))


def test_from_torch_copies_trained_buffers():
    source = nn.BatchNorm2d(4)
    for _ in range(3):
        source(torch.randn(5, 4, 3, 3) * 3 + 2)
    converted = from_torch(source.eval(), "BCHW")
    assert not converted.training
    torch.testing.assert_close(converted.running_var, source.running_var)
    x = torch.randn(2, 4, 3, 3)
    torch.testing.assert_close(converted(x), source(x))


def test_from_torch_rejects_what_it_cannot_express():
    with pytest.raises(ValueError, match="channels at dim 1"):
        from_torch(nn.BatchNorm2d(4), "BHWC")
    with pytest.raises(ValueError, match="track_running_stats=True is not supported"):
        from_torch(nn.InstanceNorm2d(4, track_running_stats=True), "BCHW")
    with pytest.raises(ValueError, match="unsupported module Linear"):
        from_torch(nn.Linear(2, 2), "BC")


# --- Keras ------------------------------------------------------------------------------------------------------

def keras_batch_norm_train(x, axis, momentum, eps, gamma, beta, moving_mean, moving_var):
    """Keras 3 BatchNormalization in training: ops.moments (biased) and moving = m*moving + (1-m)*batch."""
    axes = tuple(i for i in range(x.ndim) if i != axis % x.ndim)
    mean, var = x.mean(axis=axes), x.var(axis=axes)
    shape = [1] * x.ndim
    shape[axis] = -1
    y = (x - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + eps) * gamma.reshape(shape) + beta.reshape(shape)
    return y, momentum * moving_mean + (1 - momentum) * mean, momentum * moving_var + (1 - momentum) * var


def test_from_keras_batch_norm_follows_keras_momentum_and_biased_variance():
    rng = np.random.default_rng(0)
    gamma, beta = rng.normal(size=4) + 1, rng.normal(size=4)
    mm, mv = rng.normal(size=4), rng.uniform(0.5, 2, size=4)
    config = {"axis": -1, "momentum": 0.9, "epsilon": 1e-3, "center": True, "scale": True}
    bn = from_keras("BatchNormalization", config, "BHWC", weights=[gamma, beta, mm, mv])
    assert bn.momentum == pytest.approx(0.1)
    for _ in range(3):
        x = rng.normal(size=(3, 5, 5, 4)) * 2 + 1
        y, mm, mv = keras_batch_norm_train(x, -1, 0.9, 1e-3, gamma, beta, mm, mv)
        np.testing.assert_allclose(bn(torch.tensor(x, dtype=torch.float32)).detach().numpy(), y, atol=2e-5)
    np.testing.assert_allclose(bn.running_mean.numpy(), mm, rtol=1e-5)
    np.testing.assert_allclose(bn.running_var.numpy(), mv, rtol=1e-5)


def test_c1_keras_and_tf_keras_fused_buffers_on_the_known_vector():
    x = torch.tensor([[1.0], [2.0], [3.0], [4.0]])
    keras3 = from_keras("BatchNormalization", {"momentum": 0.99, "epsilon": 1e-5}, "BC", input_shape=(4, 1))
    keras3(x)
    torch.testing.assert_close(keras3.running_mean, torch.tensor([0.025]))
    torch.testing.assert_close(keras3.running_var, torch.tensor([1.0025]))
    fused = from_keras("BatchNormalization", {"momentum": 0.99}, "BC", input_shape=(4, 1), var_estimator="unbiased")
    fused(x)
    torch.testing.assert_close(fused.running_var, torch.tensor([1.006667]), atol=1e-6, rtol=0)
    flax = from_flax("BatchNorm", layout="BC", num_channels=1)
    flax(x)
    torch.testing.assert_close(flax.running_var, torch.tensor([1.0025]))


def test_keras_momentum_zero_moving_variance_example():
    """keras #10443: X=[1,2,3,4] with momentum 0 gives the batch variance, 1.25 biased (1.667 fused)."""
    bn = from_keras("BatchNormalization", {"momentum": 0.0}, "BC", input_shape=(4, 1))
    bn(torch.tensor([[1.0], [2.0], [3.0], [4.0]]))
    torch.testing.assert_close(bn.running_var, torch.tensor([1.25]))


def test_from_keras_layer_norm_reproduces_the_seed():
    keras = from_keras("LayerNormalization", {"axis": -1, "epsilon": 0.001}, "BTF", input_shape=SEED_X.shape)
    want = [[0.574988365, -1.40643, 0.8314417], [-0.125017628, -1.15742981, 1.28244758]]
    np.testing.assert_allclose(keras(torch.tensor(SEED_X))[0].detach().numpy(), want, atol=2e-6)


def test_from_keras_layer_norm_with_elementwise_parameters():
    rng = np.random.default_rng(1)
    gamma, beta = rng.normal(size=(4, 4, 3)), rng.normal(size=(4, 4, 3))
    ln = from_keras("LayerNormalization", {"axis": [1, 2, 3], "epsilon": 1e-3}, "BHWC", weights=[gamma, beta])
    x = rng.normal(size=(2, 4, 4, 3))
    mean, var = x.mean(axis=(1, 2, 3), keepdims=True), x.var(axis=(1, 2, 3), keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-3) * gamma + beta
    np.testing.assert_allclose(ln(torch.tensor(x, dtype=torch.float32)).detach().numpy(), want, atol=2e-5)


def test_from_keras_group_norm_reduces_time_too():
    rng = np.random.default_rng(2)
    gn = from_keras("GroupNormalization", {"groups": 2, "epsilon": 1e-3}, "BTF", input_shape=(3, 5, 4))
    x = rng.normal(size=(3, 5, 4)) + np.arange(5)[None, :, None]
    g = x.reshape(3, 5, 2, 2)
    mean, var = g.mean(axis=(1, 3), keepdims=True), g.var(axis=(1, 3), keepdims=True)
    want = ((g - mean) / np.sqrt(var + 1e-3)).reshape(3, 5, 4)
    np.testing.assert_allclose(gn(torch.tensor(x, dtype=torch.float32)).detach().numpy(), want, atol=2e-5)
    instance = from_keras("GroupNormalization", {"groups": -1}, "BHWC", input_shape=(2, 3, 3, 4))
    assert instance.axes.groups == 4


def test_from_keras_errors():
    with pytest.raises(ValueError, match="expected it to be the channel axis"):
        from_keras("BatchNormalization", {"axis": 1}, "BHWC", input_shape=(2, 3, 3, 4))
    with pytest.raises(ValueError, match="rms_scaling=True is not supported"):
        from_keras("LayerNormalization", {"rms_scaling": True}, "BTF", input_shape=(2, 3, 4))
    with pytest.raises(ValueError, match="unsupported Keras layer"):
        from_keras("Dense", {}, "BC", input_shape=(2, 3))
    with pytest.raises(ValueError, match="expected 4 Keras weights"):
        from_keras("BatchNormalization", {}, "BC", weights=[np.ones(3)])
    with pytest.raises(ValueError, match="cannot tell the number of channels"):
        from_keras("LayerNormalization", {"axis": [1, 2, 3]}, "BHWC")
    with pytest.raises(ValueError, match="pass the weights or input_shape"):
        from_tf1_layer_norm(-1, 1, "BTF", num_channels=3)


# --- TF1 --------------------------------------------------------------------------------------------------------

def test_from_tf1_layer_norm_begin_norm_axis_minus_one_reproduces_the_seed():
    ln = from_tf1_layer_norm(-1, -1, "BTF", num_channels=3)
    assert ln.eps == 1e-12
    want = [[-1.2645674, 0.08396816, 1.1806011], [-1.3146634, 1.108713, 0.20595042]]
    np.testing.assert_allclose(ln(torch.tensor(SEED_X))[3].detach().numpy(), want, atol=2e-6)


def test_from_tf1_layer_norm_default_reduces_time_and_features():
    ln = from_tf1_layer_norm(layout="BTF", variables={"gamma": np.full(3, 2.0), "beta": np.full(3, 0.5)})
    assert ln.reduce == "TF" and ln.weight.shape == (3,)
    x = SEED_X.astype(np.float64)
    mean, var = x.mean(axis=(1, 2), keepdims=True), x.var(axis=(1, 2), keepdims=True)
    want = (x - mean) / np.sqrt(var + 1e-12) * 2.0 + 0.5
    np.testing.assert_allclose(ln(torch.tensor(SEED_X)).detach().numpy(), want, atol=2e-5)


def test_from_tf1_layer_norm_parameters_beyond_the_reduced_axes():
    gamma = np.arange(1, 7, dtype=np.float32).reshape(2, 3)
    ln = from_tf1_layer_norm(-1, 1, "BTF", variables={"gamma": gamma, "beta": np.zeros_like(gamma)})
    x = SEED_X.astype(np.float64)
    mean, var = x.mean(axis=-1, keepdims=True), x.var(axis=-1, keepdims=True)
    np.testing.assert_allclose(ln(torch.tensor(SEED_X)).detach().numpy(), (x - mean) / np.sqrt(var + 1e-12) * gamma,
                               atol=2e-5)
    with pytest.raises(ValueError, match="non-batch axis"):
        from_tf1_layer_norm(0, -1, "BTF", num_channels=3)


# --- Flax -------------------------------------------------------------------------------------------------------

def test_from_flax_layer_norm_and_rms_with_variables():
    rng = np.random.default_rng(3)
    scale, bias = rng.normal(size=4) + 1, rng.normal(size=4)
    x = rng.normal(size=(2, 3, 4)) * 3
    ln = from_flax("LayerNorm", layout="BTF", variables={"params": {"scale": scale, "bias": bias}})
    mean, var = x.mean(-1, keepdims=True), x.var(-1, keepdims=True)
    np.testing.assert_allclose(ln(torch.tensor(x, dtype=torch.float32)).detach().numpy(),
                               (x - mean) / np.sqrt(var + 1e-6) * scale + bias, atol=2e-5)
    rms = from_flax("RMSNorm", layout="BTF", variables={"params": {"scale": scale}})
    np.testing.assert_allclose(rms(torch.tensor(x, dtype=torch.float32)).detach().numpy(),
                               x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * scale, atol=2e-5)


def test_from_flax_group_norm_default_axes_include_time():
    gn = from_flax("GroupNorm", layout="BTF", num_channels=8, num_groups=2)
    assert gn.reduce == "TF" and gn.eps == 1e-6 and gn.axes.groups == 2
    assert from_flax("GroupNorm", layout="BTF", num_channels=8, group_size=2).axes.groups == 4


def test_from_flax_batch_norm_running_average_mode():
    stats = {"mean": np.array([1.0, 2.0]), "var": np.array([4.0, 9.0])}
    bn = from_flax("BatchNorm", layout="BHWC", variables={"batch_stats": stats}, use_running_average=True,
                   use_bias=False, use_scale=False)
    assert not bn.training and bn.momentum == pytest.approx(0.01)
    x = torch.randn(2, 3, 3, 2)
    want = (x - torch.tensor([1.0, 2.0])) / torch.sqrt(torch.tensor([4.0, 9.0]) + 1e-5)
    torch.testing.assert_close(bn(x), want)
    with pytest.raises(ValueError, match="unsupported Flax module"):
        from_flax("WeightNorm", layout="BC", num_channels=2)


# --- Keras ConvLSTM1D/2D/3D ----------------------------------------------------------------------------------------
# Fixtures made once with Keras 3.15.1 (torch backend) by tests/fixtures/make_keras_convlstm.py; only arrays and
# the layer config are committed, so this needs no Keras.

FIXTURES = Path(__file__).parent / "fixtures"


def _keras_fixture(name: str) -> tuple[dict, dict]:
    data = dict(np.load(FIXTURES / f"{name}.npz"))
    return data, json.loads(str(data["config"]))


@pytest.mark.parametrize("name", ["keras_convlstm2d", "keras_convlstm1d_even", "keras_convlstm3d",
                                  "keras_convlstm2d_defaults", "keras_convlstm2d_strides",
                                  "keras_convlstm1d_valid_strides", "keras_convlstm2d_backwards",
                                  "keras_convlstm2d_activations"])
def test_convlstm_from_keras_matches_keras_outputs(name: str) -> None:
    """Real Keras outputs, including Keras' own defaults (padding='valid'), strides, go_backwards (outputs in
    the order read) and relu/hard_sigmoid."""
    data, config = _keras_fixture(name)
    model = convlstm_from_keras([data["kernel"], data["recurrent_kernel"], data["bias"]], config)
    x = torch.from_numpy(data["x"]).movedim(-1, 2)  # channels-last (B, T, *S, C) -> (B, T, C, *S)
    y, [(h, c)] = model(x)
    np.testing.assert_allclose(y.movedim(2, -1).detach().numpy(), data["y"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(h.movedim(1, -1).detach().numpy(), data["h"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(c.movedim(1, -1).detach().numpy(), data["c"], atol=1e-5, rtol=0)


def test_convlstm_from_keras_takes_channels_first_layers_as_they_are() -> None:
    """A channels_first ConvLSTM2D (Keras' torch backend): the same kernels, and its (B, T, C, H, W) inputs and
    outputs are normrnn's layout, with no permutation."""
    data, config = _keras_fixture("keras_convlstm2d_channels_first")
    assert config["data_format"] == "channels_first"
    model = convlstm_from_keras([data["kernel"], data["recurrent_kernel"], data["bias"]], config)
    y, [(h, c)] = model(torch.from_numpy(data["x"]))
    np.testing.assert_allclose(y.detach().numpy(), data["y"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(h.detach().numpy(), data["h"], atol=1e-5, rtol=0)
    np.testing.assert_allclose(c.detach().numpy(), data["c"], atol=1e-5, rtol=0)


@pytest.mark.parametrize(("change", "match"), [
    ({"padding": "causal"}, "padding"),
    ({"recurrent_activation": "softsign"}, "recurrent_activation"),
    ({"data_format": "channels_middle"}, "data_format"),
    ({"use_bias": False}, "weight arrays"),
])
def test_convlstm_from_keras_rejects_what_it_cannot_reproduce(change: dict, match: str) -> None:
    data, config = _keras_fixture("keras_convlstm2d")
    with pytest.raises(ValueError, match=match):
        convlstm_from_keras([data["kernel"], data["recurrent_kernel"], data["bias"]], {**config, **change})
