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
import importlib.util
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

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
            where = getattr(module, "__file__", None) or "a module without a file"
            raise ValueError(f"{what} {text}: {module_name!r} has no {attr!r} (imported from {where}; a module of "
                             "the standard library or another package may shadow yours: rename your file)")
        obj = getattr(obj, part)
    if not callable(obj):
        raise ValueError(f"{what} {text}: expected a callable, got {type(obj).__name__}")
    return obj


def factory_name(fn: Callable[..., Any]) -> str:
    """``MODULE:QUALNAME`` of a module-level callable, checked to resolve back to the same object."""
    text = f"{getattr(fn, '__module__', '')}:{getattr(fn, '__qualname__', '')}"
    if "<" in text or not _is_name(text):
        raise ValueError(f"expected a function defined at module level (importable by name), got {fn!r}")
    if resolve(text, "factory") is not fn:
        raise ValueError(f"expected {text} to name {fn!r} when imported, but it names another object")
    return text


def _module_file(name: str) -> str | None:
    """The source file of module ``name`` (loaded or findable), or ``None``."""
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    if path is None and name != "__main__":
        try:
            spec = importlib.util.find_spec(name)
        except (ImportError, ValueError):
            spec = None
        path = getattr(spec, "origin", None)
    return path if path and os.path.isfile(path) else None


def _imported_files(path: str, root: Path, seen: set[str]) -> None:
    """Add to ``seen`` the files under ``root`` that ``path`` imports, and theirs, read from the source (the same
    answer in every process, whatever it has imported). Installed packages and normrnn itself are not the user's."""
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
                        _add_file(str(found), root, seen)
                continue
            names = [base, *(f"{base}.{alias.name}" for alias in node.names)]
        for name in names:
            file = _module_file(name) if name else None
            if file is not None:
                _add_file(file, root, seen)


def _add_file(path: str, root: Path, seen: set[str]) -> None:
    resolved = os.path.realpath(path)
    own = Path(__file__).resolve().parents[1]  # normrnn's package directory
    if resolved in seen or not os.path.isfile(resolved) or not Path(resolved).is_relative_to(root):
        return
    if Path(resolved).is_relative_to(own) or "site-packages" in Path(resolved).parts:
        return
    seen.add(resolved)
    _imported_files(resolved, root, seen)


@functools.cache
def source_hash(text: str) -> str | None:
    """A short hash of ``MODULE:NAME``'s source: its module's file and every file of the user's that it imports,
    directly or not, from the same directory tree (the top-level package's folder). ``None`` when the module has
    no source file (``python -c``, a REPL, a notebook), whose edits could not be seen."""
    module_name = text.partition(":")[0]
    _search_cwd()
    path = _module_file(module_name)
    if path is None:
        return None
    path = os.path.realpath(path)
    depth = module_name.count(".") + (Path(path).name == "__init__.py")
    root = Path(path).parents[depth]
    deps: set[str] = set()
    _imported_files(path, root, deps)
    deps.discard(path)
    content = text.encode() + Path(path).read_bytes()
    for dep in sorted(deps):  # none for a self-contained module: its hash is what it was before deps counted
        content += b"\0" + os.path.relpath(dep, root).encode() + b"\0" + Path(dep).read_bytes()
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
