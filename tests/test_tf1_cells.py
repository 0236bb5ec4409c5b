"""The seed's TF1 ConvLSTMCell and ConvGRUCell (carlthome/tensorflow-convlstm-cell, ``cell.py``), transcribed in
float64 NumPy from their TF1 code and run like ``dynamic_rnn`` from zero states, against the converted normrnn
layers. Channels last (NHWC), as the TF1 cells default to."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from normrnn.interop import from_tf1_convgru_cell, from_tf1_convlstm_cell


def conv_same(x: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``tf.nn.convolution(x, w, 'SAME')`` for NHWC ``x`` and HWIO ``w``, stride 1: the odd zero after."""
    kh, kw = w.shape[:2]
    pads = [(0, 0), ((kh - 1) // 2, kh - 1 - (kh - 1) // 2), ((kw - 1) // 2, kw - 1 - (kw - 1) // 2), (0, 0)]
    xp = np.pad(x, pads)
    windows = np.lib.stride_tricks.sliding_window_view(xp, (kh, kw), axis=(1, 2))  # (N, H, W, I, kh, kw)
    return np.einsum("nhwiab,abio->nhwo", windows, w)


def layer_norm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray) -> np.ndarray:
    """``tf.contrib.layers.layer_norm`` defaults: reduce every axis but the batch, parameters on the last, eps 1e-12."""
    mean = x.mean(axis=(1, 2, 3), keepdims=True)
    var = x.var(axis=(1, 2, 3), keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-12) * gamma + beta


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def tf1_lstm(xs, v, *, normalize, peephole, forget_bias):
    B, T, H, W, _ = xs.shape
    F = v["kernel"].shape[-1] // 4
    c = h = np.zeros((B, H, W, F))
    ln = [(v[f"LayerNorm{s}/gamma"], v[f"LayerNorm{s}/beta"]) for s in ("", "_1", "_2", "_3", "_4")] \
        if normalize else None
    ys = []
    for t in range(T):
        y = conv_same(np.concatenate([xs[:, t], h], axis=-1), v["kernel"])
        if not normalize:
            y = y + v["bias"]
        j, i, f, o = np.split(y, 4, axis=-1)
        if peephole:
            i = i + v["W_ci"] * c
            f = f + v["W_cf"] * c
        if normalize:
            j, i, f = layer_norm(j, *ln[0]), layer_norm(i, *ln[1]), layer_norm(f, *ln[2])
        f = sigmoid(f + forget_bias)
        i = sigmoid(i)
        c = c * f + i * np.tanh(j)
        if peephole:
            o = o + v["W_co"] * c
        if normalize:
            o = layer_norm(o, *ln[3])
            c = layer_norm(c, *ln[4])
        o = sigmoid(o)
        h = o * np.tanh(c)
        ys.append(h)
    return np.stack(ys, 1), h, c


def tf1_gru(xs, v, *, normalize):
    B, T, H, W, _ = xs.shape
    F = v["candidate/kernel"].shape[-1]
    h = np.zeros((B, H, W, F))
    ys = []
    for t in range(T):
        x = xs[:, t]
        y = conv_same(np.concatenate([x, h], axis=-1), v["gates/kernel"])
        if normalize:
            r, u = np.split(y, 2, axis=-1)
            r = layer_norm(r, v["gates/LayerNorm/gamma"], v["gates/LayerNorm/beta"])
            u = layer_norm(u, v["gates/LayerNorm_1/gamma"], v["gates/LayerNorm_1/beta"])
        else:
            r, u = np.split(y + v["gates/bias"], 2, axis=-1)
        r, u = sigmoid(r), sigmoid(u)
        y = conv_same(np.concatenate([x, r * h], axis=-1), v["candidate/kernel"])
        if normalize:
            y = layer_norm(y, v["candidate/LayerNorm/gamma"], v["candidate/LayerNorm/beta"])
        else:
            y = y + v["candidate/bias"]
        h = u * h + (1 - u) * np.tanh(y)
        ys.append(h)
    return np.stack(ys, 1), h


RNG = np.random.default_rng(0)


def _ln_vars(prefix: str, names: list[str], F: int) -> dict[str, np.ndarray]:
    return {f"{prefix}{n}/{p}": RNG.normal(size=F) * (0.5 if p == "beta" else 0.3) + (p == "gamma")
            for n in names for p in ("gamma", "beta")}


def _torch(model, xs: np.ndarray):
    with torch.no_grad():
        y, [state] = model.double()(torch.from_numpy(xs).permute(0, 1, 4, 2, 3))  # NTHWC -> (B, T, C, H, W)
    return y.permute(0, 1, 3, 4, 2).numpy(), state


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("peephole", [True, False])
def test_tf1_convlstm_cell_equals_its_numpy_transcription(normalize: bool, peephole: bool) -> None:
    B, T, H, W, C_in, F, k = 2, 4, 5, 6, 3, 4, (3, 2)  # a non-square kernel
    v = {"kernel": RNG.normal(size=(*k, C_in + F, 4 * F)) * 0.3}
    if not normalize:
        v["bias"] = RNG.normal(size=4 * F) * 0.3
    if peephole:
        v.update({n: RNG.normal(size=(H, W, F)) * 0.3 for n in ("W_ci", "W_cf", "W_co")})
    if normalize:
        v.update(_ln_vars("", ["LayerNorm", "LayerNorm_1", "LayerNorm_2", "LayerNorm_3", "LayerNorm_4"], F))
    xs = RNG.normal(size=(B, T, H, W, C_in))
    want_y, want_h, want_c = tf1_lstm(xs, v, normalize=normalize, peephole=peephole, forget_bias=0.7)
    model = from_tf1_convlstm_cell(v, normalize=normalize, peephole=peephole, forget_bias=0.7)
    y, (h, c) = _torch(model, xs)
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)  # the arrays were loaded in float32
    np.testing.assert_allclose(h.permute(0, 2, 3, 1).numpy(), want_h, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(c.permute(0, 2, 3, 1).numpy(), want_c, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("normalize", [True, False])
def test_tf1_convgru_cell_equals_its_numpy_transcription(normalize: bool) -> None:
    B, T, H, W, C_in, F, k = 2, 4, 5, 4, 2, 3, (2, 3)
    v = {"gates/kernel": RNG.normal(size=(*k, C_in + F, 2 * F)) * 0.4,
         "candidate/kernel": RNG.normal(size=(*k, C_in + F, F)) * 0.4}
    if normalize:
        v.update(_ln_vars("gates/", ["LayerNorm", "LayerNorm_1"], F))
        v.update(_ln_vars("candidate/", ["LayerNorm"], F))
    else:
        v.update({"gates/bias": 1 + RNG.normal(size=2 * F) * 0.2, "candidate/bias": RNG.normal(size=F) * 0.2})
    xs = RNG.normal(size=(B, T, H, W, C_in))
    want_y, want_h = tf1_gru(xs, v, normalize=normalize)
    y, h = _torch(from_tf1_convgru_cell(v, normalize=normalize), xs)
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(h.permute(0, 2, 3, 1).numpy(), want_h, rtol=1e-6, atol=1e-6)


def test_tf1_converters_say_what_is_missing_or_impossible() -> None:
    with pytest.raises(ValueError, match="expected TF1 variables"):
        from_tf1_convlstm_cell({"kernel": np.zeros((3, 3, 5, 8))}, normalize=False)
    with pytest.raises(ValueError, match="expected TF1 variable 'LayerNorm_1/gamma'"):
        from_tf1_convlstm_cell({"kernel": np.zeros((3, 3, 5, 8)), **_ln_vars("", ["LayerNorm"], 2)}, peephole=False)
    with pytest.raises(ValueError, match="parameters on the last axis"):
        from_tf1_convgru_cell({}, data_format="channels_first")


def test_tf1_convlstm_cell_channels_first_reads_its_peepholes_channels_first() -> None:
    """data_format='channels_first': same kernel (HWIO), peepholes (C, H, W); the same function."""
    B, T, H, W, C_in, F = 2, 3, 4, 5, 2, 3
    v = {"kernel": RNG.normal(size=(3, 3, C_in + F, 4 * F)) * 0.3, "bias": RNG.normal(size=4 * F) * 0.3}
    v.update({n: RNG.normal(size=(H, W, F)) * 0.3 for n in ("W_ci", "W_cf", "W_co")})
    xs = RNG.normal(size=(B, T, H, W, C_in))
    want_y, _, _ = tf1_lstm(xs, v, normalize=False, peephole=True, forget_bias=1.0)
    first = {**v, **{n: np.moveaxis(v[n], -1, 0) for n in ("W_ci", "W_cf", "W_co")}}
    y, _ = _torch(from_tf1_convlstm_cell(first, normalize=False, data_format="channels_first"), xs)
    np.testing.assert_allclose(y, want_y, rtol=1e-6, atol=1e-6)
