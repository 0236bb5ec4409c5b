"""The subcommands' handlers: each takes the parsed arguments and returns the exit code. Library calls only; the
modules a command needs are imported inside it, so "normrnn --help" stays fast."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..study import RunSpec, StudyConfig
    from ..study.distributed import Rank
    from ..study.report import Report

__all__ = ["audit", "bench", "bench_profile", "explain", "report", "study", "train"]


def _progress(message: str) -> None:
    """A benchmark's progress line, on stderr so the table on stdout stays clean."""
    print(message, file=sys.stderr, flush=True)


def explain(args: argparse.Namespace) -> int:
    from ..norms.explaining import explain, tour

    if args.tour:
        print(tour())
        return 0
    if args.spec is None or args.layout is None or args.shape is None:
        raise ValueError("expected SPEC, --layout and --shape (or --tour), e.g. "
                         "normrnn explain layer --layout BTF --shape 4,2,3")
    print(explain(args.spec, layout=args.layout, shape=args.shape, reduce=args.reduce))
    return 0


def bench(args: argparse.Namespace) -> int:
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


def bench_profile(args: argparse.Namespace) -> int:
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


def _study_config(args: argparse.Namespace) -> StudyConfig:
    import dataclasses

    from ..study import load_config

    config = load_config(args.preset, args.config)
    keys = ("threads", "workers", "precision", "device", "model", "data")
    overrides: dict[str, Any] = {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}
    try:
        return dataclasses.replace(config, **overrides)
    except ValueError as e:
        raise ValueError(f"{e} (from the command line)") from None


def study(args: argparse.Namespace) -> int:
    from ..study import expand_grid, parse_shard, shard
    from ..study.grid import planned_runs

    config = _study_config(args)
    shard_of = None if args.shard is None else parse_shard(args.shard)
    if args.plan:
        from ..study.checks import check_device
        from ..study.plan import plan
        from ..study.preflight import check_factories, check_memory

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
    from ..study import load_results, write_report

    rows = load_results(args.out)
    missing = {s.run_id for s in expand_grid(config, rows)} - {r["run_id"] for r in rows}
    if missing:  # another shard is still at work
        print(f"{len(missing)} runs of the study are not in {args.out} yet; when every shard has finished, "
              f"run: normrnn report {args.out}", file=sys.stderr)
        return 0
    _print_tables(write_report([args.out]))
    return 0


def train(args: argparse.Namespace) -> int:
    from ..study import RunSpec

    config = _study_config(args)
    def pick(flag: Any, grid: tuple) -> Any:  # 0 is a value, never a missing flag (RunSpec checks the value)
        return grid[0] if flag is None else flag

    spec = RunSpec(norm=pick(args.norm, config.norms), topology=pick(args.topology, config.topologies),
                   depth=pick(args.depth, config.depths), seed=pick(args.seed, config.seeds),
                   lr_mult=pick(args.lr_mult, config.lr_mults))
    rank = _run(config, args, [spec])
    if rank is None:
        return 130
    if not rank.is_main:
        return 0
    from ..study import load_results

    row = next((r for r in load_results(args.out) if r["run_id"] == spec.run_id), None)
    if row is None:  # claimed by another process: it trains the run, this one did not
        from ..study.directory import claim_holder

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

    from ..study import run_study
    from ..study.distributed import init_from_env
    from ..study.preflight import check_runnable

    check_runnable(config, args.out, nproc=args.nproc, executor=args.executor, runs=runs,  # before any process
                   shard_of=shard_of)
    rank = init_from_env(config.device)
    try:
        run_study(config, args.out, runs=runs, shard_of=shard_of, progress=not args.no_progress, nproc=args.nproc,
                  executor=args.executor, ray_address=args.ray_address, tensorboard=args.tensorboard, checked=True)
    except KeyboardInterrupt:
        print(f"\ninterrupted: {args.out} is consistent; run the same command again to resume", file=sys.stderr)
        return None
    finally:
        if rank.active:
            dist.destroy_process_group()
    return rank


def report(args: argparse.Namespace) -> int:
    from ..study import write_report

    _print_tables(write_report(args.dirs, args.out, mixed=args.mixed))
    return 0


def _print_tables(report: Report) -> None:
    """The report's tables and summary (its parts as data), then where it was written."""
    print("\n\n".join(part for part in (report.tables, report.baselines, report.summary) if part))
    print(f"\nreport: {report.path} (plots, results.csv, results.json beside it)", file=sys.stderr)


def audit(args: argparse.Namespace) -> int:
    """Exit 0: no findings; 1: findings; 2: could not audit (a one-line error, as every CLI error)."""
    import torch

    from .._checks import first_line
    from .._loader import FactoryExit, check_text, no_exit, resolve
    from ..auditing import audit, parse_shapes

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
