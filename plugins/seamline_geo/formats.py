"""Which files the geo plugin handles, decided from the path alone (cheap: no GDAL, no I/O).

Kept apart from the readers and writers so that loading the plugin, and
``seamline plugins``, imports neither rasterio nor geopandas. Vector labels are read from
any format OGR reads, but polygons are written only to single-file formats: a written
file must appear at once and whole (:func:`seamline.atomic.atomic_output`), which a
Shapefile's sidecar files or GML's schema beside the file cannot.
"""

from __future__ import annotations

import os
import re

from seamline.errors import InputError

__all__ = [
    "RASTER_SUFFIXES",
    "GEOTIFF_SUFFIXES",
    "VECTOR_SUFFIXES",
    "POLYGON_DRIVERS",
    "is_raster",
    "is_geotiff",
    "is_vector",
    "is_stac",
    "is_sentinel2",
    "check_vector_path",
]

RASTER_SUFFIXES = (".tif", ".tiff", ".gtiff", ".vrt", ".jp2", ".j2k", ".img", ".ntf", ".hdr", ".asc", ".png")
GEOTIFF_SUFFIXES = (".tif", ".tiff")
SENTINEL2_METADATA = "MTD_MSIL2A.xml"
VECTOR_SUFFIXES = (".gpkg", ".geojson", ".json", ".shp", ".fgb", ".parquet", ".gml", ".kml")
# The OGR driver writing each polygon format; GeoParquet is written by geopandas itself.
POLYGON_DRIVERS = {".gpkg": "GPKG", ".fgb": "FlatGeobuf", ".geojson": "GeoJSON", ".json": "GeoJSON", ".parquet": None}


def _has_suffix(path: str | os.PathLike, suffixes: tuple[str, ...]) -> bool:
    return os.fspath(path).lower().endswith(suffixes)


def is_raster(path: str | os.PathLike) -> bool:
    """Whether *path* looks like a raster GDAL reads.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; only its suffix is looked at.

    Returns
    -------
    bool
        True for one of :data:`RASTER_SUFFIXES` (any case).
    """
    return _has_suffix(path, RASTER_SUFFIXES)


def is_geotiff(path: str | os.PathLike) -> bool:
    """Whether *path* names a GeoTIFF.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; only its suffix is looked at.

    Returns
    -------
    bool
        True for ``.tif`` or ``.tiff`` (any case).
    """
    return _has_suffix(path, GEOTIFF_SUFFIXES)


def is_vector(path: str | os.PathLike) -> bool:
    """Whether *path* looks like a vector file seamline reads labels from.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; only its suffix is looked at.

    Returns
    -------
    bool
        True for one of :data:`VECTOR_SUFFIXES` (any case).
    """
    return _has_suffix(path, VECTOR_SUFFIXES)


def is_stac(path: str | os.PathLike) -> bool:
    """Whether *path* is a STAC item or item collection in JSON.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; a ``.json`` file's first 4 KB are looked at.

    Returns
    -------
    bool
        True for a ``.json`` file that names a ``stac_version`` near its start.
    """
    if not _has_suffix(path, (".json",)):
        return False
    try:
        with open(path, "rb") as file:
            head = file.read(4096)
    except OSError:
        return False
    return b'"stac_version"' in head


def is_sentinel2(path: str | os.PathLike) -> bool:
    """Whether *path* is a Sentinel-2 Level-2A SAFE folder, or a folder of band files with a scene classification.

    Parameters
    ----------
    path : str or os.PathLike
        Any path; only a folder's file names are looked at.

    Returns
    -------
    bool
        True for a folder holding ``MTD_MSIL2A.xml``, or files named with a band
        (``B02`` ... ``B08``) and an ``SCL`` file.
    """
    folder = os.fspath(path)
    if not os.path.isdir(folder):
        return False
    names = [name.upper() for name in os.listdir(folder)]
    if SENTINEL2_METADATA.upper() in names:
        return True
    band = re.compile(r"(?<![0-9A-Z])B0[2-8](?![0-9A-Z])")
    return any("SCL" in name for name in names) and any(band.search(name) for name in names)


def check_vector_path(path: str | os.PathLike) -> str | None:
    """Return the OGR driver that writes polygons to *path*, checked before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The vector file to write.

    Returns
    -------
    str or None
        The driver (``"GPKG"``, ``"FlatGeobuf"``, ``"GeoJSON"``), or None for GeoParquet.

    Raises
    ------
    InputError
        If the suffix is not one of :data:`POLYGON_DRIVERS`.
    """
    suffix = os.path.splitext(os.fspath(path))[1].lower()
    if suffix not in POLYGON_DRIVERS:
        supported = ", ".join(POLYGON_DRIVERS)
        problem = f"unsupported vector format for polygons (single-file formats only); use one of {supported}"
        raise InputError(problem, path)
    return POLYGON_DRIVERS[suffix]
