"""``make gpu-check``: one command that proves and measures the GPU path on one H100/H200 in about 6 minutes.

On a CUDA machine it runs, from the working tree and installing nothing (``PYTHONPATH=src python3 -m
normrnn.gpu_check``; torch ≥ 2.4 and Triton ≥ 3.6 as the machine has them):

1. the CUDA tests: ``tests/test_triton.py``, every Triton case on the GPU against eager and the ``cuda``-marked
   test at the bench shape (it needs only pytest beside torch and Triton);
2. ``bench cells --device cuda`` with the eager, compiled and triton gate backends for ``none``, ``layer`` and
   ``group:8``, beside the naive loop and the conv-only floor (paired ratios, activation and peak memory), at
   the target shape B=16, 16 → 64 channels, 64×64, T=10;
3. the gate kernel's achieved bandwidth against a plain copy of the same bytes, forward and forward+backward;
4. the ``gpu`` study preset (a few minutes of training, every section of the report);

and writes ``OUT/gpu-check.json`` and ``OUT/gpu-check.md``. Without CUDA it says so in one line, runs the Triton
tests under the interpreter (where Triton and pytest are installed) and exits 0 when they pass. ``--rehearse`` runs
steps 2–4 on the CPU under the interpreter at a tiny shape (the ``smoke`` study), so the one-shot GPU run cannot fail
on the pipeline itself: the tests run it.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

from ._io import check_out_dir

__all__ = ["GPU_SHAPE", "REHEARSAL", "CheckShape", "kernel_bandwidth", "main", "measure"]

ROOT = Path(__file__).resolve().parents[2]  # the working tree: src/normrnn/gpu_check.py
TARGETS = {"normalized ÷ bias-only (layer, group:8)": "≤ 1.05", "gate kernel ÷ copy bandwidth, forward": "≥ 0.80",
           "gate kernel ÷ copy bandwidth, forward+backward": "≥ 0.60", "naive loop ÷ normrnn": "≥ 1.5"}


@dataclass(frozen=True)
class CheckShape:
    """What gpu-check measures, and how hard."""

    batch: int = 16  # B of bench cells and of the bandwidth probe
    in_channels: int = 16  # C_in of bench cells
    channels: int = 64  # C, the hidden channels
    size: int = 64  # H = W
    steps: int = 10  # T of bench cells
    backends: tuple[str, ...] = ("eager", "compiled", "triton")  # gate backends beside the naive loop and floor
    rounds: int = 10  # bench cells: interleaved rounds
    repeats: int = 3  # bench cells: timed calls per variant per round
    warmup: int = 2  # bench cells: untimed calls first (compiles)
    bandwidth_repeats: int = 50  # timed calls of the gate kernel and of the copy
    study: str = "gpu"  # the study preset to train


GPU_SHAPE = CheckShape()  # the target shape, on one H100/H200
# the same pipeline on CPU under the interpreter, in seconds (no compiled backend: it compiles for ~30 s)
REHEARSAL = CheckShape(batch=2, in_channels=2, channels=8, size=8, steps=2, backends=("eager", "triton"), rounds=1,
                       repeats=1, warmup=0, bandwidth_repeats=1, study="smoke")


def _pytest(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run pytest in a child process (its own interpreter mode and CUDA context); the summary line and code."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    return {"command": "pytest " + " ".join(args), "returncode": out.returncode,
            "summary": lines[-1] if lines else out.stderr.strip()[-500:], "seconds": time.perf_counter() - start}


def _timed(fn: Callable[[], object], repeats: int, device: str) -> float:
    import torch

    def sync() -> None:
        if device.startswith("cuda"):
            torch.cuda.synchronize()
    fn()
    sync()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    sync()
    return (time.perf_counter() - start) / repeats


def kernel_bandwidth(batch: int = 16, channels: int = 64, size: int = 64, *, repeats: int = 50,
                     device: str = "cuda") -> list[dict[str, Any]]:
    """The Triton gate block's achieved bandwidth for ``layer`` (4 groups) against ``copy_`` of the same bytes.

    Forward moves at least ``pre`` and ``c`` in and ``h`` and ``c'`` out (6 state-sized tensors, ``pre`` being
    4); forward+backward adds ``pre``, ``c``, ``dh``, ``dc'`` in and ``d pre``, ``dc`` out (10 more). The copy
    moves the same number of bytes (half read, half written), so the ratio is the fraction of copy bandwidth.
    """
    import torch

    from .kernels.triton import triton_lstm_gates

    pre = torch.randn(batch, 4 * channels, size, size, device=device, requires_grad=True)
    c = torch.randn(batch, channels, size, size, device=device, requires_grad=True)
    w, b = torch.ones(4 * channels, device=device), torch.zeros(4 * channels, device=device)
    state_bytes = c.numel() * c.element_size()
    rows = []
    for mode, tensors in (("forward", 6), ("forward+backward", 16)):
        nbytes = tensors * state_bytes
        src = torch.empty(nbytes // 8, device=device)
        dst = torch.empty_like(src)
        if mode == "forward":
            def run() -> object:
                with torch.no_grad():
                    return triton_lstm_gates(pre, c, w, b, groups=4)
        else:
            dh, dc = torch.randn_like(c), torch.randn_like(c)

            def run() -> object:
                h, c1 = triton_lstm_gates(pre, c, w, b, groups=4)
                return torch.autograd.grad((h, c1), (pre, c), (dh, dc))
        kernel, copy = _timed(run, repeats, device), _timed(lambda: dst.copy_(src), repeats, device)
        rows.append({"mode": mode, "bytes": nbytes, "kernel_ms": kernel * 1e3, "copy_ms": copy * 1e3,
                     "kernel_gb_s": nbytes / kernel / 1e9, "copy_gb_s": nbytes / copy / 1e9,
                     "fraction_of_copy": copy / kernel})
    return rows


def _bench_cells(device: str, shape: CheckShape) -> list[dict[str, Any]]:
    from .bench.layers import CELL_BENCH, bench_layers

    config = replace(CELL_BENCH, device=device, batch=shape.batch, in_channels=shape.in_channels,
                     hidden_channels=shape.channels, size=(shape.size, shape.size), steps=shape.steps,
                     hoisted=False, backends=shape.backends, rounds=shape.rounds, repeats=shape.repeats,
                     warmup=shape.warmup)
    return bench_layers(config, progress=lambda line: print(f"  bench: {line}", flush=True))


def _study(out: Path, device: str, preset: str) -> dict[str, Any]:
    from .study import load_config, run_study, write_report

    start = time.perf_counter()
    run_study(replace(load_config(preset), device=device), out / f"study-{preset}", progress=False)
    report = write_report([out / f"study-{preset}"])
    return {"seconds": time.perf_counter() - start, "report": str(report.path), "summary": report.summary}


def _markdown(result: dict[str, Any]) -> str:
    sh = result["shape"]
    lines = [f"# gpu-check on {result['device']}", "", f"torch {result['torch']}, Triton {result['triton']}, "
             f"{result['seconds']:.0f} s in all."]
    if result["tests"]:
        lines += ["", "## Tests", ""]
        lines += [f"- `{t['command']}`: {t['summary']} ({t['seconds']:.0f} s)" for t in result["tests"]]
    if result.get("bench"):
        lines += ["", f"## bench cells (B={sh['batch']}, {sh['in_channels']} → {sh['channels']}, "
                  f"{sh['size']}×{sh['size']}, T={sh['steps']}, fwd+bwd, paired)", "",
                  "| variant | median ms | ÷ bias-only | ÷ same-backend bias-only | naive ÷ this | activation MB | "
                  "CUDA peak MB |", "|---|---|---|---|---|---|---|"]
        for r in result["bench"]:
            naive = 1 / r["ratio_vs_naive"] if r.get("ratio_vs_naive") else None
            lines.append(f"| {r['norm']} | {r['median_ms']:.2f} | {r['ratio']:.3f} "
                         f"| {_num(r.get('ratio_vs_bias_backend'))} | {_num(naive)} | {r['activation_mb']:.0f} "
                         f"| {_num(r.get('cuda_peak_mb'), 0)} |")
    if result.get("bandwidth"):
        lines += ["", f"## Gate kernel bandwidth (layer, B={sh['batch']}, C={sh['channels']}, "
                  f"{sh['size']}×{sh['size']})", "",
                  "| mode | MB moved | kernel ms | GB/s | copy GB/s | fraction of copy |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {r['bytes'] / 2**20:.0f} | {r['kernel_ms']:.3f} | {r['kernel_gb_s']:.0f} "
                  f"| {r['copy_gb_s']:.0f} | {r['fraction_of_copy']:.2f} |" for r in result["bandwidth"]]
    lines += ["", "Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()) + "."]
    if result.get("study"):
        lines += ["", f"## The {sh['study']} study preset", "", f"{result['study']['seconds']:.0f} s; report: "
                  f"{result['study']['report']}", "", result["study"]["summary"]]
    return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _write(out: Path, result: dict[str, Any]) -> None:
    from ._io import atomic_write_text

    atomic_write_text(out / "gpu-check.json", json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(out / "gpu-check.md", _markdown(result))


def measure(out: Path, device: str, shape: CheckShape, *, tests: list[dict[str, Any]] | None = None,
            study: bool = True) -> dict[str, Any]:
    """Steps 2–4 (bench cells, kernel bandwidth, the study) on ``device`` at ``shape``; writes ``out/gpu-check.*``
    after each step, so the figures are safe if a later one fails."""
    import torch
    import triton

    start = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(device) if device.startswith("cuda") else "CPU (Triton interpreter)"
    result: dict[str, Any] = {"device": name, "torch": torch.__version__, "triton": triton.__version__,
                              "shape": asdict(shape), "tests": tests or []}
    print(f"gpu-check on {name}: bench cells", flush=True)
    result["bench"] = _bench_cells(device, shape)
    result["seconds"] = time.perf_counter() - start
    _write(out, result)
    result["bandwidth"] = kernel_bandwidth(shape.batch, shape.channels, shape.size, repeats=shape.bandwidth_repeats,
                                           device=device)
    result["seconds"] = time.perf_counter() - start
    _write(out, result)
    if study:
        print(f"gpu-check: the {shape.study} study preset", flush=True)
        result["study"] = _study(out, device, shape.study)
        result["seconds"] = time.perf_counter() - start
        _write(out, result)
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check", help="output folder (default: %(default)s)")
    parser.add_argument("--skip-study", action="store_true", help="leave out the study preset")
    parser.add_argument("--rehearse", action="store_true",
                        help="without CUDA: bench, bandwidth and the smoke study on the CPU under the interpreter")
    args = parser.parse_args(argv)
    try:
        check_out_dir(Path(args.out))  # before the tests and benchmarks, not after them
    except ValueError as e:
        print(f"gpu-check: {e}", file=sys.stderr)
        return 2
    if args.rehearse:
        os.environ.setdefault("TRITON_INTERPRET", "1")  # read when Triton is first imported
    import torch

    if not torch.cuda.is_available():
        from .kernels.triton import triton_unavailable

        why = triton_unavailable(interpreter=True)
        if why:
            print(f"gpu-check: no CUDA device here, so no GPU figures, and no interpreter tests: {why}")
            return 0
        if args.rehearse:
            measure(Path(args.out), "cpu", REHEARSAL, study=not args.skip_study)
            print(f"gpu-check: rehearsed on the CPU under the interpreter (no GPU figures): {args.out}/gpu-check.md")
            return 0
        tests = _pytest(["tests/test_triton.py"], {"TRITON_INTERPRET": "1"})
        print(f"gpu-check: no CUDA device here, so no GPU figures; the Triton kernels under the interpreter: "
              f"{tests['summary']}")
        return 0 if tests["returncode"] in (0, 5) else tests["returncode"]  # 5: pytest collected nothing
    print(f"gpu-check on {torch.cuda.get_device_name()}: tests", flush=True)
    runs = [_pytest(["tests/test_triton.py"])]
    measure(Path(args.out), "cuda", GPU_SHAPE, tests=runs, study=not args.skip_study)
    print((Path(args.out) / "gpu-check.md").read_text())
    return 0 if all(t["returncode"] in (0, 5) for t in runs) else 1


if __name__ == "__main__":
    raise SystemExit(main())
