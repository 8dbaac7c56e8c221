"""Translating seamline's grid terms into rasterio's, and back.

seamline describes where a raster sits with an :class:`~seamline.Image` affine that maps
``(row, col)`` to world ``(x, y)`` and a ``pyproj.CRS``; rasterio uses an
``affine.Affine`` that maps ``(col, row)`` and its own ``rasterio.crs.CRS``. Both
conversions here are exact (they only move numbers around), so a raster read and written
back keeps its transform and CRS bit for bit. :func:`from_windows` goes the other way
round for lazy data: it builds a dask array whose every chunk is one task computing one
window ``(row, col, height, width)`` of the grid (a raster read, a rasterized polygon set).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pyproj
import rasterio.crs
from affine import Affine
from dask.highlevelgraph import HighLevelGraph

__all__ = ["affine_from_transform", "transform_from_affine", "to_pyproj", "to_rasterio_crs", "from_windows"]


def affine_from_transform(transform: Affine) -> np.ndarray:
    """Return the ``(row, col)`` affine of a rasterio transform.

    Parameters
    ----------
    transform : affine.Affine
        rasterio's ``(col, row) -> (x, y)`` transform.

    Returns
    -------
    numpy.ndarray
        3x3 matrix ``[[b, a, c], [e, d, f], [0, 0, 1]]``.
    """
    t = transform
    return np.array([[t.b, t.a, t.c], [t.e, t.d, t.f], [0.0, 0.0, 1.0]])


def transform_from_affine(affine: np.ndarray) -> Affine:
    """Return the rasterio transform of a ``(row, col)`` affine (inverse of :func:`affine_from_transform`).

    Parameters
    ----------
    affine : numpy.ndarray
        3x3 matrix of a 2D :class:`~seamline.Image`.

    Returns
    -------
    affine.Affine
    """
    m = np.asarray(affine, dtype=float)
    return Affine(m[0, 1], m[0, 0], m[0, 2], m[1, 1], m[1, 0], m[1, 2])


def to_pyproj(crs: Any) -> pyproj.CRS | None:
    """Return *crs* (rasterio CRS, pyproj CRS, EPSG code, WKT, ...) as a ``pyproj.CRS``.

    CRSs without an EPSG code (custom projections) go through their WKT.

    Parameters
    ----------
    crs : rasterio.crs.CRS, pyproj.CRS, int, str or None
        Anything ``pyproj.CRS.from_user_input`` takes, or a rasterio CRS.

    Returns
    -------
    pyproj.CRS or None
        None for None or an empty rasterio CRS.
    """
    if crs is None or (isinstance(crs, rasterio.crs.CRS) and not crs):
        return None
    if isinstance(crs, rasterio.crs.CRS):
        return pyproj.CRS.from_wkt(crs.to_wkt())
    return pyproj.CRS.from_user_input(crs)


def to_rasterio_crs(crs: Any) -> rasterio.crs.CRS | None:
    """Return *crs* as a ``rasterio.crs.CRS`` (through WKT, so custom CRSs survive).

    Parameters
    ----------
    crs : rasterio.crs.CRS, pyproj.CRS, int, str or None
        As for :func:`to_pyproj`.

    Returns
    -------
    rasterio.crs.CRS or None
    """
    crs = to_pyproj(crs)
    return None if crs is None else rasterio.crs.CRS.from_wkt(crs.to_wkt())


def from_windows(
    name: str, task: Callable[[tuple[int, int, int, int]], tuple], chunks: tuple, bands: int, dtype: Any
) -> da.Array:
    """Return the dask array whose chunk at each window is the dask task ``task(window)``.

    Parameters
    ----------
    name : str
        The array's dask name; it must tokenize everything the tasks compute from.
    task : callable
        ``task((row, col, height, width))`` returns the task computing that window, a
        tuple ``(function, *args)`` whose result is shaped ``(bands, height, width)``.
    chunks : (tuple of int, tuple of int)
        Row and column chunk sizes.
    bands : int
        The size of the first axis (one chunk).
    dtype : numpy.dtype
        The dtype the tasks return.

    Returns
    -------
    dask.array.Array
        Shaped ``(bands, sum(chunks[0]), sum(chunks[1]))``.
    """
    row_starts, col_starts = (np.cumsum((0, *sizes[:-1])) for sizes in chunks)
    graph: dict[Any, Any] = {
        (name, 0, i, j): task((int(row), int(col), int(height), int(width)))
        for i, (row, height) in enumerate(zip(row_starts, chunks[0], strict=True))
        for j, (col, width) in enumerate(zip(col_starts, chunks[1], strict=True))
    }
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=())
    return da.Array(hlg, name, ((bands,), *map(tuple, chunks)), dtype=dtype)
