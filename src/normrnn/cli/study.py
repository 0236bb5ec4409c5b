"""``normrnn study`` and ``normrnn train``: a study grid, or one of its runs, into a study directory (resumable;
local, data-parallel, sharded or on Ray)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .registry import subcommand

if TYPE_CHECKING:
    from ..study import RunSpec, StudyConfig
    from ..study.distributed import Rank
    from ..study.report import Report



def _run_flags(p: argparse.ArgumentParser) -> None:
    from ..study import PRESETS

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


def _presets() -> str:
    from ..study.presets import preset_table

    return ("presets (--preset NAME; wall time from start to report, measured on our 2-core CPU machine):\n"
            + preset_table())


_STUDY_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn study --preset quick --out study-quick      # what make demo runs; re-run to resume",
    "normrnn study --preset quick --plan --out study-quick   # the same study's runs and estimated time; no training",
    "normrnn study --model examples.own_model:build --data examples.own_model:load --config examples/own_model.toml "
    "--out study-own",
)


@subcommand("study", order=3, examples=_STUDY_EXAMPLES, epilog=_presets)
def _add_study(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("study", help="run the normalization ablation grid, then write its report")
    _run_flags(p)
    p.add_argument("--shard", help="run only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/4); shards may "
                                   "share one --out; the report is written when the grid is complete")
    p.add_argument("--plan", action="store_true", help="print the grid and an estimated time from a short timing; "
                                                       "train and write nothing")
    p.set_defaults(func=_study)


_TRAIN_EXAMPLES = (  # commands to copy, at the end of --help
    "normrnn train --preset quick --norm layer --depth 2 --out run-layer",
    "torchrun --nproc-per-node 2 -m normrnn train --preset quick --norm group:8 --out run-ddp",
)


@subcommand("train", order=4, examples=_TRAIN_EXAMPLES)
def _add_train(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser("train", help="one run of a study (one norm, topology, depth, seed, LR multiplier); "
                                     "data-parallel under torchrun or with --nproc")
    _run_flags(p)
    p.add_argument("--norm", help="norm spec (default: the study's first)")
    p.add_argument("--topology", choices=["stacked", "residual"], help="(default: the study's first)")
    p.add_argument("--depth", type=int, help="stacked layers (default: the study's first)")
    p.add_argument("--seed", type=int, help="(default: the study's first)")
    p.add_argument("--lr-mult", type=float, help="learning-rate multiplier (default: the study's first)")
    p.set_defaults(func=_train)


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


def _study(args: argparse.Namespace) -> int:
    from ..study import expand_grid, parse_shard, shard
    from ..study.grid import planned_runs

    config = _study_config(args)
    shard_of = None if args.shard is None else parse_shard(args.shard)
    if args.plan:
        from ..study.plan import plan
        from ..study.preflight import check_factories, check_memory
        from ..study.validation import check_device

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


def _train(args: argparse.Namespace) -> int:
    from ..study import RunSpec

    config = _study_config(args)
    def pick(flag: Any, grid: tuple[Any, ...]) -> Any:  # 0 is a value, never a missing flag (RunSpec checks the value)
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


def _print_tables(report: Report) -> None:
    """The report's tables and summary (its parts as data), then where it was written."""
    print("\n\n".join(part for part in (report.tables, report.baselines, report.summary) if part))
    print(f"\nreport: {report.path} (plots, results.csv, results.json beside it)", file=sys.stderr)
