"""``normrnn norms``: the norm specs with what each reduces, the layout letters, and the gate backends, from their
registries (a norm or backend registered by a plugin shows up too)."""

from __future__ import annotations

import argparse
import re

from .registry import subcommand

_NORMS_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn norms                                       # every spec, layout letter and gate backend",
    "normrnn norms --layout BTF                          # what each spec reduces on (B, T, F) sequences",
)
_SHAPES = {"B": 2, "T": 3, "C": 8, "F": 8, "D": 2, "H": 4, "W": 4, "L": 5}  # a small input to explain each spec on


@subcommand("norms", order=1, examples=_NORMS_EXAMPLES)
def _add_norms(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("norms", help="list the norm specs (and what each reduces), layout letters and gate backends")
    p.add_argument("--layout", default="BTCHW",
                   help="the input layout whose reduced axes to show, e.g. BTF, BCHW (default BTCHW)")
    p.set_defaults(func=_norms)


def norms_text(layout: str = "BTCHW") -> str:
    """The three registries as plain text: norm specs with the axes each reduces and keeps on ``layout``, the
    layout letters, and the gate backends."""
    from ..kernels import backend_names, get_backend
    from ..norms.explaining import explain
    from ..norms.layout import LETTER_NAMES, LETTERS, Layout
    from ..norms.registry import norm_entries

    letters = Layout.parse(layout).spelled
    shape = tuple(_SHAPES[c] for c in letters)
    spelled = str.maketrans("C", "F") if "F" in letters else None  # name the axes as the layout does

    def axes(text: str) -> str:
        return ", ".join(text.translate(spelled) if spelled else text)

    rows = [("spec", f"reduces on {letters}", "statistics per", "what it is")]
    for entry in norm_entries():
        try:
            e = explain(entry.name, layout=letters, shape=shape)
        except ValueError:  # a spec that does not take this layout
            reduced, kept = "(not on this layout)", "–"
        else:  # no reduced axes: no statistics at all
            reduced, kept = (axes(e.reduce), axes(e.stats_letters)) if e.reduce else ("nothing", "–")
        name = entry.usage + "".join(f" (or {a})" for a in entry.aliases)
        rows.append((name, reduced, kept, _summary(entry.cls.__doc__)))
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    lines = ["norm specs: norm=\"SPEC\" on cells and layers, create_norm(\"SPEC\", C, layout=...), norms = [...] in a "
             "study; case-insensitive", ""]
    lines += ["  " + "  ".join(cell.ljust(w) for cell, w in zip(r[:3], widths, strict=True)) + "  " + r[3]
              for r in rows]
    lines += ["", "layout letters (layout=\"BTCHW\" and the like; G in statistics is a channel group):", ""]
    lines += [f"  {c}  {LETTER_NAMES[c]}" for c in LETTERS]
    lines += ["", "gate backends: backend=\"NAME\" on cells and layers; \"auto\" picks the fastest that runs the cell",
              ""]
    width = max(len(n) for n in backend_names())
    lines += [f"  {n.ljust(width)}  {_summary(type(get_backend(n)).__doc__)}" for n in backend_names() if n != "auto"]
    return "\n".join(lines)


def _summary(doc: str | None) -> str:
    """A docstring's first sentence, its reStructuredText roles and literals as plain text."""
    first = " ".join((doc or "").strip().split("\n\n")[0].split())
    first = re.sub(r":\w+:`~?([^`]+)`", r"\1", first).replace("``", "")
    return re.split(r"(?<!et al)\.\s+", first)[0].rstrip(".")


def _norms(args: argparse.Namespace) -> int:
    print(norms_text(args.layout))
    return 0
