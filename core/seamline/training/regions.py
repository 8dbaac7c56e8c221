"""Where training patches may lie: the training and validation regions of a grid.

A region is a window (one slice per spatial axis) of an image. :func:`split_region`
cuts a grid in two along one axis, so that validation measures a place the network
never saw; :func:`free_window` checks, before any data is read, that a patch fits in the
training region between the validation windows excluded from it. Patch windows longer
than their region are centred on it (the sampler pads them), never moved outside it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import numpy as np

from ..errors import InputError

__all__ = ["Region", "AXIS_NAMES", "split_region", "free_window", "overlaps", "patch_shape", "patch_start"]

Region = tuple[slice, ...]
AXIS_NAMES = {2: {"y": 0, "rows": 0, "x": 1, "columns": 1}, 3: {"x": 0, "y": 1, "z": 2}}


def split_region(
    shape: Sequence[int], axis: int | str | None, *, fraction: float = 0.5, side: str = "high"
) -> tuple[Region, Region]:
    """Split a grid in two along one axis: (training region, validation region).

    Parameters
    ----------
    shape : sequence of int
        Spatial shape.
    axis : int or str
        A spatial axis index (None is refused), or a name: for 2D ``"x"`` (columns) or ``"y"`` (rows); for
        3D ``"x"``, ``"y"``, ``"z"`` (the first, second, third voxel axis).
    fraction : float
        The validation share of that axis, in (0, 1).
    side : {"high", "low"}
        Where validation lies: ``"high"`` is the far end (east for ``"x"`` on a north-up
        raster).

    Returns
    -------
    tuple of (tuple of slice, tuple of slice)

    Raises
    ------
    InputError
        If the axis, fraction or side is not valid.
    """
    names = AXIS_NAMES.get(len(shape), {})
    index = names.get(axis, axis) if isinstance(axis, str) else axis
    if not isinstance(index, int) or not 0 <= index < len(shape):
        raise InputError(f"split axis {axis!r} is not one of {sorted(names)} or 0..{len(shape) - 1}")
    if not 0 < fraction < 1 or side not in ("high", "low"):
        raise InputError(f"validation needs 0 < fraction < 1 and side 'high' or 'low', got {fraction}, {side!r}")
    cut = round(shape[index] * (1 - fraction if side == "high" else fraction))
    full = [slice(0, n) for n in shape]
    low, high = list(full), list(full)
    low[index], high[index] = slice(0, cut), slice(cut, shape[index])
    return (tuple(low), tuple(high)) if side == "high" else (tuple(high), tuple(low))


def overlaps(window: Region, other: Region) -> bool:
    """Whether two windows share a voxel.

    Parameters
    ----------
    window, other : tuple of slice
        Windows on one grid (starts and stops set, steps of 1).

    Returns
    -------
    bool
    """
    return all(a.start < b.stop and b.start < a.stop for a, b in zip(window, other, strict=True))


def patch_shape(patch_size: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """A patch size as one int per spatial axis.

    Parameters
    ----------
    patch_size : int or sequence of int
        One size for every axis, or one per axis.
    ndim : int
        The number of spatial axes.

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        If the sizes do not match the axes or one is below 1.
    """
    sizes = [patch_size] * ndim if isinstance(patch_size, int) else list(patch_size)
    if len(sizes) != ndim or min(sizes) < 1:
        raise InputError(f"patch size {patch_size} does not fit {ndim} spatial axes")
    return tuple(int(s) for s in sizes)


def patch_start(span: slice, size: int, wanted: int) -> int:
    """Where a patch of *size* along *span* starts, as near *wanted* as the span allows.

    Parameters
    ----------
    span : slice
        The region along one axis.
    size : int
        The patch's length along it.
    wanted : int
        The start asked for (clipped to the span).

    Returns
    -------
    int
        A start that keeps the patch inside the span; a patch longer than the span is
        centred on it (and padded when read).
    """
    room = span.stop - span.start - size
    return span.start + room // 2 if room < 0 else int(np.clip(wanted, span.start, span.start + room))


def free_window(region: Region, exclude: Sequence[Region], patch_size: int | Sequence[int]) -> Region:
    """A patch window in *region* that touches none of the *exclude* windows.

    Parameters
    ----------
    region : tuple of slice
        Where patches may lie.
    exclude : sequence of tuple of slice
        Windows patches must not touch.
    patch_size : int or sequence of int
        The patch shape.

    Returns
    -------
    tuple of slice
        The first free window in the order of the region's axes.

    Raises
    ------
    InputError
        If every patch position touches an excluded window.
    """
    size = patch_shape(patch_size, len(region))
    # A free patch slid towards the region's start along each axis in turn stays free and
    # stops at the start or against an excluded window: only those starts need trying.
    starts = [
        sorted({patch_start(span, n, span.start), *(patch_start(span, n, w[axis].stop) for w in exclude)})
        for axis, (span, n) in enumerate(zip(region, size, strict=True))
    ]
    for corner in itertools.product(*starts):
        window = tuple(slice(c, c + n) for c, n in zip(corner, size, strict=True))
        if not any(overlaps(window, other) for other in exclude):
            return window
    shape = tuple(s.stop - s.start for s in region)
    raise InputError(f"the validation windows leave no room for a training patch of size {size} in {shape}")
