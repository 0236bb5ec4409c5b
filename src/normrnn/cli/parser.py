"""The ``normrnn`` argument parser, built from the registered subcommands (:mod:`.registry`) in their order."""

from __future__ import annotations

import argparse

from .registry import SUBCOMMANDS

__all__ = ["build_parser"]


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole parser; with ``only`` (a subcommand's name), that subcommand's in full and the others by name alone:
    adding a subcommand's arguments may load what its help lists (the norm registry, the presets), which another
    command should not pay for (``normrnn report`` loads no torch)."""
    from .. import __version__

    parser = argparse.ArgumentParser(prog="normrnn", description="Normalization for recurrent networks, made explicit.")
    parser.add_argument("--version", action="version", version=f"normrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    ordered = sorted(SUBCOMMANDS.values(), key=lambda c: c.order)
    for command in ordered:
        if only is None or command.name == only:
            command.add(sub)
        else:
            sub.add_parser(command.name)
    for command in (c for c in ordered if only is None or c.name == only):  # each --help ends with commands to copy
        text = "examples:\n" + "\n".join(f"  {line}" for line in command.examples)
        if command.epilog is not None:
            text = command.epilog() + "\n\n" + text
        p = sub.choices[command.name]
        p.epilog, p.formatter_class = text, argparse.RawDescriptionHelpFormatter
    return parser
