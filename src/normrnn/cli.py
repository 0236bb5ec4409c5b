"""The ``normrnn`` command line: a thin argparse layer over the library."""

from __future__ import annotations

import argparse
import os
import sys
import traceback
import warnings
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:  # the CLI imports its subcommands' modules lazily, so "normrnn --help" stays fast
    from .study import RunSpec, StudyConfig
    from .study.distributed import Rank
    from .study.report import Report

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
                             f"{'is' if len(missing) == 1 else 'are'} not installed: pip install "
                             f"\"normrnn[{extra}]\" (from a checkout: pip install -c constraints.txt \".[{extra}]\")")


def _progress(message: str) -> None:
    """A benchmark's progress line, on stderr so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def _explain(args: argparse.Namespace) -> int:
    from .norms.explaining import explain, tour

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
        CELL_BENCH,
        CELL_BENCH_QUICK,
        LayerBenchConfig,
        NormBenchConfig,
        bench_layers,
        bench_norms,
        format_table,
        write_json,
    )
    from .norms.explaining import parse_shape

    if args.json:
        _check_writable(args.json)  # before the benchmark, not after it
    timing = {"rounds": args.rounds, "repeats": args.repeats, "warmup": args.warmup, "threads": args.threads}
    timing = {k: v for k, v in timing.items() if v is not None}
    if args.target == "norms":
        config = NormBenchConfig(shape=parse_shape(args.shape), dtype=args.dtype, **timing)
        rows = bench_norms(config, progress=_progress)
    elif args.target == "cells":
        config = dataclasses.replace(CELL_BENCH_QUICK if args.quick else CELL_BENCH, dtype=args.dtype,
                                     precision=args.precision, device=args.device, **timing)
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

    from ._checks import positive_int
    from .bench import CELL_BENCH, format_profile, profile_step

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


def _study_config(args: argparse.Namespace) -> StudyConfig:
    import dataclasses

    from .study import load_config

    config = load_config(args.preset, args.config)
    keys = ("threads", "workers", "precision", "device", "model", "data")
    overrides = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    try:
        return dataclasses.replace(config, **overrides)
    except ValueError as e:
        raise ValueError(f"{e} (from the command line)") from None


def _study(args: argparse.Namespace) -> int:
    from .study import expand_grid, parse_shard, shard
    from .study.config import planned_runs

    config = _study_config(args)
    shard_of = None if args.shard is None else parse_shard(args.shard)
    if args.plan:
        from .study.config import check_device
        from .study.plan import plan
        from .study.runner import check_factories, check_memory

        check_device(config.device)
        check_memory(config)
        data = check_factories(config)
        runs = planned_runs(config)
        print(plan(config, runs if shard_of is None else shard(runs, *shard_of), data))
        return 0
    if args.out is None:
        raise ValueError("expected --out DIR, the study directory (or --plan to see the grid without training)")
    rank = _run(config, args, None, shard_of)
    if rank is None:
        return 130
    if not rank.is_main:
        return 0
    from .study import load_results, write_report

    rows = load_results(args.out)
    missing = {s.run_id for s in expand_grid(config, rows)} - {r["run_id"] for r in rows}
    if missing:  # another shard is still at work
        print(f"{len(missing)} runs of the study are not in {args.out} yet; when every shard has finished, "
              f"run: normrnn report {args.out}", file=sys.stderr)
        return 0
    _print_tables(write_report([args.out]))
    return 0


def _train(args: argparse.Namespace) -> int:
    from .study import RunSpec

    config = _study_config(args)
    def pick(flag: object, grid: tuple) -> object:  # 0 is a value, never a missing flag
        return grid[0] if flag is None else flag

    spec = RunSpec(norm=pick(args.norm, config.norms), topology=pick(args.topology, config.topologies),
                   depth=pick(args.depth, config.depths), seed=pick(args.seed, config.seeds),
                   lr_mult=pick(args.lr_mult, config.lr_mults))
    rank = _run(config, args, [spec])
    if rank is None:
        return 130
    if not rank.is_main:
        return 0
    from .study import load_results

    row = next((r for r in load_results(args.out) if r["run_id"] == spec.run_id), None)
    if row is None:  # claimed by another process: it trains the run, this one did not
        from .study.runner import claim_holder

        raise ValueError(f"run {spec.run_id} in {args.out} is being trained by {claim_holder(args.out, spec.run_id)}; "
                         "run this command again when it has finished")
    metrics = ("test_mse", "test_ssim", "test_psnr", "step_time_s", "processes")
    print(f"{spec.run_id}: " + ", ".join(f"{k}={row.get(k)}" for k in metrics)
          + f" (in {Path(args.out) / 'results.jsonl'})")
    return 0


def _run(config: StudyConfig, args: argparse.Namespace, runs: list[RunSpec] | None,
         shard_of: tuple[int, int] | None = None) -> Rank | None:
    """Run ``runs`` into ``--out`` and return this process's rank; None after Ctrl-C. Under torchrun, the
    process joins the group for the runs and leaves it after."""
    import torch.distributed as dist

    from .study import run_study
    from .study.distributed import init_from_env
    from .study.runner import check_runnable

    check_runnable(config, args.out, nproc=args.nproc, executor=args.executor, runs=runs,  # before any process
                   shard_of=shard_of)
    rank = init_from_env(config.device)
    try:
        run_study(config, args.out, runs=runs, shard_of=shard_of, progress=not args.no_progress, nproc=args.nproc,
                  executor=args.executor, ray_address=args.ray_address, tensorboard=args.tensorboard)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is consistent; run the same command again to resume", file=sys.stderr)
        return None
    finally:
        if rank.active:
            dist.destroy_process_group()
    return rank


def _report(args: argparse.Namespace) -> int:
    from .study import write_report

    _print_tables(write_report(args.dirs, args.out, mixed=args.mixed))
    return 0


def _print_tables(report: Report) -> None:
    """The report's tables and summary (its parts as data), then where it was written."""
    print("\n\n".join(part for part in (report.tables, report.baselines, report.summary) if part))
    print(f"\nreport: {report.path} (plots, results.csv, results.json beside it)", file=sys.stderr)


def _audit(args: argparse.Namespace) -> int:
    """Exit 0: no findings; 1: findings; 2: could not audit (a one-line error, as every CLI error)."""
    import torch

    from ._checks import first_line
    from .auditing import audit, parse_shapes
    from .study.factories import FactoryExit, check_text, no_exit, resolve

    check_text("the factory", args.factory)
    factory = resolve(args.factory, "could not audit: factory")
    shapes = parse_shapes(args.input_shape)  # a ValueError for bad or huge shapes, before any model is built
    try:
        with no_exit(f"could not audit: factory {args.factory}"):
            model = factory()
    except FactoryExit:
        raise
    except Exception as e:
        raise ValueError(f"could not audit: {args.factory}() raised {type(e).__name__}: {first_line(e)} "
                         "(the factory is called with no arguments)") from None
    if not isinstance(model, torch.nn.Module):
        raise ValueError(f"could not audit: expected {args.factory}() to return a torch.nn.Module, "
                         f"got {type(model).__name__}")
    model.train(not args.eval)
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(shape, generator=generator) for shape in shapes]
    try:
        with no_exit(f"could not audit: factory {args.factory}'s model"):
            report = audit(model, *inputs, layout=args.layout)
    except FactoryExit:
        raise
    except Exception as e:  # the model cannot be copied or hooked: whatever it is, the audit did not happen
        raise ValueError(f"could not audit {args.factory}: {type(e).__name__}: {first_line(e)}") from None
    if report.error:
        raise ValueError(f"could not audit {args.factory}: the forward pass failed: {report.error} (pass one "
                         "--input-shape per forward argument)")
    print(report)
    return 1 if report.findings else 0


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


def _run_flags(p: argparse.ArgumentParser) -> None:
    from .study import PRESETS

    p.add_argument("--preset", default="quick", help=f"{' | '.join(PRESETS)} (default: quick; "
                                                      "normrnn study --help has a table of them)")
    p.add_argument("--config", help="a TOML study file (keys of normrnn.study.StudyConfig; `preset = ...` as base)")
    p.add_argument("--out", required=p.prog.split()[-1] != "study",
                   help="the study directory; re-running resumes it")
    p.add_argument("--threads", type=int, help="torch threads, shared by --nproc processes (default: the preset's)")
    p.add_argument("--device", help="cpu or cuda (default: the preset's)")
    p.add_argument("--precision", choices=["fp32", "bf16", "auto"],
                   help="bf16 autocast, or auto: bf16 where a training step measured at least 10%% faster at the "
                        "study's shapes here, decided once per study (default: the preset's)")
    p.add_argument("--model", help="your own model: MODULE:FACTORY, called as f(norm=, topology=, depth=, seed=, "
                                   "**settings) -> nn.Module (the current directory and PYTHONPATH are searched)")
    p.add_argument("--data", help="your own data: MODULE:FACTORY, called as f(split=, seed=) -> Dataset of "
                                  "(input, target) pairs (default: the built-in dataset)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--tensorboard", action="store_true",
                   help="log loss, grad norm, gate saturation and gate histograms to runs/ID/tensorboard "
                        "(needs normrnn[tensorboard])")
    g = p.add_argument_group("scale-out")
    if p.prog.split()[-1] == "study":
        g.add_argument("--workers", type=int, help="train N runs side by side in local processes, the threads split "
                                                   "between them (default: the preset's)")
    g.add_argument("--nproc", type=int, default=1, help="train each run data-parallel in N local processes "
                                                         "(DDP, gloo on CPU, nccl on GPU; default 1)")
    g.add_argument("--executor", default="local", choices=["local", "ray"],
                   help="local, or ray: one Ray task per run (needs normrnn[ray]; default local)")
    g.add_argument("--ray-address", help="the Ray cluster (default: $RAY_ADDRESS, else a local instance)")


# each subcommand's --help ends with commands to copy
_EXAMPLES = {
    "explain": ["normrnn explain layer --layout BTF --shape 4,2,3     # per sample and step: statistics (B, T)",
                "normrnn explain group:8 --layout BTCHW --shape 2,3,32,8,8 --reduce TCHW",
                "normrnn explain --tour                              # TF1, Keras and PyTorch conventions"],
    "bench": ["normrnn bench cells --quick                         # checks that it runs: a tiny shape, one round",
              "normrnn bench layers --norms none,layer,group:8 --precision auto",
              "normrnn bench norms --shape 16,256,32,32"],
    "study": ["normrnn study --preset quick --out study-quick      # what make demo runs; re-run to resume",
              "normrnn study --preset tuned --plan --out study-tuned   # the runs and an estimated time; no training",
              "normrnn study --model examples.own_model:build --config examples/own_model.toml --out study-own"],
    "train": ["normrnn train --preset quick --norm layer --depth 2 --out run-layer",
              "torchrun --nproc-per-node 2 -m normrnn train --preset quick --norm group:8 --out run-ddp"],
    "audit": ["normrnn audit examples.audit_convrnn:build --input-shape 4,10,1,64,64 --layout BTCHW",
              "normrnn audit mypkg.models:build --input-shape 8,20,32 --layout BTF --eval"],
    "report": ["normrnn report study-quick                          # report.md, results.csv/json and plots",
               "normrnn report shard-0 shard-1 --out study-all       # one study run as shards"],
}


def _epilog(command: str) -> str:
    text = "examples:\n" + "\n".join(f"  {line}" for line in _EXAMPLES[command])
    if command == "study":
        from .study.config import preset_table

        text = ("presets (--preset NAME; wall time from start to report, measured on our 2-core CPU machine):\n"
                + preset_table() + "\n\n" + text)
    return text


def build_parser() -> argparse.ArgumentParser:
    from . import __version__

    parser = argparse.ArgumentParser(prog="normrnn", description="Normalization for recurrent networks, made explicit.")
    parser.add_argument("--version", action="version", version=f"normrnn {__version__}")
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (_add_explain, _add_bench, _add_study, _add_train, _add_audit, _add_report):
        add(sub)
    for command, p in sub.choices.items():
        p.epilog, p.formatter_class = _epilog(command), argparse.RawDescriptionHelpFormatter
    return parser


def _add_explain(sub: argparse._SubParsersAction) -> None:
    from .norms import norm_spec_names

    p = sub.add_parser("explain", help="say what a norm spec reduces, its statistics, parameters and equivalences")
    p.add_argument("spec", nargs="?", help=f"norm spec: {', '.join(norm_spec_names())}")  # the registry now
    p.add_argument("--layout", help="axis letters of the input, e.g. BTF, BCHW, BHWC, BTCHW")
    p.add_argument("--shape", help="input shape, e.g. 4,2,3")
    p.add_argument("--reduce", help="letters to reduce (default: the spec's default)")
    p.add_argument("--tour", action="store_true",
                   help="walk through the axis questions normrnn answers (TF1, Keras and PyTorch conventions)")
    p.set_defaults(func=_explain)


# bench layers' model: (flag, default, help); the defaults are bench cells' shape with 2 layers
_LAYER_SHAPE = (("--batch", 16, "B"), ("--in-channels", 16, "C_in"), ("--hidden-channels", 64, "C per layer"),
                ("--steps", 10, "T"), ("--kernel-size", 3, "k, odd or even"), ("--num-layers", 2, "stacked layers"))


def _add_bench(sub: argparse._SubParsersAction) -> None:
    from .kernels import backend_names

    backends = ", ".join(b for b in backend_names() if b != "auto")  # the registry now, plug-ins included
    bench = sub.add_parser("bench", help="time normrnn side by side with its references").add_subparsers(
        dest="target", required=True)
    p = bench.add_parser("norms", help="norms vs torch native on the ConvLSTM gate tensor, fwd and fwd+bwd")
    p.add_argument("--shape", default="16,256,32,32", help="B,C,H,W (default: the ConvLSTM gate tensor)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16", "float16"])
    _timing_flags(p, rounds=15, repeats=10, warmup=2)
    p = bench.add_parser("cells", help="one ConvLSTM layer (B=16, 16->64, 32x32, k=3, T=10) per norm and gate "
                                       "backend vs bias-only, a naive loop and the conv-only floor; with memory")
    p.add_argument("--quick", action="store_true", help="a tiny shape and one round: checks that it runs")
    p.add_argument("--backends", help=f"comma-separated gate backends: {backends} (default: eager,fused,compiled; "
                                      "--quick: eager,fused)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    p = bench.add_parser("profile", help="where one fwd+bwd of bench cells' ConvLSTM spends its CPU time, by category "
                                         "(torch.profiler)")
    p.add_argument("--norm", default="none", help="the layer's norm spec (default: none)")
    p.add_argument("--calls", type=int, default=2, help="profiled calls, after one untimed (default 2)")
    p.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    p = bench.add_parser("layers", help="stacked ConvLSTM fwd+bwd per norm vs bias-only and a naive loop")
    for flag, default, what in _LAYER_SHAPE:
        p.add_argument(flag, type=int, default=default, help=f"{what} (default {default})")
    p.add_argument("--size", default="32,32", help="H,W (default 32,32)")
    p.add_argument("--norms", default="none,layer,group:8,recurrent_batch:10",
                   help="comma-separated norm specs; 'none' is the reference (default: %(default)s)")
    p.add_argument("--backends", default="eager", help=f"comma-separated gate backends: {backends} "
                                                       "(default: %(default)s)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "bfloat16"])
    _timing_flags(p, rounds=5, repeats=1, warmup=1)
    for name, p in bench.choices.items():
        p.set_defaults(func=_bench_profile if name == "profile" else _bench)


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run the normalization ablation grid, then write its report")
    _run_flags(p)
    p.add_argument("--shard", help="run only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/4); shards may "
                                   "share one --out; the report is written when the grid is complete")
    p.add_argument("--plan", action="store_true", help="print the grid and an estimated time from a short timing; "
                                                       "train and write nothing")
    p.set_defaults(func=_study)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="one run of a study (one norm, topology, depth, seed, LR multiplier); "
                                     "data-parallel under torchrun or with --nproc")
    _run_flags(p)
    p.add_argument("--norm", help="norm spec (default: the study's first)")
    p.add_argument("--topology", choices=["stacked", "residual"], help="(default: the study's first)")
    p.add_argument("--depth", type=int, help="stacked layers (default: the study's first)")
    p.add_argument("--seed", type=int, help="(default: the study's first)")
    p.add_argument("--lr-mult", type=float, help="learning-rate multiplier (default: the study's first)")
    p.set_defaults(func=_train)


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="explain and check every normalization layer of your own model "
                                     "(exit code 1 when there are findings)")
    p.add_argument("factory", help="MODULE:FACTORY, a function returning the model (the module is imported from "
                                   "the current directory or the Python path)")
    p.add_argument("--input-shape", action="append", required=True,
                   help="an example input's shape, e.g. 4,10,1,64,64 (repeat for more inputs)")
    p.add_argument("--layout", default="BTCHW", help="the letters of the first input (default: %(default)s)")
    p.add_argument("--eval", action="store_true", help="audit the model in eval mode (default: training mode)")
    p.set_defaults(func=_audit)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, plots and a summary from one or more study directories")
    p.add_argument("dirs", nargs="+", help="study directories of one study (their results.jsonl are merged)")
    p.add_argument("--out", help="where to write the report (default: the first directory)")
    p.add_argument("--mixed", action="store_true", help="allow directories of different studies: each study gets "
                                                         "its own section, tables, baselines and plots, never pooled")
    p.set_defaults(func=_report)


def _show_warning(message: Warning | str, category: type[Warning], filename: str, lineno: int,
                  file: TextIO | None = None, line: str | None = None) -> None:
    """Warnings as one line each, as a command-line user wants them."""
    text = str(message).removeprefix("normrnn: ")
    print(f"normrnn: warning: {text}", file=sys.stderr if file is None else file)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; a bad input or a file problem is one line on stderr and exit code 2."""
    parser = build_parser()
    args = parser.parse_args(argv)
    previous = warnings.showwarning
    warnings.showwarning = _show_warning
    try:
        check_extras(args)
        return args.func(args)
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


if __name__ == "__main__":
    raise SystemExit(entry())
