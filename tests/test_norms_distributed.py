"""Cross-process batch statistics: 2 gloo processes on CPU must equal one process over the global batch."""

from __future__ import annotations

import os

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from normrnn import BatchNorm, RecurrentBatchNorm

WORLD = 2
B, T, C = 6, 4, 3
LENGTHS = torch.tensor([4, 2, 3, 1, 4, 2])


def _build(kind: str, sync: bool) -> torch.nn.Module:
    if kind == "recurrent":
        module = RecurrentBatchNorm(C, max_steps=3, layout="BTCHW", sync=sync, momentum=0.2)
    else:
        module = BatchNorm(C, layout="BTCHW", sync=sync, momentum=0.2)
    with torch.no_grad():
        module.weight.copy_(torch.tensor([0.5, 1.5, 2.0]))
        module.bias.copy_(torch.tensor([0.1, -0.2, 0.3]))
    return module.double()


def _data(step: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(step)
    x = torch.randn(B, T, C, 2, 2, generator=g, dtype=torch.float64) * 2 + step
    dy = torch.randn(B, T, C, 2, 2, generator=g, dtype=torch.float64)
    mask = torch.arange(T) < LENGTHS[:, None]
    return x, dy, mask


def _run(module: torch.nn.Module, kind: str, rows: slice, masked: bool) -> dict[str, torch.Tensor]:
    """Two training steps on the given rows of the global batch; returns outputs, gradients and buffers."""
    out: dict[str, torch.Tensor] = {}
    for step in range(2):
        x, dy, mask = _data(step)
        x = x[rows].clone().requires_grad_(True)
        y = module(x, mask=mask[rows]) if masked else module(x)
        (y * dy[rows]).sum().backward()
        out[f"y{step}"], out[f"dx{step}"] = y.detach(), x.grad
    out.update(dw=module.weight.grad, db=module.bias.grad, mean=module.running_mean, var=module.running_var)
    return out


def _worker(rank: int, init_file: str, result_file: str, kind: str, masked: bool) -> None:
    os.environ.setdefault("GLOO_SOCKET_IFNAME", "lo")
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=WORLD)
    try:
        per_rank = B // WORLD
        out = _run(_build(kind, sync=True), kind, slice(rank * per_rank, (rank + 1) * per_rank), masked)
        for name in ("dw", "db"):  # parameters see only this rank's loss; DDP would sum them
            dist.all_reduce(out[name])
        torch.save(out, f"{result_file}.{rank}")
        dist.barrier()  # leave together, as run_study does (gloo teardown race)
    finally:
        dist.destroy_process_group()


@pytest.mark.slow
@pytest.mark.parametrize(("kind", "masked"), [("batch", False), ("batch", True), ("recurrent", False)])
def test_sync_batch_norm_equals_global_batch(tmp_path, kind, masked):
    if not dist.is_available():
        pytest.skip("torch.distributed is not available in this build")
    result = str(tmp_path / "result")
    mp.spawn(_worker, args=(str(tmp_path / "init"), result, kind, masked), nprocs=WORLD, join=True)
    ranks = [torch.load(f"{result}.{r}", weights_only=True) for r in range(WORLD)]
    want = _run(_build(kind, sync=False), kind, slice(None), masked)
    for name in ("y0", "y1", "dx0", "dx1"):
        torch.testing.assert_close(torch.cat([r[name] for r in ranks]), want[name], atol=1e-10, rtol=1e-10)
    for r in ranks:
        for name in ("dw", "db", "mean", "var"):
            torch.testing.assert_close(r[name], want[name].to(r[name].dtype), atol=1e-6, rtol=1e-6)


def test_sync_without_process_group_is_plain_batch_norm():
    x = torch.randn(4, 3, 3, 2, 2)
    synced, plain = BatchNorm(3, layout="BTCHW", sync=True), BatchNorm(3, layout="BTCHW")
    torch.testing.assert_close(synced(x), plain(x))
