"""The norm converters never guess silently: channel counts from the C axis, Flax feature axes, refused
attributes, Keras RMSNormalization, and framework objects passed directly. Values against NumPy references."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import reference_norm
from normrnn.norms import from_flax, from_keras, from_tf1_layer_norm


def _params(layout: str, letters: str, values: np.ndarray) -> np.ndarray:
    """Parameters over ``letters`` broadcast to a tensor of ``layout``."""
    sizes = iter(values.shape)
    return values.reshape([next(sizes) if c in letters else 1 for c in layout])


def _run(module, x: np.ndarray) -> np.ndarray:
    """The converted module in float64 (its parameters were loaded in float32: compare to 1e-6)."""
    with torch.no_grad():
        return module.double()(torch.from_numpy(x)).numpy()


RNG = np.random.default_rng(0)


@pytest.mark.parametrize(("layout", "axis", "letters", "shape"), [
    ("BTC", 1, "T", (3, 5, 6)),  # axis=1 on BTF: parameters over T, never over C
    ("BHWC", [1, 2], "HW", (2, 4, 5, 6)),
])
def test_keras_layer_norm_whose_parameters_do_not_span_c(layout, axis, letters, shape) -> None:
    x = RNG.normal(size=shape) + 3.0
    sizes = tuple(shape[layout.index(c)] for c in letters)
    gamma, beta = RNG.normal(size=sizes), RNG.normal(size=sizes)
    with pytest.raises(ValueError, match=r"not the channel axis .* pass input_shape or num_channels"):
        from_keras("LayerNormalization", {"axis": axis}, layout, weights=[gamma, beta])
    ln = from_keras("LayerNormalization", {"axis": axis}, layout, weights=[gamma, beta], input_shape=shape)
    want = reference_norm(x, layout, letters, None, 1e-3) * _params(layout, letters, gamma) \
        + _params(layout, letters, beta)
    np.testing.assert_allclose(_run(ln, x), want, rtol=1e-6, atol=1e-6)
    same = from_keras("LayerNormalization", {"axis": axis}, layout, weights=[gamma, beta],
                      num_channels=shape[layout.index("C")])  # num_channels, as every converter takes it
    np.testing.assert_allclose(_run(same, x), want, rtol=1e-6, atol=1e-6)


def test_flax_layer_norm_and_rms_with_feature_axes_off_c() -> None:
    x = RNG.normal(size=(3, 5, 6)) + 1.0
    scale, bias = RNG.normal(size=(5,)), RNG.normal(size=(5,))
    variables = {"params": {"scale": scale, "bias": bias}}
    with pytest.raises(ValueError, match="cannot tell the number of channels"):
        from_flax("LayerNorm", layout="BTC", variables=variables, reduction_axes=1, feature_axes=1)
    ln = from_flax("LayerNorm", layout="BTC", variables=variables, reduction_axes=1, feature_axes=1,
                   input_shape=x.shape)
    want = reference_norm(x, "BTC", "T", None, 1e-6) * _params("BTC", "T", scale) + _params("BTC", "T", bias)
    np.testing.assert_allclose(_run(ln, x), want, rtol=1e-6, atol=1e-6)
    y = RNG.normal(size=(2, 4, 5, 3))  # BHWC, RMS over (H, W) with parameters over (H, W)
    s = RNG.normal(size=(4, 5))
    rms = from_flax("RMSNorm", layout="BHWC", variables={"params": {"scale": s}}, reduction_axes=(1, 2),
                    feature_axes=(1, 2), num_channels=3)
    want = reference_norm(y, "BHWC", "HW", None, 1e-6, rms=True) * _params("BHWC", "HW", s)
    np.testing.assert_allclose(_run(rms, y), want, rtol=1e-6, atol=1e-6)


def test_flax_instance_norm_honours_feature_axes() -> None:
    """Flax reduces every axis but batch and the feature axes: with features (T, C), only H and W."""
    x = RNG.normal(size=(2, 3, 4, 5, 6)) * 2 + RNG.normal(size=(1, 3, 1, 1, 6))
    scale, bias = RNG.normal(size=(3, 6)), RNG.normal(size=(3, 6))
    inst = from_flax("InstanceNorm", layout="BTHWC", feature_axes=(1, 4),
                     variables={"params": {"scale": scale, "bias": bias}})
    assert inst.reduce == "HW"
    want = reference_norm(x, "BTHWC", "HW", None, 1e-6) * _params("BTHWC", "TC", scale) \
        + _params("BTHWC", "TC", bias)
    np.testing.assert_allclose(_run(inst, x), want, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize(("call", "match"), [
    (lambda: from_flax("LayerNorm", layout="BTC", num_channels=4, eps=1e-3), r"unknown attributes \['eps'\]"),
    (lambda: from_flax("LayerNorm", layout="BTC", num_channels=4, axis_name="batch"), "unsupported axis_name='batch'"),
    (lambda: from_flax("GroupNorm", layout="BTC", num_channels=4, axis_index_groups=[[0]]), "axis_index_groups"),
    (lambda: from_keras("BatchNormalization", {"renorm": True}, "BC", num_channels=4), "unsupported renorm=True"),
    (lambda: from_keras("BatchNormalization", {"virtual_batch_size": 8}, "BC", num_channels=4), "virtual_batch_size"),
    (lambda: from_keras("LayerNormalization", {"epsilom": 1e-3}, "BC", num_channels=4), r"\['epsilom'\]"),
    (lambda: from_keras("RMSNormalization", {}, "BTC"), "pass input_shape or num_channels"),
])
def test_unknown_or_unsupported_attributes_are_refused_by_name(call, match) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_flax_ignores_only_what_cannot_change_the_result() -> None:
    ln = from_flax("LayerNorm", layout="BTC", num_channels=4, dtype="float32", use_fast_variance=False,
                   name="ln", epsilon=1e-3)
    assert ln.eps == 1e-3
    bn = from_flax("BatchNorm", layout="BC", num_channels=4, axis_name="batch")  # cross-device BN: sync
    assert bn.sync


def test_keras_rms_normalization() -> None:
    x = RNG.normal(size=(2, 3, 5)) + 0.5
    scale = RNG.normal(size=(5,))
    rms = from_keras("RMSNormalization", {"axis": -1, "epsilon": 1e-6}, "BTC", weights=[scale])
    want = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6) * scale
    np.testing.assert_allclose(_run(rms, x), want, rtol=1e-6, atol=1e-6)


class LayerNormalization:  # a Keras layer, duck-typed: its class name, config and weights are all that is read
    def __init__(self, axis: int, gamma: np.ndarray, beta: np.ndarray) -> None:
        self.axis, self.gamma, self.beta = axis, gamma, beta

    def get_config(self) -> dict:
        return {"name": "layer_normalization", "trainable": True, "dtype": "float32", "axis": self.axis,
                "epsilon": 1e-3, "center": True, "scale": True, "rms_scaling": False,
                "beta_initializer": {"class_name": "Zeros"}, "gamma_initializer": {"class_name": "Ones"}}

    def get_weights(self) -> list[np.ndarray]:
        return [self.gamma, self.beta]


class InstanceNorm:  # a Flax module, duck-typed: its attributes are read
    epsilon, use_bias, use_scale, feature_axes, axis_name, axis_index_groups, dtype = 1e-5, True, False, -1, None, \
        None, None


def test_framework_objects_are_accepted_directly() -> None:
    x = RNG.normal(size=(2, 3, 4))
    gamma, beta = RNG.normal(size=(4,)), RNG.normal(size=(4,))
    ln = from_keras(LayerNormalization(-1, gamma, beta), layout="BTC")
    want = reference_norm(x, "BTC", "C", None, 1e-3) * gamma + beta
    np.testing.assert_allclose(_run(ln, x), want, rtol=1e-6, atol=1e-6)
    y = RNG.normal(size=(2, 5, 5, 3))
    inst = from_flax(InstanceNorm(), layout="BHWC", variables={"params": {"bias": beta[:3]}})
    np.testing.assert_allclose(_run(inst, y), reference_norm(y, "BHWC", "HW", None, 1e-5) + beta[:3], rtol=1e-6,
                               atol=1e-6)
    with pytest.raises(ValueError, match="expected a class name or a Keras layer"):
        from_keras(object(), layout="BC")


def test_tf1_layer_norm_takes_c_from_the_parameters_c_axis() -> None:
    """begin_params_axis=1 on BTC: parameters (T, C); C is their last axis here, read from the layout's C."""
    x = RNG.normal(size=(2, 5, 3))
    gamma, beta = RNG.normal(size=(5, 3)), RNG.normal(size=(5, 3))
    ln = from_tf1_layer_norm(-1, 1, "BTC", variables={"gamma": gamma, "beta": beta})
    assert ln.num_channels == 3
    want = reference_norm(x, "BTC", "C", None, 1e-12) * gamma + beta
    np.testing.assert_allclose(_run(ln, x), want, rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="pass input_shape or num_channels"):
        from_tf1_layer_norm(1, 1, "BTC", variables={"gamma": np.ones(5), "beta": np.zeros(5)})  # wrong rank
