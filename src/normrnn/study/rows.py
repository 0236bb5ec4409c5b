"""The one schema of a study's result row: :class:`ResultRow`, each field with its type, nullability, unit and
direction. The training loop writes it, :func:`~normrnn.study.results.load_results` checks every row it reads
against it, the report refuses rows that lack its required fields, and the aggregation averages its ``mean_ci``
fields. Adding a metric is one field here and the line of ``train.py`` that computes it."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = ["COLUMNS", "FIELDS", "REQUIRED", "SUMMARIZED", "TOPOLOGIES", "Field", "ResultRow", "row_problem"]

from .names import TOPOLOGIES


def _meta(unit: str = "", better: str | None = None, *, required: bool = False, summary: str | None = None,
          omit_none: bool = False, minimum: float | None = None, strict: bool = False,
          choices: tuple[str, ...] | None = None, column: str | None = None, digits: int = 2,
          where_measured: bool = False) -> dict[str, Any]:
    """A field's metadata: ``unit``; ``better``: "lower" | "higher" | None; ``required``: a row without it cannot be
    reported; ``summary="mean_ci"``: aggregated as a mean with its 95% interval; ``omit_none``: left out of the
    written row when ``None`` (its presence means something); ``minimum`` (``strict``: excluded) and ``choices``:
    the values the reader accepts (of each item, for a list); ``column``: its heading in the report's accuracy
    table, with ``digits`` decimals, shown only where some variant has it when ``where_measured``."""
    return {"unit": unit, "better": better, "required": required, "summary": summary, "omit_none": omit_none,
            "minimum": minimum, "strict": strict, "choices": choices, "column": column, "digits": digits,
            "where_measured": where_measured}




@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One finished run, as ``results.jsonl`` holds it (one JSON object per line, in this field order)."""

    run_id: str = field(metadata=_meta())  # e.g. group-8_residual_d2_s0_lr1
    study: str = field(metadata=_meta())  # the config's name
    config_hash: str = field(metadata=_meta())  # the study the row belongs to
    cell: str | None = field(metadata=_meta())  # None: a model factory that does not take the setting
    norm: str = field(metadata=_meta(required=True))
    topology: str = field(metadata=_meta(required=True, choices=TOPOLOGIES))
    depth: int = field(metadata=_meta(required=True, minimum=1))
    seed: int = field(metadata=_meta(minimum=0.0))
    lr_mult: float = field(metadata=_meta(required=True, minimum=0.0, strict=True))
    # the test metrics, one per field of metrics.TestMetrics (test_NAME); each a column of the accuracy table
    test_mse: float | None = field(metadata=_meta("MSE", "lower", required=True, summary="mean_ci", minimum=0.0,
                                                  column="test MSE"))
    test_mae: float | None = field(metadata=_meta("MAE", "lower", summary="mean_ci", minimum=0.0, column="test MAE"))
    test_ssim: float | None = field(metadata=_meta("", "higher", summary="mean_ci", minimum=-1.0, column="SSIM",
                                                   digits=3, where_measured=True))  # frame targets only
    test_psnr: float | None = field(metadata=_meta("dB", "higher", summary="mean_ci", column="PSNR",
                                                   where_measured=True))
    train_mse: float | None = field(metadata=_meta("MSE", "lower", summary="mean_ci", minimum=0.0))
    diverged: bool = field(metadata=_meta(required=True))
    diverged_step: int | None = field(metadata=_meta("step", minimum=0.0))
    # the median step; sequential runs are noisy, see cost.json
    step_time_s: float | None = field(metadata=_meta("s", "lower", minimum=0.0))
    peak_mem_mb: float | None = field(metadata=_meta("MB", "lower", minimum=0.0))
    loss_spikes: int | None = field(metadata=_meta("steps", "lower", minimum=0.0))
    grad_norm_mean: float | None = field(metadata=_meta(minimum=0.0))
    grad_norm_max: float | None = field(metadata=_meta(minimum=0.0))
    gate_saturation: list[float] | None = field(metadata=_meta("fraction", "lower", minimum=0.0))  # per probed cell
    gate_saturation_mean: float | None = field(metadata=_meta("fraction", "lower", minimum=0.0))
    params: int = field(metadata=_meta("parameters", minimum=0.0))
    epochs: int = field(metadata=_meta("epochs", minimum=0.0))
    train_curve: list[float] | None = field(metadata=_meta("MSE", "lower"))  # per epoch; a custom loss may be < 0
    val_curve: list[float] | None = field(metadata=_meta("MSE", "lower", minimum=0.0))  # per epoch
    val_steps: list[int] = field(metadata=_meta("step", minimum=0.0))  # the step of each val_curve point
    plateau: bool | None = field(metadata=_meta())
    val_mse: float | None = field(metadata=_meta("MSE", "lower", summary="mean_ci", minimum=0.0))
    learn_floor_loss: float | None = field(metadata=_meta())
    steps_to_learn: int | None = field(metadata=_meta("steps", "lower", minimum=0.0))
    learn_floor_note: str | None = field(default=None, metadata=_meta(omit_none=True))  # why no steps_to_learn
    gate_saturation_curve: list[float] = field(metadata=_meta("fraction", "lower", minimum=0.0))  # per epoch
    precision: str = field(metadata=_meta(choices=("fp32", "bf16")))
    processes: int = field(default=1, metadata=_meta(minimum=1))  # data-parallel ranks that trained it
    # elements of the model's bias parameters (bias*); none at all makes the baseline "no norm", not "bias-only"
    bias_params: int | None = field(default=None, metadata=_meta("parameters", minimum=0.0, omit_none=True))

    def to_dict(self) -> dict[str, Any]:
        """The row as written: every field in order, less the ``omit_none`` ones that are ``None``."""
        return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)
                if not (f.metadata["omit_none"] and getattr(self, f.name) is None)}


@dataclass(frozen=True)
class Field:
    """A :class:`ResultRow` field as the reader checks it."""

    name: str
    types: tuple[type, ...]  # what a JSON value of it may be
    nullable: bool
    unit: str
    better: str | None
    required: bool
    summary: str | None
    items: tuple[type, ...] | None = None  # a list's item types (never None inside)
    minimum: float | None = None  # the least value (of each item), excluded when ``strict``
    strict: bool = False
    choices: tuple[str, ...] | None = None
    column: str | None = None  # its heading in the report's accuracy table
    digits: int = 2
    where_measured: bool = False  # the column only where some variant has a value

    def problem(self, value: object) -> str | None:
        """Why ``value`` (not ``None``) cannot be this field's, or ``None``."""
        if not _is(value, self.types):
            return f"expected {_names(self.types)}"
        for item in value if isinstance(value, list) else [value]:
            if isinstance(value, list) and (self.items is None or not _is(item, self.items)):
                return f"expected a list of {_names(self.items or ())}, holding {item!r}"
            if isinstance(item, (int, float)) and not isinstance(item, bool):
                if not math.isfinite(item):
                    return "expected a finite number"
                if self.minimum is not None and (item < self.minimum or (self.strict and item == self.minimum)):
                    return f"expected {'>' if self.strict else '>='} {self.minimum:g}"
            if self.choices is not None and item not in self.choices:
                return f"expected one of {', '.join(self.choices)}"
        return None


def _json_types(annotation: object) -> tuple[tuple[type, ...], bool, tuple[type, ...] | None]:
    """The JSON value types of an annotation (``float`` takes ints too, ``list[...]`` is a list), whether it takes
    ``None``, and a list's item types."""
    hint = typing.get_type_hints(ResultRow)[annotation] if isinstance(annotation, str) else annotation
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    json_types = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    if float in json_types:  # JSON writes 3.0 as 3.0 but a user's 3 as 3
        json_types = (int, *json_types)
    lists = [a for a in args if typing.get_origin(a) is list]
    items = _json_types(typing.get_args(lists[0])[0])[0] if lists else None
    return json_types, type(None) in args, items


def _is(value: object, json_types: tuple[type, ...]) -> bool:
    """``isinstance``, but JSON's ``true`` is no number."""
    return isinstance(value, json_types) and not (isinstance(value, bool) and bool not in json_types)


def _field(f: dataclasses.Field[Any]) -> Field:
    json_types, nullable, items = _json_types(f.name)
    m = f.metadata
    return Field(f.name, json_types, nullable, m["unit"], m["better"], m["required"], m["summary"], items, m["minimum"],
                 m["strict"], m["choices"], m["column"], m["digits"], m["where_measured"])


FIELDS: tuple[Field, ...] = tuple(_field(f) for f in dataclasses.fields(ResultRow))
"""Every field of :class:`ResultRow`, in order, with what the reader checks."""

REQUIRED = tuple(f.name for f in FIELDS if f.required)
"""What a row must have to be reported."""

SUMMARIZED = tuple(f.name for f in FIELDS if f.summary == "mean_ci")
"""The metrics aggregated as a mean with its 95% interval."""

COLUMNS = tuple(f for f in FIELDS if f.column is not None)
"""The metrics the report's accuracy table shows, in row order."""


def row_problem(row: object) -> str | None:
    """Why ``row`` is not a usable result row, or ``None``. Rows of other writers (tests, older versions) may lack
    fields; a field that is there must have its type (a string ``test_mse`` would crash the report)."""
    if not isinstance(row, dict) or not isinstance(row.get("run_id"), str) or not row["run_id"]:
        return "not a result row (expected a JSON object with a 'run_id')"
    for f in FIELDS:
        if f.name not in row:
            continue
        value = row[f.name]
        why = (None if f.nullable else f"expected {_names(f.types)}") if value is None else f.problem(value)
        if why is not None:
            return f"run {row['run_id']!r} has {f.name}={_short(value)}, {why}"
    return None


def _short(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _names(json_types: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(k.__name__ for k in json_types))
