"""nnU-Net's resampling rules, block by block: the numbers of ``resample_data_or_seg_to_shape``.

nnU-Net resizes a whole ``(channels x volume)`` array at once with scikit-image's
``resize`` (edge mode, no anti-aliasing, the result clipped to the input's range; spline
order 3 for intensities, 1 for class scores). When the spacing before or after is
anisotropic (largest over smallest above 3), it resizes each slice across the
low-resolution axis in plane and then takes the nearest slice (``order_z`` 0) or
interpolates between slices (``order_z`` 1) along that axis.

:func:`resample_to_shape` gives the same numbers one output block at a time: each block
is one task that reads only the input it maps into, plus a margin of
:data:`SPLINE_MARGIN` voxels for a spline's prefilter (whose influence decays by a factor
0.27 per voxel for order 3, so the margin changes nothing beyond float64 rounding). The
input's range, which ``resize`` clips to, is reduced from the input first (per channel,
or per channel and slice in the anisotropic case). Nearest slices are chosen by scipy's
own rounding of nnU-Net's coordinates, so ties (every slice, for a factor of 2) fall the
same way.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from scipy import ndimage

from ..geometry import _region

__all__ = ["resample_to_shape", "separate_axis", "new_shape", "SPLINE_MARGIN", "ANISOTROPY_THRESHOLD"]

#: nnU-Net's ``ANISO_THRESHOLD``: largest over smallest spacing above this is anisotropic.
ANISOTROPY_THRESHOLD = 3.0
#: Input voxels read beyond a block on each side for a spline of order 2 or more.
SPLINE_MARGIN = 24
_BLOCK_VALUES = 128**3


def new_shape(shape: Sequence[int], spacing: Sequence[float], target: Sequence[float]) -> tuple[int, ...]:
    """nnU-Net's ``compute_new_shape``: ``round(spacing / target * shape)`` per axis.

    Parameters
    ----------
    shape : sequence of int
    spacing, target : sequence of float
        The voxel size now and the one wanted.

    Returns
    -------
    tuple of int
    """
    return tuple(int(np.round(s / t * n)) for s, t, n in zip(spacing, target, shape, strict=True))


def _low_resolution_axes(spacing: Sequence[float]) -> np.ndarray:
    return np.where(max(spacing) / np.array(spacing) == 1)[0]


def separate_axis(
    spacing: Sequence[float],
    target: Sequence[float],
    force_separate_z: bool | None = None,
    threshold: float = ANISOTROPY_THRESHOLD,
) -> int | None:
    """The axis resampled on its own (nnU-Net's ``determine_do_sep_z_and_axis``), or None.

    Parameters
    ----------
    spacing, target : sequence of float
        The voxel size now and after resampling.
    force_separate_z : bool or None
        The plans' ``force_separate_z``: None decides from the spacings.
    threshold : float
        Largest over smallest spacing above which a spacing is anisotropic.

    Returns
    -------
    int or None
        The single low-resolution axis, or None to resample all axes together.
    """
    if force_separate_z is not None:
        axes = _low_resolution_axes(spacing) if force_separate_z else None
    elif max(spacing) / min(spacing) > threshold:
        axes = _low_resolution_axes(spacing)
    elif max(target) / min(target) > threshold:
        axes = _low_resolution_axes(target)
    else:
        axes = None
    return int(axes[0]) if axes is not None and len(axes) == 1 else None


def _zoom(region: np.ndarray, scale: np.ndarray, offset: np.ndarray, shape: tuple, order: int) -> np.ndarray:
    """One channel of a block: scikit-image's ``resize`` grid, by ``affine_transform``, in float64."""
    out = np.empty(shape, dtype=np.float64)
    ndimage.affine_transform(region.astype(np.float64), scale, offset, shape, out, order=order, mode="nearest")
    return out


def _block(
    pieces: list, scale: np.ndarray, offset: np.ndarray, shape: tuple, order: int, bounds: np.ndarray | None
) -> np.ndarray:
    """An output block resampled from its input region; clipped to each channel's range for splines."""
    region = da.core.concatenate3(pieces)
    out = np.empty((region.shape[0], *shape), dtype=np.float32)
    for c in range(region.shape[0]):
        values = _zoom(region[c], scale, offset, shape, order)
        out[c] = values if bounds is None else np.clip(values, bounds[c, 0], bounds[c, 1])
    return out


def _separate_block(
    pieces: list,
    axis: int,
    picks: np.ndarray,
    weights: np.ndarray | None,
    scale: np.ndarray,
    offset: np.ndarray,
    shape: tuple,
    order: int,
    bounds: np.ndarray | None,
) -> np.ndarray:
    """An output block of the anisotropic rule: slices resized in plane, then taken or blended along *axis*.

    *picks* are, per output slice, the region's slices to take (order_z 0: one column;
    order_z 1: two, blended by *weights*); *bounds* the range of each region slice.
    """
    region = np.moveaxis(da.core.concatenate3(pieces), axis + 1, 1)
    plane = tuple(s for a, s in enumerate(shape) if a != axis)
    needed = np.unique(picks)
    out = np.empty((region.shape[0], len(picks), *plane), dtype=np.float32)
    for c in range(region.shape[0]):
        resized = {}
        for k in needed:
            values = _zoom(region[c, k], scale, offset, plane, order)
            resized[k] = values if bounds is None else np.clip(values, bounds[c, k, 0], bounds[c, k, 1])
        for z, pick in enumerate(picks):
            if weights is None:
                out[c, z] = resized[pick[0]]
            else:
                out[c, z] = (1 - weights[z]) * resized[pick[0]] + weights[z] * resized[pick[1]]
    return np.moveaxis(out, 1, axis + 1)


def _slice_coordinates(size: int, new: int) -> np.ndarray:
    """nnU-Net's coordinates along the separate axis (``align_corners=False``), as it computes them."""
    return float(size) / new * (np.arange(new) + 0.5) - 0.5


def _range(data: da.Array, axis: int | None) -> np.ndarray:
    """Each channel's minimum and maximum (per slice along *axis* when given): what ``resize`` clips to."""
    spatial = tuple(a + 1 for a in range(data.ndim - 1) if a != axis)
    low, high = da.compute(data.min(axis=spatial), data.max(axis=spatial))
    return np.stack([np.asarray(low, np.float64), np.asarray(high, np.float64)], axis=-1)


def resample_to_shape(
    data: da.Array,
    shape: Sequence[int],
    spacing: Sequence[float],
    target: Sequence[float],
    *,
    order: int,
    order_z: int = 0,
    force_separate_z: bool | None = None,
    threshold: float = ANISOTROPY_THRESHOLD,
) -> da.Array:
    """Resample ``(C, *spatial)`` *data* to *shape* as nnU-Net does, lazily, block by block.

    Parameters
    ----------
    data : dask.array.Array
        Floating point, channels first.
    shape : sequence of int
        The spatial shape wanted.
    spacing, target : sequence of float
        The voxel size of *data* and of the result (they decide the anisotropic rule).
    order : int
        Spline order (3 for intensities, 1 for class scores).
    order_z : {0, 1}
        Along the separate axis: nearest slice or linear between slices.
    force_separate_z : bool or None
        The plans' ``force_separate_z``.
    threshold : float
        The anisotropy threshold.

    Returns
    -------
    dask.array.Array
        ``float32``, shaped ``(C, *shape)``; *data* itself when the shape is unchanged.
    """
    shape = tuple(int(s) for s in shape)
    extent = np.asarray(data.shape[1:])
    if tuple(extent) == shape:
        return data
    axis = separate_axis(spacing, target, force_separate_z, threshold)
    source = data.rechunk({0: -1})
    bounds = _range(source, axis) if order > 1 else None
    margin = SPLINE_MARGIN if order > 1 else 0
    scale = extent / np.asarray(shape)
    limit = max(1, _BLOCK_VALUES // data.shape[0]) * 4
    chunks = da.core.normalize_chunks("auto", shape, limit=limit, dtype=np.float32)
    starts = [np.cumsum((0, *c)) for c in chunks]
    name = "nnunet-resample-" + tokenize(source, shape, order, order_z, axis)
    plane = [a for a in range(len(shape)) if a != axis]
    if axis is not None:
        coordinates = _slice_coordinates(int(extent[axis]), shape[axis])
        if order_z == 0:
            nearest = ndimage.map_coordinates(
                np.arange(extent[axis], dtype=float), [coordinates], order=0, mode="nearest"
            )
            columns = nearest.astype(int)[:, None]
        else:
            first = np.floor(coordinates).astype(int)
            columns = np.clip(np.stack([first, first + 1], axis=1), 0, extent[axis] - 1)
            fractions = coordinates - first
    tasks: dict[Any, Any] = {}
    for index in np.ndindex(*(len(c) for c in chunks)):
        lo = np.array([starts[a][i] for a, i in enumerate(index)])
        size = tuple(int(chunks[a][i]) for a, i in enumerate(index))
        hi = lo + np.array(size)
        first = np.floor((lo + 0.5) * scale - 0.5).astype(int)
        last = np.floor((hi - 0.5) * scale - 0.5).astype(int)
        low = np.clip(first - margin - 1, 0, extent - 1)
        high = np.clip(last + margin + 3, low + 1, extent)
        offset = (lo + 0.5) * scale - 0.5 - low
        task: tuple[Any, ...]
        if axis is None:
            task = (_block, _region(source, low, high), scale, offset, size, order, bounds)
        else:
            picks = columns[lo[axis] : hi[axis]]
            low[axis], high[axis] = picks.min(), picks.max() + 1
            weights = None if order_z == 0 else fractions[lo[axis] : hi[axis]]
            slices = None if bounds is None else bounds[:, low[axis] : high[axis]]
            task = (
                _separate_block,
                _region(source, low, high),
                axis,
                picks - low[axis],
                weights,
                scale[plane],
                offset[plane],
                size,
                order,
                slices,
            )
        key = (name, 0, *index)
        tasks[key] = task
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[source])
    return da.Array(graph, name, chunks=((data.shape[0],), *chunks), dtype=np.float32)
