"""Why does bias-only sit on the mean-frame plateau? Each plausible cause, one at a time, in the study's own loop.

Trains, on the study's data and with its training loop (``normrnn.study.train.train_run``), everything from the
defaults normrnn had until 0.1 (sigmoid head, one-cycle schedule, orthogonal recurrent init, forget bias 1):

- an independent ConvLSTM that uses no normrnn cell (``examples/own_model.py``: ``nn.Conv2d`` on ``[x; h]``),
  with PyTorch's default initialization and with Keras' (Glorot input kernel, orthogonal recurrent kernel,
  unit forget bias), with the sigmoid head and then with a linear one;
- normrnn's bias-only model with one default changed at a time: uniform recurrent init, forget bias 0,
  a constant learning rate, a longer warm-up, a linear head (the default since 0.2), no patching;
- normrnn ``group:8`` as the reference that does learn.

Writes ``OUT/diagnosis.md`` (and ``OUT/diagnosis.json``): the final test MSE against the no-learning floor,
steps to learn, and gate saturation after each epoch. Finished runs are kept, so a rerun resumes.

Usage::

    python examples/diagnose_bias_only.py --out diagnosis [--epochs 5] [--seeds 0 1] [--lr-mults 1 10]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import own_model

from normrnn._io import atomic_write_text
from normrnn.study import PRESETS, RunSpec
from normrnn.study.datasets import load_datasets, reference_predictors
from normrnn.study.train import train_run

OLD = {"head": "sigmoid"}  # the defaults until 0.1; each variant changes one thing
# (label, the change to the study's config, a model factory or None for normrnn's, the norm)
VARIANTS = [
    ("normrnn bias-only (0.1 defaults)", OLD, None, "none"),
    ("independent ConvLSTM, PyTorch init", OLD, own_model.build, "none"),
    ("independent ConvLSTM, Keras init", OLD, own_model.build_keras_init, "none"),
    ("bias-only, uniform recurrent init", {**OLD, "recurrent_init": "default"}, None, "none"),
    ("bias-only, forget bias 0", {**OLD, "forget_bias": 0.0}, None, "none"),
    ("bias-only, constant LR", {**OLD, "schedule": "constant"}, None, "none"),
    ("bias-only, longer warm-up (60%)", {**OLD, "warmup": 0.6}, None, "none"),
    ("bias-only, linear head", {"head": "linear"}, None, "none"),
    ("bias-only, no patching", {**OLD, "patch": 1}, None, "none"),
    ("independent ConvLSTM, PyTorch init, linear head", {"head": "linear"}, own_model.build, "none"),
    ("normrnn group:8 (reference)", OLD, None, "group:8"),
]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", required=True, help="directory for runs and diagnosis.md")
    p.add_argument("--preset", default="deep", help="the study whose data and sizes to use (default: deep)")
    p.add_argument("--epochs", type=int, default=5)
    p.add_argument("--batch-size", type=int, default=4, help="default 4: 48 steps per epoch on deep's data")
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--topology", default="stacked")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--lr-mults", type=float, nargs="+", default=[1.0, 10.0])
    p.add_argument("--only", help="run only the variants whose label contains this text")
    args = p.parse_args(argv)
    base = dataclasses.replace(PRESETS[args.preset], epochs=args.epochs, batch_size=args.batch_size)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    data = load_datasets(base)
    floor = min(m["test_mse"] for m in reference_predictors(data.test).values())
    done = json.loads((out / "diagnosis.json").read_text()) if (out / "diagnosis.json").exists() else {}
    for label, change, factory, norm in VARIANTS:
        if args.only and args.only not in label:
            continue
        config = dataclasses.replace(base, **change)
        for mult in args.lr_mults:
            for seed in args.seeds:
                key = f"{label} | lr×{mult:g} | seed {seed}"
                if key in done:
                    continue
                spec = RunSpec(norm, args.topology, args.depth, seed, mult)
                run_dir = out / "runs" / f"{len(done):03d}"
                row = train_run(config, spec, data, run_dir, model_factory=factory).to_dict()
                done[key] = {k: row[k] for k in ("test_mse", "train_mse", "steps_to_learn", "gate_saturation_curve",
                                                  "diverged", "val_curve")}
                atomic_write_text(out / "diagnosis.json", json.dumps(done, indent=1) + "\n")
                print(f"{key}: test MSE {row['test_mse']}, steps to learn {row['steps_to_learn']}", flush=True)
    atomic_write_text(out / "diagnosis.md", table(done, floor, base, args))
    print(out / "diagnosis.md")
    return 0


def table(done: dict, floor: float, base, args) -> str:
    steps = args.epochs * -(-base.train_samples // args.batch_size)
    lines = [f"Study data of preset `{args.preset}` ({base.size}×{base.size}, {base.frames_in} → {base.frames_out}), "
             f"{args.topology} depth {args.depth}, width {base.width}, {args.epochs} epochs of batch {args.batch_size} "
             f"= {steps} AdamW steps; no-learning floor (test MSE) {floor:.2f}. Saturated gates: the share of "
             "sigmoid gates within 0.01 of 0 or 1 on the validation set after epochs 1 and last.", "",
             "| variant | lr × | test MSE per seed | below 0.9 × floor | steps to learn "
             "| saturated gates, epoch 1 → last |",
             "|---|---|---|---|---|---|"]
    groups: dict[tuple[str, str], list[dict]] = {}
    for key, row in done.items():
        label, mult, _ = key.split(" | ")
        groups.setdefault((label, mult.removeprefix("lr×")), []).append(row)
    for (label, mult), rows in groups.items():
        mse = ", ".join("div." if r["diverged"] else f"{r['test_mse']:.1f}" for r in rows)
        below = sum(not r["diverged"] and r["test_mse"] < 0.9 * floor for r in rows)
        learn = ", ".join("never" if r["steps_to_learn"] is None else str(r["steps_to_learn"]) for r in rows)
        curves = [r["gate_saturation_curve"] for r in rows if r["gate_saturation_curve"]]
        first, last = (statistics.fmean(c[k] for c in curves) if curves else None for k in (0, -1))
        sat = f"{100 * first:.0f}% → {100 * last:.0f}%" if curves else "–"
        lines.append(f"| {label} | {mult} | {mse} | {below}/{len(rows)} | {learn} | {sat} |")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    raise SystemExit(main())
