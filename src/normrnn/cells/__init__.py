r"""Recurrent cells with first-class normalization: ConvLSTM and ConvGRU (1-D, 2-D, 3-D), LSTM and GRU.

The package: :mod:`.gates` (the gate math), :mod:`.projection` (convolutions and padding), :mod:`.base`
(:class:`RecurrentCell`: parameters, norms, states, the step), :mod:`.lstm` and :mod:`.gru`.

A cell computes **one step**; :mod:`normrnn.layers` loops over time. Every cell has the same parts:

- an input projection ``W_x * x`` (a convolution, or a matrix product for the dense cells), which layers
  hoist out of the time loop: :meth:`project_input` runs it on all steps at once;
- a recurrent projection ``W_h * h`` per step, with no bias;
- the **gate block** (:meth:`RecurrentCell.gate_block`, built on :func:`lstm_gates`, :func:`gru_gates`):
  pre-activations and state in, new state out, with the gate normalization, the nonlinearities and the
  state update. It is the one seam a gate backend (:mod:`normrnn.kernels`) replaces.

Gate order (the order of the channel blocks of ``W_x``, ``W_h`` and the bias), the same as PyTorch,
Keras and cuDNN:

- LSTM: ``i`` (input), ``f`` (forget), ``g`` (candidate, Keras' ``c``), ``o`` (output);
- GRU: ``r`` (reset), ``z`` (update), ``n`` (candidate).

Normalization placement
-----------------------
``norm`` is a spec string (``"layer"``, ``"group:8"``, ``"recurrent_batch"``, ...; see
:func:`normrnn.norms.create_norm`), a normrnn norm class (the same as its spec string: ``LayerNorm`` is
``"layer"``), or any other callable ``f(num_channels, **kwargs) -> module``. Such a *foreign* callable is
called as ``module(x)`` and sees the whole gate tensor: normrnn cannot know how to split its statistics
per gate, so ``norm_scope`` does not apply to it.

``norm_inputs`` says what is normalized:

- ``"joint"`` (default): ``norm(W_x*x + W_h*h)``, the normalization of the summed pre-activations of
  the TF1 ConvLSTM cell (carlthome/tensorflow-convlstm-cell, 2017-2022). It is one call per step. The GRU
  candidate's pre-activation ``W_xn*x + r ⊙ W_hn*h`` depends on ``r``, so a joint GRU normalizes
  ``[r, z]`` in one call and ``n`` in a second.
- ``"separate"``: ``norm(W_x*x) + norm(W_h*h) + b``, as in layer-normalized LSTMs (Ba, Kiros & Hinton
  2016, arXiv:1607.06450, eq. 20) and recurrent batch normalization (Cooijmans et al. 2016,
  arXiv:1603.09025, eq. 6). Both norms are built with ``center=False``: the bias ``b`` is the one shift,
  as in Cooijmans et al.; ``norm_kwargs={"center": True}`` keeps each norm's shift (OpenSTL's cell).

``norm_scope`` says which channels share a statistic:

- ``"per_gate"`` (default): each gate's channels are normalized on their own, as Ba et al. and the TF1
  cell do, in **one grouped call**: per-gate ``layer`` over ``(C, H, W)`` is ``GroupNorm`` with one group
  per gate on the gate tensor, per-gate ``group:G`` is ``GroupNorm`` with ``gates·G`` groups, per-gate
  ``rms`` is ``RMSNorm`` with one group per gate. ``batch``, ``recurrent_batch`` and ``instance`` are
  per-channel already.
- ``"all_gates"``: the gates are pooled into one statistic, as OpenSTL's ``LayerNorm([4C, H, W])`` does,
  with per-channel parameters (any resolution works); ``norm_kwargs={"param_axes": "CHW", "param_shape": (H, W)}``
  gives OpenSTL's per-position ones (:func:`normrnn.interop.convlstm_from_openstl` converts its cells).

``norm_cell`` (LSTM only) normalizes the cell state:

- ``"none"`` (default);
- ``"output"``: ``h = o ⊙ tanh(norm(c))`` while the carried ``c`` stays unnormalized (Ba et al., eq. 22);
- ``"carried"``: ``c = norm(c)`` is what the next step receives (TF contrib ``LayerNormBasicLSTMCell``).

When the gate norm learns a shift (β), the cell has no bias of its own, so the shift is never
duplicated; the forget bias is then written into β. Every normrnn norm receives the step's mask and
time-step index (``norm(x, mask, step=t)``; ``recurrent_batch`` uses the index). Peepholes (Gers &
Schmidhuber 2000) are per-channel weights added after the gate norm: ``i += w_ci ⊙ c_{t-1}``,
``f += w_cf ⊙ c_{t-1}``, ``o += w_co ⊙ c_t``.
"""


from .base import RecurrentCell
from .gate_norms import gate_norm
from .gates import GateProbe, LSTMState, gru_gates, lstm_gates
from .gru import ConvGRUCell, GRUCell
from .kinds import CellKind, cell_kind, cell_kinds, register_cell_kind
from .lstm import ConvLSTMCell, LSTMCell
from .options import CellOptions, ConvGRUOptions, ConvLSTMOptions, ConvOptions, GRUOptions, LSTMOptions
from .projection import Geometry, step_layout
from .states import CellState, LayerState
from .stlstm import STLSTMCell, STLSTMState, stlstm_gates

__all__ = [
    "CellKind",
    "CellOptions",
    "CellState",
    "ConvGRUCell",
    "ConvGRUOptions",
    "ConvLSTMCell",
    "ConvLSTMOptions",
    "ConvOptions",
    "GRUCell",
    "GRUOptions",
    "GateProbe",
    "Geometry",
    "LSTMCell",
    "LSTMOptions",
    "LSTMState",
    "LayerState",
    "RecurrentCell",
    "STLSTMCell",
    "STLSTMState",
    "cell_kind",
    "cell_kinds",
    "gate_norm",
    "gru_gates",
    "lstm_gates",
    "register_cell_kind",
    "step_layout",
    "stlstm_gates",
]
