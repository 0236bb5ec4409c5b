"""What the audit records: a norm's use in the forward pass, and the findings about it."""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Finding", "NormUse"]


@dataclass(frozen=True)
class Finding:
    """One mistake: the module's dotted path (as in ``named_modules()``), a short code, and what to do."""

    module: str
    code: str  # e.g. 'gates-share-statistics'
    message: str


@dataclass
class NormUse:
    """What one norm module saw in the audited forward pass, and what it computes there."""

    path: str
    cls: str
    shapes: list[tuple[int, ...]] = field(default_factory=list)  # input shape of every call
    training: bool = False
    running_stats: bool = False  # keeps running averages
    per_step: bool = False  # keeps them per time step (normrnn recurrent_batch)
    layout: str = "?"  # inferred letters of the first input, "?" per unknown axis
    ambiguous: str = ""  # why the layout could not be told, when it could not
    reduce: str = ""  # reduced letters
    stats_shape: tuple[int, ...] = ()
    param_shape: tuple[int, ...] = ()
    param_letters: str = ""  # the axes the parameters span, e.g. "C" or "CHW"
    spec: str = ""  # the equivalent normrnn spec
    fixed_sizes: str = ""  # how the input's sizes differ from those its parameters fix, when they do

    @property
    def calls(self) -> int:
        return len(self.shapes)
