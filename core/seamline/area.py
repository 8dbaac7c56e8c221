"""Class areas in square kilometres, chunk by chunk, and how they change from date to date.

:func:`areas` takes label maps of one place at several dates and returns a tidy table:
one row per date and class, with the area in km² and the change since the previous date.
Each chunk is reduced to its area per class (a weighted count of its pixels), so no label
map is ever held whole.

Areas are true ground areas, not pixel counts:

- in a projected CRS a pixel's area is the determinant of the affine, in the CRS's linear
  unit squared (metres, feet, ...), so the same for every pixel. That is the ground area
  where the projection keeps areas: a UTM zone within 0.2 %, equal-area projections
  exactly. Where it does not (Web Mercator at 58° N draws areas 3.6 times too large),
  the map is refused, not measured: its areal scale is checked at the centre and the
  corners, and more than 1 % off is an error;
- in a geographic CRS a pixel's area depends on its latitude; each row's is the area of
  that band of the ellipsoid between its two parallels (the authalic-latitude formula,
  exact on the ellipsoid), times the pixel's share of the 360 degrees of longitude.

The dates come from the images (``meta["datetime"]``: the geo plugin reads it from the
tags ``ACQUISITIONDATE`` or ``date``; or ``meta["date"]``, a STAC item's date), else
from the file name (``2021-08-30`` or ``20210830``: the first such date in it, which in
Landsat and Sentinel names is the acquisition), else from ``meta["created"]`` (the
``TIFFTAG_DATETIME`` tag, which the TIFF spec makes the file's creation time). Label
maps of different dates must lie on one grid (CRS, shape and transform); anything else is
refused, never compared.
"""

from __future__ import annotations

import datetime as dt
import itertools
import math
import os
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from ._chunks import chunk_origins, map_chunks, spatial_array
from .errors import InputError
from .image import Image, check_same_grid

__all__ = ["areas", "pixel_areas", "date_of", "plot_areas"]

_NAME_DATE = re.compile(r"(?<!\d)(\d{4})-?(\d{2})-?(\d{2})(?!\d)")


def _parse_date(value: Any) -> pd.Timestamp | None:
    """A timestamp from a datetime, a date, or text: ISO 8601 or TIFF's ``YYYY:MM:DD HH:MM:SS``."""
    if isinstance(value, (dt.date, pd.Timestamp)):
        return pd.Timestamp(value)
    text = str(value).strip()
    tiff = re.fullmatch(r"(\d{4}):(\d{2}):(\d{2})(.*)", text)
    if tiff:
        text = f"{tiff[1]}-{tiff[2]}-{tiff[3]}{tiff[4]}"
    try:
        stamp = pd.Timestamp(text)
    except ValueError:
        return None
    return None if pd.isna(stamp) else stamp.tz_convert(None) if stamp.tzinfo else stamp


def date_of(image: Image, name: str | None = None) -> pd.Timestamp:
    """The date of a label map: ``meta["datetime"]`` (or ``"date"``), else its file name's, else ``meta["created"]``.

    Parameters
    ----------
    image : Image
        A label map; ``meta["path"]`` names its file.
    name : str, optional
        The file name to search when the image has no ``path``.

    Returns
    -------
    pandas.Timestamp

    Raises
    ------
    InputError
        If none says a date, or the metadata says one that is not a date.
    """
    path = name or image.meta.get("path")
    acquired = image.meta.get("datetime", image.meta.get("date"))  # a STAC reader's item date
    candidates = [("datetime", acquired)]
    candidates += [("file name", m) for m in _NAME_DATE.finditer(os.path.basename(os.fspath(path or "")))]
    candidates.append(("created", image.meta.get("created")))
    for source, value in candidates:
        if value is None:
            continue
        if source == "file name":
            try:
                return pd.Timestamp(dt.date(int(value[1]), int(value[2]), int(value[3])))
            except ValueError:  # eight digits that are no date
                continue
        stamp = _parse_date(value)
        if stamp is None:
            raise InputError(f"has a {source} that is not a date: {value!r}", path)
        return stamp
    raise InputError(
        "has no date: no ACQUISITIONDATE, date or TIFFTAG_DATETIME tag, no STAC datetime, "
        "and no YYYY-MM-DD or YYYYMMDD in its name",
        path or "<image>",
    )


def _pyproj_crs(crs: Any, path: str | None) -> Any:
    if crs is None:
        raise InputError("has no CRS: areas in km² need to know where its pixels are", path)
    if type(crs).__module__.startswith("pyproj"):
        return crs
    try:
        import pyproj
    except ImportError as exc:  # pragma: no cover - pyproj comes with the geo plugin
        raise InputError("areas need pyproj to read the CRS (pip install 'seamline[geo]')", path) from exc
    return pyproj.CRS.from_user_input(crs.to_wkt() if hasattr(crs, "to_wkt") else crs)


def _authalic(latitude: np.ndarray, e: float) -> np.ndarray:
    """``q(φ)``: the ellipsoid's area from the equator to latitude φ is ``b² Δλ q(φ) / 2``."""
    s = np.sin(latitude)
    if e == 0:
        return 2 * s
    return s / (1 - (e * s) ** 2) + np.log((1 + e * s) / (1 - e * s)) / (2 * e)


def _check_areal_scale(crs: Any, affine: np.ndarray, shape: tuple[int, ...], path: str | None) -> None:
    """Refuse a projection that does not keep areas here: more than 1 % off at the centre or a corner."""
    import pyproj

    index = np.array(
        [[0, 0, 1], [0, shape[1], 1], [shape[0], 0, 1], [shape[0], shape[1], 1], [*np.divide(shape, 2), 1]]
    )
    x, y = (affine[:2] @ index.T).tolist()
    try:
        lon, lat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True).transform(x, y)
        scale = np.asarray(pyproj.Proj(crs).get_factors(lon, lat).areal_scale, dtype=float)
    except pyproj.exceptions.ProjError:  # a projection PROJ has no factors for: nothing to check with
        return
    worst = float(np.nanmax(np.abs(scale - 1))) if np.isfinite(scale).any() else 0.0
    if worst > 0.01:
        raise InputError(
            f"is in {crs.name}, which draws areas up to {worst:.0%} off here: reproject it to an equal-area CRS "
            "(or a UTM zone, or degrees) to measure areas",
            path,
        )


def pixel_areas(image: Image) -> np.ndarray:
    """The ground area of the pixels of each row, in square metres.

    Parameters
    ----------
    image : Image
        A 2D raster with a CRS.

    Returns
    -------
    numpy.ndarray
        One area per row (float64).

    Raises
    ------
    InputError
        If the image is not 2D, has no CRS, or is in degrees on a rotated grid.
    """
    path = image.meta.get("path")
    if image.ndim != 2:
        raise InputError(f"areas need a 2D label map, got {image.ndim} spatial axes", path)
    crs = _pyproj_crs(image.crs, path)
    affine, rows = np.asarray(image.affine), image.spatial_shape[0]
    unit = crs.axis_info[0].unit_conversion_factor  # metres per unit, or radians per unit in degrees
    if not crs.is_geographic:
        _check_areal_scale(crs, affine, image.spatial_shape, path)
        return np.full(rows, abs(np.linalg.det(affine[:2, :2])) * unit**2)
    if affine[0, 0] != 0 or affine[1, 1] != 0:
        raise InputError("is in degrees on a rotated grid: its pixel areas are not per row; reproject it", path)
    edges = (affine[1, 2] + affine[1, 0] * np.arange(rows + 1)) * unit  # latitudes of the row edges, in radians
    if np.abs(edges).max() > math.pi / 2 + 1e-9:
        raise InputError("reaches beyond a pole: its latitudes are not latitudes", path)
    ellipsoid = crs.ellipsoid
    a, b = ellipsoid.semi_major_metre, ellipsoid.semi_minor_metre
    e = math.sqrt(max(1 - (b / a) ** 2, 0.0))
    width = abs(affine[0, 1]) * unit  # radians of longitude per pixel
    return b**2 * width / 2 * np.abs(np.diff(_authalic(edges, e)))


def _chunk_areas(labels: np.ndarray, valid: np.ndarray | None, origin: tuple[int, ...], rows: np.ndarray) -> pd.Series:
    """Area per label of one chunk: its pixels weighted by their row's area."""
    weights = np.broadcast_to(rows[origin[0] : origin[0] + labels.shape[0], None], labels.shape)
    if valid is not None:
        labels, weights = labels[valid], weights[valid]
    values, index = np.unique(labels, return_inverse=True)
    return pd.Series(np.bincount(index.ravel(), weights=weights.ravel(), minlength=values.size), index=values)


def _label_map(item: Image | str | os.PathLike) -> Image:
    if isinstance(item, Image):
        return item
    from .io import open as open_image

    return open_image(item)


def areas(
    labels_by_date: Mapping[Any, Image | str | os.PathLike] | Sequence[Image | str | os.PathLike],
    *,
    classes: Sequence[int] | None = None,
) -> pd.DataFrame:
    """Area of each class at each date, in km², and its change since the previous date.

    Parameters
    ----------
    labels_by_date : mapping or sequence
        Label maps (Images or paths) of one place: a mapping from date (a date, datetime
        or ISO text) to label map, or a sequence of label maps whose dates are found in
        their metadata or file names (see :func:`date_of`).
    classes : sequence of int, optional
        The class ids to measure; by default every non-zero label found (0 is
        background). Nodata pixels are never counted.

    Returns
    -------
    pandas.DataFrame
        Columns ``date``, ``class_id``, ``class`` (the name from ``meta["class_names"]``,
        else the id), ``area_km2`` and ``change_km2`` (NaN at the first date), sorted by
        date and class; a class absent at a date has area 0 there.

    Raises
    ------
    InputError
        If a date cannot be found or appears twice, a label map is not integer or not
        one band, has no CRS, or the maps do not lie on one grid.

    Examples
    --------
    A glacier on 30 m pixels covering 60 pixels, then 40:

    >>> grid = np.array([[0, 30.0, 500000], [-30.0, 0, 4e6], [0, 0, 1]])
    >>> before, after = np.zeros((2, 1, 10, 10), "uint8")
    >>> before[0, :6], after[0, :4] = 1, 1
    >>> maps = {"2000-10-30": Image(before, grid, "EPSG:32645"), "2020-10-30": Image(after, grid, "EPSG:32645")}
    >>> areas(maps)[["date", "area_km2", "change_km2"]].round({"area_km2": 3, "change_km2": 3})
            date  area_km2  change_km2
    0 2000-10-30     0.054         NaN
    1 2020-10-30     0.036      -0.018

    With files, the dates come from their tags or names:
    ``seamline.areas(["glaciers_2000-10-30.tif", "glaciers_2020-10-12.tif"])``.
    """
    if isinstance(labels_by_date, Mapping):
        dated = []
        for key, item in labels_by_date.items():
            stamp = _parse_date(key)
            if stamp is None:
                raise InputError(f"{key!r} is not a date")
            dated.append((stamp, _label_map(item)))
    else:
        maps = [_label_map(item) for item in labels_by_date]
        dated = [(date_of(image), image) for image in maps]
    if not dated:
        raise InputError("areas need at least one label map")
    dated.sort(key=lambda pair: pair[0])
    for (when, image), (later, other) in itertools.pairwise(dated):
        if when == later:
            raise InputError(
                f"has the same date ({when.date()}) as {image.meta.get('path', 'another map')}",
                other.meta.get("path", "<image>"),
            )
    first = dated[0][1]
    rows = pixel_areas(first)
    totals = {}
    first_name = os.path.basename(first.meta.get("path") or "the first map")
    for when, image in dated:
        check_same_grid(first, image, (first_name, os.path.basename(image.meta.get("path") or "a map")))
        labels = spatial_array(image, "a label map")
        if not (np.issubdtype(labels.dtype, np.integer) or labels.dtype == bool):
            raise InputError(f"holds {labels.dtype} values, not integer labels", image.meta.get("path", "<image>"))
        valid = image.valid_mask()
        valid = None if valid is None else valid.rechunk(labels.chunks)
        parts = map_chunks(
            _chunk_areas, labels, valid, per_chunk=[(o,) for o in chunk_origins(labels.chunks)], rows=rows
        )
        totals[when] = pd.concat(parts).groupby(level=0).sum() if parts else pd.Series(dtype=float)
    found = sorted(set().union(*(set(t.index) for t in totals.values())) - {0})
    ids = [int(c) for c in (classes if classes is not None else found)]
    names = {int(k): str(v) for k, v in (first.meta.get("class_names") or {}).items()}
    table = pd.DataFrame(
        [
            {"date": when, "class_id": c, "class": names.get(c, str(c)), "area_km2": float(t.get(c, 0.0)) / 1e6}
            for when, t in totals.items()
            for c in ids
        ],
        columns=["date", "class_id", "class", "area_km2"],
    )
    table["change_km2"] = table.groupby("class_id")["area_km2"].diff()
    return table.sort_values(["date", "class_id"], ignore_index=True)


def plot_areas(table: pd.DataFrame, *, ax: Any = None) -> Any:
    """Draw the area of each class over time, one line per class.

    Parameters
    ----------
    table : pandas.DataFrame
        What :func:`areas` returns.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure by default.

    Returns
    -------
    matplotlib.axes.Axes
    """
    if ax is None:
        import matplotlib.pyplot as plt

        ax = plt.figure(figsize=(6, 3.5)).add_subplot()
    for name, rows in table.groupby("class", sort=False):
        ax.plot(rows["date"], rows["area_km2"], marker="o", label=name)
    ax.set_xlabel("date")
    ax.set_ylabel("area (km²)")
    ax.legend(frameon=False)
    ax.grid(alpha=0.3)
    return ax
