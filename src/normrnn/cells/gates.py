"""The gate blocks: pre-activations and state in, new state out. The one seam a fused kernel replaces.

Gate order (the order of the channel blocks of ``W_x``, ``W_h`` and the bias), the same as PyTorch, Keras
and cuDNN: LSTM ``i, f, g, o``; GRU ``r, z, n``.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["ACTIVATIONS", "GateProbe", "LSTMState", "NormFn", "activation", "gru_gates", "lstm_gates"]

LSTMState = tuple[Tensor, Tensor]  # (h, c), each (B, C, *spatial)
"""An LSTM state ``(h, c)``, each ``(B, C, *S)``."""
NormFn = Callable[[Tensor], Tensor]
GateProbe = Callable[[tuple[Tensor, ...]], None]  # receives the sigmoid gates of one step
"""A callback that receives the sigmoid gates of one step (e.g. to measure their saturation)."""
Activation = Callable[[Tensor], Tensor]


def _hard_sigmoid(x: Tensor) -> Tensor:
    return F.relu6(x + 3.0) / 6.0  # Keras 3's definition (Keras 2 used clip(0.2 x + 0.5, 0, 1))


#: The nonlinearities a cell may use, by name: ``activation`` (candidate and output) and ``recurrent_activation``
#: (the gates), as Keras names them.
ACTIVATIONS: dict[str, Activation] = {"tanh": torch.tanh, "sigmoid": torch.sigmoid, "relu": torch.relu,
                                      "hard_sigmoid": _hard_sigmoid}


def activation(name: str) -> Activation:
    """The function of an activation name; a ``ValueError`` listing the valid names otherwise."""
    if name not in ACTIVATIONS:
        raise ValueError(f"expected an activation among {', '.join(map(repr, ACTIVATIONS))}, got {name!r}")
    return ACTIVATIONS[name]


def _channel_view(p: Tensor, like: Tensor) -> Tensor:
    """A ``(C,)`` parameter shaped ``(1, C, 1, ...)`` in ``like``'s dtype (autocast), to broadcast over it; a
    ``(C, *S)`` (elementwise) one as ``(1, C, *S)``."""
    if p.dim() > 1:
        return p.unsqueeze(0).to(like.dtype)
    return p.view(1, -1, *([1] * (like.dim() - 2))).to(like.dtype)


def lstm_gates(
    pre: Tensor,
    c: Tensor,
    *,
    norm: NormFn | None = None,
    bias: Tensor | None = None,
    peephole: Tensor | None = None,
    state_norm: NormFn | None = None,
    norm_cell: str = "none",
    probe: GateProbe | None = None,
    act: Activation = torch.tanh,
    gate_act: Activation = torch.sigmoid,
    peephole_before_norm: bool = False,
) -> LSTMState:
    r"""The LSTM gate block: pre-activations and cell state in, new ``(h, c)`` out.

    .. math::
        [a_i, a_f, a_g, a_o] = \mathrm{norm}(\text{pre}) + b, \quad
        i = \sigma(a_i + w_{ci} c), \quad f = \sigma(a_f + w_{cf} c), \quad g = \tanh(a_g)

        c' = f \odot c + i \odot g, \quad o = \sigma(a_o + w_{co} c'), \quad
        h' = o \odot \tanh(c')

    with ``c' = norm_c(c')`` when ``norm_cell="carried"`` and ``tanh(norm_c(c'))`` when ``"output"``. With
    ``peephole_before_norm`` (the TF1 ConvLSTM cell), the peepholes join the pre-activations before the norm:
    ``i = σ(norm(p_i + w_ci c))``, ``f`` alike, and ``o = σ(norm(p_o + w_co c'))`` with the raw new ``c'``, so the
    output gate is normalized after the cell update; ``norm`` must keep each gate's statistics apart.

    Args:
        pre: the gate pre-activations, ``W_x*x + W_h*h`` (or the sum of the separately normalized terms).
        c: the previous cell state.
        norm: the gate norm, applied first. Default: none.
        bias: ``(4C,)`` added after the norm. Default: none.
        peephole: ``(3, C)`` weights for ``i``, ``f``, ``o``, or ``(3, C, *S)`` elementwise ones. Default: none.
        state_norm, norm_cell: the cell-state norm and where it applies. Default: none.
        probe: called with the sigmoid gates ``(i, f, o)``, e.g. to measure saturation. Default: none.
        act, gate_act: the candidate/output and the gate nonlinearities (:data:`ACTIVATIONS`). Default: ``tanh``,
            ``sigmoid``.
        peephole_before_norm: add the peepholes before the gate norm, as the TF1 cell does. Default: ``False``.

    Shape:
        - pre: ``(B, 4C, *S)``; c: ``(B, C, *S)``.
        - Output: ``h``, ``c``: ``(B, C, *S)``.
    """
    w_ci = w_cf = w_co = None
    if peephole is not None:
        w_ci, w_cf, w_co = (_channel_view(w, c) for w in peephole)
    if peephole_before_norm:
        return _lstm_peepholes_first(pre, c, norm, bias, (w_ci, w_cf, w_co), state_norm, norm_cell, probe, act,
                                     gate_act)
    if norm is not None:
        pre = norm(pre)
    if bias is not None:
        pre = pre + _channel_view(bias, pre)
    return _lstm_update(pre, c, (w_ci, w_cf, w_co), state_norm, norm_cell, probe, act, gate_act)


def _lstm_update(pre: Tensor, c: Tensor, peepholes: tuple[Tensor | None, ...], state_norm: NormFn | None,
                 norm_cell: str, probe: GateProbe | None, act: Activation, gate_act: Activation) -> LSTMState:
    """:func:`lstm_gates` after the norm and the bias: the gates, the new cell state and ``h``."""
    w_ci, w_cf, w_co = peepholes
    i, f, g, o = pre.chunk(4, dim=1)  # each (B, C, *S)
    if w_ci is not None and w_cf is not None:  # the three peepholes come together
        i = i + w_ci * c
        f = f + w_cf * c
    i, f = gate_act(i), gate_act(f)
    c_new = f * c + i * act(g)
    if norm_cell == "carried" and state_norm is not None:
        c_new = state_norm(c_new)
    if w_co is not None:
        o = o + w_co * c_new
    o = gate_act(o)
    if probe is not None:
        probe((i, f, o))
    shown = state_norm(c_new) if norm_cell == "output" and state_norm is not None else c_new
    return o * act(shown), c_new


def _lstm_peepholes_first(pre: Tensor, c: Tensor, norm: NormFn | None, bias: Tensor | None,
                          peepholes: tuple[Tensor | None, ...], state_norm: NormFn | None, norm_cell: str,
                          probe: GateProbe | None, act: Activation, gate_act: Activation) -> LSTMState:
    """:func:`lstm_gates` with the peepholes before the norm (TF1 order); the output gate is normalized last."""
    w_ci, w_cf, w_co = peepholes
    i, f, g, o = pre.chunk(4, dim=1)  # raw pre-activations, each (B, C, *S)
    if w_ci is not None and w_cf is not None:
        i, f = i + w_ci * c, f + w_cf * c
    raw = torch.cat([i, f, g, o], dim=1)  # (B, 4C, *S)

    def normalized(x: Tensor) -> Tensor:  # per-gate statistics: a gate's output depends on its channels alone
        x = x if norm is None else norm(x)
        return x if bias is None else x + _channel_view(bias, x)

    i, f, g, _ = normalized(raw).chunk(4, dim=1)
    i, f = gate_act(i), gate_act(f)
    c_new = f * c + i * act(g)
    if w_co is not None:
        o = o + w_co * c_new  # the raw new cell state
    C = c.shape[1]
    o = gate_act(normalized(torch.cat([raw[:, : 3 * C], o], dim=1))[:, 3 * C :])
    if norm_cell == "carried" and state_norm is not None:
        c_new = state_norm(c_new)
    if probe is not None:
        probe((i, f, o))
    shown = state_norm(c_new) if norm_cell == "output" and state_norm is not None else c_new
    return o * act(shown), c_new


def gru_gates(
    gx: Tensor,
    gh: Tensor,
    h: Tensor,
    *,
    norm_rz: NormFn | None = None,
    norm_n: NormFn | None = None,
    bias: Tensor | None = None,
    bias_hn: Tensor | None = None,
    probe: GateProbe | None = None,
    act: Activation = torch.tanh,
    gate_act: Activation = torch.sigmoid,
    hidden_n: Callable[[Tensor], Tensor] | None = None,
) -> Tensor:
    r"""The GRU gate block (PyTorch/cuDNN "reset after" form): projections and state in, new ``h`` out.

    .. math::
        [r, z] = \sigma(\mathrm{norm}_{rz}(x_{rz} + h_{rz}) + b_{rz}), \quad
        n = \tanh(\mathrm{norm}_n(x_n + r \odot (h_n + b_{hn})) + b_n), \quad
        h' = (1 - z) \odot n + z \odot h

    Args:
        gx: ``W_x * x``, the input projection.
        gh: ``W_h * h``, the recurrent projection.
        h: the previous hidden state.
        norm_rz, norm_n: the joint norms of the ``[r, z]`` and ``n`` pre-activations. Default: none.
        bias: ``(3C,)``, ``[b_r, b_z, b_n]``. Default: none.
        bias_hn: ``(C,)``, the recurrent candidate bias inside ``r ⊙ (…)``. Default: none.
        probe: called with the sigmoid gates ``(r, z)``. Default: none.
        act, gate_act: the candidate and the gate nonlinearities. Default: ``tanh``, ``sigmoid``.
        hidden_n: the "reset before" form (Keras ``reset_after=False``, the TF1 ConvGRU cell): ``W_hn * (r ⊙ h)``
            as a function of ``r ⊙ h``; ``gh`` then holds only the ``[r, z]`` part. Default: none (reset after).

    Shape:
        - gx, gh: ``(B, 3C, *S)``; h: ``(B, C, *S)``.
        - Output: ``(B, C, *S)``.
    """
    C = h.shape[1]
    a_rz = gx[:, : 2 * C] + gh[:, : 2 * C]  # (B, 2C, *S)
    if norm_rz is not None:
        a_rz = norm_rz(a_rz)
    if bias is not None:
        a_rz = a_rz + _channel_view(bias[: 2 * C], a_rz)
    r, z = gate_act(a_rz).chunk(2, dim=1)  # each (B, C, *S)
    if probe is not None:
        probe((r, z))
    if hidden_n is not None:
        a_n = gx[:, 2 * C :] + hidden_n(r * h)  # reset before: (B, C, *S)
    else:
        h_n = gh[:, 2 * C :]
        if bias_hn is not None:
            h_n = h_n + _channel_view(bias_hn, h_n)
        a_n = gx[:, 2 * C :] + r * h_n  # (B, C, *S)
    if norm_n is not None:
        a_n = norm_n(a_n)
    if bias is not None:
        a_n = a_n + _channel_view(bias[2 * C :], a_n)
    n = act(a_n)
    return n + z * (h - n)  # (1 - z) * n + z * h
