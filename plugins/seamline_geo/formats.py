"""Which files the geo plugin handles, decided from the path alone (cheap: no GDAL, no I/O).

Kept apart from the readers and writers so that loading the plugin, and
``seamline plugins``, imports neither rasterio nor geopandas.
"""

from __future__ import annotations

import os

__all__ = [
    "RASTER_SUFFIXES",
    "GEOTIFF_SUFFIXES",
    "VECTOR_SUFFIXES",
    "is_raster",
    "is_geotiff",
    "is_vector",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".vrt", ".jp2", ".j2k", ".img", ".ntf", ".hdr", ".asc", ".png")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".parquet", ".gml", ".kml")


def _has_suffix(path: str | os.PathLike, suffixes: tuple[str, ...]) -> bool:
    return os.fspath(path).lower().endswith(suffixes)


def is_raster(path: str | os.PathLike) -> bool:
    """Whether *path* looks like a raster GDAL reads."""
    return _has_suffix(path, RASTER_SUFFIXES)


def is_geotiff(path: str | os.PathLike) -> bool:
    """Whether *path* names a GeoTIFF."""
    return _has_suffix(path, GEOTIFF_SUFFIXES)


def is_vector(path: str | os.PathLike) -> bool:
    """Whether *path* looks like a vector file (labels in, polygons out)."""
    return _has_suffix(path, VECTOR_SUFFIXES)
