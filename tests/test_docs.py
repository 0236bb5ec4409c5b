"""The Python examples of the README and of every page of the documentation site run as written: they are the
public API's first test. (``make docs`` checks the site's links and API reference; this runs its code.)"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_ROOT = Path(__file__).resolve().parents[1]
_PAGES = [_ROOT / "README.md", *sorted((_ROOT / "docs").rglob("*.md"))]
_BLOCKS = [(page, i, code) for page in _PAGES
           for i, code in enumerate(re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S))]


@pytest.mark.parametrize("page, index, code", _BLOCKS,
                         ids=[f"{page.relative_to(_ROOT)}:{i}" for page, i, _ in _BLOCKS])
def test_python_block_runs(page: Path, index: int, code: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # a block that writes files writes them here
    exec(compile(code, f"{page}:block{index}", "exec"), {"__name__": "docs"})


def test_readme_and_the_site_have_python_examples() -> None:
    pages = {page.name for page, _, _ in _BLOCKS}
    assert {"README.md", "getting-started.md"} <= pages, pages


_REFERENCE = {"normrnn": "normrnn", "norms": "normrnn.norms", "cells": "normrnn.cells", "layers": "normrnn.layers",
              "kernels": "normrnn.kernels", "interop": "normrnn.interop", "study": "normrnn.study",
              "audit": "normrnn.auditing"}


def test_the_site_builds_strict_with_an_anchor_for_every_public_name(tmp_path) -> None:
    import importlib
    import subprocess
    import sys

    pytest.importorskip("mkdocstrings_handlers.python")
    site = tmp_path / "site"
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
                          cwd=_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    for page, module in _REFERENCE.items():
        anchors = set(re.findall(r'id="([^"]+)"', (site / "reference" / page / "index.html").read_text()))
        missing = [n for n in importlib.import_module(module).__all__ if f"{module}.{n}" not in anchors]
        assert not missing, f"{module}: no anchor for {missing}"
