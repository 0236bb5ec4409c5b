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


def _channels(layout: Layout, num_channels: int | None, input_shape: Sequence[int] | None,
              arrays: Sequence[Any], what: str) -> int:
    """Find C from an explicit count, the input shape, or a parameter array."""
    if num_channels is not None:
        return int(num_channels)
    if input_shape is not None:
        if len(input_shape) != layout.ndim:
            raise ValueError(f"expected input_shape with {layout.ndim} sizes for layout {layout.spelled!r}, "
                             f"got {tuple(input_shape)}")
        return int(input_shape[layout.dim("C")])
    for a in arrays:
        if a is not None:
            return int(np.asarray(a).shape[-1] if np.asarray(a).ndim else 1)
    raise ValueError(f"{what}: cannot tell the number of channels; pass weights/variables, input_shape or num_channels")


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


def from_keras(
    class_name: str,
    config: Mapping[str, Any],
    layout: str | Layout,
    *,
    weights: Sequence[Any] | None = None,
    input_shape: Sequence[int] | None = None,
    var_estimator: str = "biased",
) -> nn.Module:
    """Convert a Keras ``LayerNormalization``, ``GroupNormalization`` or ``BatchNormalization``.

    Args:
        class_name: the Keras class name.
        config: ``layer.get_config()``; missing keys take Keras 3 defaults (``epsilon=1e-3``).
        layout: axis letters of the layer's input; Keras axis numbers count the batch axis as 0.
        weights: ``layer.get_weights()``, copied into the module. Default: ``None``.
        input_shape: the input's shape, to size elementwise parameters when no weights are given.
        var_estimator: running-variance estimator of the source: ``"biased"`` for Keras 3, ``"unbiased"``
            for tf.keras 2's fused kernel. Default: ``"biased"``.

    Example::

        >>> from_keras("BatchNormalization", {"momentum": 0.99}, "BC", input_shape=(4, 1)).momentum
        0.01...
    """
    parsed = Layout.parse(layout)
    eps = float(config.get("epsilon", 1e-3))
    center, scale = bool(config.get("center", True)), bool(config.get("scale", True))
    name = class_name.rsplit(".", 1)[-1]
    if name == "LayerNormalization":
        if config.get("rms_scaling", False):
            raise ValueError("Keras rms_scaling=True is not supported: Keras deprecates it because it scales by the "
                             "variance, not the mean square; use normrnn.RMSNorm for RMS normalization")
        reduce = _letters(parsed, config.get("axis", -1), "axis")
        named = _keras_weights(config, weights, moving=False)
        C = _channels(parsed, None, input_shape, list(named.values()), "from_keras")
        axes, shape = _param_axes(parsed, reduce, input_shape, list(named.values()), "from_keras")
        module = LayerNorm(C, layout=parsed, reduce=reduce, eps=eps, center=center, scale=scale,
                           affine=center or scale, param_axes=axes, param_shape=shape)
        return load_arrays(module, **named)
    channel = _letters(parsed, config.get("axis", -1), "axis")
    if channel != "C":
        raise ValueError(f"Keras axis={config.get('axis', -1)} is {parsed.spell(channel)!r} in layout "
                         f"{parsed.spelled!r}; expected it to be the channel axis {parsed.spell('C')!r}")
    if name == "GroupNormalization":
        named = _keras_weights(config, weights, moving=False)
        C = _channels(parsed, None, input_shape, list(named.values()), "from_keras")
        groups = int(config.get("groups", 32))
        reduce = "".join(c for c in parsed.letters if c != "B")  # T included, as Keras does
        module = GroupNorm(C, num_groups=C if groups == -1 else groups, layout=parsed, reduce=reduce, eps=eps,
                           center=center, scale=scale, affine=center or scale)
        return load_arrays(module, **named)
    if name == "BatchNormalization":
        named = _keras_weights(config, weights, moving=True)
        C = _channels(parsed, None, input_shape, list(named.values()), "from_keras")
        module = BatchNorm(C, layout=parsed, eps=eps, momentum=1.0 - float(config.get("momentum", 0.99)),
                           center=center, scale=scale, affine=center or scale, var_estimator=var_estimator,
                           sync=bool(config.get("synchronized", False)))
        return load_arrays(module, **named)
    raise ValueError(f"unsupported Keras layer {class_name!r}; expected LayerNormalization, "
                     "GroupNormalization or BatchNormalization")


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
    arrays = [variables.get("gamma"), variables.get("beta")]
    C = _channels(parsed, num_channels, input_shape, arrays, "from_tf1_layer_norm")
    axes, shape = _param_axes(parsed, params, input_shape, arrays, "from_tf1_layer_norm")
    module = LayerNorm(C, layout=parsed, reduce=reduce, eps=_TF1_LAYER_NORM_EPS, center=center, scale=scale,
                       affine=center or scale, param_axes=axes, param_shape=shape)
    return load_arrays(module, weight=variables.get("gamma"), bias=variables.get("beta"))


def from_flax(
    kind: str,
    *,
    layout: str | Layout,
    variables: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_channels: int | None = None,
    **attrs: Any,
) -> nn.Module:
    """Convert a Flax ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm`` or ``BatchNorm``.

    Args:
        kind: the Flax class name.
        layout: axis letters of the input; Flax axis numbers count the batch axis as 0.
        variables: the linen variable dict, ``{"params": {"scale", "bias"}, "batch_stats": {"mean", "var"}}``.
        input_shape, num_channels: size the module when no variables are given.
        **attrs: the Flax module's attributes under their Flax names (``epsilon``, ``use_bias``,
            ``use_scale``, ``reduction_axes``, ``feature_axes``, ``num_groups``, ``group_size``, ``momentum``,
            ``axis``, ``axis_name``); missing ones take Flax's defaults.

    Example::

        >>> from_flax("GroupNorm", layout="BTC", num_channels=8, num_groups=2).reduce
        'TC'
    """
    parsed = Layout.parse(layout)
    variables = variables or {}
    params, stats = dict(variables.get("params", {})), dict(variables.get("batch_stats", {}))
    arrays = [params.get("scale"), params.get("bias")]
    C = _channels(parsed, num_channels, input_shape, [*arrays, stats.get("mean")], "from_flax")
    use_scale, use_bias = bool(attrs.get("use_scale", True)), bool(attrs.get("use_bias", True))
    affine = {"affine": use_scale or use_bias, "scale": use_scale}
    if kind in ("LayerNorm", "RMSNorm"):
        eps = float(attrs.get("epsilon", 1e-6))
        reduce = _letters(parsed, attrs.get("reduction_axes", -1), "reduction_axes")
        feature = _letters(parsed, attrs.get("feature_axes", -1), "feature_axes")
        axes, shape = _param_axes(parsed, feature, input_shape, arrays, "from_flax")
        if kind == "RMSNorm":
            module = RMSNorm(C, layout=parsed, reduce=reduce, eps=eps, affine=use_scale, param_axes=axes,
                             param_shape=shape)
        else:
            module = LayerNorm(C, layout=parsed, reduce=reduce, eps=eps, center=use_bias, param_axes=axes,
                               param_shape=shape, **affine)
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias") if kind == "LayerNorm" else None)
    if parsed.letters[-1] != "C":
        raise ValueError(f"Flax {kind} keeps features on the last axis; layout {parsed.spelled!r} ends in "
                         f"{parsed.spelled[-1]!r}")
    if kind == "GroupNorm":
        eps = float(attrs.get("epsilon", 1e-6))
        groups, size = attrs.get("num_groups", 32), attrs.get("group_size")
        groups = C // int(size) if size is not None else int(groups)
        axes = attrs.get("reduction_axes")
        reduce = (parsed.letters[1:] if axes is None
                  else _letters(parsed, axes, "reduction_axes").replace("C", "") + "C")
        module = GroupNorm(C, num_groups=groups, layout=parsed, reduce=reduce, eps=eps, center=use_bias, **affine)
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))
    if kind == "InstanceNorm":
        eps = float(attrs.get("epsilon", 1e-6))
        reduce = parsed.letters[1:-1]  # every axis but batch and features
        module = InstanceNorm(C, layout=parsed, reduce=reduce, eps=eps, center=use_bias, **affine)
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))
    if kind == "BatchNorm":
        if _letters(parsed, attrs.get("axis", -1), "axis") != "C":
            raise ValueError(f"Flax BatchNorm axis={attrs.get('axis', -1)} must be the channel axis of "
                             f"{parsed.spelled!r}")
        module = BatchNorm(C, layout=parsed, eps=float(attrs.get("epsilon", 1e-5)),
                           momentum=1.0 - float(attrs.get("momentum", 0.99)), center=use_bias,
                           var_estimator="biased", sync=attrs.get("axis_name") is not None, **affine)
        module.train(not attrs.get("use_running_average", False))
        return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"),
                     running_mean=stats.get("mean"), running_var=stats.get("var"))
    raise ValueError(f"unsupported Flax module {kind!r}; expected LayerNorm, RMSNorm, GroupNorm, InstanceNorm "
                     "or BatchNorm")


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
