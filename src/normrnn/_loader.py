"""``MODULE:NAME`` strings: checked, resolved to the object they name (the current directory first on the path, as
``python -m`` does), named back, and hashed with the source they import (so an edited factory is a different study).
Used by ``normrnn audit`` and by the study's model, data and loss factories; user code that calls ``sys.exit`` is a
one-line error, not an exit."""

from __future__ import annotations

import ast
import contextlib
import functools
import hashlib
import importlib
import importlib.machinery
import importlib.util
import inspect
import os
import sys
import sysconfig
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, cast

from ._checks import did_you_mean

__all__ = ["FactoryExit", "accepted", "check_text", "factory_name", "lazy_exports", "no_exit", "resolve",
           "source_hash"]


def _is_name(text: str) -> bool:
    """Whether ``text`` is ``MODULE:NAME`` with dotted identifiers on both sides (PEP 3131: ``ünï:build`` too)."""
    module, colon, attr = text.partition(":")
    return bool(colon) and all(part.isidentifier() for side in (module, attr) for part in side.split("."))


def check_text(key: str, value: object, *, builtins: tuple[str, ...] = ()) -> None:
    """A ``ValueError`` unless ``value`` is ``None``, one of ``builtins`` or a ``MODULE:NAME`` string."""
    if value is None or value in builtins or (isinstance(value, str) and _is_name(value)):
        return
    choices = "".join(f"{b!r}, " for b in builtins)
    raise ValueError(f"expected {key} to be {choices}a 'module:function' string such as 'mymodels:build'"
                     f"{' or None' if not builtins else ''}, got {value!r}")


class FactoryExit(ValueError):
    """A user's factory called ``sys.exit``: a one-line error like any other bad factory, never a silent exit."""


@contextlib.contextmanager
def no_exit(what: str) -> Iterator[None]:
    """Run a user's code: ``sys.exit`` inside it (at import or call time) is a :class:`FactoryExit` naming
    ``what``, not the end of the study with exit 0 and no message."""
    try:
        yield
    except SystemExit as e:
        raise FactoryExit(f"{what} called sys.exit({e.code!r}); a factory must return, not exit") from None


def _search_cwd() -> None:
    """Put the current directory first on ``sys.path``, as ``python -m`` does (a console script does not)."""
    cwd = os.getcwd()
    if cwd not in sys.path and "" not in sys.path:
        sys.path.insert(0, cwd)


def resolve(text: str, what: str) -> Callable[..., Any]:
    """The callable named by ``MODULE:NAME``; a one-line ``ValueError`` naming ``what`` if it cannot be had."""
    module_name, _, attr = text.partition(":")
    _search_cwd()
    try:
        with no_exit(f"{what} {text}"):
            module = importlib.import_module(module_name)
    except FactoryExit:
        raise
    except Exception as e:  # a missing module, or one that fails on import: either way, no factory
        raise ValueError(f"{what} {text}: cannot import {module_name!r} ({type(e).__name__}: {e}); the current "
                         "directory and PYTHONPATH are searched") from None
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise ValueError(f"{what} {text}: {module_name!r} has no {attr!r}{_why_missing(module, obj, part)}")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {text}: expected a callable, got {type(obj).__name__}")
    return cast(Callable[..., Any], obj)


def _why_missing(module: Any, obj: Any, part: str) -> str:
    """What to tell a user whose ``MODULE:NAME`` names nothing: the closest name there ("did you mean"), and, only
    when the module found is not a file of theirs (the standard library's or an installed package's), that it may
    shadow theirs."""
    names = [n for n in dir(obj) if not n.startswith("_")]
    hint = did_you_mean(part, names)
    where = getattr(module, "__file__", None)
    if where is not None and not _users(os.path.realpath(where)):
        hint += (f" (imported from {where}, which is not yours: a module of the standard library or another package "
                 "may shadow your file; rename it)")
    return hint


def factory_name(fn: Callable[..., Any]) -> str:
    """``MODULE:QUALNAME`` of a module-level callable, checked to resolve back to the same object."""
    text = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
    if "<" in text or not _is_name(text):
        raise ValueError(f"expected a function defined at module level (importable by name), got {fn!r}")
    if resolve(text, "factory") is not fn:
        raise ValueError(f"expected {text} to name {fn!r} when imported, but it names another object")
    return text


def _module_file(name: str) -> str | None:
    """The source file of module ``name`` (loaded or findable), or ``None``, found without importing anything:
    ``importlib.util.find_spec("pkg.mod")`` would run ``pkg/__init__.py``, and hashing must not run user code."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None) if module is not None else None
    if module is None and name != "__main__":
        path = getattr(_find_spec(name), "origin", None)
    return path if path and os.path.isfile(path) else None


def _find_spec(name: str) -> importlib.machinery.ModuleSpec | None:
    """The spec of ``name`` from the finders alone: the top-level package through every finder (an editable
    install's too), then each submodule inside its parent's folders; no package's ``__init__`` runs."""
    parts = name.split(".")
    try:
        spec = importlib.util.find_spec(parts[0])  # a top-level name: finding it imports nothing
    except (ImportError, ValueError):
        return None
    for i in range(1, len(parts)):
        if spec is None or not spec.submodule_search_locations:
            return None
        full = ".".join(parts[: i + 1])
        loaded = sys.modules.get(full)
        spec = loaded.__spec__ if loaded is not None else importlib.machinery.PathFinder.find_spec(
            full, list(spec.submodule_search_locations))
    return spec


def _imported_files(path: str, seen: set[str]) -> None:
    """Add to ``seen`` the user's files that ``path`` imports, and theirs, read from the source (the same answer in
    every process, whatever it has imported): wherever they are found (the current directory, ``PYTHONPATH``, an
    editable install), but not the standard library, installed packages or normrnn itself (:func:`_users`)."""
    try:
        tree = ast.parse(Path(path).read_bytes())
    except (OSError, SyntaxError, ValueError):
        return
    package = Path(path).parent
    for node in ast.walk(tree):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: resolve against the importing file's package directory
                parent = package
                for _ in range(node.level - 1):
                    parent = parent.parent
                candidates = [parent / Path(*base.split(".")) if base else parent]
                candidates += [c / alias.name for c in candidates[:1] for alias in node.names]
                for c in candidates:
                    for found in (c.with_suffix(".py"), c / "__init__.py"):
                        _add_file(str(found), seen)
                continue
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            file = _module_file(name) if name else None
            if file is not None:
                _add_file(file, seen)


def _add_file(path: str, seen: set[str]) -> None:
    resolved = os.path.realpath(path)
    if resolved in seen or not os.path.isfile(resolved) or not _users(resolved):
        return
    seen.add(resolved)
    _imported_files(resolved, seen)


@functools.cache
def _not_users() -> tuple[Path, ...]:
    """Folders whose files are nobody's edits: normrnn's package and the standard library."""
    stdlib = {sysconfig.get_path(key) for key in ("stdlib", "platstdlib")}
    return (Path(__file__).resolve().parent, *(Path(p).resolve() for p in stdlib if p))


def _users(path: str) -> bool:
    """Whether ``path`` is the user's code: not installed into site-packages (an editable install is the user's
    source folder, so it counts), not the standard library, not normrnn."""
    where = Path(path)
    installed = {"site-packages", "dist-packages"} & set(where.parts)
    return not installed and not any(where.is_relative_to(d) for d in _not_users())


def _key(path: str, root: Path) -> str:
    """A dependency's name in the hash, the same on every machine: its path under the factory's top-level folder,
    or under the ``sys.path`` entry it was found in."""
    if Path(path).is_relative_to(root):
        return os.path.relpath(path, root)
    entries = [Path(os.path.realpath(e or os.getcwd())) for e in sys.path]
    found = [e for e in entries if Path(path).is_relative_to(e)]
    return os.path.relpath(path, max(found, key=lambda e: len(e.parts))) if found else path


@functools.cache
def source_hash(text: str) -> str | None:
    """A short hash of ``MODULE:NAME``'s source: its module's file and every file of the user's that it imports,
    directly or not (:func:`_imported_files`), found and read without running any of them. ``None`` when the module
    has no source file (``python -c``, a REPL, a notebook), whose edits could not be seen."""
    module_name = text.partition(":")[0]
    _search_cwd()
    path = _module_file(module_name)
    if path is None:
        return None
    path = os.path.realpath(path)
    depth = module_name.count(".") + (Path(path).name == "__init__.py")
    root = Path(path).parents[depth]
    deps: set[str] = set()
    _imported_files(path, deps)
    deps.discard(path)
    content = text.encode() + Path(path).read_bytes()
    for dep in sorted(deps, key=lambda d: _key(d, root)):  # none for a self-contained module: its hash as before
        content += b"\0" + _key(dep, root).encode() + b"\0" + Path(dep).read_bytes()
    return hashlib.sha256(content).hexdigest()[:12]


def accepted(fn: Callable[..., Any], kwargs: dict[str, Any]) -> dict[str, Any]:
    """The entries of ``kwargs`` that ``fn``'s signature accepts (all of them if it takes ``**kwargs``)."""
    try:
        params = inspect.signature(fn).parameters
    except (TypeError, ValueError):  # a builtin without a signature: give it only what is required
        return {}
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return kwargs
    return {k: v for k, v in kwargs.items() if k in params}


def lazy_exports(package: str, exports: Mapping[str, tuple[str, ...]],
                 namespace: dict[str, Any]) -> tuple[Callable[[str], Any], Callable[[], list[str]]]:
    """A package's ``__getattr__`` and ``__dir__`` (PEP 562) for ``exports`` (submodule → the names it gives): each
    name is imported from its submodule on first use and then kept in ``namespace`` (the package's globals), so
    importing the package imports none of them."""
    home = {name: module for module, names in exports.items() for name in names}

    def getattr_(name: str) -> Any:
        if name not in home:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{home[name]}", package), name)
        namespace[name] = value  # later lookups skip this function
        return value

    def dir_() -> list[str]:
        return sorted([*namespace, *home])

    return getattr_, dir_
