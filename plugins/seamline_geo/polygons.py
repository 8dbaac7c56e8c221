"""The polygon side of vectorizing: tracing chunks with GDAL and writing vector files.

:func:`seamline.vectorize` (core) finds components across chunks and merges pieces; this
module is the backend it asks for through the ``seamline_vector_backend`` hook:
:func:`polygonize` traces one chunk with ``rasterio.features.shapes`` (GDAL's polygonize)
in pixel coordinates, and :func:`to_frame` builds the GeoDataFrame, adding geodesic
areas in square metres when the CRS is geographic. :func:`write_polygons` saves a table to
a single-file format (GeoPackage, FlatGeobuf, GeoJSON or GeoParquet), atomically;
:func:`polygons_output` is the ``--polygons`` product of ``seamline predict``, and
:func:`check_polygons_output` vets its path and input before any work.
"""

from __future__ import annotations

import itertools
import os
import warnings
from array import array as float_buffer
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pyproj
import rasterio.features
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image
from seamline.vectorize import VectorBackend, vectorize

from .formats import check_vector_path

# Chunks are traced in pixel coordinates on purpose (the affine comes after merging). A
# filter, not catch_warnings: tracing runs in threads, and catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")

__all__ = ["backend", "polygonize", "to_frame", "write_polygons", "polygons_output", "check_polygons_output"]


def _from_geojson(shapes: Iterable[tuple[dict, float]]) -> tuple[np.ndarray, np.ndarray]:
    """GeoJSON-like polygons as shapely polygons (and their values), built in one go.

    The vertices are copied into one flat buffer as the features stream by, so a chunk's
    GeoJSON (a Python tuple per vertex) is never all in memory at once.
    """
    coords, ring_sizes, polygon_sizes, values = float_buffer("d"), [], [], []
    for geometry, value in shapes:
        rings = geometry["coordinates"]
        polygon_sizes.append(len(rings))
        for ring in rings:
            ring_sizes.append(len(ring))
            coords.extend(itertools.chain.from_iterable(ring))
        values.append(value)
    offsets = (np.cumsum([0, *ring_sizes]), np.cumsum([0, *polygon_sizes]))
    vertices = np.frombuffer(coords, dtype=float).reshape(-1, 2)
    geometries = shapely.from_ragged_array(shapely.GeometryType.POLYGON, vertices, offsets)
    return geometries, np.array(values, dtype=np.int64)


def polygonize(
    array: np.ndarray, connectivity: int = 4, origin: tuple[int, int] = (0, 0)
) -> tuple[np.ndarray, np.ndarray]:
    """Trace the connected regions of equal non-zero value of *array* into polygons.

    Parameters
    ----------
    array : numpy.ndarray
        2D integer array; 0 is not traced.
    connectivity : {4, 8}
        As for ``rasterio.features.shapes``.
    origin : (int, int)
        ``(row, col)`` of the array's first pixel in the image it is a chunk of.

    Returns
    -------
    geometries : numpy.ndarray of shapely.Polygon
        Vertices are ``(col, row)`` pixel corners of the image (an integer translation).
    values : numpy.ndarray
        The value of each polygon.
    """
    array = np.ascontiguousarray(array, dtype=np.int32)
    shift = Affine.translation(origin[1], origin[0])
    return _from_geojson(rasterio.features.shapes(array, mask=array != 0, connectivity=connectivity, transform=shift))


def to_frame(columns: dict[str, Any], geometry: np.ndarray, crs: Any) -> gpd.GeoDataFrame:
    """Build the GeoDataFrame of :func:`seamline.vectorize`.

    Parameters
    ----------
    columns : dict
        Column arrays; ``area_m2`` (geodesic) is added after ``area`` when *crs* is geographic.
    geometry : numpy.ndarray
        Geometries in world coordinates.
    crs : pyproj.CRS or None

    Returns
    -------
    geopandas.GeoDataFrame
    """
    columns = dict(columns)
    if crs is not None and pyproj.CRS.from_user_input(crs).is_geographic:
        geod = pyproj.CRS.from_user_input(crs).get_geod()
        m2 = [abs(geod.geometry_area_perimeter(g)[0]) for g in geometry]
        at = list(columns).index("area") + 1
        items = list(columns.items())
        columns = dict([*items[:at], ("area_m2", np.array(m2, dtype=float)), *items[at:]])
    return gpd.GeoDataFrame(columns, geometry=gpd.GeoSeries(list(geometry), crs=crs))


backend = VectorBackend(polygonize=polygonize, to_frame=to_frame)


def write_polygons(frame: gpd.GeoDataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> None:
    """Write a GeoDataFrame to a vector file, atomically; the suffix chooses the format.

    Parameters
    ----------
    frame : geopandas.GeoDataFrame
        The polygons.
    path : str or os.PathLike
        ``.gpkg``, ``.parquet`` (GeoParquet), ``.fgb``, ``.geojson`` or ``.json``.
    overwrite : bool
        Replace an existing file.

    Raises
    ------
    InputError
        If the suffix is not one of those.
    OutputExistsError
        If *path* exists and *overwrite* is false.
    """
    driver = check_vector_path(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        if driver is None:
            frame.to_parquet(tmp)
        else:
            frame.to_file(tmp, driver=driver, engine="pyogrio", layer=Path(path).stem)


def polygons_output(
    labels: Image, path: str | os.PathLike, *, image: Image | None = None, overwrite: bool = False
) -> None:
    """The ``--polygons`` output of ``seamline predict``: vectorize the labels and write them.

    Parameters
    ----------
    labels : Image
        Predicted labels on the input's grid.
    path : str or os.PathLike
        The vector file to write.
    image : Image, optional
        The input image (unused: the labels carry its affine and CRS).
    overwrite : bool
        Replace an existing file.
    """
    write_polygons(vectorize(labels), path, overwrite=overwrite)


def check_polygons_output(path: str | os.PathLike, image: Image) -> None:
    """Check, before any work, that ``--polygons`` can write *path* for the input *image*.

    Parameters
    ----------
    path : str or os.PathLike
        The vector file asked for.
    image : Image
        The (unread) input of ``seamline predict``.

    Raises
    ------
    InputError
        If the suffix is not a polygon format, or the image is not 2D.
    """
    check_vector_path(path)
    if image.ndim != 2:
        raise InputError(f"polygons need a 2D image; the input has spatial shape {image.spatial_shape}", path)
