"""The package's layering, as docs/architecture.md states it: every import (at module level or inside a function;
``if TYPE_CHECKING:`` blocks aside, they never run) goes to a lower layer, and ``normrnn report`` loads no training
code."""

from __future__ import annotations

import ast
import importlib
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
    ("norms", "data", "profiling"),
    ("kernels",),
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


# what `normrnn report` may load of normrnn: the command line (normrnn.cli and each subcommand's module, which
# registers it and imports lazily), and the study's names, rows and report side
REPORT_MAY_LOAD = {
    "normrnn", "normrnn._checks", "normrnn._io", "normrnn._loader", "normrnn.study", "normrnn.study.aggregate",
    "normrnn.study.config", "normrnn.study.findings", "normrnn.study.names", "normrnn.study.plots",
    "normrnn.study.precision", "normrnn.study.report", "normrnn.study.results", "normrnn.study.rows",
    "normrnn.study.tables", "normrnn.study.thresholds", "normrnn.study.validation",
}
HEAVY = ("torch", "triton", "ray", "tensorboard")  # what the report side never imports


class _Refuse:
    """A meta-path finder that records every normrnn module imported, and refuses the heavy packages."""

    def __init__(self) -> None:
        self.loaded: set[str] = set()
        self.refused: list[str] = []

    def find_spec(self, name: str, path: object = None, target: object = None) -> None:
        if name.split(".")[0] in HEAVY:
            self.refused.append(name)
            raise ImportError(f"the report side imported {name}")
        if name.split(".")[0] == "normrnn":
            self.loaded.add(name)


def test_the_report_loads_only_its_allow_list_and_no_torch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """``normrnn report`` on the committed converge rows, in this process with normrnn and the heavy packages
    unloaded: it writes its report, loads only :data:`REPORT_MAY_LOAD` of normrnn, and never imports torch (a finder
    refuses it). Everything is put back afterwards, so the other tests keep their modules."""
    saved = {name: module for name, module in sys.modules.items()
             if name.split(".")[0] in ("normrnn", *HEAVY)}
    finder = _Refuse()
    monkeypatch.setenv("MPLBACKEND", "Agg")
    for name in saved:
        del sys.modules[name]
    sys.meta_path.insert(0, finder)
    try:
        cli = importlib.import_module("normrnn.cli")
        code = cli.main(["report", str(ROOT / "results" / "converge"), "--out", str(tmp_path)])
    finally:
        sys.meta_path.remove(finder)
        for name in [n for n in sys.modules if n.split(".")[0] in ("normrnn", *HEAVY)]:
            del sys.modules[name]
        sys.modules.update(saved)
    assert code == 0 and (tmp_path / "report.md").exists()
    assert not finder.refused, finder.refused
    loaded = {m for m in finder.loaded if m != "normrnn.cli" and not m.startswith("normrnn.cli.")}
    assert loaded <= REPORT_MAY_LOAD, sorted(loaded - REPORT_MAY_LOAD)


def _all_imports(path: Path) -> set[str]:
    """Every normrnn module ``path`` imports, at module level, inside functions and under ``TYPE_CHECKING``, as the
    module (or package) it names: ``from .x import y`` is ``x.y`` where that is a module, else ``x``."""
    modules = {_module_name(p) for p in PACKAGE.rglob("*.py")}
    tree = ast.parse(path.read_text())
    package = _module_name(path) if path.name == "__init__.py" else _module_name(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            target = ".".join(base + ([node.module] if node.module else []))
            names = [f"{target}.{a.name}" if f"{target}.{a.name}" in modules else target for a in node.names]
        else:
            continue
        for name in names:
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name:
                found.add(name)
    return found - {_module_name(path)}


def test_no_import_circle_even_in_functions_or_type_checking() -> None:
    """No module reaches itself through the imports of others, counting every kind of import (Tarjan's strongly
    connected components of the import graph: each must be one module)."""
    graph = {_module_name(p): _all_imports(p) for p in PACKAGE.rglob("*.py")}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    circles: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        for w in graph[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                circles.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    assert not circles, circles


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


# module names that recur, each with its one meaning: the same thing at two levels or in each package
SHARED_NAMES = {
    "base.py": "a package's base class (norms: Norm; cells: RecurrentCell)",
    "registry.py": "a package's registry (norm specs, gate backends, subcommands)",
    "options.py": "the keyword options, as TypedDicts, of cells (cells/) and of layers (layers/)",
}


def test_no_two_modules_share_a_name_but_the_documented_mirrors() -> None:
    """``data.py``, ``precision.py`` and ``checks.py`` once each meant two things; a name used twice now means one
    thing, listed in :data:`SHARED_NAMES`; or is one recurrent family as a cell and as its layer (``cells/lstm.py``
    beside ``layers/lstm.py``), or the study's code and the subcommand that runs it (``study/report.py`` beside
    ``cli/report.py``)."""
    seen: dict[str, list[str]] = {}
    for path in PACKAGE.rglob("*.py"):
        if path.name != "__init__.py":
            seen.setdefault(path.name, []).append(str(path.relative_to(PACKAGE)))
    mirrors = (("cells/{}", "layers/{}"), ("cli/{}", "study/{}"))
    twice = {name: sorted(paths) for name, paths in seen.items()
             if len(paths) > 1 and not any(sorted(paths) == [m.format(name) for m in pair] for pair in mirrors)}
    assert set(twice) <= set(SHARED_NAMES), {n: p for n, p in twice.items() if n not in SHARED_NAMES}
