"""The subcommands by name. Each module of this package registers its own (its arguments, handler and examples) with
:func:`subcommand`, and ``normrnn.cli`` imports every module of the package, so a new subcommand is one new module."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass

__all__ = ["SUBCOMMANDS", "Subcommand", "subcommand"]

AddFn = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


@dataclass(frozen=True)
class Subcommand:
    """One ``normrnn NAME``: how it adds its parser (which names its handler), and what its ``--help`` ends with."""

    name: str
    order: int  # its place in ``normrnn --help``
    add: AddFn
    examples: tuple[str, ...]  # commands to copy, at the end of its --help
    epilog: Callable[[], str] | None = None  # text before the examples, computed when --help is built


SUBCOMMANDS: dict[str, Subcommand] = {}


def subcommand(name: str, *, order: int, examples: tuple[str, ...],
               epilog: Callable[[], str] | None = None) -> Callable[[AddFn], AddFn]:
    """Register the decorated ``add(sub)`` as subcommand ``name``."""
    def register(add: AddFn) -> AddFn:
        SUBCOMMANDS[name] = Subcommand(name, order, add, examples, epilog)
        return add
    return register
