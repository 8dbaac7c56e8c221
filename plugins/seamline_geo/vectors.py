"""Vector labels in: polygons rasterized lazily onto any raster's grid.

``seamline.open("outlines.gpkg", like=scene)`` returns a label :class:`~seamline.Image` on
the grid of ``scene`` (any window of it too), so training code needs no geo knowledge.
The vectors are read once (any OGR format, through pyogrio), reprojected to the
raster's CRS when they are in another one (with a log line), and indexed; each dask chunk
then rasterizes only the polygons whose bounding box meets its window. The class comes
from an attribute (``attribute=``), else every polygon is class 1; text classes are
numbered in sorted order (or by ``classes=``) and named in ``meta["class_names"]``.
Where polygons overlap, the later one in the file wins, as in
``rasterio.features.rasterize``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import geopandas as gpd
import numpy as np
import pandas as pd
import rasterio.features
import shapely
from dask.base import tokenize

from seamline.errors import InputError
from seamline.image import Image, window_affine

from .grid import from_windows, to_pyproj, transform_from_affine

__all__ = ["open_vector_labels", "rasterize_window"]

logger = logging.getLogger("seamline")


def _read(path: str, crs: Any, target_crs: Any) -> gpd.GeoDataFrame:
    try:
        frame = gpd.read_parquet(path) if path.lower().endswith(".parquet") else gpd.read_file(path, engine="pyogrio")
    except Exception as exc:
        raise InputError(f"cannot be read as vector labels ({exc})", path) from exc
    frame = frame[frame.geometry.notna() & ~frame.geometry.is_empty]
    if crs is not None:
        frame = frame.set_crs(to_pyproj(crs), allow_override=True)
    if target_crs is None or frame.crs is None:
        return frame
    if to_pyproj(frame.crs) != target_crs:
        logger.info("%s: reprojecting labels from %s to %s", path, frame.crs.name, target_crs.name)
        frame = frame.to_crs(target_crs)
    return frame


def _class_values(
    frame: gpd.GeoDataFrame, attribute: str | None, classes: Sequence[str] | Mapping[str, int] | None, path: str
) -> tuple[np.ndarray, dict[int, str] | None]:
    if attribute is None:
        return np.ones(len(frame), dtype=np.int64), None
    if attribute not in frame.columns:
        raise InputError(
            f"has no attribute {attribute!r}; it has {[c for c in frame.columns if c != 'geometry']}", path
        )
    column = frame[attribute]
    if classes is None and pd.api.types.is_numeric_dtype(column):
        return column.to_numpy().astype(np.int64), None
    if classes is None:
        classes = sorted(column.astype(str).unique())
    ids = dict(classes) if isinstance(classes, Mapping) else {name: i for i, name in enumerate(classes, start=1)}
    unknown = set(column.astype(str)) - set(ids)
    if unknown:
        raise InputError(f"attribute {attribute!r} has classes {sorted(unknown)} missing from classes=", path)
    return column.astype(str).map(ids).to_numpy().astype(np.int64), {v: k for k, v in ids.items()}


def rasterize_window(
    shapes: list[tuple[Any, int]], window: tuple[int, int, int, int], affine: np.ndarray, dtype: str, all_touched: bool
) -> np.ndarray:
    """Burn *shapes* into one window ``(row, col, height, width)`` of the grid *affine*.

    Parameters
    ----------
    shapes : list of (shapely.Geometry, int)
        Geometries in the grid's world coordinates and the value each burns; later ones
        win where they overlap.
    window : (int, int, int, int)
        ``(row, col, height, width)`` of the window in the grid.
    affine : numpy.ndarray
        The grid's 3x3 ``(row, col) -> (x, y)`` affine.
    dtype : str
        The dtype of the labels.
    all_touched : bool
        Burn every pixel a geometry touches, not only those whose centre it covers.

    Returns
    -------
    numpy.ndarray
        Shaped ``(1, height, width)``; 0 where no polygon falls.
    """
    row, col, height, width = window
    out = np.zeros((1, height, width), dtype=dtype)
    if shapes:
        transform = transform_from_affine(window_affine(affine, (row, col)))
        rasterio.features.rasterize(shapes, out=out[0], transform=transform, all_touched=all_touched)
    return out


def open_vector_labels(
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    like: Image | None = None,
    attribute: str | None = None,
    classes: Sequence[str] | Mapping[str, int] | None = None,
    all_touched: bool = False,
    crs: Any = None,
) -> Image:
    """Open vector labels as a lazy label raster on the grid of *like*.

    Parameters
    ----------
    path : str or os.PathLike
        Any vector file OGR reads (GeoPackage, GeoJSON, Shapefile, FlatGeobuf) or GeoParquet.
    chunks : optional
        Spatial chunks; by default those of *like*.
    like : Image
        The raster (or window) whose grid, CRS and chunks the labels take.
    attribute : str, optional
        The column holding the class; every polygon is class 1 without it.
    classes : sequence or mapping of str, optional
        Class names in id order (1, 2, ...) or a name-to-id mapping, for text attributes.
    all_touched : bool
        Burn every pixel a polygon touches, not only those whose centre it covers.
    crs : optional
        The vectors' real CRS, overriding a wrong one in the file.

    Returns
    -------
    Image
        One band of ``uint8`` (``uint16``/``int32`` for larger ids) labels, with
        ``meta["class_names"]`` for text classes.

    Raises
    ------
    InputError
        If *like* is missing, the file or attribute cannot be read, or no polygon
        overlaps the raster.
    """
    path = os.fspath(path)
    if not isinstance(like, Image) or like.ndim != 2:
        raise InputError("vector labels need like=<a 2D Image> to give them a grid", path)
    target_crs = to_pyproj(like.crs)
    frame = _read(path, crs, target_crs)
    values, names = _class_values(frame, attribute, classes, path)
    height, width = like.spatial_shape
    corners = np.array([[0, 0, 1], [height, 0, 1], [height, width, 1], [0, width, 1]], dtype=float)
    footprint = shapely.Polygon((like.affine @ corners.T)[:2].T)
    tree = shapely.STRtree(frame.geometry.values)
    if len(tree.query(footprint, predicate="intersects")) == 0:
        raise InputError(
            f"no label polygon overlaps the raster (bounds {footprint.bounds}); wrong CRS in the file? pass crs=",
            path,
        )
    smallest = np.min_scalar_type(max(int(values.max(initial=0)), 1)) if values.min(initial=0) >= 0 else np.int32
    dtype = np.dtype(smallest if np.dtype(smallest).itemsize <= 4 else np.int64).name
    spatial = like.data.chunks[1:] if chunks is None else da.core.normalize_chunks(chunks, (height, width))
    geometries = frame.geometry.values
    crs_wkt = None if target_crs is None else target_crs.to_wkt()
    burned = (shapely.to_wkb(geometries).tolist(), values, like.affine, crs_wkt, spatial, all_touched, dtype)
    name = f"rasterize-{os.path.basename(path)}-{tokenize(*burned)}"

    def task(window: tuple[int, int, int, int]) -> tuple:
        row, col, h, w = window
        box = corners * [h, w, 1] + [row, col, 0]
        hits = np.sort(tree.query(shapely.Polygon((like.affine @ box.T)[:2].T)))
        shapes = [(geometries[k], int(values[k])) for k in hits]
        return (rasterize_window, shapes, window, like.affine, dtype, all_touched)

    data = from_windows(name, task, spatial, 1, dtype)
    meta: dict[str, Any] = {"nodata": None, "anchor": "corner", "band_names": [attribute or "label"]}
    if names:
        meta["class_names"] = {0: "background", **names}
    return Image(data, like.affine, like.crs, meta)
