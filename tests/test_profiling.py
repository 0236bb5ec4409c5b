"""``normrnn.profiling``: the activation-memory probe counts what autograd saves and leaks nothing."""

from __future__ import annotations

import gc
import weakref

import torch

from normrnn.profiling import saved_tensor_bytes


def test_saved_bytes_count_distinct_storages() -> None:
    w = torch.ones(256, requires_grad=True)
    # mul saves its float32 operand (1 KiB); sigmoid saves its own output (1 KiB more)
    assert saved_tensor_bytes(lambda: torch.sigmoid(w * torch.ones(256))) == 2 * 1024


def test_the_probe_frees_what_it_measured() -> None:
    """An op that saves its own output (sigmoid) must not be kept alive by the probe: it leaked every study run."""
    w = torch.ones(1024, requires_grad=True)
    refs = []

    def forward() -> torch.Tensor:
        out = torch.sigmoid(w * 2)
        refs.append(weakref.ref(out))
        return out

    saved_tensor_bytes(forward)
    gc.collect()
    assert refs[0]() is None
