"""What every cell has, whatever its shape: its convolution geometry, and its norms' running statistics."""

from __future__ import annotations

from typing import Any

from torch import Tensor, nn

from ..norms.functional import check_mask
from .projection import Geometry

__all__: list[str] = []  # internal: the cells' shared base, documented by the cells that extend it


class CellCommon(nn.Module):
    """The base of :class:`~normrnn.cells.RecurrentCell` and :class:`~normrnn.cells.STLSTMCell`."""

    geometry: Geometry

    @property
    def spatial_dims(self) -> int:
        return self.geometry.spatial_dims

    @property
    def kernel_size(self) -> tuple[int, ...]:
        return self.geometry.kernel_size

    def _checked_step_inputs(self, x: Tensor, state: Any, mask: Tensor | None) -> tuple[Tensor, Any]:
        """What ``forward`` hands ``step``: ``x`` checked and projected, and the state checked (zeros when None),
        the mask checked. Each cell's ``check_input``, ``project_input``, ``initial_state`` and ``check_state``."""
        cell: Any = self  # the four methods are each cell's own
        cell.check_input(x)
        gx = cell.project_input(x)  # (B, G·C, *S'), S' = S unless the input conv resamples
        B, spatial = x.shape[0], tuple(gx.shape[2:])
        state = cell.initial_state(gx) if state is None else cell.check_state(state, B, spatial, like=x)
        if mask is not None:
            check_mask(mask, f"(B,) = ({B},)", (B,))
        return gx, state

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every batch norm in the cell."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_running_stats"):
                module.reset_running_stats()  # type: ignore[operator]  # hasattr: nn.Module types it Tensor | Module
