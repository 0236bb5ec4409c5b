"""Batch norms: statistics over the batch, running averages for inference, and per-time-step slots.

:class:`BatchNorm` reduces every axis but C; :class:`RecurrentBatchNorm` keeps separate statistics per time
step (Cooijmans et al. 2016). Both follow PyTorch's momentum and running-variance conventions and can reduce
their sums across processes (:mod:`normrnn.norms.sync`).
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from .._checks import Factory, non_negative, one_of, positive_int
from .base import Description, Norm, check_step
from .functional import NormAxes, RunningStats, choose_kernel, mask_view, norm_forward
from .layout import Layout
from .registry import NormEntry, register_norm
from .sync import cross_process_sum

__all__ = ["DEFAULT_MAX_STEPS", "BatchNorm", "RecurrentBatchNorm"]

DEFAULT_MAX_STEPS = 100  # T_max of "recurrent_batch" without ":T": later steps share the last slot (Cooijmans et al.)
"""``T_max`` of ``"recurrent_batch"`` without ``":T"``: steps from it on share the last slot of statistics."""


class BatchNorm(Norm):
    r"""Batch normalization over every axis but C (Ioffe & Szegedy 2015, arXiv:1502.03167).

    .. math::
        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta, \qquad
        \hat\mu \leftarrow (1 - m)\,\hat\mu + m\,\mu_{batch}

    In training it normalizes with the batch statistics and updates the running averages; in eval it uses
    the running averages (batch statistics again if ``track_running_stats=False``). The update follows the
    PyTorch convention: ``momentum`` ``m`` weights the *new* batch (Keras' ``momentum`` weights the old
    average, so ``m_torch = 1 - m_keras``) and ``momentum=None`` is a cumulative average. The output uses
    the biased variance; the running variance stores the unbiased one (``n / (n - 1)``, PyTorch) unless
    ``var_estimator="biased"`` (Keras 3, Flax). Running statistics are at least fp32 (fp64 for fp64 modules).

    With ``sync=True`` inside an initialized ``torch.distributed`` process group, the statistics are sums
    reduced over all ranks (any backend, gloo on CPU included), so the result equals batch norm over the
    global batch; gradients flow across ranks too. A ``(B, T)`` mask excludes padded frames.

    Args:
        num_channels: C.
        layout: axis letters of the input, e.g. ``"BTF"``, ``"BCHW"``, ``"BTCHW"``.
        eps: added to the variance inside the square root. Default: ``1e-5``.
        momentum: weight of the new batch in the running averages, or ``None`` for a cumulative average.
            Default: ``0.1``.
        affine, center, scale: learn γ and β (``center``: β, ``scale``: γ). Default: ``True``.
        track_running_stats: keep running averages and use them in eval. Default: ``True``.
        var_estimator: ``"unbiased"`` (PyTorch) or ``"biased"`` (Keras 3, Flax) running variance.
            Default: ``"unbiased"``.
        sync: reduce statistics across ``torch.distributed`` ranks. Default: ``False``.
        process_group: the group to sync over. Default: the world.
        reduce: accepted for the factory's sake; must be every axis but C. Default: ``None``.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``.
        - Output: same as input.

    Example::

        >>> bn = BatchNorm(1, layout="BC")
        >>> bn(torch.tensor([[1.0], [2.0], [3.0], [4.0]])).squeeze(1)
        tensor([-1.3416, -0.4472,  0.4472,  1.3416], grad_fn=<...>)
        >>> bn.running_mean, bn.running_var
        (tensor([0.2500]), tensor([1.0667]))
    """

    def __init__(
        self,
        num_channels: int,
        *,
        layout: str | Layout,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        track_running_stats: bool = True,
        var_estimator: str = "unbiased",
        sync: bool = False,
        process_group: object | None = None,
        reduce: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__()
        self.num_channels = positive_int("num_channels", num_channels)
        self.layout = Layout.parse(layout)
        one_of("var_estimator", var_estimator, ("unbiased", "biased"))
        all_but_c = "".join(c for c in self.layout.letters if c != "C")
        if reduce is not None and self.layout.axes(reduce) != all_but_c:
            raise ValueError(f"batch norm reduces every axis but {self.layout.spell('C')}, i.e. "
                             f"reduce={self.layout.spell(all_but_c)!r}; got reduce={reduce!r} "
                             "(use recurrent_batch for per-time-step statistics)")
        if momentum is not None and not 0.0 <= momentum <= 1.0:
            raise ValueError(f"expected momentum in [0, 1] (PyTorch convention) or None, got {momentum}")
        self.axes = NormAxes(self.layout, all_but_c, None)
        self.kernel = choose_kernel(self.axes)  # F.batch_norm on the (N, C, *) view
        self.eps = non_negative("eps", eps)
        self.momentum = momentum
        self.track_running_stats = track_running_stats
        self.var_estimator = var_estimator
        self.sync = sync
        self.process_group = process_group
        factory: Factory = {"device": device, "dtype": dtype}
        self.weight = nn.Parameter(torch.empty(num_channels, **factory)) if affine and scale else None
        self.bias = nn.Parameter(torch.empty(num_channels, **factory)) if affine and center else None
        if track_running_stats:
            shape = self._buffer_shape()
            stats = torch.float64 if dtype == torch.float64 else torch.float32  # at least fp32, at least the params'
            self.register_buffer("running_mean", torch.zeros(shape, device=device, dtype=stats))
            self.register_buffer("running_var", torch.ones(shape, device=device, dtype=stats))
            self.register_buffer("num_batches_tracked", torch.zeros(shape[:-1], device=device, dtype=torch.long))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)
        self.reset_parameters()

    def _buffer_shape(self) -> tuple[int, ...]:
        assert self.num_channels is not None  # batch norms always know C
        return (self.num_channels,)

    def reset_running_stats(self) -> None:
        """Zero the running mean and count; set the running variance to one."""
        if self.track_running_stats:
            for buffer, value in ((self.running_mean, 0.0), (self.running_var, 1.0), (self.num_batches_tracked, 0)):
                assert isinstance(buffer, Tensor)  # registered when tracking (nn.Module types it Tensor | Module)
                buffer.fill_(value)

    def reset_parameters(self) -> None:
        """Reset the running statistics, set γ to 1 and β to 0."""
        self.reset_running_stats()
        if self.weight is not None:
            nn.init.ones_(self.weight)
        if self.bias is not None:
            nn.init.zeros_(self.bias)

    def _apply(self, fn: Callable[[Tensor], Tensor], recurse: bool = True) -> BatchNorm:
        # Running statistics keep at least fp32 through .half()/.to(dtype) (move them, never round them below
        # fp32) and follow the module to fp64 with .double(), so eval matches torch's float64 batch norm.
        saved = {n: getattr(self, n) for n in ("running_mean", "running_var") if getattr(self, n) is not None}
        super()._apply(fn, recurse)
        for name, buf in saved.items():
            probe = fn(torch.empty(0, device=buf.device, dtype=torch.float32))
            dtype = torch.float64 if probe.dtype == torch.float64 else torch.float32
            setattr(self, name, buf.to(device=probe.device, dtype=dtype))
        return self

    def _all_reduce(self) -> Callable[[Tensor], Tensor] | None:
        """A differentiable cross-rank sum when syncing applies, else ``None``."""
        return cross_process_sum(self.process_group) if self.sync else None

    def _uses_batch_stats(self) -> bool:
        return self.training or not self.track_running_stats

    def traceable(self, *, masked: bool) -> bool:
        """Masked or synced batch statistics have data-dependent counts or collectives: not traceable."""
        return not ((masked or self.sync) and self._uses_batch_stats())

    def describe(self, shape: Sequence[int]) -> Description:
        shape = tuple(shape)
        affine = self.weight is not None or self.bias is not None
        return Description(self.axes.reduce, self.axes.stats_letters, self.axes.stats_shape(shape),
                           self.axes.count(shape), "C" if affine else "", (self.num_channels or 0,) if affine else (),
                           f"{self.kernel.describe(self.axes)} with running averages per channel")

    def _running(self, slot: int | None) -> tuple[Tensor, Tensor, Tensor]:
        """Running mean, variance and batch count for a time-step slot (``None``: the only slot)."""
        mean, var, count = self.running_mean, self.running_var, self.num_batches_tracked
        assert isinstance(mean, Tensor) and isinstance(var, Tensor) and isinstance(count, Tensor)  # buffers
        if slot is None:
            return mean, var, count
        return mean[slot], var[slot], count[slot]

    def _advance(self, count: Tensor) -> float:
        """Count one more batch and return the weight of that batch in the running averages."""
        count.add_(1)
        return 1.0 / float(count) if self.momentum is None else self.momentum

    @torch.no_grad()
    def _update_running(self, slot: int | None, mean: Tensor, var_unbiased: Tensor, n: float) -> None:
        running_mean, running_var, count = self._running(slot)
        factor = self._advance(count)
        var = var_unbiased if self.var_estimator == "unbiased" else var_unbiased * ((n - 1) / n)
        running_mean.mul_(1 - factor).add_(mean.float(), alpha=factor)
        running_var.mul_(1 - factor).add_(var.float(), alpha=factor)

    def _float_params(self, x: Tensor) -> tuple[Tensor | None, Tensor | None]:
        # Native BN is within 1 ulp on fp16/bf16 only with fp32 parameters (measured on CPU).
        if x.dtype in (torch.float16, torch.bfloat16):
            return (None if self.weight is None else self.weight.float(),
                    None if self.bias is None else self.bias.float())
        return self.weight, self.bias

    def _normalize(self, x: Tensor, axes: NormAxes, mask: Tensor | None, slot: int | None,
                   use_batch_stats: bool) -> Tensor:
        """Batch-normalize one tensor whose layout has no time-step slots of its own, through :func:`norm_forward`
        with this module's running averages (slot ``slot``); ``mask`` is the raw ``(B, T)`` or ``(B,)`` mask."""
        if x.numel() == 0:  # an empty batch: no statistics to compute, nothing to normalize
            if use_batch_stats:
                self._check_count(0, x)
            return x.clone()
        weight, bias = self._float_params(x)
        return norm_forward(x, axes, weight=weight, bias=bias, eps=self.eps, mask=mask, kernel=self.kernel,
                            all_reduce=self._all_reduce() if use_batch_stats else None,
                            running=self._running_stats(x, slot, use_batch_stats, mask))

    def _running_stats(self, x: Tensor, slot: int | None, use_batch_stats: bool,
                       mask: Tensor | None) -> RunningStats:
        """What :func:`norm_forward` does with the running averages of ``slot`` for this call."""
        if not use_batch_stats:
            mean, var, _ = self._running(slot)
            if self.training:  # a masked step in training: later steps update these buffers in place, which
                mean, var = mean.clone(), var.clone()  # would break this step's backward (autograd saves them)
            return RunningStats(mean, var, use=True)
        check = functools.partial(self._check_count, x=x)
        if not (self.training and self.track_running_stats):
            return RunningStats(check=check)
        mean, var, count = self._running(slot)
        in_kernel = None
        if self.var_estimator == "unbiased" and x.dtype != torch.float64:
            in_kernel = functools.partial(self._advance, count)  # PyTorch's own rule: the kernel updates the buffers
        return RunningStats(mean, var, check=check, update=functools.partial(self._update_running, slot),
                            in_kernel=in_kernel)

    def _check_count(self, n: float, x: Tensor) -> None:
        if n <= 1:
            raise ValueError(
                f"expected more than 1 value per channel when training, got input of shape {tuple(x.shape)} "
                f"with layout {self.layout.spelled!r} ({int(n)} value per channel); use a larger batch, "
                "eval mode, or a per-sample norm such as group or layer"
            )

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        """Normalize ``x``; ``mask`` ``(B, T)`` keeps padding out of the statistics; ``step`` is ignored (one set
        of statistics for every step: see :class:`RecurrentBatchNorm` for per-step ones)."""
        self.check_input_once(x)
        use_batch_stats = self._uses_batch_stats()
        if mask is not None and use_batch_stats:  # (norm_forward views and checks the mask in any case)
            viewed = mask_view(mask, self.layout, tuple(x.shape))
            if self._too_few_valid(x, viewed):
                if not bool(viewed.any()) and not self.track_running_stats:
                    return x.masked_fill(~viewed, 0)  # nothing valid to normalize (a fully padded step)
                use_batch_stats = not self.track_running_stats  # skip these statistics: the running ones serve
        return self._normalize(x, self.axes, mask, None, use_batch_stats)

    def _too_few_valid(self, x: Tensor, mask: Tensor) -> bool:
        """Whether the mask leaves at most one value per channel (a fully padded step, say)."""
        per_entry = x.numel() // max(mask.numel() * (self.num_channels or 1), 1)  # values per channel per (b, t) entry
        return int(mask.sum()) * per_entry <= 1

    def extra_repr(self) -> str:
        s = f"{self.num_channels}, layout={self.layout.spelled!r}, eps={self.eps}, momentum={self.momentum}"
        if self.weight is None and self.bias is None:
            s += ", affine=False"
        if not self.track_running_stats:
            s += ", track_running_stats=False"
        if self.var_estimator != "unbiased":
            s += f", var_estimator={self.var_estimator!r}"
        if self.sync:
            s += ", sync=True"
        return s


class RecurrentBatchNorm(BatchNorm):
    r"""Batch normalization with separate statistics per time step (Cooijmans et al. 2016, arXiv:1603.09025).

    .. math::
        \mathrm{BN}(x_t) = \frac{x_t - \hat\mu_{s}}{\sqrt{\hat\sigma^2_{s} + \epsilon}} \cdot \gamma + \beta,
        \qquad s = \min(t, T_{max} - 1)

    Each of the first ``max_steps`` steps has its own running statistics; later steps reuse the last slot,
    as the paper prescribes. γ and β are shared across time, and γ starts at ``gamma_init`` (0.1 in the
    paper, which also drops β on the input and hidden projections: pass ``center=False``).

    ``forward(x, mask, step=t)`` normalizes one step when the layout has no T axis (``step`` is its index);
    with a T axis it normalizes a whole sequence whose first step is ``step`` (default 0), exactly as
    stepping would.

    Args:
        num_channels: C.
        max_steps: T_max, the number of per-step statistic slots. Default: ``100``.
        layout: axis letters of the input, e.g. ``"BC"`` or ``"BCHW"`` per step, ``"BTC"`` per sequence.
        gamma_init: initial γ. Default: ``0.1``.
        eps, momentum, affine, center, scale, track_running_stats, var_estimator, sync, process_group:
            as in :class:`BatchNorm`.

    Shape:
        - Input: any shape in ``layout``; ``mask``: ``(B, T)``, or ``(B,)`` for one step.
        - Output: same as input. Buffers: ``running_mean``, ``running_var``: ``(T_max, C)``.

    Example::

        >>> rbn = RecurrentBatchNorm(8, max_steps=4, layout="BC")
        >>> rbn(torch.randn(16, 8), step=6).shape  # step 6 uses slot 3
        torch.Size([16, 8])
    """

    per_step_statistics = True

    def __init__(
        self,
        num_channels: int,
        *,
        max_steps: int = DEFAULT_MAX_STEPS,
        layout: str | Layout,
        gamma_init: float = 0.1,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        center: bool = True,
        scale: bool = True,
        track_running_stats: bool = True,
        var_estimator: str = "unbiased",
        sync: bool = False,
        process_group: object | None = None,
        reduce: str | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        self.max_steps = positive_int("max_steps (T_max)", max_steps)
        self.gamma_init = float(gamma_init)
        parsed = Layout.parse(layout)
        step = Layout.parse(parsed.spelled.replace("T", "")) if parsed.has("T") else parsed
        expected = "".join(c for c in parsed.letters if c not in "TC")
        if reduce is not None and parsed.axes(reduce) != expected:
            raise ValueError(f"recurrent batch norm reduces every axis but T and C, i.e. "
                             f"reduce={parsed.spell(expected)!r}; got reduce={reduce!r}")
        super().__init__(num_channels, layout=step, eps=eps, momentum=momentum, affine=affine, center=center,
                         scale=scale, track_running_stats=track_running_stats, var_estimator=var_estimator,
                         sync=sync, process_group=process_group, device=device, dtype=dtype)
        self.step_layout = step
        self.layout = parsed

    def _buffer_shape(self) -> tuple[int, ...]:
        assert self.num_channels is not None  # batch norms always know C
        return (self.max_steps, self.num_channels)

    def reset_parameters(self) -> None:
        """Reset the running statistics, set γ to ``gamma_init`` and β to 0."""
        super().reset_parameters()
        if self.weight is not None:
            nn.init.constant_(self.weight, self.gamma_init)

    def slot(self, t: int) -> int:
        """The statistics slot of time step ``t``: ``min(t, T_max - 1)``."""
        return min(t, self.max_steps - 1)

    def forward(self, x: Tensor, mask: Tensor | None = None, *, step: int | None = None) -> Tensor:
        """Normalize one step (``step`` required) or, with a T axis, a sequence starting at ``step`` (default 0)."""
        self.check_input_once(x)
        if not self.layout.has("T"):
            if step is None:
                raise ValueError(f"layout {self.layout.spelled!r} has no T axis, so forward(x, mask, step=t) needs "
                                 "the time-step index t >= 0; got step=None")
            return self._step(x, check_step(step, required=True), mask)
        t0 = check_step(0 if step is None else step, required=True)
        if mask is not None:
            mask_view(mask, self.layout, tuple(x.shape))  # validates the (B, T) shape
        tdim = self.layout.dim("T")
        if x.shape[tdim] == 0:
            return x.clone()  # no steps: nothing to normalize
        steps = [self._step(x.select(tdim, i), t0 + i, None if mask is None else mask[:, i])
                 for i in range(x.shape[tdim])]
        return torch.stack(steps, dim=tdim)

    def _step(self, x: Tensor, t: int, mask: Tensor | None) -> Tensor:
        use_batch_stats = self._uses_batch_stats()
        if mask is not None and use_batch_stats and self.track_running_stats:
            if self._too_few_valid(x, mask_view(mask, self.step_layout, tuple(x.shape))):
                use_batch_stats = False  # too few valid samples at this step: fall back to the running stats
        return self._normalize(x, self.axes, mask, self.slot(t), use_batch_stats)

    def describe(self, shape: Sequence[int]) -> Description:
        shape, layout = tuple(shape), self.layout
        letters = "TC" if layout.has("T") else "C"
        reduce = "".join(c for c in layout.letters if c not in letters)
        sizes = tuple(min(shape[layout.dim(c)], self.max_steps) if c == "T" else shape[layout.dim(c)]
                      for c in letters)
        step_shape = tuple(s for c, s in zip(layout.letters, shape, strict=True) if c != "T")
        affine = self.weight is not None or self.bias is not None
        kernel = (f"per time step: F.batch_norm with running statistics in slot min(t, {self.max_steps - 1}) "
                  f"of ({self.max_steps}, C)")
        return Description(reduce, letters, sizes, self.axes.count(step_shape), "C" if affine else "",
                           (self.num_channels or 0,) if affine else (), kernel, comparable=False)

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, max_steps={self.max_steps}, gamma_init={self.gamma_init}"


register_norm(NormEntry("batch", BatchNorm))
register_norm(NormEntry("recurrent_batch", RecurrentBatchNorm, arg="max_steps"))
