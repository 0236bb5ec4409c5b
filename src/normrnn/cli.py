"""The ``normrnn`` command line: a thin argparse layer over the library."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _explain(args: argparse.Namespace) -> int:
    from .norms.explain import explain, tour

    if args.tour:
        print(tour())
        return 0
    if args.spec is None or args.layout is None or args.shape is None:
        raise ValueError("expected SPEC, --layout and --shape (or --tour), e.g. "
                         "normrnn explain layer --layout BTF --shape 4,2,3")
    print(explain(args.spec, layout=args.layout, shape=args.shape, reduce=args.reduce))
    return 0


def _bench(args: argparse.Namespace) -> int:
    from .bench import NormBenchConfig, bench_norms, format_table, write_json
    from .norms.explain import parse_shape

    config = NormBenchConfig(shape=parse_shape(args.shape), dtype=args.dtype, rounds=args.rounds,
                             repeats=args.repeats, warmup=args.warmup, threads=args.threads)
    rows = bench_norms(config, progress=lambda msg: print(msg, file=sys.stderr, flush=True))
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, config)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="normrnn", description="Normalization for recurrent networks, made explicit.")
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("explain", help="say what a norm spec reduces, its statistics, parameters and equivalences")
    p.add_argument("spec", nargs="?", help="norm spec: none, layer, group[:G], instance, batch, "
                                           "recurrent_batch:T_MAX, rms")
    p.add_argument("--layout", help="axis letters of the input, e.g. BTF, BCHW, BHWC, BTCHW")
    p.add_argument("--shape", help="input shape, e.g. 4,2,3")
    p.add_argument("--reduce", help="letters to reduce (default: the spec's default)")
    p.add_argument("--tour", action="store_true", help="walk through the seed examples")
    p.set_defaults(func=_explain)

    p = sub.add_parser("bench", help="time normrnn against torch native, side by side")
    p.add_argument("target", choices=["norms"], help="what to benchmark")
    p.add_argument("--shape", default="16,256,32,32", help="B,C,H,W (default: the ConvLSTM gate tensor)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    p.add_argument("--rounds", type=int, default=15, help="interleaved rounds (default 15)")
    p.add_argument("--repeats", type=int, default=10, help="timed calls per round (default 10)")
    p.add_argument("--warmup", type=int, default=2, help="untimed calls first (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p.add_argument("--json", help="also write the rows to this JSON file")
    p.set_defaults(func=_bench)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except ValueError as e:
        print(f"normrnn {args.command}: error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
