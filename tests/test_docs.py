"""The Python examples of the README and of every page of the documentation site run as written: they are the
public API's first test. (``make docs`` checks the site's links and API reference; this runs its code.)"""

from __future__ import annotations

import itertools
import re
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # processes, a site build or an interpreter: make test-fast skips them

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


_RAW_MARKUP = re.compile(r":(?:class|func|meth|mod|data|attr|obj|exc|math):`|\.\. math::|\b[A-Z][a-z]+::(?:\s|<)")


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The site, built once with ``mkdocs build --strict`` (any warning fails it)."""
    import subprocess
    import sys

    pytest.importorskip("mkdocstrings_handlers.python")
    pytest.importorskip("latex2mathml")
    out = tmp_path_factory.mktemp("site")
    done = subprocess.run([sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
                          cwd=_ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    return out


def _reference_html(site: Path) -> dict[str, str]:
    return {p.parent.name: p.read_text() for p in (site / "reference").glob("*/index.html")}


def _entry(html: str, anchor: str) -> str:
    """The HTML of one API entry: from its heading to the next entry's heading."""
    start = html.index(">", html.index(f'id="{anchor}"'))  # past the entry's own heading tag
    end = html.find('class="doc doc-heading"', start)
    return html[start:end if end > 0 else len(html)]


def test_every_public_name_has_an_entry_and_every_class_its_signature(site: Path) -> None:
    import dataclasses
    import importlib
    import inspect

    pages = _reference_html(site)
    everything = "\n".join(pages.values())
    for module in _REFERENCE.values():
        mod = importlib.import_module(module)
        missing = [n for n in mod.__all__ if f'id="{module}.{n}"' not in everything]
        assert not missing, f"{module}: no entry for {missing}"
        for name in mod.__all__:
            obj = getattr(mod, name)
            constructed = inspect.isclass(obj) and not getattr(obj, "_is_protocol", False) and (
                dataclasses.is_dataclass(obj) or any(
                    "__init__" in vars(c) for c in obj.__mro__ if c.__module__.startswith("normrnn")))
            # a class whose constructor it inherits from torch or Python (Norm, a TypedDict, a warning) has none,
            # nor has a protocol (never constructed)
            if constructed:
                html = next(h for h in pages.values() if f'id="{module}.{name}"' in h)
                assert "doc-signature" in _entry(html, f"{module}.{name}"), f"{module}.{name} shows no signature"


def test_a_layer_shows_every_argument_with_its_default_in_one_place(site: Path) -> None:
    import inspect

    from normrnn.cells import ConvLSTMCell
    from normrnn.layers import RecurrentLayer

    entry = _entry(_reference_html(site)["layers"], "normrnn.layers.ConvLSTM")
    layer = inspect.signature(RecurrentLayer).parameters
    cell = inspect.signature(ConvLSTMCell).parameters
    wanted = [n for n in [*layer, *cell] if n not in ("cell_kwargs", "kwargs", "spatial_dims")]
    missing = [n for n in wanted if f"<code>{n}</code>" not in entry]
    assert not missing, f"ConvLSTM's entry lacks {missing}"
    assert "required" not in entry.split("<code>peephole</code>", 1)[1].split("</tr>", 1)[0]  # it has a default


def test_no_raw_docstring_markup_reaches_the_site_and_math_renders(site: Path) -> None:
    for page in site.rglob("*.html"):
        html = re.sub(r'<details class="mkdocstrings-source".*?</details>', "", page.read_text(), flags=re.S)
        html = re.sub(r"<code[^>]*>.*?</code>", "`code`", html, flags=re.S)  # a page may quote the markup as code
        text = re.sub(r"<[^>]+>", "", html)  # the text a reader sees, less the source listings
        raw = _RAW_MARKUP.findall(text)
        assert not raw, f"{page.relative_to(site)} shows raw markup {raw[:5]}"
    cells = _reference_html(site)["cells"]
    assert cells.count("<math") >= 3 and "arithmatex" not in cells  # the gate equations, as MathML


def test_every_study_setting_is_documented_with_its_allowed_values(site: Path) -> None:
    import dataclasses

    from normrnn.cells import cell_kinds
    from normrnn.data import DATASETS
    from normrnn.study import StudyConfig, config

    html = _reference_html(site)["study"]
    allowed = {"dataset": DATASETS, "cell": cell_kinds(spatial=True), "head": config.HEADS,
               "schedule": config.SCHEDULES, "precision": config.PRECISIONS, "lr_search": config.LR_SEARCHES,
               "topologies": config.TOPOLOGIES,
               "norm_inputs": ("joint", "separate"), "norm_scope": ("per_gate", "all_gates")}
    for field in dataclasses.fields(StudyConfig):
        entry = _entry(html, f"normrnn.study.StudyConfig.{field.name}")
        described = re.sub(r"<[^>]+>", "", entry.split("</div>", 2)[-1]).strip()
        assert len(described) > 10, f"StudyConfig.{field.name} has no description on the site"
        missing = [v for v in allowed.get(field.name, ()) if f"&quot;{v}&quot;" not in entry and f'"{v}"' not in entry]
        assert not missing, f"StudyConfig.{field.name}: the docs do not name {missing}"


_LIST = re.compile(r"^(?:[-*+]|\d+\.) ")


def _markdown_lines(page: Path) -> list[tuple[int, str]]:
    """The lines of a Markdown page outside code fences."""
    out, fenced = [], False
    for i, line in enumerate(page.read_text().splitlines(), 1):
        if line.lstrip().startswith("```"):
            fenced = not fenced
        elif not fenced:
            out.append((i, line))
    return out


@pytest.mark.parametrize("page", _PAGES, ids=[str(p.relative_to(_ROOT)) for p in _PAGES])
def test_lists_start_after_a_blank_line_and_nest_by_four_spaces(page: Path) -> None:
    """Python-Markdown joins a list glued to the paragraph above into that paragraph, and nests only by 4."""
    lines = _markdown_lines(page)
    for (_, before), (n, line) in itertools.pairwise(lines):
        if _LIST.match(line) and before.strip() and not _LIST.match(before.lstrip()) and not before.startswith(" "):
            raise AssertionError(f"{page.name}:{n}: a list glued to the line above; put a blank line before it")
        if re.match(r"^ {1,3}(?:[-*+]|\d+\.) ", line):
            raise AssertionError(f"{page.name}:{n}: a nested list indented by fewer than 4 spaces")


def test_the_study_guide_lists_every_preset_with_its_run_count() -> None:
    from normrnn.study import PRESETS
    from normrnn.study.grid import planned_runs

    text = (_ROOT / "docs" / "guides" / "study.md").read_text()
    rows = dict(re.findall(r"^\| `(\w+)` \| (\d+) \|", text, flags=re.M))
    assert set(rows) == set(PRESETS), "the preset table and PRESETS differ"
    for name, runs in rows.items():
        assert int(runs) == len(planned_runs(PRESETS[name])), name


def test_no_argument_with_a_default_is_shown_as_required(site: Path) -> None:
    import importlib
    import inspect

    pages = _reference_html(site)
    wrong = []
    for module in _REFERENCE.values():
        mod = importlib.import_module(module)
        for name in mod.__all__:
            obj = getattr(mod, name)
            html = next((h for h in pages.values() if f'id="{module}.{name}"' in h), None)
            if html is None or not (inspect.isclass(obj) or inspect.isfunction(obj)):
                continue
            try:
                parameters = inspect.signature(obj).parameters.values()
            except (TypeError, ValueError):  # a builtin's signature
                continue
            entry = _entry(html, f"{module}.{name}")
            for p in parameters:
                row = re.search(rf"<code>{p.name}</code>\s*</td>(.*?)</tr>", entry, flags=re.S)
                if row and p.default is not inspect.Parameter.empty and "<em>required</em>" in row.group(1):
                    wrong.append(f"{module}.{name}({p.name})")
    assert not wrong, f"shown as required but have defaults: {wrong}"


def test_the_site_publishes_pages_not_its_build_hooks(site: Path) -> None:
    assert not list(site.rglob("*.py")), "build hooks (docs/_ext) reached the site"
    assert (site / "index.html").exists()


def test_a_cell_shows_every_option_typed_and_no_private_base(site: Path) -> None:
    import inspect

    from normrnn import cells

    html = _reference_html(site)["cells"]
    for name in ("ConvLSTMCell", "ConvGRUCell", "LSTMCell", "GRUCell"):
        entry = _entry(html, f"normrnn.cells.{name}")
        assert "_LSTMBase" not in entry and "_GRUBase" not in entry, f"{name} shows a private base"
        for p in inspect.signature(getattr(cells, name)).parameters.values():
            row = re.search(rf"<code>{p.name}</code>\s*</td>\s*<td>(.*?)</td>", entry, flags=re.S)
            assert row, f"{name}'s table lacks {p.name}"
            assert re.sub(r"<[^>]+>|\s", "", row.group(1)), f"{name}({p.name}) shows no type"


def test_signatures_show_default_values_not_constant_names(site: Path) -> None:
    """``norms = DEFAULT_NORMS`` tells a reader nothing: the site spells the value out, as help() does."""
    from normrnn.study.config import DEFAULT_NORMS

    shown = []
    for name, html in _reference_html(site).items():
        for sig in re.findall(r'class="doc-signature.*?</pre>', html, flags=re.S):
            shown += [(name, m) for m in re.findall(r"=\s*([A-Z][A-Z0-9_]{2,})\b", re.sub(r"<[^>]+>", "", sig))]
    assert not shown, f"defaults shown by a constant's name: {shown}"
    study = re.sub(r"<[^>]+>", "", _entry(_reference_html(site)["study"], "normrnn.study.StudyConfig"))
    assert all(f'"{norm}"' in study for norm in DEFAULT_NORMS)
