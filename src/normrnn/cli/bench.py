"""``normrnn bench``: normrnn timed side by side with its references (norms, cells, layers), and where a step's
CPU time goes."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .registry import subcommand


def _timing_flags(p: argparse.ArgumentParser, rounds: int, repeats: int, warmup: int) -> None:
    g = p.add_argument_group("timing")
    g.add_argument("--rounds", type=int, help=f"interleaved rounds (default {rounds})")
    g.add_argument("--repeats", type=int, help=f"timed calls per round (default {repeats})")
    g.add_argument("--warmup", type=int, help=f"untimed calls first (default {warmup})")
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    g.add_argument("--json", help="also write the rows to this JSON file (atomically)")
    if p.prog.split()[-1] in ("cells", "layers"):
        g.add_argument("--device", default="cpu", help="cpu or cuda; cuda adds the allocator's peak memory "
                                                       "(default: cpu)")
        g.add_argument("--precision", default="fp32", choices=["fp32", "bf16", "auto"],
                       help="bf16: every variant under bf16 autocast; auto: where the device has fast bf16, each "
                            "variant also under bf16 autocast, beside fp32 (default: fp32)")


# bench layers' model: (flag, default, help); the defaults are bench cells' shape with 2 layers
_LAYER_SHAPE = (("--batch", 16, "B"), ("--in-channels", 16, "C_in"), ("--hidden-channels", 64, "C per layer"),
                ("--steps", 10, "T"), ("--kernel-size", 3, "k, odd or even"), ("--num-layers", 2, "stacked layers"))


_BENCH_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn bench cells --quick                         # checks that it runs: a tiny shape, one round",
    "normrnn bench layers --norms none,layer,group:8 --precision auto",
    "normrnn bench norms --shape 16,256,32,32",
)


@subcommand("bench", order=2, examples=_BENCH_EXAMPLES)
def _add_bench(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from ..kernels import backend_names

    backends = ", ".join(b for b in backend_names() if b != "auto")  # the registry now, plug-ins included
    targets = sub.add_parser("bench", help="time normrnn side by side with its references").add_subparsers(
        dest="target", required=True)
    p = targets.add_parser("norms", help="norms vs torch native on the ConvLSTM gate tensor, fwd and fwd+bwd")
    p.add_argument("--shape", default="16,256,32,32", help="B,C,H,W (default: the ConvLSTM gate tensor)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    _timing_flags(p, rounds=15, repeats=10, warmup=2)
    p = targets.add_parser("cells", help="one ConvLSTM layer (B=16, 16->64, 32x32, k=3, T=10) per norm and gate "
                                       "backend vs bias-only, a naive loop and the conv-only floor; with memory")
    p.add_argument("--quick", action="store_true", help="a tiny shape and one round: checks that it runs")
    p.add_argument("--cell", default="convlstm", help="the convolutional cell kind: convlstm, convgru or stlstm "
                                                      "(PredRNN's; eager, against bias-only) (default: %(default)s)")
    p.add_argument("--backends", help=f"comma-separated gate backends: {backends} (default: eager,fused,compiled; "
                                      "--quick: eager,fused)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    p = targets.add_parser("profile", help="where one fwd+bwd of bench cells' ConvLSTM spends its CPU time, by "
                                           "category (torch.profiler)")
    p.add_argument("--norm", default="none", help="the layer's norm spec (default: none)")
    p.add_argument("--calls", type=int, default=2, help="profiled calls, after one untimed (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p = targets.add_parser("layers", help="stacked ConvLSTM fwd+bwd per norm vs bias-only and a naive loop")
    for flag, default, what in _LAYER_SHAPE:
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--size", default="32,32", help="H,W (default 32,32)")
    p.add_argument("--norms", default="none,layer,group:8,recurrent_batch:10",
                   help="comma-separated norm specs; 'none' is the reference (default: %(default)s)")
    p.add_argument("--backends", default="eager", help=f"comma-separated gate backends: {backends} "
                                                       "(default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    for name, p in targets.choices.items():
        p.set_defaults(func=_bench_profile if name == "profile" else _bench)


def _progress(message: str) -> None:
    """A benchmark's progress line, on stderr so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def _bench(args: argparse.Namespace) -> int:
    import dataclasses

    from ..bench import (
        CELL_BENCH,
        CELL_BENCH_QUICK,
        LayerBenchConfig,
        NormBenchConfig,
        bench_layers,
        bench_norms,
        format_table,
        write_json,
    )
    from ..norms.explaining import parse_shape

    if args.json:
        _check_writable(args.json)  # before the benchmark, not after it
    timing = {"rounds": args.rounds, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads}
    timing = {k: v for k, v in timing.items() if v is not None}
    config: NormBenchConfig | LayerBenchConfig
    if args.target == "norms":
        config = NormBenchConfig(shape=parse_shape(args.shape), dtype=args.dtype, **timing)
        rows = bench_norms(config, progress=_progress)
    elif args.target == "cells":
        config = dataclasses.replace(CELL_BENCH_QUICK if args.quick else CELL_BENCH, dtype=args.dtype,
                                     precision=args.precision, device=args.device, cell=args.cell, **timing)
        if args.backends is not None:
            config = dataclasses.replace(config, backends=tuple(args.backends.split(",")))
        rows = bench_layers(config, progress=_progress)
    else:
        size = parse_shape(args.size)
        if len(size) != 2:
            raise ValueError(f"expected --size H,W, got {args.size!r}")
        config = LayerBenchConfig(batch=args.batch, in_channels=args.in_channels, hidden_channels=args.hidden_channels,
                                  size=size, steps=args.steps, kernel_size=args.kernel_size,
                                  num_layers=args.num_layers, norms=tuple(args.norms.split(",")),
                                  backends=tuple(args.backends.split(",")), dtype=args.dtype,
                                  precision=args.precision, device=args.device, **timing)
        rows = bench_layers(config, progress=_progress)
    print(format_table(rows))
    if args.json:
        write_json(args.json, rows, config)
        print(f"wrote {args.json}", file=sys.stderr)
    return 0


def _bench_profile(args: argparse.Namespace) -> int:
    import dataclasses

    from .._checks import positive_int
    from ..bench import CELL_BENCH, format_profile, profile_step

    config = dataclasses.replace(CELL_BENCH, threads=args.threads)
    rows = profile_step(config, norm=args.norm, steps=positive_int("--calls", args.calls),
                        progress=_progress)
    print(format_profile(rows))
    return 0


def _check_writable(path: str) -> None:
    """A ``ValueError`` unless a file can be written at ``path`` (its folder exists and is writable)."""
    target = Path(path)
    if target.is_dir():
        raise ValueError(f"expected --json to name a file, but {path} is a directory")
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir() or not os.access(folder, os.W_OK):
        raise ValueError(f"expected --json in a writable folder, but {folder} does not exist or is not writable")
