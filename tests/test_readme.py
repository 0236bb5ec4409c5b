"""The README's Python examples run as written: they are the public API's first test."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

_README = Path(__file__).resolve().parents[1] / "README.md"
_BLOCKS = re.findall(r"```python\n(.*?)```", _README.read_text(), flags=re.S)


@pytest.mark.parametrize("code", _BLOCKS, ids=[f"block{i}" for i in range(len(_BLOCKS))])
def test_readme_python_block_runs(code: str) -> None:
    exec(compile(code, str(_README), "exec"), {"__name__": "readme"})


def test_readme_has_python_examples() -> None:
    assert _BLOCKS, "expected at least one ```python block in README.md"
