"""``torch.nn.LSTM`` and ``torch.nn.GRU`` state dicts, loaded into the dense layers under normrnn's names."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

__all__ = ["TorchRNNKeys"]


class TorchRNNKeys:
    """Load ``torch.nn.LSTM``/``GRU`` state dicts: ``weight_ih_l{k}[_reverse]`` etc. → normrnn names."""

    def _load_torch_keys(self, module: nn.Module, state_dict: dict[str, Any], prefix: str, *args: Any) -> None:
        if prefix + "weight_ih_l0" not in state_dict:
            return
        for k, layer in enumerate(self.recurrences):  # type: ignore[attr-defined]  # mixed into a RecurrentLayer
            for d, cell in enumerate(layer.cells):
                src = f"{prefix}%s_l{k}{'_reverse' if d else ''}"
                dst = f"{prefix}layers.{k}.{d}."
                if cell.normalized or getattr(cell, "peephole", False):
                    raise ValueError("a torch.nn.LSTM/GRU state dict fits only norm='none' without peepholes; "
                                     f"got norm={cell.norm_spec!r}")
                state_dict[dst + "weight_x"] = state_dict.pop(src % "weight_ih")
                state_dict[dst + "weight_h"] = state_dict.pop(src % "weight_hh")
                if src % "bias_ih" in state_dict:
                    b_ih, b_hh = state_dict.pop(src % "bias_ih"), state_dict.pop(src % "bias_hh")
                    self._convert_bias(state_dict, dst, b_ih, b_hh)

    @staticmethod
    def _convert_bias(state_dict: dict[str, Any], dst: str, b_ih: Tensor, b_hh: Tensor) -> None:
        state_dict[dst + "bias"] = b_ih + b_hh
