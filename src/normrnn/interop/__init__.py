"""Import whole recurrent layers from other frameworks: Keras ConvLSTM, OpenSTL's ConvLSTM and PredRNN, and
``torch.nn.LSTM``/``GRU``.

The norm converters (``from_keras``, ``from_flax``, ``from_tf1_layer_norm``, ``from_torch``) live in
:mod:`normrnn.norms.convert` and are re-exported here, so ``normrnn.interop`` is the one place to look.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from typing import Any, cast

import numpy as np
from torch import nn

from ..cells.gates import ACTIVATIONS
from ..layers import GRU, LSTM, ConvGRU, ConvLSTM
from ..norms.convert import from_flax, from_keras, from_tf1_layer_norm, from_torch, load_arrays
from .openstl import OpenSTLModel, convlstm_from_openstl, predrnn_from_openstl

__all__ = ["OpenSTLModel", "convlstm_from_keras", "convlstm_from_openstl", "from_flax", "from_keras",
           "from_tf1_convgru_cell", "from_tf1_convlstm_cell", "from_tf1_layer_norm", "from_torch",
           "predrnn_from_openstl", "rnn_from_torch"]

_TF1_EPS = 1e-12  # tf.contrib.layers.layer_norm's variance epsilon
_TF1_LSTM_ORDER = [1, 2, 0, 3]  # the TF1 cell's gate blocks j, i, f, o, read in normrnn's order i, f, g(=j), o


def _keras_activation(config: Mapping[str, Any], key: str, default: str) -> str:
    """The activation name of a Keras config entry (a string or a serialized dict), checked against ours."""
    value = config.get(key, default)
    if isinstance(value, Mapping):  # a serialized activation: {"class_name": ..., "config": {"name": ...}}
        inner = value.get("config")
        name = inner.get("name", value.get("class_name")) if isinstance(inner, Mapping) else value.get("class_name")
    else:
        name = value
    name = str(name).lower()
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported Keras config {key}={value!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


# every key a Keras 3 (or 2) ConvLSTM1D/2D/3D get_config() may hold; others are misspellings or unsupported
_KERAS_CONVLSTM_KEYS = {
    "name", "trainable", "dtype", "return_sequences", "return_state", "go_backwards", "stateful", "unroll",
    "zero_output_for_mask", "filters", "kernel_size", "strides", "padding", "data_format", "dilation_rate",
    "activation", "recurrent_activation", "use_bias", "kernel_initializer", "recurrent_initializer",
    "bias_initializer", "unit_forget_bias", "kernel_regularizer", "recurrent_regularizer", "bias_regularizer",
    "activity_regularizer", "kernel_constraint", "recurrent_constraint", "bias_constraint", "dropout",
    "recurrent_dropout", "seed", "batch_input_shape", "batch_shape", "time_major",
}


def _keras_config(config: object) -> Mapping[str, Any]:
    """A Keras ConvLSTM config, checked: a mapping, no unknown keys, nothing we would silently drop."""
    if not isinstance(config, Mapping):
        raise ValueError(f"expected config to be the layer's get_config() dict, got {type(config).__name__}")
    unknown = sorted(set(config) - _KERAS_CONVLSTM_KEYS)
    if unknown:
        hints = {u: difflib.get_close_matches(u, _KERAS_CONVLSTM_KEYS, n=1) for u in unknown}
        named = ", ".join(f"{u!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for u, h in hints.items())
        raise ValueError(f"unknown Keras ConvLSTM config keys {named}; refusing to guess their defaults")
    if config.get("stateful"):
        raise ValueError("Keras stateful=True carries states between calls; normrnn layers take the state "
                         "explicitly: pass the returned states back into forward instead")
    return config


def _keras_tuple(config: Mapping[str, Any], key: str, d: int) -> tuple[int, ...]:
    """An int or a d-tuple of ints from a Keras config (Keras' own rule), checked."""
    value = config.get(key, 1)
    items = [value] * d if isinstance(value, int) and not isinstance(value, bool) else value
    if (not isinstance(items, (list, tuple)) or len(items) != d
            or not all(isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in items)):
        raise ValueError(f"expected Keras config {key} to be a positive int or {d} of them, got {value!r}")
    return tuple(items)


def convlstm_from_keras(weights: Sequence[Any], config: Mapping[str, Any]) -> ConvLSTM:
    """Build a :class:`normrnn.layers.ConvLSTM` equal to a Keras ``ConvLSTM1D/2D/3D`` layer.

    ``weights`` is the layer's ``get_weights()``, ``[kernel, recurrent_kernel, bias]`` (no bias when
    ``use_bias=False``), and ``config`` its ``get_config()``. Keras stores kernels as ``(*k, C_in, 4C)`` in
    the gate order ``i, f, c, o``, which is normrnn's ``i, f, g, o``; they become ``(4C, C_in, *k)``.
    Keras keeps kernels in that order under either ``data_format``. A ``channels_first`` layer's inputs
    ``(B, T, C, *S)`` are normrnn's layout already; the caller permutes ``channels_last`` ones to channels-first:
    ``x.permute(0, 1, -1, 2, 3)`` for 2-D.

    Every option of Keras' own defaults converts: ``padding`` ``"valid"`` (Keras' default) or ``"same"`` and
    ``strides`` of the input convolution (the recurrent one is always "same", as in Keras), ``dilation_rate``
    (Keras applies it to ``W_x`` only, hence ``recurrent_dilation=1``), ``activation`` and
    ``recurrent_activation`` from tanh, sigmoid, relu and hard_sigmoid, and ``go_backwards`` (outputs in the
    order read, as Keras returns them). Dropout is a training-time option and is not carried over.
    """
    config = _keras_config(config)
    arrays = [np.asarray(w) for w in weights]
    use_bias = bool(config.get("use_bias", True))
    if len(arrays) != 2 + use_bias:
        raise ValueError(f"expected {2 + use_bias} weight arrays [kernel, recurrent_kernel{', bias' * use_bias}] "
                         f"for use_bias={use_bias}, got {len(arrays)}")
    kernel, recurrent = arrays[0], arrays[1]
    d = kernel.ndim - 2
    if d not in (1, 2, 3):
        raise ValueError(f"expected a kernel of rank 3, 4 or 5 (*k, C_in, 4C), got shape {kernel.shape}")
    padding = str(config.get("padding", "valid")).lower()
    if padding not in ("same", "valid"):
        raise ValueError(f"unsupported Keras config padding={config.get('padding')!r}; expected 'same' or 'valid'")
    strides = _keras_tuple(config, "strides", d)
    data_format = str(config.get("data_format") or "channels_last")
    if data_format not in ("channels_last", "channels_first"):  # Keras stores (*k, C_in, 4C) kernels for both
        raise ValueError(f"unsupported Keras config data_format={config.get('data_format')!r}; expected "
                         "'channels_last' or 'channels_first'")
    activations: dict[str, Any] = {"activation": _keras_activation(config, "activation", "tanh"),
                   "recurrent_activation": _keras_activation(config, "recurrent_activation", "sigmoid")}
    k, c_in, gates = kernel.shape[:d], kernel.shape[d], kernel.shape[-1]
    C = int(config.get("filters", gates // 4))
    if gates != 4 * C or recurrent.shape != (*k, C, 4 * C):
        raise ValueError(f"expected kernel (*k, C_in, {4 * C}) and recurrent_kernel {(*k, C, 4 * C)} for filters={C}, "
                         f"got {kernel.shape} and {recurrent.shape}")
    dilation = _keras_tuple(config, "dilation_rate", d)
    if "kernel_size" in config and _keras_tuple(config, "kernel_size", d) != tuple(k):
        raise ValueError(f"Keras config kernel_size={config['kernel_size']!r} disagrees with the kernel's "
                         f"{tuple(k)}")
    model = ConvLSTM(int(c_in), C, tuple(int(v) for v in k), spatial_dims=d, dilation=dilation,
                     recurrent_dilation=1, bias=use_bias, forget_bias=0.0,  # Keras dilates W_x only
                     padding=padding, stride=strides, go_backwards=bool(config.get("go_backwards", False)),
                     **activations)
    tensors = {"weight_x": _channels_first(kernel), "weight_h": _channels_first(recurrent)}
    if use_bias:
        tensors["bias"] = arrays[2]
    load_arrays(model.cell(0), **tensors)
    return model


def _channels_first(kernel: np.ndarray) -> np.ndarray:
    """A TF/Keras convolution kernel ``(*k, I, O)`` in PyTorch's order ``(O, I, *k)``."""
    d = kernel.ndim - 2
    out: np.ndarray = kernel.transpose(d + 1, d, *range(d))
    return out


def _tf1_kernel(kernel: np.ndarray, c_in: int) -> tuple[np.ndarray, np.ndarray]:
    """A TF1 ``[x; h]`` kernel ``(*k, C_in + C, G)`` as normrnn's ``weight_x`` ``(G, C_in, *k)`` and ``weight_h``."""
    return _channels_first(kernel[..., :c_in, :]), _channels_first(kernel[..., c_in:, :])


def _tf1_blocks(array: np.ndarray, order: Sequence[int], axis: int = 0) -> np.ndarray:
    """Reorder the gate blocks of ``array`` along ``axis``."""
    return np.concatenate([np.split(array, len(order), axis=axis)[g] for g in order], axis=axis)


def _tf1_layer_norms(variables: Mapping[str, Any], prefix: str, count: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``(gamma, beta)`` of ``LayerNorm``, ``LayerNorm_1``, … in the order the cell called them."""
    out = []
    for n in range(count):
        scope = f"{prefix}LayerNorm" + (f"_{n}" if n else "")
        try:
            out.append((np.asarray(variables[f"{scope}/gamma"]), np.asarray(variables[f"{scope}/beta"])))
        except KeyError as e:
            raise ValueError(f"expected TF1 variable {e.args[0]!r} (normalize=True); got {sorted(variables)}") from None
    return out


def _tf1_check(variables: Mapping[str, Any], names: Sequence[str], unused: Sequence[str] = ()) -> dict[str, np.ndarray]:
    """The named arrays; a ``ValueError`` for missing ones, and for ``unused`` ones that are there (the cell's
    arguments say they were not used, so the variables and the arguments disagree)."""
    missing = [n for n in names if n not in variables]
    if missing:
        raise ValueError(f"expected TF1 variables {missing}; got {sorted(variables)}")
    present = [n for n in unused if n in variables]
    if present:
        raise ValueError(f"TF1 variables {present} are there but the arguments say they are unused; pass the cell's "
                         "own arguments (peephole=True, normalize=False, ...)")
    return {n: np.asarray(variables[n]) for n in names}


def _tf1_layout(data_format: str, normalize: bool) -> None:
    if data_format not in ("channels_last", "channels_first"):
        raise ValueError(f"expected data_format 'channels_last' or 'channels_first', got {data_format!r}")
    if normalize and data_format == "channels_first":
        raise ValueError("TF1's layer_norm keeps its parameters on the last axis, W under channels_first, which a "
                         "per-channel norm cannot hold; convert a cell that ran with data_format='channels_last'")


def from_tf1_convlstm_cell(variables: Mapping[str, Any], *, normalize: bool = True, peephole: bool = True,
                           forget_bias: float = 1.0, data_format: str = "channels_last") -> ConvLSTM:
    """The TF1 ``ConvLSTMCell`` of carlthome/tensorflow-convlstm-cell as a one-layer :class:`ConvLSTM`.

    The TF1 cell convolves ``[x; h]`` to gates ``j, i, f, o`` (a bias only without ``normalize``); adds the
    elementwise peepholes ``W_ci ⊙ c``, ``W_cf ⊙ c`` before layer-normalizing ``j``, ``i``, ``f``; sets
    ``f = σ(f + forget_bias)``, ``c' = c f + σ(i) tanh(j)``; adds ``W_co ⊙ c'`` (the raw new ``c``) to ``o``;
    then layer-normalizes ``o`` and ``c'`` and carries the normalized ``c'``: ``h = σ(o) tanh(c')``. Every
    ``tf.contrib.layers.layer_norm`` there reduces (H, W, C) of each sample (``BCHW`` letters: ``CHW``) with
    per-channel γ, β and eps 1e-12. In normrnn that is ``norm="layer"`` per gate, ``norm_cell="carried"``,
    ``peephole="elementwise"`` with ``peephole_placement="before_norm"``, and the forget bias added to β_f.

    Args:
        variables: the cell's variables by their names under its scope: ``kernel``, ``bias`` (without
            normalize), ``W_ci``, ``W_cf``, ``W_co`` (with peephole) and ``LayerNorm/{gamma,beta}``,
            ``LayerNorm_1/…`` … ``LayerNorm_4/…`` (j, i, f, o, c), e.g. from
            ``tf.train.load_checkpoint(path).get_tensor``.
        normalize, peephole, forget_bias, data_format: the TF1 cell's own arguments.

    Returns:
        A :class:`ConvLSTM` over channels-first ``(B, T, C, *S)`` whose last state is ``(h, c)``.
    """
    _tf1_layout(data_format, normalize)
    peeps_names = ["W_ci", "W_cf", "W_co"]
    names = ["kernel"] + ([] if normalize else ["bias"]) + (peeps_names if peephole else [])
    arrays = _tf1_check(variables, names, unused=(["bias"] if normalize else []) + ([] if peephole else peeps_names))
    kernel = arrays["kernel"]
    if kernel.ndim not in (3, 4, 5) or kernel.shape[-1] % 4 or kernel.shape[-2] <= kernel.shape[-1] // 4:
        raise ValueError(f"expected a TF1 ConvLSTM kernel (*k, C_in + C, 4C), got shape {kernel.shape}")
    d, C = kernel.ndim - 2, kernel.shape[-1] // 4
    c_in = kernel.shape[-2] - C
    size = None
    if peephole:  # (*S, C) channels_last or (C, *S) channels_first, as (3, C, *S)
        peeps = [arrays[n] if data_format == "channels_first" else np.moveaxis(arrays[n], -1, 0)
                 for n in peeps_names]
        size = peeps[0].shape[1:]
        if any(p.shape != (C, *size) or len(size) != d for p in peeps):
            raise ValueError(f"expected W_ci, W_cf, W_co of one shape with C={C} channels and {d} spatial axes, "
                             f"got {[arrays[n].shape for n in peeps_names]}")
    model = ConvLSTM(c_in, C, tuple(kernel.shape[:d]), spatial_dims=d, norm="layer" if normalize else "none",
                     norm_cell="carried" if normalize else "none", norm_kwargs={"eps": _TF1_EPS},
                     peephole="elementwise" if peephole else False, peephole_size=size,
                     peephole_placement="before_norm", bias=not normalize, forget_bias=forget_bias)
    weight_x, weight_h = _tf1_kernel(kernel, c_in)
    tensors: dict[str, Any] = {"weight_x": _tf1_blocks(weight_x, _TF1_LSTM_ORDER),
                               "weight_h": _tf1_blocks(weight_h, _TF1_LSTM_ORDER)}
    if peephole:
        tensors["weight_peephole"] = np.stack(peeps)
    cell = model.cell(0)
    if normalize:
        (gj, bj), (gi, bi), (gf, bf), (go, bo), (gc, bc) = _tf1_layer_norms(variables, "", 5)
        load_arrays(cast(nn.Module, cell.norm_gates), weight=np.concatenate([gi, gf, gj, go]),
                    bias=np.concatenate([bi, bf + forget_bias, bj, bo]))  # the constant forget bias joins β_f
        load_arrays(cast(nn.Module, cell.state_norm), weight=gc, bias=bc)
    else:
        bias = _tf1_blocks(arrays["bias"], _TF1_LSTM_ORDER).copy()
        bias[C : 2 * C] += forget_bias
        tensors["bias"] = bias
    load_arrays(cell, **tensors)
    return model


def from_tf1_convgru_cell(variables: Mapping[str, Any], *, normalize: bool = True,
                          data_format: str = "channels_last") -> ConvGRU:
    """That repository's TF1 ``ConvGRUCell`` as a one-layer :class:`ConvGRU` in the "reset before" form.

    The TF1 cell convolves ``[x; h]`` to gates ``r, u`` (each layer-normalized, or a bias initialized to ones),
    then the candidate from ``[x; r ⊙ h]`` (layer-normalized, or a bias), and sets
    ``h = u h + (1 - u) tanh(y)``: normrnn's ``reset_after=False`` with ``z = u``, ``norm="layer"`` per gate.

    Args:
        variables: ``gates/kernel``, ``gates/bias`` or ``gates/LayerNorm/{gamma,beta}`` and
            ``gates/LayerNorm_1/…`` (r, u), ``candidate/kernel``, and ``candidate/bias`` or
            ``candidate/LayerNorm/…``.
        normalize, data_format: the TF1 cell's own arguments.
    """
    _tf1_layout(data_format, normalize)
    names = ["gates/kernel", "candidate/kernel"] + ([] if normalize else ["gates/bias", "candidate/bias"])
    arrays = _tf1_check(variables, names)
    gates, candidate = arrays["gates/kernel"], arrays["candidate/kernel"]
    d, C = gates.ndim - 2, candidate.shape[-1]
    c_in = gates.shape[-2] - C
    model = ConvGRU(c_in, C, tuple(gates.shape[:d]), spatial_dims=d, norm="layer" if normalize else "none",
                    norm_kwargs={"eps": _TF1_EPS}, bias=not normalize, reset_after=False)
    gx, gh = _tf1_kernel(gates, c_in)
    nx, nh = _tf1_kernel(candidate, c_in)
    tensors: dict[str, Any] = {"weight_x": np.concatenate([gx, nx]), "weight_h": np.concatenate([gh, nh])}
    cell = model.cell(0)
    if normalize:
        (gr, br), (gu, bu) = _tf1_layer_norms(variables, "gates/", 2)
        ((gn, bn),) = _tf1_layer_norms(variables, "candidate/", 1)
        load_arrays(cast(nn.Module, cell.norm_rz), weight=np.concatenate([gr, gu]), bias=np.concatenate([br, bu]))
        load_arrays(cast(nn.Module, cell.norm_n), weight=gn, bias=bn)
    else:
        tensors["bias"] = np.concatenate([arrays["gates/bias"], arrays["candidate/bias"]])
    load_arrays(cell, **tensors)
    return model


def rnn_from_torch(module: nn.LSTM | nn.GRU) -> LSTM | GRU:
    """A :class:`normrnn.layers.LSTM`/``GRU`` computing what ``torch.nn.LSTM``/``GRU`` does, with its weights.

    Example::

        >>> ref = nn.GRU(3, 4, num_layers=2, bidirectional=True)
        >>> rnn_from_torch(ref)
        GRU(
          3, 4, num_layers=2, bidirectional=True, merge='concat', batch_first=False
          ...
    """
    if not isinstance(module, (nn.LSTM, nn.GRU)):
        raise ValueError(f"expected a torch.nn.LSTM or torch.nn.GRU, got {type(module).__name__}")
    if getattr(module, "proj_size", 0):
        raise ValueError(f"torch.nn.LSTM with proj_size={module.proj_size} is not supported")
    cls = LSTM if isinstance(module, nn.LSTM) else GRU
    ref = cast(nn.Parameter, module.weight_ih_l0)  # nn.Module types its attributes Tensor | Module
    new = cls(module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
              batch_first=module.batch_first, dropout=float(module.dropout), bidirectional=module.bidirectional,
              device=ref.device, dtype=ref.dtype)
    new.load_state_dict(module.state_dict())
    return new
