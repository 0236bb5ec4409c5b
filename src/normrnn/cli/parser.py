"""The ``normrnn`` argument parser, built from the registered subcommands (:mod:`.registry`) in their order."""

from __future__ import annotations

import argparse

from .registry import SUBCOMMANDS

__all__ = ["build_parser"]


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

    parser = argparse.ArgumentParser(prog="normrnn", description="Normalization for recurrent networks, made explicit.")
    parser.add_argument("--version", action="version", version=f"normrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    ordered = sorted(SUBCOMMANDS.values(), key=lambda c: c.order)
    for command in ordered:
        command.add(sub)
    for command in ordered:  # each --help ends with commands to copy
        text = "examples:\n" + "\n".join(f"  {line}" for line in command.examples)
        if command.epilog is not None:
            text = command.epilog() + "\n\n" + text
        p = sub.choices[command.name]
        p.epilog, p.formatter_class = text, argparse.RawDescriptionHelpFormatter
    return parser
