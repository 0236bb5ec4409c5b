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
    import dataclasses

    from .bench import (
        CELLS,
        CELLS_QUICK,
        LayerBenchConfig,
        NormBenchConfig,
        bench_layers,
        bench_norms,
        format_table,
        write_json,
    )
    from .norms.explain import parse_shape

    progress = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    timing = {"rounds": args.rounds, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads}
    timing = {k: v for k, v in timing.items() if v is not None}
    if args.target == "norms":
        config = NormBenchConfig(shape=parse_shape(args.shape), dtype=args.dtype, **timing)
        rows = bench_norms(config, progress=progress)
    elif args.target == "cells":
        config = dataclasses.replace(CELLS_QUICK if args.quick else CELLS, dtype=args.dtype, **timing)
        rows = bench_layers(config, progress=progress)
    else:
        size = parse_shape(args.size)
        if len(size) != 2:
            raise ValueError(f"expected --size H,W, got {args.size!r}")
        config = LayerBenchConfig(batch=args.batch, in_channels=args.in_channels, hidden_channels=args.hidden_channels,
                                  size=size, steps=args.steps, kernel_size=args.kernel_size,
                                  num_layers=args.num_layers, norms=tuple(args.norms.split(",")), dtype=args.dtype,
                                  **timing)
        rows = bench_layers(config, progress=progress)
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, config)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _study(args: argparse.Namespace) -> int:
    import dataclasses

    from .study import load_config, run_study, write_report

    config = load_config(args.preset, args.config)
    overrides = {k: getattr(args, k) for k in ("threads", "device") if getattr(args, k) is not None}
    config = dataclasses.replace(config, **overrides)
    try:
        run_study(config, args.out, progress=not args.no_progress)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is consistent; run the same command again to resume", file=sys.stderr)
        return 130
    _print_tables(write_report([args.out]))
    print(f"\nreport: {args.out}/report.md (plots, results.csv, results.json beside it)", file=sys.stderr)
    return 0


def _report(args: argparse.Namespace) -> int:
    from .study import write_report

    _print_tables(write_report(args.dirs, args.out))
    return 0


def _print_tables(report: str) -> None:
    """The report's tables and summary, without its title and image links."""
    print(report[report.index("### Accuracy") : report.index("![")].rstrip())


def _timing_flags(p: argparse.ArgumentParser, rounds: int, repeats: int, warmup: int) -> None:
    g = p.add_argument_group("timing")
    g.add_argument("--rounds", type=int, help=f"interleaved rounds (default {rounds})")
    g.add_argument("--repeats", type=int, help=f"timed calls per round (default {repeats})")
    g.add_argument("--warmup", type=int, help=f"untimed calls first (default {warmup})")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    g.add_argument("--json", help="also write the rows to this JSON file (atomically)")


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

    bench = sub.add_parser("bench", help="time normrnn side by side with its references").add_subparsers(
        dest="target", required=True)
    p = bench.add_parser("norms", help="norms vs torch native on the ConvLSTM gate tensor, fwd and fwd+bwd")
    p.add_argument("--shape", default="16,256,32,32", help="B,C,H,W (default: the ConvLSTM gate tensor)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    _timing_flags(p, rounds=15, repeats=10, warmup=2)
    p.set_defaults(func=_bench)
    p = bench.add_parser("cells", help="one ConvLSTM layer (B=16, 16->64, 32x32, k=3, T=10) per norm and gate "
                                       "backend vs bias-only, a naive loop and the conv-only floor; with memory")
    p.add_argument("--quick", action="store_true", help="a tiny shape and one round: checks that it runs")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    p.set_defaults(func=_bench)
    p = bench.add_parser("layers", help="stacked ConvLSTM fwd+bwd per norm vs bias-only and a naive loop")
    p.add_argument("--batch", type=int, default=16, help="B (default 16)")
    p.add_argument("--in-channels", type=int, default=16, help="C_in (default 16)")
    p.add_argument("--hidden-channels", type=int, default=64, help="C per layer (default 64)")
    p.add_argument("--size", default="32,32", help="H,W (default 32,32)")
    p.add_argument("--steps", type=int, default=10, help="T (default 10)")
    p.add_argument("--kernel-size", type=int, default=3, help="odd k (default 3)")
    p.add_argument("--num-layers", type=int, default=2, help="stacked layers (default 2)")
    p.add_argument("--norms", default="none,layer,group:8,recurrent_batch:10",
                   help="comma-separated norm specs; 'none' is the reference (default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    p.set_defaults(func=_bench)
    p = sub.add_parser("study", help="run the normalization ablation grid, then write its report")
    p.add_argument("--preset", default="quick", help="smoke | quick | standard | full (default: quick)")
    p.add_argument("--config", help="a TOML study file (keys of normrnn.study.StudyConfig; `preset = ...` as base)")
    p.add_argument("--out", required=True, help="the study directory; re-running resumes it")
    p.add_argument("--threads", type=int, help="torch threads (default: the preset's)")
    p.add_argument("--device", help="cpu or cuda (default: the preset's)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_study)

    p = sub.add_parser("report", help="tables, plots and a summary from one or more study directories")
    p.add_argument("dirs", nargs="+", help="study directories (their results.jsonl are merged)")
    p.add_argument("--out", help="where to write the report (default: the first directory)")
    p.set_defaults(func=_report)
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
