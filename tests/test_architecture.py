"""The package's layering, as docs/architecture.md states it: every import (at module level or inside a function;
``if TYPE_CHECKING:`` blocks aside, they never run) goes to a lower layer, and ``normrnn report`` loads no training
code."""

from __future__ import annotations

import ast
import importlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "src" / "normrnn"

# lowest first; a unit may import its own modules and those of lower layers only
LAYERS = (
    ("_checks",),
    ("_io", "_loader"),
    ("norms", "kernels", "data", "profiling"),
    ("cells",),
    ("layers",),
    ("interop", "auditing", "bench"),
    ("study",),
    ("cli", "gpu_check"),
    ("__main__",),
)
LAYER = {unit: i for i, units in enumerate(LAYERS) for unit in units}
ROOT_NAMES = {"__version__"}  # what any module may take from normrnn/__init__.py (which itself imports lazily)


def _module_name(path: Path) -> str:
    parts = ("normrnn", *path.relative_to(PACKAGE).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    return {id(node) for block in ast.walk(tree)
            if isinstance(block, ast.If) and "TYPE_CHECKING" in ast.unparse(block.test)
            for node in ast.walk(block)}


def _imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module or ``normrnn.NAME``) for every runtime import of normrnn in ``path``."""
    tree = ast.parse(path.read_text())
    skip = _type_checking_nodes(tree)
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names if a.name.split(".")[0] == "normrnn"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] == "normrnn":
                found += [(node.lineno, target if node.module else f"{target}.{a.name}") for a in node.names]
    return found


def _unit(module: str) -> str:
    """The top-level unit of ``normrnn.X.Y``: ``X``, or ``normrnn`` for a name of the root package."""
    parts = module.split(".")
    if len(parts) == 1:
        return "normrnn"
    exists = (PACKAGE / parts[1]).is_dir() or (PACKAGE / f"{parts[1]}.py").is_file()
    return parts[1] if exists else "normrnn"


def test_every_module_belongs_to_a_documented_layer() -> None:
    units = {_unit(_module_name(p)) for p in PACKAGE.rglob("*.py")} - {"normrnn"}
    assert units == set(LAYER), f"add the new unit to LAYERS and docs/architecture.md: {units ^ set(LAYER)}"


def test_nothing_imports_upwards() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        source = _unit(_module_name(path))
        if source == "normrnn":
            continue
        for line, target in _imports(path):
            unit = _unit(target)
            if unit == "normrnn":
                ok = target.rpartition(".")[2] in ROOT_NAMES
            else:
                ok = unit == source or LAYER[unit] < LAYER[source]
            if not ok:
                wrong.append(f"{path.relative_to(ROOT)}:{line} ({source}) imports {target}")
    assert not wrong, "imports against the layer order:\n" + "\n".join(wrong)


def test_the_architecture_page_states_the_tested_order() -> None:
    page = (ROOT / "docs" / "architecture.md").read_text()
    order = " < ".join(", ".join(f"`{u}`" for u in units) for units in LAYERS)
    assert order in page


@pytest.mark.slow
def test_the_report_loads_no_training_code(tmp_path: Path) -> None:
    """``normrnn report`` on the committed converge rows: its process never imports training, models, executors or
    the process-group code."""
    probe = ("import sys; from normrnn.cli import main; "
             f"code = main(['report', {str(ROOT / 'results' / 'converge')!r}, '--out', {str(tmp_path)!r}]); "
             "print(code); print(' '.join(sorted(m for m in sys.modules if m.startswith('normrnn'))))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=300,
                          env={**os.environ, "MPLBACKEND": "Agg"}, cwd=tmp_path)
    code, modules = done.stdout.strip().splitlines()[-2:]
    assert code == "0", done.stderr
    training = {"normrnn.study.train", "normrnn.study.runner", "normrnn.study.executors", "normrnn.study.model",
                "normrnn.study.distributed", "normrnn.study.preflight", "normrnn.layers"}
    assert (tmp_path / "report.md").exists()
    assert training.isdisjoint(modules.split()), sorted(training & set(modules.split()))


@pytest.mark.parametrize("package", ["normrnn", "normrnn.study"])
def test_the_package_names_are_one_list_that_type_checkers_see_too(package: str) -> None:
    """``__all__`` and the lazy loader come from ``_EXPORTS``; the ``TYPE_CHECKING`` imports (what IDEs and mypy see)
    import exactly those names from exactly those submodules, and each name loads."""
    module = importlib.import_module(package)
    assert module.__file__ is not None
    tree = ast.parse(Path(module.__file__).read_text())
    static = {(node.module, alias.name) for node in ast.walk(tree) if id(node) in _type_checking_nodes(tree)
              and isinstance(node, ast.ImportFrom) for alias in node.names}
    exported = {(sub, name) for sub, names in module._EXPORTS.items() for name in names}
    assert static == exported
    assert set(module.__all__) - {"__version__"} == {name for _, name in exported}
    assert all(getattr(module, name) is not None for name in module.__all__)
    assert set(dir(module)) >= set(module.__all__)

def test_no_module_over_400_lines_and_no_function_over_60() -> None:
    """The sizes past which a module becomes a package and a function gets split."""
    long_modules, long_functions = [], []
    for path in sorted(PACKAGE.rglob("*.py")):
        text = path.read_text()
        if len(text.splitlines()) > 400:
            long_modules.append(f"{path.relative_to(ROOT)}: {len(text.splitlines())} lines")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.end_lineno is not None:
                start = min([node.lineno] + [d.lineno for d in node.decorator_list])
                if node.end_lineno - start + 1 > 60:
                    long_functions.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name}")
    assert not long_modules and not long_functions, (long_modules, long_functions)


def test_a_test_not_marked_slow_cannot_start_a_process() -> None:
    """The conftest guard: subprocess and multiprocessing refuse here (this test is not marked slow), before any
    process starts."""
    import multiprocessing

    with pytest.raises(pytest.fail.Exception, match="not marked slow"):
        subprocess.run([sys.executable, "-c", "pass"], check=True)
    with pytest.raises(pytest.fail.Exception, match="not marked slow"):
        multiprocessing.get_context("spawn").Process(target=print).start()
    with pytest.raises(pytest.fail.Exception, match="not marked slow"), \
            multiprocessing.get_context("spawn").Pool(1):
        pass


@pytest.mark.slow
def test_a_slow_test_may_start_a_process() -> None:
    done = subprocess.run([sys.executable, "-c", "print(6 * 7)"], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "42"
