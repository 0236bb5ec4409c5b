"""Whether a device has a fast bf16 path, which ``--precision auto`` (``bench``) and ``precision = "auto"`` (the
study) ask before they time bf16 beside fp32."""

from __future__ import annotations

import torch

__all__ = ["bf16_hardware"]


def bf16_hardware(device: torch.device) -> str | None:
    """Why ``device`` has no fast bf16 path (``None`` when it has one): a CPU without AVX512-BF16 or AMX, or a
    GPU without bf16 support."""
    if device.type == "cuda":
        return None if torch.cuda.is_bf16_supported() else f"{torch.cuda.get_device_name(device)} has no bf16"
    if device.type != "cpu":
        return f"no bf16 autocast on {device.type}"
    probes = [getattr(torch.cpu, name, None) for name in ("_is_avx512_bf16_supported", "_is_amx_tile_supported")]
    if any(probe is not None and probe() for probe in probes):
        return None
    return "this CPU has neither AVX512-BF16 nor AMX, so bf16 would run emulated"
