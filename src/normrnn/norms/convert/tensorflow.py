"""Keras 3 (``LayerNormalization``, ``GroupNormalization``, ``BatchNormalization``, ``RMSNormalization``) and
TF1 ``tf.contrib.layers.layer_norm``, read without importing either."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..batch import BatchNorm
from ..layout import Layout
from ..modules import GroupNorm, LayerNorm, RMSNorm
from ._common import (
    _channels,
    _check_attrs,
    _complete,
    _dict as as_dict,
    _int_option,
    _letters,
    _momentum,
    _param_axes,
    load_arrays,
)

_TF1_LAYER_NORM_EPS = 1e-12  # hard-coded in tf.contrib.layers.layer_norm


def _keras_weights(config: Mapping[str, Any], weights: Sequence[Any] | None, moving: bool) -> dict[str, Any]:
    """Name Keras ``get_weights()`` arrays: gamma (if scale), beta (if center), then moving mean/variance."""
    names = (["weight"] if config.get("scale", True) else []) + (["bias"] if config.get("center", True) else [])
    names += ["running_mean", "running_var"] if moving else []
    if weights is None:
        return {}
    if len(weights) != len(names):
        raise ValueError(f"expected {len(names)} Keras weights ({', '.join(names)}), got {len(weights)}")
    return dict(zip(names, weights, strict=True))


_KERAS_COMMON = {"name", "trainable", "dtype", "beta_initializer", "gamma_initializer", "beta_regularizer",
                 "gamma_regularizer", "beta_constraint", "gamma_constraint", "epsilon", "axis", "center", "scale"}
_KERAS_ALLOWED = {
    "LayerNormalization": _KERAS_COMMON | {"rms_scaling"},
    "GroupNormalization": _KERAS_COMMON | {"groups"},
    "BatchNormalization": _KERAS_COMMON | {"momentum", "moving_mean_initializer", "moving_variance_initializer",
                                           "synchronized", "fused", "renorm_momentum"},
    "RMSNormalization": {"name", "trainable", "dtype", "epsilon", "axis"},
}
_KERAS_REFUSED = {"BatchNormalization": {"renorm": False, "renorm_clipping": None, "virtual_batch_size": None,
                                         "adjustment": None}}


def _from_object(source: Any, what: str) -> tuple[str, dict[str, Any], list[Any] | None]:
    """A Keras layer's class name, ``get_config()`` and ``get_weights()`` (None before it is built), duck-typed."""
    if not callable(getattr(source, "get_config", None)):
        raise ValueError(f"{what}: expected a class name or a Keras layer (with get_config), "
                         f"got {type(source).__name__}")
    weights = source.get_weights() if callable(getattr(source, "get_weights", None)) else None
    return type(source).__name__, dict(source.get_config()), (weights or None)


def from_keras(
    source: Any,
    config: Mapping[str, Any] | None = None,
    layout: str | Layout | None = None,
    *,
    weights: Sequence[Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_channels: int | None = None,
    var_estimator: str = "biased",
) -> nn.Module:
    """Convert a Keras ``LayerNormalization``, ``GroupNormalization``, ``BatchNormalization`` or ``RMSNormalization``.

    Args:
        source: the Keras class name, or the Keras layer itself (its class name, ``get_config()`` and, once
            built, ``get_weights()`` are read; no Keras import is needed here).
        config: ``layer.get_config()`` when ``source`` is a name; missing keys take Keras 3 defaults
            (``epsilon=1e-3``, RMS ``1e-6``). Unknown keys, and features normrnn does not reproduce (``renorm``,
            ``virtual_batch_size``, ``adjustment``, ``rms_scaling``), are a ``ValueError`` naming them.
        layout: axis letters of the layer's input; Keras axis numbers count the batch axis as 0.
        weights: ``layer.get_weights()``, copied into the module. Default: ``None``.
        input_shape, num_channels: the input's shape or its channel count, needed when the parameters do not
            span the channel axis (and to size elementwise parameters when no weights are given).
        var_estimator: running-variance estimator of the source: ``"biased"`` for Keras 3, ``"unbiased"``
            for tf.keras 2's fused kernel. Default: ``"biased"``.

    Example::

        >>> from_keras("BatchNormalization", {"momentum": 0.99}, "BC", input_shape=(4, 1)).momentum
        0.01...
    """
    if isinstance(source, str):
        class_name, config = source, as_dict("the Keras config (layer.get_config())", config)
    else:
        class_name, read, read_weights = _from_object(source, "from_keras")
        config = {**read, **as_dict("the Keras config (layer.get_config())", config)}
        weights = read_weights if weights is None else weights
    if layout is None:
        raise ValueError("from_keras: expected layout, the axis letters of the layer's input (e.g. 'BHWC')")
    parsed = Layout.parse(layout)
    name = class_name.rsplit(".", 1)[-1]
    if name not in _KERAS_ALLOWED:
        raise ValueError(f"unsupported Keras layer {class_name!r}; expected one of {', '.join(_KERAS_ALLOWED)}")
    if name == "LayerNormalization" and config.get("rms_scaling", False):
        raise ValueError("Keras rms_scaling=True is not supported: Keras deprecates it because it scales by the "
                         "variance, not the mean square; use RMSNormalization (normrnn.RMSNorm) for RMS normalization")
    _check_attrs(f"from_keras({name})", config, _KERAS_ALLOWED[name], refused=_KERAS_REFUSED.get(name, {}))
    sizes = _Sizes(parsed, input_shape, num_channels)
    eps = float(config.get("epsilon", 1e-6 if name == "RMSNormalization" else 1e-3))
    return _KERAS_BUILDERS[name](sizes, config, weights, eps, var_estimator)


@dataclass(frozen=True)
class _Sizes:
    """The input's layout and what tells the channel count and parameter shapes: the input's shape, or C."""

    layout: Layout
    input_shape: Sequence[int] | None
    num_channels: int | None

    def channels(self, letters: str, arrays: list[Any]) -> int:
        return _channels(self.layout, self.num_channels, self.input_shape, letters, arrays, "from_keras")

    def param_axes(self, letters: str, arrays: list[Any]) -> tuple[str | None, tuple[int, ...] | None]:
        return _param_axes(self.layout, letters, self.input_shape, arrays, "from_keras")


def _keras_rms(sizes: _Sizes, config: Mapping[str, Any], weights: Sequence[Any] | None, eps: float,
               var_estimator: str) -> nn.Module:
    reduce = _letters(sizes.layout, config.get("axis", -1), "axis")
    if weights is not None and len(weights) != 1:
        raise ValueError(f"expected 1 Keras weight (scale) for RMSNormalization, got {len(weights)}")
    named = {"weight": weights[0]} if weights else {}
    C = sizes.channels(reduce, list(named.values()))
    axes, shape = sizes.param_axes(reduce, list(named.values()))
    module = RMSNorm(C, layout=sizes.layout, reduce=reduce, eps=eps, param_axes=axes, param_shape=shape)
    return load_arrays(module, **named)


def _keras_layer(sizes: _Sizes, config: Mapping[str, Any], weights: Sequence[Any] | None, eps: float,
                 var_estimator: str) -> nn.Module:
    reduce = _letters(sizes.layout, config.get("axis", -1), "axis")
    named = _keras_weights(config, weights, moving=False)
    C = sizes.channels(reduce, list(named.values()))
    axes, shape = sizes.param_axes(reduce, list(named.values()))
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    module = LayerNorm(C, layout=sizes.layout, reduce=reduce, eps=eps, center=center, scale=scale,
                       affine=center or scale, param_axes=axes, param_shape=shape)
    return load_arrays(module, **named)


def _keras_channel_axis(sizes: _Sizes, config: Mapping[str, Any]) -> None:
    """Group and batch normalization keep one statistic per channel (group): their ``axis`` must be C."""
    layout, axis = sizes.layout, config.get("axis", -1)
    letter = _letters(layout, axis, "axis")
    if letter != "C":
        raise ValueError(f"Keras axis={axis} is {layout.spell(letter)!r} in layout {layout.spelled!r}; expected it "
                         f"to be the channel axis {layout.spell('C')!r}")


def _keras_group(sizes: _Sizes, config: Mapping[str, Any], weights: Sequence[Any] | None, eps: float,
                 var_estimator: str) -> nn.Module:
    _keras_channel_axis(sizes, config)
    named = _keras_weights(config, weights, moving=False)
    C = sizes.channels("C", list(named.values()))
    groups = _int_option("Keras groups", config.get("groups", 32))
    reduce = "".join(c for c in sizes.layout.letters if c != "B")  # T included, as Keras does
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    module = GroupNorm(C, num_groups=C if groups == -1 else groups, layout=sizes.layout, reduce=reduce, eps=eps,
                       center=center, scale=scale, affine=center or scale)
    return load_arrays(module, **named)


def _keras_batch(sizes: _Sizes, config: Mapping[str, Any], weights: Sequence[Any] | None, eps: float,
                 var_estimator: str) -> nn.Module:
    _keras_channel_axis(sizes, config)
    named = _keras_weights(config, weights, moving=True)
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    module = BatchNorm(sizes.channels("C", list(named.values())), layout=sizes.layout, eps=eps,
                       momentum=_momentum("Keras", config.get("momentum", 0.99)), center=center, scale=scale,
                       affine=center or scale, var_estimator=var_estimator,
                       sync=bool(config.get("synchronized", False)))
    return load_arrays(module, **named)


_KERAS_BUILDERS = {"LayerNormalization": _keras_layer, "GroupNormalization": _keras_group,
                   "BatchNormalization": _keras_batch, "RMSNormalization": _keras_rms}


def from_tf1_layer_norm(
    begin_norm_axis: int = 1,
    begin_params_axis: int = -1,
    layout: str | Layout = "BTC",
    *,
    center: bool = True,
    scale: bool = True,
    variables: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_channels: int | None = None,
) -> LayerNorm:
    """Convert ``tf.contrib.layers.layer_norm``: reduce ``begin_norm_axis..R-1``, eps = 1e-12.

    With the TF1 defaults on ``[B, T, F]`` this reduces T and F together, one statistic per sample;
    ``begin_norm_axis=-1`` gives the per-step statistics ``(B, T)`` of the layer-norm paper.

    Args:
        begin_norm_axis: first reduced axis. Default: ``1``.
        begin_params_axis: first parameter axis. Default: ``-1`` (the last axis).
        layout: axis letters of the input. Default: ``"BTC"``.
        center, scale: TF1's ``center`` (β) and ``scale`` (γ). Default: ``True``.
        variables: ``{"beta": ..., "gamma": ...}`` arrays to copy. Default: ``None``.
        input_shape, num_channels: size the parameters when no variables are given.

    Example::

        >>> from_tf1_layer_norm(1, -1, "BTF", num_channels=3).reduce
        'TF'
    """
    parsed = Layout.parse(layout)
    for name, axis in (("begin_norm_axis", begin_norm_axis), ("begin_params_axis", begin_params_axis)):
        if not -parsed.ndim < axis < parsed.ndim or axis % parsed.ndim == 0:
            raise ValueError(f"{name}={axis} must name a non-batch axis of layout {parsed.spelled!r}")
    reduce = parsed.letters[begin_norm_axis % parsed.ndim :]
    params = parsed.letters[begin_params_axis % parsed.ndim :]
    variables = dict(variables or {})
    _complete("from_tf1_layer_norm", variables, ["gamma"] * scale + ["beta"] * center, ["gamma", "beta"])
    arrays = [variables.get("gamma"), variables.get("beta")]
    C = _channels(parsed, num_channels, input_shape, params, arrays, "from_tf1_layer_norm")
    axes, shape = _param_axes(parsed, params, input_shape, arrays, "from_tf1_layer_norm")
    module = LayerNorm(C, layout=parsed, reduce=reduce, eps=_TF1_LAYER_NORM_EPS, center=center, scale=scale,
                       affine=center or scale, param_axes=axes, param_shape=shape)
    return load_arrays(module, weight=variables.get("gamma"), bias=variables.get("beta"))
