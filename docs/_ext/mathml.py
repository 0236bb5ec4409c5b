"""A MkDocs hook: the math that ``pymdownx.arithmatex`` marks (``generic: true``) becomes MathML at build time.

Browsers render MathML natively, so the site needs no JavaScript renderer and no network to show the cell
equations; ``latex2mathml`` converts each formula.
"""

from __future__ import annotations

import html
import re
from typing import Any

from latex2mathml.converter import convert

_DISPLAY = re.compile(r'<div class="arithmatex">\\\[(.*?)\\\]</div>', re.S)
_INLINE = re.compile(r'<span class="arithmatex">\\\((.*?)\\\)</span>', re.S)


def _mathml(tex: str, display: str) -> str:
    return convert(html.unescape(tex).strip(), display=display)


def on_page_content(content: str, **kwargs: Any) -> str:
    content = _DISPLAY.sub(lambda m: f'<div class="math">{_mathml(m.group(1), "block")}</div>', content)
    return _INLINE.sub(lambda m: _mathml(m.group(1), "inline"), content)
