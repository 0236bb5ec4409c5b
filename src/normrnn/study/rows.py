"""The one schema of a study's result row: :class:`ResultRow`, each field with its type, nullability, unit and
direction. The training loop writes it, :func:`~normrnn.study.results.load_results` checks every row it reads
against it, the report refuses rows that lack its required fields, and the aggregation averages its ``mean_ci``
fields. Adding a metric is one field here and the line of ``train.py`` that computes it."""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from typing import Any

__all__ = ["FIELDS", "REQUIRED", "SUMMARIZED", "Field", "ResultRow", "row_problem"]


def _meta(unit: str = "", better: str | None = None, *, required: bool = False, summary: str | None = None,
          omit_none: bool = False) -> dict[str, Any]:
    """A field's metadata: ``unit``; ``better``: "lower" | "higher" | None; ``required``: a row without it cannot be
    reported; ``summary="mean_ci"``: aggregated as a mean with its 95% interval; ``omit_none``: left out of the
    written row when ``None`` (its presence means something)."""
    return {"unit": unit, "better": better, "required": required, "summary": summary, "omit_none": omit_none}


@dataclass(frozen=True, kw_only=True)
class ResultRow:
    """One finished run, as ``results.jsonl`` holds it (one JSON object per line, in this field order)."""

    run_id: str = field(metadata=_meta())  # e.g. group-8_residual_d2_s0_lr1
    study: str = field(metadata=_meta())  # the config's name
    config_hash: str = field(metadata=_meta())  # the study the row belongs to
    cell: str = field(metadata=_meta())
    norm: str = field(metadata=_meta(required=True))
    topology: str = field(metadata=_meta(required=True))
    depth: int = field(metadata=_meta(required=True))
    seed: int = field(metadata=_meta())
    lr_mult: float = field(metadata=_meta(required=True))
    test_mse: float | None = field(metadata=_meta("MSE", "lower", required=True, summary="mean_ci"))
    test_mae: float | None = field(metadata=_meta("MAE", "lower", summary="mean_ci"))
    test_ssim: float | None = field(metadata=_meta("", "higher", summary="mean_ci"))
    test_psnr: float | None = field(metadata=_meta("dB", "higher", summary="mean_ci"))
    train_mse: float | None = field(metadata=_meta("MSE", "lower", summary="mean_ci"))
    diverged: bool = field(metadata=_meta(required=True))
    diverged_step: int | None = field(metadata=_meta("step"))
    step_time_s: float | None = field(metadata=_meta("s", "lower"))  # median; sequential runs: noisy, see cost.json
    peak_mem_mb: float | None = field(metadata=_meta("MB", "lower"))
    loss_spikes: int | None = field(metadata=_meta("steps", "lower"))
    grad_norm_mean: float | None = field(metadata=_meta())
    grad_norm_max: float | None = field(metadata=_meta())
    gate_saturation: list[float] | None = field(metadata=_meta("fraction", "lower"))  # per probed cell
    gate_saturation_mean: float | None = field(metadata=_meta("fraction", "lower"))
    params: int = field(metadata=_meta("parameters"))
    epochs: int = field(metadata=_meta("epochs"))
    train_curve: list[float] | None = field(metadata=_meta("MSE", "lower"))  # per epoch
    val_curve: list[float] | None = field(metadata=_meta("MSE", "lower"))  # per epoch
    val_steps: list[int] = field(metadata=_meta("step"))  # the step of each val_curve point
    plateau: bool | None = field(metadata=_meta())
    val_mse: float | None = field(metadata=_meta("MSE", "lower", summary="mean_ci"))
    learn_floor_loss: float | None = field(metadata=_meta())
    steps_to_learn: int | None = field(metadata=_meta("steps", "lower"))
    learn_floor_note: str | None = field(default=None, metadata=_meta(omit_none=True))  # why no steps_to_learn
    gate_saturation_curve: list[float] = field(metadata=_meta("fraction", "lower"))  # per epoch
    precision: str = field(metadata=_meta())  # fp32 | bf16
    processes: int = field(default=1, metadata=_meta())  # data-parallel ranks that trained it

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


def _json_types(annotation: object) -> tuple[tuple[type, ...], bool]:
    """The JSON value types of an annotation (``float`` takes ints too, ``list[...]`` is a list) and whether it
    takes ``None``."""
    hint = typing.get_type_hints(ResultRow)[annotation] if isinstance(annotation, str) else annotation
    args = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    kinds = tuple(typing.get_origin(a) or a for a in args if a is not type(None))
    if float in kinds:  # JSON writes 3.0 as 3.0 but a user's 3 as 3
        kinds = (int, *kinds)
    return kinds, type(None) in args


FIELDS: tuple[Field, ...] = tuple(
    Field(f.name, *_json_types(f.name), f.metadata["unit"], f.metadata["better"], f.metadata["required"],
          f.metadata["summary"]) for f in dataclasses.fields(ResultRow))
"""Every field of :class:`ResultRow`, in order, with what the reader checks."""

REQUIRED = tuple(f.name for f in FIELDS if f.required)
"""What a row must have to be reported."""

SUMMARIZED = tuple(f.name for f in FIELDS if f.summary == "mean_ci")
"""The metrics aggregated as a mean with its 95% interval."""


def row_problem(row: object) -> str | None:
    """Why ``row`` is not a usable result row, or ``None``. Rows of other writers (tests, older versions) may lack
    fields; a field that is there must have its type (a string ``test_mse`` would crash the report)."""
    if not isinstance(row, dict) or not isinstance(row.get("run_id"), str) or not row["run_id"]:
        return "not a result row (expected a JSON object with a 'run_id')"
    for f in FIELDS:
        if f.name not in row:
            continue
        value = row[f.name]
        if value is None:
            if not f.nullable:
                return f"run {row['run_id']!r} has {f.name}=None, expected {_names(f.types)}"
        elif not isinstance(value, f.types) or (isinstance(value, bool) and bool not in f.types):
            return f"run {row['run_id']!r} has {f.name}={value!r}, expected {_names(f.types)}"
    return None


def _names(kinds: tuple[type, ...]) -> str:
    return " or ".join(dict.fromkeys(k.__name__ for k in kinds))
