"""Images as xarray DataArrays and back, in rioxarray's and odc-geo's terms.

A raster becomes ``(band, y, x)`` with pixel-centre ``x``/``y`` coordinates computed as
rioxarray computes them, and a ``spatial_ref`` coordinate holding the CRS (CF attributes,
``crs_wkt`` and GDAL's ``spatial_ref``) and the exact transform (``GeoTransform``), so
``da.rio.crs``, ``da.rio.transform()`` and ``da.odc.geobox`` all work on it. A rotated
or sheared raster has no 1-D coordinates that could say where it is; it carries the
transform only, as rioxarray does. A volume becomes ``(channel, i, j, k)`` with
voxel-centre coordinates along axis-aligned axes and its whole affine in an ``affine``
coordinate. A validity mask (``meta["mask"]``) becomes a boolean ``valid`` coordinate.

Coming back (:func:`grid_of`, used by :meth:`Image.from_array`), the carried transform
wins when the coordinates agree with it, or with a window of it (an ``isel`` slice or
stride), so a round trip, or a sliced array, keeps the grid bit for bit; coordinates that
agree with no window of it (an interpolated array) speak for themselves. Without a carried
transform, odc-geo's ``.odc.geobox`` and then the coordinates give the grid. Nothing here
imports xarray, rioxarray, odc-geo or pyproj at module level.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from .image import Image, window_affine

__all__ = ["to_xarray", "grid_of"]

RASTER_DIMS = ("y", "x")
RASTER_NAMES = (RASTER_DIMS, ("latitude", "longitude"), ("lat", "lon"))  # odc-stac names geographic grids so
VOLUME_DIMS = ("i", "j", "k")


def _centre_offset(image: Image) -> float:
    """Where a pixel centre lies from its integer index: 0.5 for corner-anchored rasters, else 0."""
    return 0.5 if image.meta.get("anchor", "corner" if image.ndim == 2 else "center") == "corner" else 0.0


def _crs_attrs(crs: Any) -> dict[str, Any]:
    """The grid-mapping attributes rioxarray writes for *crs* (a pyproj CRS or anything with ``to_wkt``)."""
    if crs is None:
        return {}
    attrs = dict(crs.to_cf()) if hasattr(crs, "to_cf") else {}
    wkt = crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)
    attrs.setdefault("crs_wkt", wkt)
    attrs["spatial_ref"] = wkt
    return attrs


def _rasterio_terms(affine: np.ndarray) -> tuple[float, ...]:
    """rasterio's ``(a, b, c, d, e, f)`` of a raster's ``(row, col) -> (x, y)`` affine."""
    (x_row, x_col, x0), (y_row, y_col, y0) = affine[0], affine[1]
    return float(x_col), float(x_row), float(x0), float(y_col), float(y_row), float(y0)


def _raster_coords(affine: np.ndarray, shape: tuple[int, int]) -> dict[str, Any]:
    """x/y pixel-centre coordinates with rioxarray's arithmetic (``affine * translation(0.5, 0.5)``)."""
    a, b, c, d, e, f = _rasterio_terms(affine)
    if b != 0 or d != 0:  # x must follow the columns alone, and y the rows
        return {}
    height, width = shape
    x0, y0 = a * 0.5 + b * 0.5 + c, d * 0.5 + e * 0.5 + f
    return {
        "x": np.arange(width) * a + np.zeros(width) * b + x0,
        "y": np.zeros(height) * d + np.arange(height) * e + y0,
    }


def _geotransform(affine: np.ndarray) -> str:
    """GDAL's GeoTransform ``"c a b f d e"``, each number written to round-trip exactly."""
    a, b, c, d, e, f = _rasterio_terms(affine)
    return " ".join(repr(v) for v in (c, a, b, f, d, e))


def to_xarray(image: Image, *, name: str | None = None) -> Any:
    """Return *image* as a lazy ``xarray.DataArray`` (see :meth:`Image.to_xarray`)."""
    import xarray as xr

    offset, affine = _centre_offset(image), np.asarray(image.affine)
    attrs: dict[str, Any] = {}
    if image.meta.get("nodata") is not None:
        attrs["_FillValue"] = image.meta["nodata"]
    if image.meta.get("band_names"):
        attrs["long_name"] = tuple(str(n) for n in image.meta["band_names"])
    if image.ndim == 2:
        corner = window_affine(affine, [offset - 0.5] * 2)  # GDAL's transform starts at the corner
        coords: dict[str, Any] = {"band": np.arange(1, image.channels + 1)}
        coords.update(_raster_coords(corner, (image.spatial_shape[0], image.spatial_shape[1])))
        grid = {**_crs_attrs(image.crs), "GeoTransform": _geotransform(corner)}
        coords["spatial_ref"] = xr.Variable((), 0, attrs=grid)
        attrs["AREA_OR_POINT"] = "Area"
        array = xr.DataArray(image.data, dims=("band", *RASTER_DIMS), coords=coords, attrs=attrs)
        array.encoding["grid_mapping"] = "spatial_ref"
    else:
        coords = {"channel": np.arange(image.channels)}
        if _axis_aligned(affine[:3, :3]):
            for axis, (dim, size) in enumerate(zip(VOLUME_DIMS, image.spatial_shape, strict=True)):
                coords[dim] = _centres(affine, axis, size, offset)
        matrix = {"matrix": [float(v) for v in affine.ravel()], "anchor": "corner" if offset else "center"}
        coords["affine"] = xr.Variable((), 0, attrs=matrix)
        if image.crs is not None:
            attrs["crs_wkt"] = _crs_attrs(image.crs)["crs_wkt"]
        array = xr.DataArray(image.data, dims=("channel", *VOLUME_DIMS), coords=coords, attrs=attrs)
    if image.meta.get("mask") is not None:  # a coordinate, so that it follows slices
        mask = da.asarray(image.meta["mask"]).reshape(image.spatial_shape)
        array = array.assign_coords(valid=(array.dims[1:], mask))
    array.name = name  # not the dask array's name, which xarray would take
    return array


def _axis_aligned(linear: np.ndarray) -> bool:
    """Whether world axis *i* follows spatial axis *i* alone, with a non-zero voxel size."""
    return not np.count_nonzero(linear - np.diag(np.diag(linear))) and bool(np.all(np.diag(linear)))


def _carried(array: Any, raster: bool) -> tuple[np.ndarray, float] | None:
    """The affine the array carries beside its coordinates, and where in a voxel its index lies.

    Rasters carry GDAL's GeoTransform (corner anchored) in their grid mapping, volumes
    seamline's own matrix and anchor in an ``affine`` coordinate.
    """
    if raster:
        grid_mapping = array.encoding.get("grid_mapping") or array.attrs.get("grid_mapping") or "spatial_ref"
        text = array.coords[grid_mapping].attrs.get("GeoTransform") if grid_mapping in array.coords else None
        if text is None:
            return None
        c, a, b, f, d, e = (float(v) for v in str(text).split())
        return np.array([[b, a, c], [e, d, f], [0.0, 0.0, 1.0]]), 0.5
    if "affine" not in array.coords or "matrix" not in array.coords["affine"].attrs:
        return None
    attrs, n = array.coords["affine"].attrs, array.ndim - 1
    matrix = np.asarray(attrs["matrix"], dtype=float).reshape(n + 1, n + 1)
    return matrix, 0.5 if attrs.get("anchor") == "corner" else 0.0


def _centres(affine: np.ndarray, axis: int, size: int, offset: float) -> np.ndarray:
    """World coordinates of the voxel centres along one axis of an axis-aligned affine."""
    return (np.arange(size) + offset) * affine[axis, axis] + affine[axis, -1]


def _window_of(carried: np.ndarray, offset: float, coords: Sequence[np.ndarray], raster: bool) -> np.ndarray | None:
    """The window of *carried* whose voxel centres are *coords* (a start and a step per axis), else None."""
    n = len(coords)
    order = [1, 0] if raster else list(range(n))  # world axis i follows spatial axis i
    aligned = carried[order][:, [*range(n), n]]
    starts, steps = [], []
    for axis, values in enumerate(coords):
        values = np.asarray(values, dtype=float)
        size = aligned[axis, axis]
        first = _centres(aligned, axis, 1, offset)[0]
        start = round((values[0] - first) / size)
        step = round((values[1] - values[0]) / size) if values.size > 1 else 1
        expected = first + (start + step * np.arange(values.size)) * size
        tolerance = 1e-3 * abs(size) + 4 * np.spacing(np.abs(values).max())  # a thousandth of a voxel
        if step < 1 or not np.allclose(values, expected, rtol=0, atol=tolerance):
            return None
        starts.append(start)
        steps.append(step)
    return window_affine(carried, starts, steps)


def _affine_from_coords(coords: Sequence[np.ndarray], raster: bool) -> np.ndarray | None:
    """Affine of evenly spaced pixel-centre coordinates, else None.

    For a raster (dimensions ``y, x``) world coordinates are ``(x, y)`` and index
    ``(0, 0)`` is the first pixel's upper-left corner; otherwise world axis *i* follows
    spatial axis *i* and an index is a voxel centre.
    """
    n = len(coords)
    affine = np.eye(n + 1)
    for axis, values in enumerate(coords):
        values = np.asarray(values, dtype=float)
        if values.ndim != 1 or values.size < 2 or not np.allclose(np.diff(values), values[1] - values[0]):
            return None
        affine[axis, axis] = values[1] - values[0]
        affine[axis, n] = values[0]
    if raster:
        affine = affine[[1, 0, 2]] @ window_affine(np.eye(3), [-0.5, -0.5], [1, 1])
    return affine


def _as_pyproj(crs: Any) -> Any:
    """A pyproj CRS from WKT, a rasterio or odc-geo CRS; the input itself without pyproj."""
    if crs is None or type(crs).__module__.startswith("pyproj"):
        return crs
    try:
        import pyproj
    except ImportError:  # pragma: no cover - pyproj comes with every plugin that has CRSs
        return crs
    return pyproj.CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)


def _crs_of(array: Any, raster: bool) -> Any:
    """The grid mapping's WKT (what ``.rio.crs`` reads first), else ``.rio.crs``, else the geobox's CRS."""
    grid_mapping = array.encoding.get("grid_mapping") or array.attrs.get("grid_mapping") or "spatial_ref"
    attrs = array.coords[grid_mapping].attrs if raster and grid_mapping in array.coords else array.attrs
    wkt = attrs.get("crs_wkt") or attrs.get("spatial_ref")
    if wkt:
        return _as_pyproj(wkt)
    if raster and hasattr(array, "rio") and array.rio.crs is not None:
        return _as_pyproj(array.rio.crs)
    geobox = _geobox(array) if raster else None
    return None if geobox is None else _as_pyproj(geobox.crs)


def _geobox(array: Any) -> Any:
    try:
        return array.odc.geobox if hasattr(array, "odc") else None
    except Exception:  # odc-geo cannot place this array
        return None


def grid_of(array: Any) -> tuple[np.ndarray | None, Any, dict[str, Any]]:
    """The affine, CRS and metadata an ``xarray.DataArray`` says it has.

    Parameters
    ----------
    array : xarray.DataArray
        Shaped ``(C, *spatial)``: ``(band, y, x)`` (or ``latitude, longitude``, ``lat,
        lon``) for a raster, any other names for a volume.

    Returns
    -------
    affine : numpy.ndarray or None
        From the carried transform (rioxarray's ``spatial_ref`` ``GeoTransform``, which
        ``.rio.transform()`` reads, or seamline's ``affine`` coordinate) when the
        coordinates agree with it or a window of it; else from odc-geo's ``.odc.geobox``;
        else from evenly spaced coordinates; else None.
    crs : object or None
        ``.rio.crs``, the grid mapping's WKT or the geobox's CRS, as a ``pyproj.CRS``.
    meta : dict
        ``anchor``, and ``nodata`` (``_FillValue``), ``mask`` (the ``valid``
        coordinate) and ``band_names`` (``long_name``) when the array has them.
    """
    spatial_dims = tuple(array.dims[1:])
    raster = spatial_dims in RASTER_NAMES
    coords = [array.coords[dim].values for dim in spatial_dims] if all(d in array.coords for d in spatial_dims) else []
    carried = _carried(array, raster)
    affine = None
    if carried is not None:
        aligned = _axis_aligned(carried[0][[1, 0]][:, :2] if raster else carried[0][:-1, :-1])
        # coordinates of a rotated grid cannot be world coordinates (odc-geo writes pixel indices there)
        affine = _window_of(*carried, coords, raster) if coords and aligned else carried[0]
    geobox = _geobox(array) if raster and carried is None else None
    if geobox is not None:
        t = geobox.affine
        affine = np.array([[t.b, t.a, t.c], [t.e, t.d, t.f], [0.0, 0.0, 1.0]])
    if affine is None and coords:
        affine = _affine_from_coords(coords, raster)
    meta: dict[str, Any] = {}
    if affine is not None:
        meta["anchor"] = "corner" if raster or (carried is not None and carried[1]) else "center"
    if array.attrs.get("_FillValue") is not None:
        meta["nodata"] = array.attrs["_FillValue"]
    if "valid" in array.coords and array.coords["valid"].dims == spatial_dims:
        meta["mask"] = da.asarray(array.coords["valid"].data).astype(bool)[None]
    names = array.attrs.get("long_name")
    if isinstance(names, (list, tuple)) and len(names) == array.shape[0]:
        meta["band_names"] = list(names)
    return affine, _crs_of(array, raster), meta
