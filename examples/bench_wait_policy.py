"""OpenMP's wait policy on shared cores: one ConvLSTM training step per configuration, each in its own process.

    python examples/bench_wait_policy.py --rounds 8            # quiet machine
    python examples/bench_wait_policy.py --rounds 4 --busy     # with one busy Python loop on the cores

Each round runs every configuration once, in shuffled order; the medians are printed (docs/performance.md,
"Shared cores"). OpenMP reads OMP_WAIT_POLICY when torch loads, hence one process per measurement.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import subprocess
import sys

STEP = """
import sys, time, torch
from normrnn.layers import ConvLSTM
torch.set_num_threads(int(sys.argv[1]))
model, x = ConvLSTM(16, 64, 3), torch.randn(16, 10, 16, 32, 32)
def step():
    model(x)[0].square().mean().backward()
step()
times = []
for _ in range(3):
    start = time.perf_counter(); step(); times.append(time.perf_counter() - start)
print(min(times))
"""
CONFIGS = {"default (spin)": ({}, 2), "OMP_WAIT_POLICY=PASSIVE": ({"OMP_WAIT_POLICY": "PASSIVE"}, 2),
           "1 thread": ({}, 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--busy", action="store_true", help="run one busy Python loop beside the measurements")
    args = parser.parse_args()
    busy = subprocess.Popen([sys.executable, "-c", "while True: pass"]) if args.busy else None
    seconds: dict[str, list[float]] = {name: [] for name in CONFIGS}
    try:
        for _ in range(args.rounds):
            for name in random.sample(list(CONFIGS), len(CONFIGS)):
                env, threads = CONFIGS[name]
                env = {k: v for k, v in os.environ.items() if k != "OMP_WAIT_POLICY"} | env
                out = subprocess.run([sys.executable, "-c", STEP, str(threads)], env=env, check=True,
                                     capture_output=True, text=True).stdout
                seconds[name].append(float(out))
    finally:
        if busy is not None:
            busy.kill()
    for name, values in seconds.items():
        print(f"{name:<26} median {statistics.median(values):.2f} s  ({', '.join(f'{v:.2f}' for v in values)})")


if __name__ == "__main__":
    main()
