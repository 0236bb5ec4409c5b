"""The ``normrnn`` argument parser: one ``_add_<command>`` per subcommand, each naming its handler in
:mod:`.commands`."""

from __future__ import annotations

import argparse

from .commands import audit, bench, bench_profile, explain, report, study, train

__all__ = ["build_parser"]


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
        from ..study.presets import preset_table

        text = ("presets (--preset NAME; wall time from start to report, measured on our 2-core CPU machine):\n"
                + preset_table() + "\n\n" + text)
    return text


def build_parser() -> argparse.ArgumentParser:
    from .. import __version__

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
    from ..norms import norm_spec_names

    p = sub.add_parser("explain", help="say what a norm spec reduces, its statistics, parameters and equivalences")
    p.add_argument("spec", nargs="?", help=f"norm spec: {', '.join(norm_spec_names())}")  # the registry now
    p.add_argument("--layout", help="axis letters of the input, e.g. BTF, BCHW, BHWC, BTCHW")
    p.add_argument("--shape", help="input shape, e.g. 4,2,3")
    p.add_argument("--reduce", help="letters to reduce (default: the spec's default)")
    p.add_argument("--tour", action="store_true",
                   help="walk through the axis questions normrnn answers (TF1, Keras and PyTorch conventions)")
    p.set_defaults(func=explain)


# bench layers' model: (flag, default, help); the defaults are bench cells' shape with 2 layers
_LAYER_SHAPE = (("--batch", 16, "B"), ("--in-channels", 16, "C_in"), ("--hidden-channels", 64, "C per layer"),
                ("--steps", 10, "T"), ("--kernel-size", 3, "k, odd or even"), ("--num-layers", 2, "stacked layers"))


def _add_bench(sub: argparse._SubParsersAction) -> None:
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
        p.set_defaults(func=bench_profile if name == "profile" else bench)


def _add_study(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("study", help="run the normalization ablation grid, then write its report")
    _run_flags(p)
    p.add_argument("--shard", help="run only shard I of N (0-based, e.g. $SLURM_ARRAY_TASK_ID/4); shards may "
                                   "share one --out; the report is written when the grid is complete")
    p.add_argument("--plan", action="store_true", help="print the grid and an estimated time from a short timing; "
                                                       "train and write nothing")
    p.set_defaults(func=study)


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="one run of a study (one norm, topology, depth, seed, LR multiplier); "
                                     "data-parallel under torchrun or with --nproc")
    _run_flags(p)
    p.add_argument("--norm", help="norm spec (default: the study's first)")
    p.add_argument("--topology", choices=["stacked", "residual"], help="(default: the study's first)")
    p.add_argument("--depth", type=int, help="stacked layers (default: the study's first)")
    p.add_argument("--seed", type=int, help="(default: the study's first)")
    p.add_argument("--lr-mult", type=float, help="learning-rate multiplier (default: the study's first)")
    p.set_defaults(func=train)


def _add_audit(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("audit", help="explain and check every normalization layer of your own model "
                                     "(exit code 1 when there are findings)")
    p.add_argument("factory", help="MODULE:FACTORY, a function returning the model (the module is imported from "
                                   "the current directory or the Python path)")
    p.add_argument("--input-shape", action="append", required=True,
                   help="an example input's shape, e.g. 4,10,1,64,64 (repeat for more inputs)")
    p.add_argument("--layout", default="BTCHW", help="the letters of the first input (default: %(default)s)")
    p.add_argument("--eval", action="store_true", help="audit the model in eval mode (default: training mode)")
    p.set_defaults(func=audit)


def _add_report(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help="tables, plots and a summary from one or more study directories")
    p.add_argument("dirs", nargs="+", help="study directories of one study (their results.jsonl are merged)")
    p.add_argument("--out", help="where to write the report (default: the first directory)")
    p.add_argument("--mixed", action="store_true", help="allow directories of different studies: each study gets "
                                                         "its own section, tables, baselines and plots, never pooled")
    p.set_defaults(func=report)
