"""Terrain derivatives of a DEM, chunk by chunk: slope, aspect and hillshade.

Each product comes from the elevation gradient at a pixel, estimated with Horn's 3 x 3
weights as GDAL's ``gdaldem`` does (``-alg Horn``, its default). Every chunk is read with
a one-pixel halo from its neighbours (:func:`dask.array.map_overlap`), so the result is
the same, bit for bit, whatever the chunking, and equals ``gdaldem`` on the whole raster:

- a pixel whose 3 x 3 window touches nodata, or the raster's edge, is nodata (NaN), as
  ``gdaldem`` without ``-compute_edges``;
- ``slope`` in degrees; ``aspect`` in degrees clockwise from north, the way the slope
  faces (downhill), NaN on flat ground (as ``gdaldem aspect`` without ``-zero_for_flat``);
  ``hillshade`` on GDAL's scale, 1 (in shadow) to 255 (facing the sun), before GDAL
  rounds it to a byte.

Why in the core: it needs only NumPy, dask and the affine. The gradient is taken in world
units through the inverse of the affine's linear part, so rectangular, flipped and
rotated grids are all right (``gdaldem`` reads only the pixel width and height, and so
is exact only for north-up grids, where the two agree). A DEM in degrees needs
``scale=`` (horizontal units per vertical unit, as ``gdaldem -s``): a gradient of metres
over degrees means nothing, so it is refused rather than guessed.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence

import dask.array as da
import numpy as np

from .errors import InputError
from .image import Image

__all__ = ["terrain", "PRODUCTS"]

PRODUCTS = ("slope", "aspect", "hillshade")


def _gradient(padded: np.ndarray, inverse: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """World gradient ``(dz/dx, dz/dy)`` of a chunk padded by one pixel, from Horn's weights.

    NaN wherever the 3 x 3 window holds a NaN: the sums carry the eight neighbours', and
    the centre, which Horn's weights skip, is added as ``0 * centre``.
    """
    z = padded.astype(np.float64)
    top, middle, bottom = z[:-2], z[1:-1], z[2:]
    d_row = ((bottom[:, :-2] + 2 * bottom[:, 1:-1] + bottom[:, 2:]) - (top[:, :-2] + 2 * top[:, 1:-1] + top[:, 2:])) / 8
    d_col = ((top[:, 2:] + 2 * middle[:, 2:] + bottom[:, 2:]) - (top[:, :-2] + 2 * middle[:, :-2] + bottom[:, :-2])) / 8
    d_row += 0 * middle[:, 1:-1]
    # the index gradient is J^T times the world gradient, with J = d(x, y) / d(row, col)
    return inverse[0, 0] * d_row + inverse[0, 1] * d_col, inverse[1, 0] * d_row + inverse[1, 1] * d_col


def _chunk(
    padded: np.ndarray, *, inverse: np.ndarray, products: tuple[str, ...], azimuth: float, altitude: float, z: float
) -> np.ndarray:
    """Map-overlap task: the products of one chunk, from the chunk and its one-pixel halo."""
    dx, dy = _gradient(padded[0], inverse)
    out = np.empty((len(products), *dx.shape), dtype=np.float32)
    for band, product in enumerate(products):
        if product == "slope":
            out[band] = np.degrees(np.arctan(np.hypot(dx, dy)))
        elif product == "aspect":
            aspect = (np.degrees(np.arctan2(-dx, -dy)) % 360).astype(np.float32)
            aspect[aspect == 360] = 0  # a tiny negative angle rounds up to 360 in float32
            out[band] = np.where((dx == 0) & (dy == 0), np.nan, aspect)
        else:
            sun = math.radians(azimuth)
            up, across = math.sin(math.radians(altitude)), math.cos(math.radians(altitude))
            facing = up - across * z * (dx * math.sin(sun) + dy * math.cos(sun))
            shade = 254 * facing / np.sqrt(1 + z * z * (dx * dx + dy * dy))
            out[band] = 1 + np.maximum(shade, 0)  # NaN stays NaN
    return out


def _elevation(dem: Image | str | os.PathLike) -> Image:
    if not isinstance(dem, Image):
        from .io import open as open_image

        dem = open_image(dem)
    if dem.ndim != 2 or dem.channels != 1:
        raise InputError(f"a DEM is one band of a 2D raster, got shape {dem.shape}; pick the band with dem[i]")
    return dem


def terrain(
    dem: Image | str | os.PathLike,
    products: str | Sequence[str] = ("slope",),
    *,
    scale: float | None = None,
    azimuth: float = 315.0,
    altitude: float = 45.0,
    z_factor: float = 1.0,
) -> Image:
    """Slope, aspect and hillshade of a DEM, lazily and chunk by chunk.

    Parameters
    ----------
    dem : Image or path
        Elevation, one band of a 2D raster; its ``meta["nodata"]`` and ``meta["mask"]``
        mark the holes.
    products : str or sequence of str
        Any of ``"slope"``, ``"aspect"``, ``"hillshade"``, in the band order wanted.
    scale : float, optional
        Horizontal units per vertical unit (``gdaldem -s``): ``111120`` for a DEM in
        degrees with heights in metres, ``0.3048`` for feet over metres. Needed for a
        geographic CRS; 1 otherwise.
    azimuth, altitude : float
        The sun's direction for the hillshade, degrees clockwise from north and above the
        horizon (``gdaldem``'s defaults).
    z_factor : float
        Vertical exaggeration of the hillshade (``gdaldem hillshade -z``).

    Returns
    -------
    Image
        float32, one band per product (``meta["band_names"]``), on the DEM's grid, chunked
        like it; NaN (``meta["nodata"]``) where the 3 x 3 window touches nodata or the edge.

    Raises
    ------
    InputError
        If a product is unknown, the DEM has more than one band, its CRS is geographic and
        *scale* is not given, or its affine is singular.

    Examples
    --------
    A plane rising 1 m per metre east and 5 m per metre south, on 10 m pixels:

    >>> north_up = np.array([[0, 10.0, 0], [-10.0, 0, 0], [0, 0, 1]])
    >>> dem = Image(np.arange(25.0).reshape(1, 5, 5) * 10, north_up)
    >>> terrain(dem, ["slope", "aspect"]).data[:, 2, 2].compute().astype(float).round(2).tolist()
    [78.9, 348.69]
    """
    dem = _elevation(dem)
    products = (products,) if isinstance(products, str) else tuple(products)
    unknown = [p for p in products if p not in PRODUCTS]
    if unknown or not products:
        raise InputError(f"unknown terrain product {unknown or products!r}; choose from {', '.join(PRODUCTS)}")
    if scale is None and getattr(dem.crs, "is_geographic", False):
        raise InputError(
            "the DEM's CRS is geographic (degrees): pass scale= (e.g. 111120 for heights in metres), or reproject it"
        )
    linear = np.asarray(dem.affine)[:2, :2] * (scale or 1.0)
    if abs(np.linalg.det(linear)) < 1e-300:
        raise InputError("the DEM's affine is singular: its pixels have no area")
    valid = dem.valid_mask()
    elevation = dem.data.astype(np.float64)
    if valid is not None:
        elevation = da.where(valid[None], elevation, np.nan)
    options = {"products": products, "azimuth": azimuth, "altitude": altitude, "z": z_factor}
    data = da.map_overlap(
        _chunk,
        elevation,
        depth={0: 0, 1: 1, 2: 1},
        boundary={0: "none", 1: np.nan, 2: np.nan},
        trim=False,
        chunks=((len(products),), *elevation.chunks[1:]),
        dtype=np.float32,
        inverse=np.linalg.inv(linear.T),
        **options,
    )
    meta = {"nodata": math.nan, "band_names": list(products), "anchor": dem.meta.get("anchor", "corner")}
    if dem.meta.get("path"):
        meta["path"] = dem.meta["path"]  # so that later errors name the DEM
    return Image(data, dem.affine, dem.crs, meta)
