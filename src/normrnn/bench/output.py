"""Rendering ``normrnn bench`` rows: a fixed-width table, and JSON with the configuration beside them."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from typing import Any

import torch

from .._io import atomic_write_text

__all__ = ["format_table", "write_json"]


_EXTRA_COLUMNS = (("ratio_vs_fp32", "x fp32", "{:.3f}"), ("ratio_vs_bias_backend", "x bias*", "{:.3f}"),
                  ("ratio_vs_naive", "x naive", "{:.3f}"),
                  ("ratio_vs_floor", "x floor", "{:.3f}"),
                  ("activation_mb", "act MB", "{:.1f}"), ("memory_ratio", "x mem", "{:.3f}"),
                  ("cuda_peak_mb", "peak MB", "{:.1f}"))


def format_table(rows: Sequence[dict[str, object]]) -> str:
    """A fixed-width table of benchmark rows, with the extra columns (naive, floor, memory) the rows have."""
    extra = [(k, title, fmt) for k, title, fmt in _EXTRA_COLUMNS if any(k in r for r in rows)]
    header = f"{'variant':<48} {'mode':<8} {'median ms':>10} {'min-max ms':>16} {'x ref':>6} {'ratio min-max':>14}"
    header += "".join(f" {title:>8}" for _, title, _ in extra)
    lines = [header, "-" * len(header)]
    for r in rows:
        ratio = "" if r["ratio"] is None else f"{r['ratio']:.3f}"
        ratio_span = "" if r["ratio"] is None else f"{r['ratio_min']:.2f}-{r['ratio_max']:.2f}"
        span = f"{r['min_ms']:.2f}-{r['max_ms']:.2f}"
        line = (f"{r['variant']:<48} {r['mode']:<8} {r['median_ms']:>10.3f} {span:>16} {ratio:>6} "
                f"{ratio_span:>14}")
        lines.append(line + "".join(f" {fmt.format(r[k]) if k in r else '':>8}" for k, _, fmt in extra))
    return "\n".join(lines)


def write_json(path: str, rows: Sequence[dict[str, object]], config: Any) -> None:
    """Write the rows and the configuration that produced them, atomically."""
    payload = {"config": asdict(config), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "rows": list(rows)}
    atomic_write_text(path, json.dumps(payload, indent=2) + "\n")
