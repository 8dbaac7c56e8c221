"""Slice by slice: a 2D network over a volume, the way TransUNet and many CT models run.

The engine tiles a volume with 3D tiles. To run a 2D network over it, give the engine a
tile of depth 1 along the slice axis (:func:`slice_tile_size`) and the network wrapped in
:class:`SliceWise`, which folds the slice axis of each 3D tile into the batch, runs the 2D
network on every slice, and unfolds the result. With a tile depth of 1 every slice is
predicted on its own, as in the paper; a larger depth only batches more slices at once.
After :func:`~seamline_medical.geometry.reorient` to RAS the slice axis 2 is axial.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["SliceWise", "slice_tile_size", "SLICE_AXIS"]

SLICE_AXIS = 2


class SliceWise(nn.Module):
    """Run a 2D network over every slice of 3D tiles.

    Parameters
    ----------
    module : torch.nn.Module
        A 2D network: ``(B, C, H, W) -> (B, K, H, W)``.
    axis : int
        The spatial axis (0, 1 or 2) the slices are taken along; 2 (axial in RAS) by default.
    """

    def __init__(self, module: nn.Module, axis: int = SLICE_AXIS) -> None:
        super().__init__()
        if axis not in (0, 1, 2):
            raise ValueError(f"slice axis must be 0, 1 or 2, got {axis}")
        self.module = module
        self.axis = axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Map ``(B, C, D0, D1, D2)`` to ``(B, K, D0, D1, D2)``, slice by slice."""
        batch, depth = x.shape[0], x.shape[2 + self.axis]
        slices = x.movedim(2 + self.axis, 1).flatten(0, 1)
        scores = self.module(slices)
        return scores.unflatten(0, (batch, depth)).movedim(1, 2 + self.axis)


def slice_tile_size(tile_size: int | Sequence[int], axis: int = SLICE_AXIS) -> tuple[int, int, int]:
    """The 3D tile that holds one 2D tile on one slice.

    Parameters
    ----------
    tile_size : int or sequence of two int
        The 2D network's tile size.
    axis : int
        The slice axis.

    Returns
    -------
    tuple of int
        The 2D tile with a 1 inserted at *axis*.
    """
    plane = [tile_size, tile_size] if isinstance(tile_size, int) else [int(t) for t in tile_size]
    if len(plane) != 2:
        raise ValueError(f"a 2D tile size has two values, got {tile_size}")
    plane.insert(axis, 1)
    first, second, third = plane
    return (first, second, third)
