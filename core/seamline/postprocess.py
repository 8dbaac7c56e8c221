"""Clean up a label map, per label value, chunk by chunk.

Each function keeps the input's chunks and stays lazy; the decisions (which component
to keep, which hole to fill) are made from small per-component tables that are computed
chunk by chunk, and then applied through a lookup table:

- :func:`keep_largest_component`: for every label value, only its largest connected
  component stays;
- :func:`remove_small`: components under a size are set to background;
- :func:`fill_holes`: background regions enclosed by one label take that label, as
  :func:`scipy.ndimage.binary_fill_holes` does for a mask. A region that touches the image
  border, or two different labels, is not a hole (MONAI's ``FillHoles`` rule).
"""

from __future__ import annotations

from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from ._chunks import like_input, map_chunks, neighbours, spatial_array
from .errors import InputError
from .labels import label, structure
from .measure import measure

__all__ = ["keep_largest_component", "remove_small", "fill_holes"]


def _apply(components: da.Array, values: da.Array, table: np.ndarray) -> da.Array:
    """Where ``table[component]`` is non-zero it replaces the value; -1 clears it."""

    def chunk(c: np.ndarray, v: np.ndarray) -> np.ndarray:
        looked_up = table[c]
        return np.where(looked_up == 0, v, np.where(looked_up < 0, 0, looked_up)).astype(v.dtype)

    return da.map_blocks(chunk, components, values, dtype=values.dtype)


def _components(labels: Any, connectivity: int | None) -> tuple[da.Array, da.Array, pd.DataFrame]:
    """The labels, their connected components by value, and each component's size and value."""
    values = spatial_array(labels, "labels")
    components, _ = label(values, connectivity=connectivity, by_value=True)
    table = measure(components, values).rename(columns={"intensity_min": "value"})
    starts = [f"bbox_start_{axis}" for axis in range(values.ndim)]
    return values, components, table[["voxels", "value", *starts]]


def _drop(components: da.Array, values: da.Array, keep: pd.Index, count: int) -> da.Array:
    table = np.full(count + 1, -1, dtype=np.int64)
    table[0] = 0
    table[np.asarray(keep, dtype=np.int64)] = 0
    return _apply(components, values, table)


def keep_largest_component(labels: Any, *, connectivity: int | None = None) -> Any:
    """Keep only the largest connected component of every label value.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        Integer labels, 0 is background.
    connectivity : int, optional
        Neighbour count: 4 (default) or 8 in 2D; 6 (default), 18 or 26 in 3D.

    Returns
    -------
    Image or dask.array.Array
        Like *labels*, lazy, with smaller components set to 0. Of equally large
        components, the one whose bounding box starts first (by row, then column, ...)
        stays, whatever the chunking.

    Raises
    ------
    InputError
        If the Image has more than one channel or *connectivity* is not possible.
    """
    values, components, table = _components(labels, connectivity)
    starts = [column for column in table if column.startswith("bbox_start_")]
    ranked = table.sort_values(["voxels", *starts], ascending=[False] + [True] * len(starts), kind="stable")
    keep = ranked.groupby("value").head(1).index.to_numpy()
    return like_input(_drop(components, values, pd.Index(keep), len(table)), labels)


def remove_small(labels: Any, *, min_size: int, connectivity: int | None = None) -> Any:
    """Set connected components smaller than *min_size* voxels to background.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        Integer labels, 0 is background.
    min_size : int
        The smallest component size kept, in voxels.
    connectivity : int, optional
        Neighbour count: 4 (default) or 8 in 2D; 6 (default), 18 or 26 in 3D.

    Returns
    -------
    Image or dask.array.Array
        Like *labels*, lazy.

    Raises
    ------
    InputError
        If *min_size* is negative, the Image has more than one channel or
        *connectivity* is not possible.
    """
    if min_size < 0:
        raise InputError(f"min_size must be >= 0, got {min_size}")
    values, components, table = _components(labels, connectivity)
    return like_input(_drop(components, values, table.index[table["voxels"] >= min_size], len(table)), labels)


def _hole_neighbours(background: np.ndarray, values: np.ndarray, footprint: np.ndarray) -> pd.DataFrame:
    """(background component, neighbouring label value) pairs in one padded chunk."""
    found = []
    for (component, _), (_, value) in zip(
        neighbours(background, footprint), neighbours(values, footprint), strict=True
    ):
        touching = (component > 0) & (value != 0)
        found.append(pd.DataFrame({"component": component[touching], "value": value[touching]}))
    return pd.concat(found).drop_duplicates()


def fill_holes(labels: Any, *, connectivity: int | None = None) -> Any:
    """Fill background regions enclosed by a single label with that label.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        Integer labels, 0 is background.
    connectivity : int, optional
        Neighbour count of the background: 4 (default) or 8 in 2D; 6 (default), 18 or 26
        in 3D (the ``structure`` of :func:`scipy.ndimage.binary_fill_holes`).

    Returns
    -------
    Image or dask.array.Array
        Like *labels*, lazy. For a binary mask, equal to ``binary_fill_holes``.

    Raises
    ------
    InputError
        If the Image has more than one channel or *connectivity* is not possible.
    """
    values = spatial_array(labels, "labels")
    footprint = structure(values.ndim, connectivity)
    background, count = label(values == 0, connectivity=connectivity)
    padded = [da.overlap.overlap(a.astype(np.int64), depth=1, boundary=-1) for a in (background, values)]
    parts = map_chunks(_hole_neighbours, *padded, footprint=footprint)
    pairs = pd.concat(parts).drop_duplicates()
    # The -1 halo marks the image border: a region that reaches it has two or more values.
    enclosing = pairs.groupby("component")["value"].agg(["nunique", "first"])
    holes = enclosing[(enclosing["nunique"] == 1) & (enclosing["first"] > 0)]
    table = np.zeros(count + 1, dtype=np.int64)
    table[holes.index.to_numpy(dtype=np.int64)] = holes["first"].to_numpy()
    return like_input(_apply(background, values, table), labels)
