"""What many test modules share: ``normrnn ARGS`` run in this process, and the one-line-error check."""

from __future__ import annotations

import contextlib
import io
import os
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch

from normrnn.cli import main


@dataclass(frozen=True)
class Ran:
    """A finished command, as ``subprocess.CompletedProcess`` has it."""

    returncode: int
    stdout: str
    stderr: str


def cli(*args: str, cwd: str | Path | None = None, env: dict[str, str] | None = None) -> Ran:
    """``normrnn ARGS`` through :func:`normrnn.cli.main` in this process (no interpreter to start, no torch to
    import), in ``cwd``, with ``env`` added to the environment. Everything it changes is put back: the directory,
    ``sys.path`` and the modules it imported from ``cwd`` (a later test's factory of the same name is its own),
    torch's thread count, the warning filters and the environment. An uncaught exception propagates: that is the
    traceback a subprocess would have printed."""
    out, err = io.StringIO(), io.StringIO()
    here, path, modules, threads = os.getcwd(), list(sys.path), set(sys.modules), torch.get_num_threads()
    saved_env = dict(os.environ)
    try:
        os.environ.update(env or {})
        if cwd is not None:
            os.chdir(cwd)
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            warnings.simplefilter("default")  # as PYTHONWARNINGS=default: each warning shown, none an error
            try:
                code = main(list(args))
            except SystemExit as e:  # argparse: --help, --version, or a usage error
                code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
    finally:
        os.chdir(here)
        sys.path[:] = path
        for name in set(sys.modules) - modules:
            file = getattr(sys.modules[name], "__file__", None) or ""
            if cwd is not None and Path(file).resolve().is_relative_to(Path(cwd).resolve()):
                del sys.modules[name]
        torch.set_num_threads(threads)
        os.environ.clear()
        os.environ.update(saved_env)
    return Ran(code, out.getvalue(), err.getvalue())


def assert_one_line_error(ran: Ran, *fragments: str) -> None:
    """Exit 2, no traceback, and one line on stderr that contains every fragment."""
    assert ran.returncode == 2, (ran.returncode, ran.stderr)
    assert "Traceback" not in ran.stderr, ran.stderr
    lines = [line for line in ran.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, ran.stderr
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])


def result_row(*, norm: str = "none", topology: str = "stacked", depth: int = 1, seed: int = 0, lr_mult: float = 1.0,
               test_mse: float | None = 5.0, diverged: bool = False, run_id: str | None = None,
               **fields: object) -> dict:
    """A synthetic row of ``results.jsonl``: the fields the report requires, and ``fields``; each a field of
    :class:`~normrnn.study.rows.ResultRow` with its type (checked, so a test cannot write a row the reader would
    skip)."""
    from normrnn.study.grid import RunSpec
    from normrnn.study.rows import FIELDS, row_problem

    row = {"run_id": run_id or RunSpec(norm, topology, depth, seed, lr_mult).run_id, "norm": norm,
           "topology": topology, "depth": depth, "seed": seed, "lr_mult": lr_mult, "test_mse": test_mse,
           "diverged": diverged, **fields}
    unknown = set(row) - {f.name for f in FIELDS}
    assert not unknown, f"not ResultRow fields: {sorted(unknown)}"
    assert row_problem(row) is None, row_problem(row)
    return row


@contextlib.contextmanager
def user_modules(folder: Path, monkeypatch, files: dict[str, str]):
    """A user's modules: ``files`` (name → source) written into ``folder``, which becomes the current directory and
    first on ``sys.path``, as modules next to the user's shell. Afterwards every module imported from ``folder`` is
    forgotten, and so are the factory hashes, so a later test's module of the same name is its own."""
    from normrnn._loader import source_hash

    for name, text in files.items():
        (folder / name).write_text(text)
    monkeypatch.chdir(folder)
    monkeypatch.syspath_prepend(str(folder))
    try:
        yield folder
    finally:
        for name, module in list(sys.modules.items()):
            file = getattr(module, "__file__", None) or ""
            if file and Path(file).resolve().is_relative_to(folder.resolve()):
                del sys.modules[name]
        source_hash.cache_clear()
