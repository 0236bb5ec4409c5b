"""What every cell has, whatever its shape: its convolution geometry, and its norms' running statistics."""

from __future__ import annotations

from torch import nn

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

    def reset_running_stats(self) -> None:
        """Reset the running statistics of every batch norm in the cell."""
        for module in self.modules():
            if module is not self and hasattr(module, "reset_running_stats"):
                module.reset_running_stats()  # type: ignore[operator]  # hasattr: nn.Module types it Tensor | Module
