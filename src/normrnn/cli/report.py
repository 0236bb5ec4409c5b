"""``normrnn report``: tables, plots and a summary from one or more study directories."""

from __future__ import annotations

import argparse

from .registry import subcommand
from .study import _print_tables

_REPORT_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn report study-quick                          # report.md, results.csv/json and plots",
    "normrnn report shard-0 shard-1 --out study-all       # one study run as shards",
)


@subcommand("report", order=6, examples=_REPORT_EXAMPLES)
def _add_report(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("report", help="tables, plots and a summary from one or more study directories")
    p.add_argument("dirs", nargs="+", help="study directories of one study (their results.jsonl are merged)")
    p.add_argument("--out", help="where to write the report (default: the first directory)")
    p.add_argument("--mixed", action="store_true", help="allow directories of different studies: each study gets "
                                                         "its own section, tables, baselines and plots, never pooled")
    p.set_defaults(func=_report)


def _report(args: argparse.Namespace) -> int:
    from ..study import write_report

    _print_tables(write_report(args.dirs, args.out, mixed=args.mixed))
    return 0
