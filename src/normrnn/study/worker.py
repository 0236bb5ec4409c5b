"""One worker of a local pool (``python -m normrnn.study.worker``, started by :func:`~normrnn.study.pool.run_pool`):
it reads its job from stdin and trains runs of it until none is left unclaimed or unfinished."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import torch

from .config import StudyConfig
from .executors import run_as_worker
from .grid import RunSpec
from .pool import POLL_S

__all__ = ["main"]


def main() -> int:
    """One child: read the job from stdin and train runs of it until none is left unclaimed or unfinished."""
    job = json.loads(sys.stdin.read())
    sys.path[:] = job["sys_path"]  # before any factory is imported: the caller's search path, in its order
    torch.set_num_threads(job["threads"])
    config = StudyConfig(**job["config"])
    runs = None if job["runs"] is None else [RunSpec(**s) for s in job["runs"]]
    shard_of = None if job["shard"] is None else tuple(job["shard"])
    try:
        run_as_worker(config, Path(job["out"]), runs, shard_of, tensorboard=job["tensorboard"], poll=POLL_S)
    except KeyboardInterrupt:
        return 130
    except ValueError as e:
        print(f"normrnn study: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
