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
