r"""Sequence layers: stacked, residual, bidirectional ConvLSTM, ConvGRU, LSTM and GRU, and PredRNN's ST-LSTM stack.

A layer loops a :mod:`normrnn.cells` cell over time, layer after layer, built by composition:
:func:`~normrnn.layers.recurrence.run_direction` (one cell, one direction) → :class:`Recurrence` (one
layer, one or two directions) → :class:`RecurrentLayer` (the stack):

- the input projection ``W_x * x`` of a whole sequence is one batched convolution (hoisted out of the
  time loop); only ``W_h * h`` and the gate block run per step;
- ``residual=True`` adds each layer's input to its output (through a 1×1 projection when the channels
  differ); ``bidirectional=True`` runs a second cell backwards and merges the two by ``"concat"`` or
  ``"sum"``; ``dropout`` drops between layers, ``recurrent_dropout`` is variational (one mask on ``h``
  per sequence, Gal & Ghahramani 2016);
- ``mask`` ``(B, T)`` (True = valid) or ``lengths`` ``(B,)`` handle variable-length sequences: the
  state is frozen where a step is padding, outputs there are zero, padding never enters batch statistics,
  and the backward direction starts at each sequence's own end;
- ``forward(x, state)`` takes and returns one state per layer, so calling a layer on consecutive chunks
  of a sequence, passing the state along, equals one call on the whole sequence;
- ``layer.cells()`` iterates the cells and ``layer.cell(k, d)`` picks one.

Nothing depends on the spatial size, so one module runs at any resolution. :class:`STLSTM` steps its layers
together instead (PredRNN's memory zigzags through them).
"""

from __future__ import annotations

from .gru import GRU, ConvGRU
from .lstm import LSTM, ConvLSTM
from .options import ConvGRULayerOptions, ConvLSTMLayerOptions, GRULayerOptions, LayerOptions, LSTMLayerOptions
from .recurrence import Recurrence, reverse_order, run_direction
from .stack import RecurrentLayer, layer_for
from .stlstm import STLSTM

__all__ = ["GRU", "LSTM", "STLSTM", "ConvGRU", "ConvGRULayerOptions", "ConvLSTM", "ConvLSTMLayerOptions",
           "GRULayerOptions", "LSTMLayerOptions", "LayerOptions", "Recurrence", "RecurrentLayer", "layer_for",
           "reverse_order", "run_direction"]
