"""Import whole recurrent layers from other frameworks: Keras ConvLSTM and ``torch.nn.LSTM``/``GRU``.

The norm converters (``from_keras``, ``from_flax``, ``from_tf1_layer_norm``, ``from_torch``) live in
:mod:`normrnn.norms.convert` and are re-exported here, so ``normrnn.interop`` is the one place to look.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from torch import nn

from .cells.gates import ACTIVATIONS
from .layers import GRU, LSTM, ConvLSTM
from .norms.convert import from_flax, from_keras, from_tf1_layer_norm, from_torch, load_arrays

__all__ = ["convlstm_from_keras", "from_flax", "from_keras", "from_tf1_layer_norm", "from_torch", "rnn_from_torch"]


def _keras_activation(config: Mapping[str, Any], key: str, default: str) -> str:
    """The activation name of a Keras config entry (a string or a serialized dict), checked against ours."""
    value = config.get(key, default)
    name = value.get("config", {}).get("name", value.get("class_name")) if isinstance(value, Mapping) else value
    name = str(name).lower()
    if name not in ACTIVATIONS:
        raise ValueError(f"unsupported Keras config {key}={value!r}; expected one of {', '.join(ACTIVATIONS)}")
    return name


def convlstm_from_keras(weights: Sequence[Any], config: Mapping[str, Any]) -> ConvLSTM:
    """Build a :class:`normrnn.layers.ConvLSTM` equal to a Keras ``ConvLSTM1D/2D/3D`` layer.

    ``weights`` is the layer's ``get_weights()``, ``[kernel, recurrent_kernel, bias]`` (no bias when
    ``use_bias=False``), and ``config`` its ``get_config()``. Keras stores kernels as ``(*k, C_in, 4C)`` in
    the gate order ``i, f, c, o``, which is normrnn's ``i, f, g, o``; they become ``(4C, C_in, *k)``.
    The caller permutes channels-last inputs to channels-first: ``x.permute(0, 1, -1, 2, 3)`` for 2-D.

    Every option of Keras' own defaults converts: ``padding`` ``"valid"`` (Keras' default) or ``"same"`` and
    ``strides`` of the input convolution (the recurrent one is always "same", as in Keras), ``dilation_rate``
    (Keras applies it to ``W_x`` only, hence ``recurrent_dilation=1``), ``activation`` and
    ``recurrent_activation`` from tanh, sigmoid, relu and hard_sigmoid, and ``go_backwards`` (outputs in the
    order read, as Keras returns them). Dropout is a training-time option and is not carried over.
    """
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
    strides = tuple(int(v) for v in np.broadcast_to(np.asarray(config.get("strides", 1)), (d,)))
    if str(config.get("data_format") or "channels_last") != "channels_last":
        raise ValueError(f"unsupported Keras config data_format={config.get('data_format')!r}: the kernels are "
                         "read as channels_last; convert the layer built with data_format='channels_last'")
    activations = {"activation": _keras_activation(config, "activation", "tanh"),
                   "recurrent_activation": _keras_activation(config, "recurrent_activation", "sigmoid")}
    k, c_in, gates = kernel.shape[:d], kernel.shape[d], kernel.shape[-1]
    C = int(config.get("filters", gates // 4))
    if gates != 4 * C or recurrent.shape != (*k, C, 4 * C):
        raise ValueError(f"expected kernel (*k, C_in, {4 * C}) and recurrent_kernel {(*k, C, 4 * C)} for filters={C}, "
                         f"got {kernel.shape} and {recurrent.shape}")
    dilation = tuple(int(v) for v in np.broadcast_to(np.asarray(config.get("dilation_rate", 1)), (d,)))
    model = ConvLSTM(int(c_in), C, tuple(int(v) for v in k), spatial_dims=d, dilation=dilation,
                     recurrent_dilation=1, bias=use_bias, forget_bias=0.0,  # Keras dilates W_x only
                     padding=padding, stride=strides, go_backwards=bool(config.get("go_backwards", False)),
                     **activations)
    channels_first = (d + 1, d, *range(d))  # (*k, C_in, 4C) -> (4C, C_in, *k)
    tensors = {"weight_x": kernel.transpose(channels_first), "weight_h": recurrent.transpose(channels_first)}
    if use_bias:
        tensors["bias"] = arrays[2]
    load_arrays(model.cell(0), **tensors)
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
    ref = module.weight_ih_l0
    new = cls(module.input_size, module.hidden_size, num_layers=module.num_layers, bias=module.bias,
              batch_first=module.batch_first, dropout=float(module.dropout), bidirectional=module.bidirectional,
              device=ref.device, dtype=ref.dtype)
    new.load_state_dict(module.state_dict())
    return new
