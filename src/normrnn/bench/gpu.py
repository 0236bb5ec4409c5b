"""``make gpu-check``: one command that proves and measures the GPU path on one H100/H200 in about 6 minutes.

On a CUDA machine it runs, from the working tree and installing nothing (``PYTHONPATH=src python3 -m
normrnn.bench.gpu``; torch ≥ 2.4 and Triton ≥ 3.6 as the machine has them):

1. the CUDA tests: ``tests/test_triton.py``, every Triton case on the GPU against eager and the ``cuda``-marked
   test at the bench shape (it needs only pytest beside torch and Triton);
2. ``bench cells --device cuda`` with the eager, compiled and triton gate backends for ``none``, ``layer`` and
   ``group:8``, beside the naive loop and the conv-only floor (paired ratios, activation and peak memory), at
   the target shape B=16, 16 → 64 channels, 64×64, T=10;
3. the gate kernel's achieved bandwidth against a plain copy of the same bytes, forward and forward+backward;
4. the ``gpu`` study preset (a few minutes of training, every section of the report);

and writes ``OUT/gpu-check.json`` and ``OUT/gpu-check.md``. Without CUDA it says so in one line, runs the Triton
tests under the interpreter (where Triton and pytest are installed) and exits 0 when they pass.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["kernel_bandwidth", "main"]

ROOT = Path(__file__).resolve().parents[3]  # the working tree: src/normrnn/bench/gpu.py
TARGETS = {"normalized ÷ bias-only (layer, group:8)": "≤ 1.05", "gate kernel ÷ copy bandwidth, forward": "≥ 0.80",
           "gate kernel ÷ copy bandwidth, forward+backward": "≥ 0.60", "naive loop ÷ normrnn": "≥ 1.5"}


def _pytest(args: list[str], env: dict[str, str] | None = None) -> dict[str, Any]:
    """Run pytest in a child process (its own interpreter mode and CUDA context); the summary line and code."""
    start = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args], cwd=ROOT,
                         capture_output=True, text=True, env={**os.environ, **(env or {})}, check=False)
    lines = [ln for ln in out.stdout.splitlines() if ln.strip()]
    return {"command": "pytest " + " ".join(args), "returncode": out.returncode,
            "summary": lines[-1] if lines else out.stderr.strip()[-500:], "seconds": time.perf_counter() - start}


def _timed(fn: Callable[[], object], repeats: int) -> float:
    import torch

    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(repeats):
        fn()
    torch.cuda.synchronize()
    return (time.perf_counter() - start) / repeats


def kernel_bandwidth(batch: int = 16, channels: int = 64, size: int = 64, *, repeats: int = 50) -> list[dict]:
    """The Triton gate block's achieved bandwidth for ``layer`` (4 groups) against ``copy_`` of the same bytes.

    Forward moves at least ``pre`` and ``c`` in and ``h`` and ``c'`` out (6 state-sized tensors, ``pre`` being
    4); forward+backward adds ``pre``, ``c``, ``dh``, ``dc'`` in and ``d pre``, ``dc`` out (10 more). The copy
    moves the same number of bytes (half read, half written), so the ratio is the fraction of copy bandwidth.
    """
    import torch

    from ..kernels.triton import triton_lstm_gates

    pre = torch.randn(batch, 4 * channels, size, size, device="cuda", requires_grad=True)
    c = torch.randn(batch, channels, size, size, device="cuda", requires_grad=True)
    w, b = torch.ones(4 * channels, device="cuda"), torch.zeros(4 * channels, device="cuda")
    state_bytes = c.numel() * c.element_size()
    rows = []
    for mode, tensors in (("forward", 6), ("forward+backward", 16)):
        nbytes = tensors * state_bytes
        src = torch.empty(nbytes // 8, device="cuda")
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
        kernel, copy = _timed(run, repeats), _timed(lambda: dst.copy_(src), repeats)
        rows.append({"mode": mode, "bytes": nbytes, "kernel_ms": kernel * 1e3, "copy_ms": copy * 1e3,
                     "kernel_gb_s": nbytes / kernel / 1e9, "copy_gb_s": nbytes / copy / 1e9,
                     "fraction_of_copy": copy / kernel})
    return rows


def _bench_cells() -> list[dict[str, Any]]:
    from .layers import CELL_BENCH, bench_layers

    config = CELL_BENCH.__class__(**{**CELL_BENCH.__dict__, "device": "cuda", "size": (64, 64), "hoisted": False,
                                "backends": ("eager", "compiled", "triton"), "rounds": 10, "repeats": 3,
                                "warmup": 2})
    return bench_layers(config, progress=lambda line: print(f"  bench: {line}", flush=True))


def _study(out: Path) -> dict[str, Any]:
    from ..study import load_config, run_study, write_report

    start = time.perf_counter()
    run_study(load_config("gpu"), out / "study-gpu", progress=False)
    report = write_report([out / "study-gpu"])
    return {"seconds": time.perf_counter() - start, "report": str(report.path), "summary": report.summary}


def _markdown(result: dict[str, Any]) -> str:
    lines = [f"# gpu-check on {result['device']}", "", f"torch {result['torch']}, Triton {result['triton']}, "
             f"{result['seconds']:.0f} s in all.", "", "## Tests", ""]
    lines += [f"- `{t['command']}`: {t['summary']} ({t['seconds']:.0f} s)" for t in result["tests"]]
    if result.get("bench"):
        lines += ["", "## bench cells --device cuda (B=16, 16 → 64, 64×64, T=10, fwd+bwd, paired)", "",
                  "| variant | median ms | ÷ bias-only | ÷ same-backend bias-only | naive ÷ this | activation MB | "
                  "CUDA peak MB |", "|---|---|---|---|---|---|---|"]
        for r in result["bench"]:
            naive = 1 / r["ratio_vs_naive"] if r.get("ratio_vs_naive") else None
            lines.append(f"| {r['norm']} | {r['median_ms']:.2f} | {r['ratio']:.3f} "
                         f"| {_num(r.get('ratio_vs_bias_backend'))} | {_num(naive)} | {r['activation_mb']:.0f} "
                         f"| {_num(r.get('cuda_peak_mb'), 0)} |")
    if result.get("bandwidth"):
        lines += ["", "## Gate kernel bandwidth (layer, B=16, C=64, 64×64)", "",
                  "| mode | MB moved | kernel ms | GB/s | copy GB/s | fraction of copy |", "|---|---|---|---|---|---|"]
        lines += [f"| {r['mode']} | {r['bytes'] / 2**20:.0f} | {r['kernel_ms']:.3f} | {r['kernel_gb_s']:.0f} "
                  f"| {r['copy_gb_s']:.0f} | {r['fraction_of_copy']:.2f} |" for r in result["bandwidth"]]
    lines += ["", "Targets: " + "; ".join(f"{k} {v}" for k, v in TARGETS.items()) + "."]
    if result.get("study"):
        lines += ["", "## The gpu study preset", "", f"{result['study']['seconds']:.0f} s; report: "
                  f"{result['study']['report']}", "", result["study"]["summary"]]
    return "\n".join(lines) + "\n"


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _write(out: Path, result: dict[str, Any]) -> None:
    from .._io import atomic_write_text

    atomic_write_text(out / "gpu-check.json", json.dumps(result, indent=1, default=str) + "\n")
    atomic_write_text(out / "gpu-check.md", _markdown(result))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gpu-check", description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="gpu-check", help="output folder (default: %(default)s)")
    parser.add_argument("--skip-study", action="store_true", help="leave out the gpu study preset")
    args = parser.parse_args(argv)
    import torch

    if not torch.cuda.is_available():
        from ..kernels.triton import triton_unavailable

        why = triton_unavailable(interpreter=True)
        if why:
            print(f"gpu-check: no CUDA device here, so no GPU figures, and no interpreter tests: {why}")
            return 0
        tests = _pytest(["tests/test_triton.py"], {"TRITON_INTERPRET": "1"})
        print(f"gpu-check: no CUDA device here, so no GPU figures; the Triton kernels under the interpreter: "
              f"{tests['summary']}")
        return 0 if tests["returncode"] in (0, 5) else tests["returncode"]  # 5: pytest collected nothing
    import triton

    start = time.perf_counter()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
                              "triton": triton.__version__, "tests": []}
    print(f"gpu-check on {result['device']}: tests", flush=True)
    result["tests"].append(_pytest(["tests/test_triton.py"]))
    print("gpu-check: bench cells", flush=True)
    result["bench"] = _bench_cells()
    result["bandwidth"] = kernel_bandwidth()
    result["seconds"] = time.perf_counter() - start
    _write(out, result)  # the figures are safe before the study starts
    if not args.skip_study:
        print("gpu-check: the gpu study preset", flush=True)
        result["study"] = _study(out)
    result["seconds"] = time.perf_counter() - start
    _write(out, result)
    print((out / "gpu-check.md").read_text())
    return 0 if all(t["returncode"] in (0, 5) for t in result["tests"]) else 1


if __name__ == "__main__":
    raise SystemExit(main())
