"""Flax linen ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm`` and ``BatchNorm``, read without importing
Flax."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from torch import nn

from ..batch import BatchNorm
from ..layout import Layout
from ..modules import GroupNorm, InstanceNorm, LayerNorm, RMSNorm
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

_FLAX_IGNORED = {"name", "parent", "dtype", "param_dtype", "bias_init", "scale_init", "use_fast_variance",
                 "force_float32_reductions"}  # no effect on what the converted module computes (see above)
_FLAX_ALLOWED = {
    "LayerNorm": {"epsilon", "use_bias", "use_scale", "reduction_axes", "feature_axes"},
    "RMSNorm": {"epsilon", "use_scale", "reduction_axes", "feature_axes"},
    "GroupNorm": {"epsilon", "use_bias", "use_scale", "num_groups", "group_size", "reduction_axes"},
    "InstanceNorm": {"epsilon", "use_bias", "use_scale", "feature_axes"},
    "BatchNorm": {"epsilon", "use_bias", "use_scale", "axis", "momentum", "use_running_average", "axis_name"},
}


def _flax_attrs(module: Any, flax_class: str) -> dict[str, Any]:
    """The attributes of a Flax module object that :func:`from_flax` reads (duck-typed: no Flax import)."""
    names = _FLAX_ALLOWED[flax_class] | {"axis_name", "axis_index_groups"}
    return {n: getattr(module, n) for n in names if hasattr(module, n)}


def from_flax(
    flax_class: Any,
    *,
    layout: str | Layout,
    variables: Mapping[str, Any] | None = None,
    input_shape: Sequence[int] | None = None,
    num_channels: int | None = None,
    **attrs: Any,
) -> nn.Module:
    """Convert a Flax ``LayerNorm``, ``RMSNorm``, ``GroupNorm``, ``InstanceNorm`` or ``BatchNorm``.

    Args:
        flax_class: the Flax class name, or the Flax module object itself (its attributes are read).
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
    if not isinstance(flax_class, str):
        name = type(flax_class).__name__
        if name not in _FLAX_ALLOWED:
            raise ValueError(f"unsupported Flax module {name!r}; expected one of {', '.join(_FLAX_ALLOWED)}")
        attrs = {**_flax_attrs(flax_class, name), **attrs}
        flax_class = name
    if flax_class not in _FLAX_ALLOWED:
        raise ValueError(f"unsupported Flax module {flax_class!r}; expected one of {', '.join(_FLAX_ALLOWED)}")
    refused = {"axis_index_groups": None} | ({} if flax_class == "BatchNorm" else {"axis_name": None})
    _check_attrs(f"from_flax({flax_class})", {k: v for k, v in attrs.items() if k not in _FLAX_IGNORED},
                 _FLAX_ALLOWED[flax_class], refused=refused)
    parsed = Layout.parse(layout)
    variables = as_dict("the Flax variables ({'params': ..., 'batch_stats': ...})", variables)
    use_scale, use_bias = bool(attrs.get("use_scale", True)), bool(attrs.get("use_bias", True))
    has_bias = use_bias and flax_class != "RMSNorm"
    _complete(f"from_flax({flax_class})", variables, ["params"] * (use_scale or has_bias)
              + ["batch_stats"] * (flax_class == "BatchNorm"), ["params", "batch_stats"])
    params, stats = dict(variables.get("params", {})), dict(variables.get("batch_stats", {}))
    if variables:
        _complete(f"from_flax({flax_class}) params", params, ["scale"] * use_scale + ["bias"] * has_bias,
                  ["scale", "bias"])
        _complete(f"from_flax({flax_class}) batch_stats", stats, ["mean", "var"] * (flax_class == "BatchNorm"),
                  ["mean", "var"])
    flags = _Flags(use_scale, use_bias, float(attrs.get("epsilon", 1e-5 if flax_class == "BatchNorm" else 1e-6)))
    return _FLAX_BUILDERS[flax_class](parsed, attrs, params, stats, flags, (input_shape, num_channels))


@dataclass(frozen=True)
class _Flags:
    use_scale: bool
    use_bias: bool
    eps: float

    @property
    def affine(self) -> dict[str, Any]:
        return {"affine": self.use_scale or self.use_bias, "scale": self.use_scale, "center": self.use_bias}


_Shape = tuple[Sequence[int] | None, int | None]  # input_shape, num_channels


def _flax_feature(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], sized: _Shape,
                  ) -> tuple[str, int, str | None, tuple[int, ...] | None]:
    """The feature (parameter) axes of the per-sample norms, C, and the parameters' axes and shape."""
    arrays = [params.get("scale"), params.get("bias")]
    feature = _letters(layout, attrs.get("feature_axes", -1), "feature_axes")
    C = _channels(layout, sized[1], sized[0], feature, arrays, "from_flax")
    axes, shape = _param_axes(layout, feature, sized[0], arrays, "from_flax")
    return feature, C, axes, shape


def _flax_layer(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], stats: Mapping[str, Any],
                flags: _Flags, sized: _Shape) -> nn.Module:
    _, C, axes, shape = _flax_feature(layout, attrs, params, sized)
    reduce = _letters(layout, attrs.get("reduction_axes", -1), "reduction_axes")
    module = LayerNorm(C, layout=layout, reduce=reduce, eps=flags.eps, param_axes=axes, param_shape=shape,
                       **flags.affine)
    return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))


def _flax_rms(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], stats: Mapping[str, Any],
              flags: _Flags, sized: _Shape) -> nn.Module:
    _, C, axes, shape = _flax_feature(layout, attrs, params, sized)
    reduce = _letters(layout, attrs.get("reduction_axes", -1), "reduction_axes")
    module = RMSNorm(C, layout=layout, reduce=reduce, eps=flags.eps, affine=flags.use_scale, param_axes=axes,
                     param_shape=shape)
    return load_arrays(module, weight=params.get("scale"))


def _flax_instance(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], stats: Mapping[str, Any],
                   flags: _Flags, sized: _Shape) -> nn.Module:
    feature, C, axes, shape = _flax_feature(layout, attrs, params, sized)
    reduce = "".join(c for c in layout.letters if c != "B" and c not in feature)  # all but batch and features
    module = InstanceNorm(C, layout=layout, reduce=reduce, eps=flags.eps, param_axes=axes, param_shape=shape,
                          **flags.affine)
    return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))


def _flax_group(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], stats: Mapping[str, Any],
                flags: _Flags, sized: _Shape) -> nn.Module:
    C = _channels(layout, sized[1], sized[0], "C", [params.get("scale"), params.get("bias")], "from_flax")
    if layout.letters[-1] != "C":
        raise ValueError(f"Flax GroupNorm keeps features on the last axis; layout {layout.spelled!r} ends in "
                         f"{layout.spelled[-1]!r}")
    size = attrs.get("group_size")
    if size is not None and attrs.get("num_groups") is not None:
        raise ValueError("Flax GroupNorm takes num_groups or group_size, not both (Flax itself refuses it)")
    groups = (C // _int_option("Flax group_size", size) if size is not None
              else _int_option("Flax num_groups", attrs.get("num_groups", 32)))
    axes = attrs.get("reduction_axes")
    reduce = layout.letters[1:] if axes is None else _letters(layout, axes, "reduction_axes").replace("C", "") + "C"
    module = GroupNorm(C, num_groups=groups, layout=layout, reduce=reduce, eps=flags.eps, **flags.affine)
    return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"))


def _flax_batch(layout: Layout, attrs: Mapping[str, Any], params: Mapping[str, Any], stats: Mapping[str, Any],
                flags: _Flags, sized: _Shape) -> nn.Module:
    arrays = [params.get("scale"), params.get("bias"), stats.get("mean")]
    C = _channels(layout, sized[1], sized[0], "C", arrays, "from_flax")
    if _letters(layout, attrs.get("axis", -1), "axis") != "C":
        raise ValueError(f"Flax BatchNorm axis={attrs.get('axis', -1)} must be the channel axis of "
                         f"{layout.spelled!r}")
    module = BatchNorm(C, layout=layout, eps=flags.eps, momentum=_momentum("Flax", attrs.get("momentum", 0.99)),
                       var_estimator="biased", sync=attrs.get("axis_name") is not None, **flags.affine)
    module.train(not attrs.get("use_running_average", False))
    return load_arrays(module, weight=params.get("scale"), bias=params.get("bias"),
                       running_mean=stats.get("mean"), running_var=stats.get("var"))


_FLAX_BUILDERS = {"LayerNorm": _flax_layer, "RMSNorm": _flax_rms, "GroupNorm": _flax_group,
                  "InstanceNorm": _flax_instance, "BatchNorm": _flax_batch}
