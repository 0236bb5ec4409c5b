"""Import normalization layers from PyTorch, Keras, TF1 and Flax as equivalent normrnn modules.

Each converter maps the framework's axis convention to layout letters, converts momentum and the
running-variance estimator, and copies parameters and buffers where the source has them. The table in
``docs/norm-semantics`` (shared) lists what each framework computes:

- Keras/Flax ``momentum`` weights the old average: ``m_torch = 1 - m_keras``; their running variance is
  biased (Keras 3, Flax), PyTorch's unbiased.
- TF1 ``layer_norm`` reduces ``begin_norm_axis..R-1`` (default 1: every non-batch axis, T included) with
  ``eps=1e-12`` and parameters over ``begin_params_axis..R-1``.
- Keras 3 ``GroupNormalization`` and Flax ``GroupNorm`` reduce every non-batch axis but the groups, T
  included.

Flax's ``use_fast_variance`` (``E[x^2] - E[x]^2``) is deliberately not reproduced: normrnn always uses the
two-pass variance, which agrees with Flax wherever Flax's formula is accurate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from .batch import BatchNorm
from .layout import Layout
from .modules import GroupNorm, Identity, InstanceNorm, LayerNorm, RMSNorm

__all__ = ["from_flax", "from_keras", "from_tf1_layer_norm", "from_torch", "load_arrays"]

_TF1_LAYER_NORM_EPS = 1e-12  # hard-coded in tf.contrib.layers.layer_norm


def _letters(layout: Layout, axes: int | Sequence[int], what: str) -> str:
    """Map framework axis numbers (batch = 0, negatives allowed) to canonical layout letters."""
    axes = [axes] if isinstance(axes, (int, np.integer)) else list(axes)
    out = []
    for a in axes:
        if not -layout.ndim <= int(a) < layout.ndim:
            raise ValueError(f"{what}={a} is out of range for layout {layout.spelled!r} ({layout.ndim} axes)")
        out.append(layout.letters[int(a) % layout.ndim])
    return layout.axes("".join(out), what=what)


def _channels(layout: Layout, num_channels: int | None, input_shape: Sequence[int] | None, param_letters: str,
              arrays: Sequence[Any], what: str) -> int:
    """C from an explicit count, the input shape's C axis, or the C axis of parameters spanning ``param_letters``.

    Parameters that do not span C cannot tell it (their last axis is not C: ``axis=1`` on ``BTF`` has ``(T,)``
    parameters), so then ``input_shape`` or ``num_channels`` is required.
    """
    if input_shape is not None and len(input_shape) != layout.ndim:
        raise ValueError(f"expected input_shape with {layout.ndim} sizes for layout {layout.spelled!r}, "
                         f"got {tuple(input_shape)}")
    if num_channels is not None:
        return int(num_channels)
    if input_shape is not None:
        return int(input_shape[layout.dim("C")])
    if "C" in param_letters:
        for a in arrays:
            if a is not None and np.asarray(a).ndim == len(param_letters):
                return int(np.asarray(a).shape[param_letters.index("C")])
    spans = f"the parameters span {layout.describe(param_letters)}, not the channel axis {layout.spell('C')}; " \
        if param_letters and "C" not in param_letters else ""
    raise ValueError(f"{what}: cannot tell the number of channels: {spans}pass input_shape or num_channels"
                     + ("" if spans else ", or the weights"))


def _check_attrs(what: str, given: Mapping[str, Any], allowed: set[str], *, refused: Mapping[str, Any]) -> None:
    """Refuse, by name, attributes that are unknown (misspelled) or that set a feature normrnn does not reproduce.

    ``refused`` maps an attribute to the value it must have (its default) to be accepted.
    """
    unknown = sorted(k for k in given if k not in allowed and k not in refused)
    if unknown:
        raise ValueError(f"{what}: unknown attributes {unknown}; expected some of {sorted(allowed | set(refused))}")
    bad = sorted(k for k, default in refused.items() if k in given and given[k] != default)
    if bad:
        raise ValueError(f"{what}: unsupported {', '.join(f'{k}={given[k]!r}' for k in bad)}: normrnn does not "
                         f"reproduce {'it' if len(bad) == 1 else 'them'} (accepted: "
                         + ", ".join(f"{k}={refused[k]!r}" for k in bad) + ")")


def _param_axes(layout: Layout, letters: str, input_shape: Sequence[int] | None, arrays: Sequence[Any],
                what: str) -> tuple[str | None, tuple[int, ...] | None]:
    """Parameter axes and their sizes: per channel when ``letters`` is C, else elementwise."""
    if letters == "C":
        return None, None
    for a in arrays:
        if a is not None:
            return letters, tuple(np.asarray(a).shape)
    if input_shape is not None:
        return letters, layout.sizes(input_shape, letters)
    raise ValueError(f"{what}: parameters span {layout.spell(letters)!r}, more than the channel axis; pass the "
                     "weights or input_shape so their shape is known")


def _complete(what: str, given: Mapping[str, Any], expected: Sequence[str], known: Sequence[str]) -> None:
    """Variables handed to a converter are all there or none: a missing or misspelled one is an error, never a
    silent 1 or 0. (No variables at all: a fresh module, initialized as the framework would.)"""
    unknown = sorted(set(given) - set(known))
    missing = [n for n in expected if n not in given]
    if unknown or (given and missing):
        raise ValueError(f"{what}: expected variables {list(expected)}, got {sorted(given)}"
                         + (f" (unknown: {unknown})" if unknown else "")
                         + (f" (missing: {missing})" if missing else ""))


def _momentum(what: str, value: object) -> float:
    """A Keras/Flax momentum (the old average's weight) in [0, 1], as PyTorch's ``1 - momentum``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"expected {what} momentum in [0, 1] (the weight of the old average), got {value!r}")
    return 1.0 - float(value)


def _int_option(what: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"expected {what} to be an int, got {value!r}")
    return value


@torch.no_grad()
def load_arrays(module: nn.Module, **tensors: Any) -> nn.Module:
    """Copy arrays into same-named parameters/buffers, checking shapes."""
    for name, value in tensors.items():
        if value is None:
            continue
        target = getattr(module, name)
        if target is None:
            raise ValueError(f"the source has {name!r} but the converted module has none (check center/scale)")
        src = torch.as_tensor(np.asarray(value) if not isinstance(value, torch.Tensor) else value)
        if tuple(src.shape) != tuple(target.shape):
            raise ValueError(f"expected {name} of shape {tuple(target.shape)}, got {tuple(src.shape)}")
        target.copy_(src.to(target.dtype))
    return module


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
        class_name, config = source, dict(config or {})
    else:
        class_name, read, read_weights = _from_object(source, "from_keras")
        config = {**read, **(config or {})}
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
    eps = float(config.get("epsilon", 1e-6 if name == "RMSNormalization" else 1e-3))
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    if name == "RMSNormalization":
        reduce = _letters(parsed, config.get("axis", -1), "axis")
        named = {"weight": weights[0]} if weights else {}
        if weights is not None and len(weights) != 1:
            raise ValueError(f"expected 1 Keras weight (scale) for RMSNormalization, got {len(weights)}")
        C = _channels(parsed, num_channels, input_shape, reduce, list(named.values()), "from_keras")
        axes, shape = _param_axes(parsed, reduce, input_shape, list(named.values()), "from_keras")
        module = RMSNorm(C, layout=parsed, reduce=reduce, eps=eps, param_axes=axes, param_shape=shape)
        return load_arrays(module, **named)
    if name == "LayerNormalization":
        reduce = _letters(parsed, config.get("axis", -1), "axis")
        named = _keras_weights(config, weights, moving=False)
        C = _channels(parsed, num_channels, input_shape, reduce, list(named.values()), "from_keras")
        axes, shape = _param_axes(parsed, reduce, input_shape, list(named.values()), "from_keras")
        module = LayerNorm(C, layout=parsed, reduce=reduce, eps=eps, center=center, scale=scale,
                           affine=center or scale, param_axes=axes, param_shape=shape)
        return load_arrays(module, **named)
    channel = _letters(parsed, config.get("axis", -1), "axis")
    if channel != "C":
        raise ValueError(f"Keras axis={config.get('axis', -1)} is {parsed.spell(channel)!r} in layout "
                         f"{parsed.spelled!r}; expected it to be the channel axis {parsed.spell('C')!r}")
    named = _keras_weights(config, weights, moving=name == "BatchNormalization")
    C = _channels(parsed, num_channels, input_shape, "C", list(named.values()), "from_keras")
    if name == "GroupNormalization":
        groups = _int_option("Keras groups", config.get("groups", 32))
        reduce = "".join(c for c in parsed.letters if c != "B")  # T included, as Keras does
        module = GroupNorm(C, num_groups=C if groups == -1 else groups, layout=parsed, reduce=reduce, eps=eps,
                           center=center, scale=scale, affine=center or scale)
        return load_arrays(module, **named)
    module = BatchNorm(C, layout=parsed, eps=eps, momentum=_momentum("Keras", config.get("momentum", 0.99)),
                       center=center, scale=scale, affine=center or scale, var_estimator=var_estimator,
                       sync=bool(config.get("synchronized", False)))
    return load_arrays(module, **named)


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


_FLAX_IGNORED = {"name", "parent", "dtype", "param_dtype", "bias_init", "scale_init", "use_fast_variance",
                 "force_float32_reductions"}  # no effect on what the converted module computes (see above)
_FLAX_ALLOWED = {
    "LayerNorm": {"epsilon", "use_bias", "use_scale", "reduction_axes", "feature_axes"},
    "RMSNorm": {"epsilon", "use_scale", "reduction_axes", "feature_axes"},
    "GroupNorm": {"epsilon", "use_bias", "use_scale", "num_groups", "group_size", "reduction_axes"},
    "InstanceNorm": {"epsilon", "use_bias", "use_scale", "feature_axes"},
    "BatchNorm": {"epsilon", "use_bias", "use_scale", "axis", "momentum", "use_running_average", "axis_name"},
}


def _flax_attrs(module: Any, kind: str) -> dict[str, Any]:
    """The attributes of a Flax module object that :func:`from_flax` reads (duck-typed: no Flax import)."""
    names = _FLAX_ALLOWED[kind] | {"axis_name", "axis_index_groups"}
    return {n: getattr(module, n) for n in names if hasattr(module, n)}


def from_flax(
    kind: Any,
    *,
    layout: str | Layout,
    variables: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_channels: int | None = None,
    **attrs: Any,
) -> nn.Module:
    """Convert a Flax ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm`` or ``BatchNorm``.

    Args:
        kind: the Flax class name, or the Flax module object itself (its attributes are read).
        layout: axis letters of the input; Flax axis numbers count the batch axis as 0.
        variables: the linen variable dict, ``{"params": {"scale", "bias"}, "batch_stats": {"mean", "var"}}``.
        input_shape, num_channels: the input's shape or channel count, needed when the parameters do not span
            the channel axis, and to size the module when no variables are given.
        **attrs: the Flax module's attributes under their Flax names (``epsilon``, ``use_bias``,
            ``use_scale``, ``reduction_axes``, ``feature_axes``, ``num_groups``, ``group_size``, ``momentum``,
            ``axis``, ``use_running_average``, ``axis_name`` for BatchNorm); missing ones take Flax's defaults.
            Unknown or misspelled names, and ``axis_name``/``axis_index_groups`` outside BatchNorm, are a
            ``ValueError``; ``dtype``, ``param_dtype``, initializers and ``use_fast_variance`` are accepted and
            do not change the result.

    Example::

        >>> from_flax("GroupNorm", layout="BTC", num_channels=8, num_groups=2).reduce
        'TC'
    """
    if not isinstance(kind, str):
        name = type(kind).__name__
        if name not in _FLAX_ALLOWED:
            raise ValueError(f"unsupported Flax module {name!r}; expected one of {', '.join(_FLAX_ALLOWED)}")
        attrs = {**_flax_attrs(kind, name), **attrs}
        kind = name
    if kind not in _FLAX_ALLOWED:
        raise ValueError(f"unsupported Flax module {kind!r}; expected one of {', '.join(_FLAX_ALLOWED)}")
    refused = {"axis_index_groups": None} | ({} if kind == "BatchNorm" else {"axis_name": None})
    _check_attrs(f"from_flax({kind})", {k: v for k, v in attrs.items() if k not in _FLAX_IGNORED},
                 _FLAX_ALLOWED[kind], refused=refused)
    parsed = Layout.parse(layout)
    variables = dict(variables or {})
    use_scale, use_bias = bool(attrs.get("use_scale", True)), bool(attrs.get("use_bias", True))
    has_bias = use_bias and kind != "RMSNorm"
    _complete(f"from_flax({kind})", variables, ["params"] * (use_scale or has_bias)
              + ["batch_stats"] * (kind == "BatchNorm"), ["params", "batch_stats"])
    params, stats = dict(variables.get("params", {})), dict(variables.get("batch_stats", {}))
    if variables:
        _complete(f"from_flax({kind}) params", params, ["scale"] * use_scale + ["bias"] * has_bias,
                  ["scale", "bias"])
        _complete(f"from_flax({kind}) batch_stats", stats, ["mean", "var"] * (kind == "BatchNorm"), ["mean", "var"])
    arrays = [params.get("scale"), params.get("bias")]
    affine = {"affine": use_scale or use_bias, "scale": use_scale}
    eps = float(attrs.get("epsilon", 1e-5 if kind == "BatchNorm" else 1e-6))
    if kind in ("LayerNorm", "RMSNorm", "InstanceNorm"):
        feature = _letters(parsed, attrs.get("feature_axes", -1), "feature_axes")
        C = _channels(parsed, num_channels, input_shape, feature, arrays, "from_flax")
        axes, shape = _param_axes(parsed, feature, input_shape, arrays, "from_flax")
        if kind == "InstanceNorm":  # every axis but the batch and the feature axes
            reduce = "".join(c for c in parsed.letters if c != "B" and c not in feature)
            module = InstanceNorm(C, layout=parsed, reduce=reduce, eps=eps, center=use_bias, param_axes=axes,
                                  param_shape=shape, **affine)
            return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))
        reduce = _letters(parsed, attrs.get("reduction_axes", -1), "reduction_axes")
        if kind == "RMSNorm":
            module = RMSNorm(C, layout=parsed, reduce=reduce, eps=eps, affine=use_scale, param_axes=axes,
                             param_shape=shape)
            return load_arrays(module, weight=params.get("scale"))
        module = LayerNorm(C, layout=parsed, reduce=reduce, eps=eps, center=use_bias, param_axes=axes,
                           param_shape=shape, **affine)
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))
    C = _channels(parsed, num_channels, input_shape, "C", [*arrays, stats.get("mean")], "from_flax")
    if kind == "GroupNorm":
        if parsed.letters[-1] != "C":
            raise ValueError(f"Flax GroupNorm keeps features on the last axis; layout {parsed.spelled!r} ends in "
                             f"{parsed.spelled[-1]!r}")
        groups, size = attrs.get("num_groups", 32), attrs.get("group_size")
        if size is not None and attrs.get("num_groups") is not None and "num_groups" in attrs:
            raise ValueError("Flax GroupNorm takes num_groups or group_size, not both (Flax itself refuses it)")
        groups = C // _int_option("Flax group_size", size) if size is not None else _int_option("Flax num_groups",
                                                                                                groups)
        axes = attrs.get("reduction_axes")
        reduce = (parsed.letters[1:] if axes is None
                  else _letters(parsed, axes, "reduction_axes").replace("C", "") + "C")
        module = GroupNorm(C, num_groups=groups, layout=parsed, reduce=reduce, eps=eps, center=use_bias, **affine)
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))
    if _letters(parsed, attrs.get("axis", -1), "axis") != "C":
        raise ValueError(f"Flax BatchNorm axis={attrs.get('axis', -1)} must be the channel axis of "
                         f"{parsed.spelled!r}")
    module = BatchNorm(C, layout=parsed, eps=eps, momentum=_momentum("Flax", attrs.get("momentum", 0.99)),
                       center=use_bias, var_estimator="biased", sync=attrs.get("axis_name") is not None, **affine)
    module.train(not attrs.get("use_running_average", False))
    return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"),
                       running_mean=stats.get("mean"), running_var=stats.get("var"))


def from_torch(module: nn.Module, layout: str | Layout) -> nn.Module:
    """Convert a ``torch.nn`` normalization module, copying parameters and buffers.

    Supports ``LayerNorm``, ``GroupNorm``, ``BatchNorm1d/2d/3d``, ``SyncBatchNorm``, ``InstanceNorm1d/2d/3d``
    (without running statistics), ``RMSNorm`` and ``Identity``. PyTorch puts channels at dim 1 for all but
    the layer and RMS norms, which normalize the trailing ``normalized_shape``.

    Example::

        >>> from_torch(nn.GroupNorm(2, 8), "BCHW").reduce
        'CHW'
    """
    parsed = Layout.parse(layout)
    ref = next(iter(module.parameters()), None)
    factory = {} if ref is None else {"device": ref.device, "dtype": ref.dtype}
    if isinstance(module, nn.Identity):
        return Identity()
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        k = len(module.normalized_shape)
        if k > parsed.ndim - 1:
            raise ValueError(f"normalized_shape {tuple(module.normalized_shape)} spans more axes than layout "
                             f"{parsed.spelled!r} has after the batch")
        reduce = parsed.letters[-k:]
        if "C" not in reduce:
            raise ValueError(f"normalized_shape {tuple(module.normalized_shape)} covers {parsed.spell(reduce)!r} "
                             f"in layout {parsed.spelled!r}; expected it to include the channel axis")
        C = tuple(module.normalized_shape)[reduce.index("C")]
        axes, shape = (None, None) if reduce == "C" else (reduce, tuple(module.normalized_shape))
        if isinstance(module, nn.RMSNorm):
            eps = module.eps if module.eps is not None else torch.finfo(torch.float32).eps
            new = RMSNorm(C, layout=parsed, reduce=reduce, eps=eps, affine=module.elementwise_affine,
                          param_axes=axes, param_shape=shape, **factory)
            return load_arrays(new, weight=module.weight)
        new = LayerNorm(C, layout=parsed, reduce=reduce, eps=module.eps, affine=module.elementwise_affine,
                        center=module.bias is not None, param_axes=axes, param_shape=shape, **factory)
        return load_arrays(new, weight=module.weight, bias=module.bias)
    if parsed.letters[1] != "C":
        raise ValueError(f"{type(module).__name__} expects channels at dim 1; layout {parsed.spelled!r} has "
                         f"{parsed.spelled[1]!r} there")
    if isinstance(module, nn.GroupNorm):
        new = GroupNorm(module.num_channels, num_groups=module.num_groups, layout=parsed, reduce=parsed.letters[1:],
                        eps=module.eps, affine=module.affine, **factory)
        return load_arrays(new, weight=module.weight, bias=module.bias)
    if isinstance(module, nn.modules.instancenorm._InstanceNorm):
        if module.track_running_stats:
            raise ValueError("InstanceNorm with track_running_stats=True is not supported: normrnn's instance norm "
                             "always uses per-instance statistics")
        new = InstanceNorm(module.num_features, layout=parsed, reduce=parsed.letters[2:], eps=module.eps,
                           affine=module.affine, **factory)
        return load_arrays(new, weight=module.weight, bias=module.bias)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        new = BatchNorm(module.num_features, layout=parsed, eps=module.eps, momentum=module.momentum,
                        affine=module.affine, track_running_stats=module.track_running_stats,
                        sync=isinstance(module, nn.SyncBatchNorm),
                        process_group=getattr(module, "process_group", None), **factory)
        new.train(module.training)
        return load_arrays(new, weight=module.weight, bias=module.bias, running_mean=module.running_mean,
                     running_var=module.running_var, num_batches_tracked=module.num_batches_tracked)
    raise ValueError(f"unsupported module {type(module).__name__}; expected LayerNorm, GroupNorm, BatchNorm*d, "
                     "SyncBatchNorm, InstanceNorm*d, RMSNorm or Identity")
