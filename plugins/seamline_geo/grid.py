"""Translating seamline's grid terms into rasterio's, and back.

seamline describes where a raster sits with an :class:`~seamline.Image` affine that maps
``(row, col)`` to world ``(x, y)`` and a ``pyproj.CRS``; rasterio uses an
``affine.Affine`` that maps ``(col, row)`` and its own ``rasterio.crs.CRS``. Both
conversions here are exact (they only move numbers around), so a raster read and written
back keeps its transform and CRS bit for bit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyproj
import rasterio.crs
from affine import Affine

__all__ = ["affine_from_transform", "transform_from_affine", "to_pyproj", "to_rasterio_crs"]


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
    """
    if crs is None or (isinstance(crs, rasterio.crs.CRS) and not crs):
        return None
    if isinstance(crs, rasterio.crs.CRS):
        return pyproj.CRS.from_wkt(crs.to_wkt())
    return pyproj.CRS.from_user_input(crs)


def to_rasterio_crs(crs: Any) -> rasterio.crs.CRS | None:
    """Return *crs* as a ``rasterio.crs.CRS`` (through WKT, so custom CRSs survive)."""
    crs = to_pyproj(crs)
    return None if crs is None else rasterio.crs.CRS.from_wkt(crs.to_wkt())
