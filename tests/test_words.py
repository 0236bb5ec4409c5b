"""User-facing text speaks to users: no words only we understand, in the README, the docs, the changelog and every
string of the package (CLI output, messages and the docstrings the API reference is built from)."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", ROOT / "CHANGELOG.md", *sorted((ROOT / "docs").rglob("*.md"))]
SOURCES = sorted((ROOT / "src" / "normrnn").rglob("*.py"))

INTERNAL = {
    "a project document by its number": re.compile(r"\bseeds? 0\d\d\b", re.I),
    "a machine 'lent' to us": re.compile(r"\blent\b|\blend(s|ing)?\b", re.I),
}
ISSUE = re.compile(r"\bissues? (\d+)\b|(?<![\w/&])#(\d{2,})\b", re.I)


def _strings(path: Path) -> list[tuple[int, str]]:
    """Every string literal of a module, with its line."""
    return [(node.lineno, node.value) for node in ast.walk(ast.parse(path.read_text()))
            if isinstance(node, ast.Constant) and isinstance(node.value, str)]


def _texts() -> list[tuple[str, str]]:
    out = [(f"{p.relative_to(ROOT)}:{i}", line) for p in PAGES for i, line in enumerate(p.read_text().splitlines(), 1)]
    out += [(f"{p.relative_to(ROOT)}:{n}", text) for p in SOURCES for n, text in _strings(p)]
    return out


def problems(where: str, text: str) -> list[str]:
    """What in ``text`` a user cannot follow: internal names, and an issue number with no link to it."""
    found = [f"{where}: {what}: {m.group(0)!r}" for what, pattern in INTERNAL.items() for m in pattern.finditer(text)]
    for m in ISSUE.finditer(text):
        number = m.group(1) or m.group(2)
        if f"issues/{number}" not in text and f"pull/{number}" not in text:
            found.append(f"{where}: an issue without its link: {m.group(0)!r}")
    return found


def test_user_facing_text_has_no_words_only_we_understand() -> None:
    bad = [p for where, text in _texts() for p in problems(where, text)]
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize(("text", "flagged"), [
    ("as seed 003 and the paper discuss", True),
    ("no GPU has been lent to this project", True),
    ("see issue 12", True),
    ("TF-Addons #2143 discusses it", True),
    ("[TF-Addons issue 2143](https://github.com/tensorflow/addons/issues/2143)", False),
    ("seed 0 of 3, a lentil, issue a command", False),
])
def test_the_checker_flags_what_it_should(text: str, flagged: bool) -> None:
    assert bool(problems("x", text)) is flagged
