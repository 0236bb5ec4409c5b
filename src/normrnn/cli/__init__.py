"""The ``normrnn`` command line: a thin argparse layer over the library. Each subcommand is a module of this package
(its arguments, handler and examples, registered in :mod:`.registry`); :mod:`.parser` builds the parser from them."""

from __future__ import annotations

import argparse
import importlib
import os
import pkgutil
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from typing import TextIO

from .._checks import install_hint
from .parser import build_parser
from .registry import SUBCOMMANDS

# every module of the package registers its subcommand when imported: a new subcommand is one new module
for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")

__all__ = ["PASSIVE_WAIT_COMMANDS", "entry", "main"]

# the long-running commands; on cores another process also uses, OpenMP threads that spin-wait (libgomp's default)
# made a ConvLSTM step 1.2-1.5x slower than sleeping ones, while on a quiet machine the two are within noise
# (docs/performance.md, "Shared cores")
PASSIVE_WAIT_COMMANDS = ("study", "train", "bench")


# the optional modules a command imports, by the extra that installs them: checked before any work, so a missing
# one is a line naming the pip install to run, not a traceback (or a crash at the report after a whole grid)
_STUDY_MODULES = ("sklearn", "mlxtend", "tqdm", "matplotlib", "filelock")
_EXTRAS = {"study": ("study", _STUDY_MODULES), "train": ("study", _STUDY_MODULES),
           "report": ("study", ("matplotlib",))}
_PACKAGES = {"sklearn": "scikit-learn"}  # a module's pip name where the two differ
_FLAG_EXTRAS = (("tensorboard", True, "tensorboard", ("tensorboard",)), ("executor", "ray", "ray", ("ray",)))


def check_extras(args: argparse.Namespace) -> None:
    """A ``ValueError`` naming the ``pip install`` to run when the extra a command (or one of its flags) needs is
    missing."""
    import importlib.util

    needs = [_EXTRAS[args.command]] if args.command in _EXTRAS else []
    needs += [(extra, mods) for flag, value, extra, mods in _FLAG_EXTRAS if getattr(args, flag, None) == value]
    for extra, modules in needs:
        missing = [_PACKAGES.get(m, m) for m in modules if importlib.util.find_spec(m) is None]
        if missing:
            raise ValueError(f"this needs normrnn's {extra!r} extra, and {', '.join(missing)} "
                             f"{'is' if len(missing) == 1 else 'are'} not installed: {install_hint(extra, missing)}")


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings as one line each, as a command-line user wants them."""
    text = str(message).removeprefix("normrnn: ")
    print(f"normrnn: warning: {text}", file=sys.stderr if file is None else file)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's flush at exit does not fail again on the closed pipe."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (AttributeError, OSError, ValueError):  # not a file descriptor (a captured stream): nothing to flush
        pass


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a bad input or a file problem is one line on stderr and exit code 2."""
    words = [a for a in (sys.argv[1:] if argv is None else argv) if not a.startswith("-")]
    parser = build_parser(only=words[0] if words and words[0] in SUBCOMMANDS else None)
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        check_extras(args)
        code: int = args.func(args)
        sys.stdout.flush()  # here, so that a reader that went away (`| head`) is seen below, not at exit
        return code
    except BrokenPipeError:  # the reader of our output closed it (`normrnn explain layer | head -n 1`): not an error
        _silence_stdout()
        return 0
    except (ValueError, OSError) as e:
        if args.debug:
            traceback.print_exc()
        print(f"normrnn {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:  # outside a training loop (which says how to resume): set-up, a report, a table
        if args.debug:
            traceback.print_exc()
        print(f"\nnormrnn {args.command}: interrupted", file=sys.stderr)
        return 130
    finally:
        warnings.showwarning = previous


def entry() -> int:
    """The ``normrnn`` program: :func:`main` on ``sys.argv``, with ``OMP_WAIT_POLICY=PASSIVE`` for the commands in
    :data:`PASSIVE_WAIT_COMMANDS` unless the environment sets a policy itself.

    OpenMP reads the policy once, when torch loads. ``import normrnn`` does not load torch, so the policy is set
    before it does; if torch is loaded already (``normrnn`` called from a process that imported it), the process
    replaces itself (``os.execve``, same pid: torchrun and Slurm see no difference) with one that starts with it.
    Child processes (``--nproc``, torchrun's workers) inherit it.
    """
    argv = sys.argv[1:]
    if passive_wait_needed(argv, os.environ):
        if "torch" in sys.modules:  # too late for this process: OpenMP has read its environment
            os.execve(sys.executable, [sys.executable, "-m", "normrnn", *argv],
                      {**os.environ, "OMP_WAIT_POLICY": "PASSIVE"})
        os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    return main(argv)


def passive_wait_needed(argv: Sequence[str], environ: Mapping[str, str]) -> bool:
    """Whether :func:`entry` runs ``normrnn ARGV`` with ``OMP_WAIT_POLICY=PASSIVE``: for a long-running command,
    when no wait policy is set."""
    command = next((a for a in argv if not a.startswith("-")), None)
    return command in PASSIVE_WAIT_COMMANDS and "OMP_WAIT_POLICY" not in environ

