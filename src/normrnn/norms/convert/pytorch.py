"""``torch.nn`` normalization modules."""

from __future__ import annotations

import torch
from torch import nn

from ..._checks import Factory
from ..batch import BatchNorm
from ..layout import Layout
from ..modules import GroupNorm, Identity, InstanceNorm, LayerNorm, RMSNorm
from ._common import load_arrays

# what from_torch converts, beside Identity and LayerNorm/RMSNorm (handled before the channel-axis check)
_SUPPORTED = (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm, nn.modules.batchnorm._BatchNorm)


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
    factory: Factory = {"device": None if ref is None else ref.device, "dtype": None if ref is None else ref.dtype}
    if isinstance(module, nn.Identity):
        return Identity()
    if isinstance(module, (nn.LayerNorm, nn.RMSNorm)):
        return _from_trailing_norm(module, parsed, factory)
    if not isinstance(module, _SUPPORTED):
        raise ValueError(f"unsupported module {type(module).__name__}; expected LayerNorm, GroupNorm, BatchNorm*d, "
                         "SyncBatchNorm, InstanceNorm*d, RMSNorm or Identity")
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
        instance = InstanceNorm(module.num_features, layout=parsed, reduce=parsed.letters[2:], eps=module.eps,
                                affine=module.affine, **factory)
        return load_arrays(instance, weight=module.weight, bias=module.bias)
    if isinstance(module, nn.modules.batchnorm._BatchNorm):
        batch = BatchNorm(module.num_features, layout=parsed, eps=module.eps, momentum=module.momentum,
                          affine=module.affine, track_running_stats=module.track_running_stats,
                          sync=isinstance(module, nn.SyncBatchNorm),
                          process_group=getattr(module, "process_group", None), **factory)
        batch.train(module.training)
        return load_arrays(batch, weight=module.weight, bias=module.bias, running_mean=module.running_mean,
                     running_var=module.running_var, num_batches_tracked=module.num_batches_tracked)
    raise AssertionError(f"unreachable: {type(module).__name__} is in _SUPPORTED")


def _from_trailing_norm(module: nn.LayerNorm | nn.RMSNorm, parsed: Layout, factory: Factory) -> nn.Module:
    """``nn.LayerNorm`` or ``nn.RMSNorm``, which normalize the trailing ``normalized_shape`` of ``parsed``."""
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
        rms = RMSNorm(C, layout=parsed, reduce=reduce, eps=eps, affine=module.elementwise_affine,
                      param_axes=axes, param_shape=shape, **factory)
        return load_arrays(rms, weight=module.weight)
    new = LayerNorm(C, layout=parsed, reduce=reduce, eps=module.eps, affine=module.elementwise_affine,
                    center=module.bias is not None, param_axes=axes, param_shape=shape, **factory)
    return load_arrays(new, weight=module.weight, bias=module.bias)
