"""The polygon side of vectorizing: tracing chunks with GDAL and writing vector files.

:func:`seamline.vectorize` (core) finds components across chunks and merges pieces; this
module is the backend it asks for through the ``seamline_vector_backend`` hook:
:func:`polygonize` traces one chunk with ``rasterio.features.shapes`` (GDAL's polygonize)
in pixel coordinates, and :func:`to_frame` builds the GeoDataFrame, adding geodesic
areas in square metres when the CRS is geographic. :func:`write_polygons` saves a table to
a single-file format (GeoPackage, FlatGeobuf, GeoJSON or GeoParquet), atomically, and
:func:`write_polygon_batches` writes the tables of :func:`seamline.vectorize_batches` as
they come, so that a large vectorization never holds all its polygons;
:func:`polygons_output` is the ``--polygons`` product of ``seamline predict``, and
:func:`check_polygons_output` vets its path and input before any work.
"""

from __future__ import annotations

import itertools
import json
import os
import warnings
from array import array as float_buffer
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pyogrio
import pyproj
import rasterio.features
import shapely
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image
from seamline.vectorize import VectorBackend, vectorize_batches

from .formats import check_vector_path

# Chunks are traced in pixel coordinates on purpose (the affine comes after merging). A
# filter, not catch_warnings: tracing runs in threads, and catch_warnings is not thread-safe.
warnings.filterwarnings("ignore", category=NotGeoreferencedWarning, module="rasterio.features")

__all__ = [
    "backend",
    "polygonize",
    "to_frame",
    "write_polygons",
    "write_polygon_batches",
    "polygons_output",
    "check_polygons_output",
]


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
        assert geod is not None  # a geographic CRS has an ellipsoid
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


def _geo_metadata(crs: Any) -> bytes:
    """GeoParquet 1.0 file metadata for a WKB ``geometry`` column of polygons of any type."""
    projjson = None if crs is None else pyproj.CRS.from_user_input(crs).to_json_dict()
    column: dict[str, Any] = {"encoding": "WKB", "geometry_types": [], "crs": projjson}
    return json.dumps({"version": "1.0.0", "primary_column": "geometry", "columns": {"geometry": column}}).encode()


def _arrow(table: gpd.GeoDataFrame) -> pa.Table:
    columns = {name: table[name].to_numpy() for name in table.columns if name != "geometry"}
    columns["geometry"] = pa.array(shapely.to_wkb(table.geometry.to_numpy()), type=pa.binary())
    return pa.table(columns)


def write_polygon_batches(
    tables: Iterable[gpd.GeoDataFrame], path: str | os.PathLike, *, overwrite: bool = False
) -> tuple[int, int]:
    """Write tables of polygons (:func:`seamline.vectorize_batches`) into one vector file, as they come.

    GeoPackage and GeoParquet files grow table by table, so only one table is in memory
    at a time; FlatGeobuf (whose spatial index needs every feature) and GeoJSON gather
    the tables and write once. A GeoPackage layer takes any geometry type (polygons and
    multipolygons as they are). The file appears at *path* only once complete.

    Parameters
    ----------
    tables : iterable of geopandas.GeoDataFrame
        Tables with the same columns and CRS; at least one.
    path : str or os.PathLike
        ``.gpkg``, ``.parquet`` (GeoParquet), ``.fgb``, ``.geojson`` or ``.json``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    (int, int)
        The number of polygons written, and of classes among them.

    Raises
    ------
    InputError
        If the suffix is not one of those.
    OutputExistsError
        If *path* exists and *overwrite* is false.
    """
    driver = check_vector_path(path)
    rows, classes = 0, set()
    with atomic_output(path, overwrite=overwrite) as tmp:
        if driver not in ("GPKG", None):
            frame = pd.concat(list(tables), ignore_index=True)
            frame.to_file(tmp, driver=driver, engine="pyogrio", layer=Path(path).stem)
            return len(frame), frame["class_id"].nunique()
        parquet: pq.ParquetWriter | None = None
        layer_made = False
        try:
            for table in tables:
                if driver == "GPKG":
                    pyogrio.write_dataframe(
                        table,
                        tmp,
                        layer=Path(path).stem,
                        driver="GPKG",
                        geometry_type="Unknown",
                        append=layer_made,
                    )
                    layer_made = True
                else:
                    arrow = _arrow(table)
                    if parquet is None:
                        schema = arrow.schema.with_metadata({b"geo": _geo_metadata(table.crs)})
                        parquet = pq.ParquetWriter(tmp, schema)
                    parquet.write_table(arrow.cast(parquet.schema))
                rows += len(table)
                classes.update(table["class_id"].tolist())
        finally:
            if parquet is not None:
                parquet.close()
    return rows, len(classes)


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
    write_polygon_batches(vectorize_batches(labels), path, overwrite=overwrite)


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
