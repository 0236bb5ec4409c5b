"""``normrnn explain``: what a norm spec reduces, its statistics, parameters and equivalences."""

from __future__ import annotations

import argparse

from .registry import subcommand

_EXPLAIN_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn explain layer --layout BTF --shape 4,2,3     # per sample and step: statistics (B, T)",
    "normrnn explain group:8 --layout BTCHW --shape 2,3,32,8,8 --reduce TCHW",
    "normrnn explain --tour                              # TF1, Keras and PyTorch conventions",
)


@subcommand("explain", order=1, examples=_EXPLAIN_EXAMPLES)
def _add_explain(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..norms import norm_spec_names

    p = sub.add_parser("explain", help="say what a norm spec reduces, its statistics, parameters and equivalences")
    p.add_argument("spec", nargs="?", help=f"norm spec: {', '.join(norm_spec_names())}")  # the registry now
    p.add_argument("--layout", help="axis letters of the input, e.g. BTF, BCHW, BHWC, BTCHW")
    p.add_argument("--shape", help="input shape, e.g. 4,2,3")
    p.add_argument("--reduce", help="letters to reduce (default: the spec's default)")
    p.add_argument("--tour", action="store_true",
                   help="walk through the axis questions normrnn answers (TF1, Keras and PyTorch conventions)")
    p.set_defaults(func=_explain)


def _explain(args: argparse.Namespace) -> int:
    from ..norms.explaining import explain, tour

    if args.tour:
        print(tour())
        return 0
    if args.spec is None or args.layout is None or args.shape is None:
        raise ValueError("expected SPEC, --layout and --shape (or --tour), e.g. "
                         "normrnn explain layer --layout BTF --shape 4,2,3")
    print(explain(args.spec, layout=args.layout, shape=args.shape, reduce=args.reduce))
    return 0
