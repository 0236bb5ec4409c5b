"""The grid of runs a study config expands to: one :class:`RunSpec` per cell, the successive-halving search that
grows it as runs finish, and the shards that split it between machines."""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from .config import StudyConfig
from .names import TOPOLOGIES
from .validation import MAX_SEED, canonical_norm, choice, integer, mult_token, norm_spec, norm_token, number

__all__ = ["RunSpec", "expand_grid", "halving_winner", "parse_shard", "planned_runs", "shard"]


@dataclass(frozen=True)
class RunSpec:
    """One cell of the grid."""

    norm: str
    topology: str
    depth: int
    seed: int
    lr_mult: float

    def __post_init__(self) -> None:
        norm_spec("norm", self.norm)
        object.__setattr__(self, "norm", canonical_norm(self.norm))
        choice("topology", self.topology, TOPOLOGIES)
        integer("depth", self.depth, minimum=1)
        integer("seed", self.seed, minimum=0, maximum=MAX_SEED)
        number("lr_mult", self.lr_mult, minimum=0.0, strict=True)

    @property
    def run_id(self) -> str:
        """A file-name-safe, unique name, e.g. ``group-8_residual_d2_s0_lr1``."""
        return f"{norm_token(self.norm)}_{self.topology}_d{self.depth}_s{self.seed}_lr{mult_token(self.lr_mult)}"


def expand_grid(config: StudyConfig, rows: Sequence[dict[str, Any]] = ()) -> list[RunSpec]:
    """Every run known so far, in a fixed order: seeds outermost, so a partial study already covers every variant.

    With ``lr_search = "halving"`` the first seed runs every LR multiplier; once all of a variant's first-seed
    runs are in ``rows`` (finished result rows), the other seeds follow at the multiplier whose run has the
    lowest validation MSE (diverged runs never win; if all diverged, the smallest multiplier). Call again with
    more rows to get more runs.
    """
    grid = [RunSpec(norm, topo, depth, seed, float(mult))
            for seed, mult, depth, topo, norm in itertools.product(
                config.seeds, config.lr_mults, config.depths, config.topologies, config.norms)]
    if config.lr_search == "grid" or len(config.lr_mults) == 1:
        return grid
    first = [s for s in grid if s.seed == config.seeds[0]]
    done = {r["run_id"]: r for r in rows}
    later = []
    for key in dict.fromkeys((s.norm, s.topology, s.depth) for s in first):
        candidates = [s for s in first if (s.norm, s.topology, s.depth) == key]
        if all(s.run_id in done for s in candidates):
            mult = halving_winner([done[s.run_id] for s in candidates])
            later += [RunSpec(*key, seed, mult) for seed in config.seeds[1:]]
    return first + sorted(later, key=lambda s: config.seeds.index(s.seed))


def halving_winner(rows: Sequence[dict[str, Any]]) -> float:
    """The LR multiplier of the row with the lowest final validation MSE; diverged rows never win."""
    def score(r: dict[str, Any]) -> tuple[float, float]:
        val = r.get("val_mse")
        if r.get("diverged") or not isinstance(val, (int, float)) or not math.isfinite(val):
            val = math.inf
        return (val, r["lr_mult"])

    return float(min(rows, key=score)["lr_mult"])


def planned_runs(config: StudyConfig) -> list[RunSpec]:
    """What the whole study will run, for estimates: with halving, the later seeds are counted at the first
    multiplier (which one wins is not known yet; a run costs the same at any multiplier)."""
    grid = expand_grid(dataclasses.replace(config, lr_search="grid"))
    if config.lr_search == "grid" or len(config.lr_mults) == 1:
        return grid
    return [s for s in grid if s.seed == config.seeds[0] or s.lr_mult == config.lr_mults[0]]


def shard(specs: Sequence[RunSpec], index: int, count: int) -> list[RunSpec]:
    """Shard ``index`` of ``count`` (0-based): every ``count``-th run starting at ``index``.

    The shards are disjoint and together hold every run once; dealing round-robin from the seed-major grid
    gives each shard a similar mix of variants (and so of run times). For a Slurm array, ``index`` is
    ``$SLURM_ARRAY_TASK_ID`` with ``--array=0-(count-1)``.

    Example::

        >>> grid = expand_grid(StudyConfig(norms=("none", "layer", "rms"), topologies=("stacked",)))
        >>> [s.norm for s in shard(grid, 1, 2)]
        ['layer']
    """
    if not (isinstance(count, int) and count >= 1 and isinstance(index, int) and 0 <= index < count):
        raise ValueError(f"expected a shard I/N with 0 <= I < N, got {index}/{count}")
    return list(specs[index::count])


def parse_shard(text: str) -> tuple[int, int]:
    """``"I/N"`` as ``(I, N)``, checked."""
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", text)
    if not match:
        raise ValueError(f"expected --shard I/N such as 0/4, got {text!r}")
    index, count = int(match[1]), int(match[2])
    shard([], index, count)  # the range check
    return index, count


