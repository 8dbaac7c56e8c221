"""Map previews: a scene and its labels where they lie, with coordinates, a scale bar and reference outlines.

A 2D image with a CRS is drawn in its world coordinates (axis ticks in the CRS's units, or
longitude and latitude with ``lonlat=True``) with a scale bar in ground metres: the
distance across the map centre measured on the CRS's ellipsoid, so it is right for
geographic CRSs and for projections that stretch distances (Web Mercator). Those
measurements need pyproj, imported only when drawn (a CRS object already is one); without
it the map has no scale bar. An image without a CRS, or with a rotated affine, is drawn in
pixel coordinates.

Large scenes are never read whole: the picture is read at a coarser step (about
``max_size`` pixels a side) from the file's overviews when a plugin can
(``seamline_overview``: the geo plugin reads GeoTIFF overviews), else every step-th pixel,
chunk by chunk. Reference outlines (``truth=``) are geometries (a GeoDataFrame, anything
with ``__geo_interface__``, shapely geometries), a label image, or a file a reader opens
onto the picture's grid (polygons are rasterized at the picture's resolution).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np

from .errors import InputError
from .image import Image, window_affine
from .overlay import OUTLINE_COLOR, display_range, draw_outlines, label_rgba, legend, outline_style, stretch

__all__ = ["draw_map", "decimated", "preview_step", "metres_per_unit", "scale_bar_length"]


def preview_step(shape: Sequence[int], max_size: int) -> int:
    """The stride that brings the longest side of *shape* down to at most *max_size* pixels.

    Parameters
    ----------
    shape : sequence of int
        The spatial shape.
    max_size : int
        Pixels per side of the picture, at most.

    Returns
    -------
    int

    Examples
    --------
    >>> preview_step((8000, 6000), 1024)
    8
    """
    return max(1, math.ceil(max(shape) / max_size))


def decimated(image: Image, step: int) -> np.ndarray:
    """``image.data[:, ::step, ::step]``, computed as cheaply as a plugin can.

    A plugin that knows the pixels' file answers ``seamline_overview`` from its overviews
    (values fit for a picture: an overview pixel may be an average); otherwise every
    step-th pixel is read chunk by chunk, never the whole image at once.

    Parameters
    ----------
    image : Image
        A 2D image.
    step : int
        The stride.

    Returns
    -------
    numpy.ndarray
        Shaped like ``image.data[:, ::step, ::step]``.
    """
    if step > 1:
        from .plugins import call_hook

        found = call_hook("seamline_overview", image=image, step=step)
        if found is not None:
            return np.asarray(found)
    return np.asarray(image.data[:, ::step, ::step])


def metres_per_unit(crs: Any, x: float, y: float, span: float) -> float | None:
    """Ground metres per CRS unit along the horizontal line through ``(x, y)``.

    The geodesic distance on the CRS's ellipsoid between ``(x - span/2, y)`` and
    ``(x + span/2, y)``, divided by *span*: right for degrees, feet, and projections that
    stretch distances away from their centre.

    Parameters
    ----------
    crs : pyproj.CRS or anything pyproj takes
        The map's CRS.
    x, y : float
        A point in the CRS (the map's centre).
    span : float
        The distance measured, in CRS units (the map's width).

    Returns
    -------
    float or None
        None when pyproj is not installed or the CRS has no ellipsoid.
    """
    try:
        import pyproj
    except ImportError:
        return None
    crs = pyproj.CRS.from_user_input(crs)
    if crs.ellipsoid is None:
        return None
    lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    (lon0, lon1), (lat0, lat1) = lonlat.transform([x - span / 2, x + span / 2], [y, y])
    distance = crs.get_geod().inv(lon0, lat0, lon1, lat1)[2]
    return float(distance / span) if np.isfinite(distance) and distance > 0 else None


def scale_bar_length(metres: float) -> tuple[float, str]:
    """A round length of at most *metres* (1, 2 or 5 times a power of ten) and its label.

    Parameters
    ----------
    metres : float
        The longest bar wanted, in metres.

    Returns
    -------
    (float, str)
        The length in metres and its label.

    Examples
    --------
    >>> scale_bar_length(2300.0)
    (2000.0, '2 km')
    >>> scale_bar_length(740.0)
    (500.0, '500 m')
    """
    power = 10.0 ** math.floor(math.log10(metres))
    length = max(f * power for f in (1, 2, 5) if f * power <= metres)
    label = f"{length / 1000:g} km" if length >= 1000 else f"{length:g} m"
    return length, label


def _world_extent(image: Image) -> tuple[float, float, float, float] | None:
    """``(left, right, bottom, top)`` in the CRS when rows run along y and columns along x; else None."""
    a = np.asarray(image.affine)
    if image.crs is None or a[0, 0] != 0 or a[1, 1] != 0:
        return None
    rows, cols = image.spatial_shape
    return a[0, 2], a[0, 1] * cols + a[0, 2], a[1, 0] * rows + a[1, 2], a[1, 2]


def _coarse_grid(image: Image, step: int) -> Image:
    """An empty image on the picture's grid: every step-th pixel of *image*, each *step* pixels wide."""
    shape = tuple(math.ceil(s / step) for s in image.spatial_shape)
    affine = window_affine(np.asarray(image.affine), [0, 0], [step, step])
    return Image(da.zeros((1, *shape), dtype=np.uint8), affine, image.crs, {"anchor": image.meta.get("anchor")})


def _label_values(labels: Image, step: int) -> np.ndarray:
    values = decimated(labels, step)[0]
    nodata = labels.meta.get("nodata")
    return np.where(values == nodata, 0, values) if nodata is not None else values


def _geometries(truth: Any) -> list[Any]:
    """Shapely geometries from a GeoDataFrame, GeoSeries, geometry, feature (collection) or list of geometries."""
    import shapely.geometry

    interface = getattr(truth, "__geo_interface__", None)
    if interface is None:
        return [g for item in truth for g in _geometries(item)]
    if interface["type"] == "FeatureCollection":
        return [shapely.geometry.shape(f["geometry"]) for f in interface["features"] if f.get("geometry")]
    if interface["type"] == "Feature":
        return [shapely.geometry.shape(interface["geometry"])] if interface.get("geometry") else []
    return [shapely.geometry.shape(interface)]


def _in_crs(truth: Any, crs: Any) -> Any:
    """*truth* in *crs*: reprojected when it can reproject itself (a GeoDataFrame), else it must be in it already."""
    own = getattr(truth, "crs", None)
    if own is None or crs is None or own == crs:
        return truth
    if hasattr(truth, "to_crs"):
        return truth.to_crs(crs)
    raise InputError(f"the reference outlines are in {getattr(own, 'name', own)}, the image in {crs.name}")


def _draw_lines(ax: Any, truth: Any, image: Image, world: bool) -> None:
    import shapely
    from matplotlib.collections import LineCollection

    parts = shapely.get_parts(np.array(_geometries(_in_crs(truth, image.crs)), dtype=object))
    dimensions = shapely.get_dimensions(parts)
    rings = shapely.get_parts(shapely.boundary(parts[dimensions == 2]))  # polygons: their outer and inner rings
    lines = [*rings, *parts[dimensions == 1]]  # lines as they are; points are not outlines
    paths = [np.asarray(line.coords)[:, :2] for line in lines if not line.is_empty]
    if not world:  # world (x, y) -> pixel (col, row) through the inverse affine
        inverse = np.linalg.inv(np.asarray(image.affine))
        paths = [(inverse[:2, :2] @ p.T + inverse[:2, 2:]).T[:, ::-1] for p in paths]
    ax.add_collection(LineCollection(paths, colors=OUTLINE_COLOR, linewidths=1.2, **outline_style()))


def _draw_truth(ax: Any, truth: Any, image: Image, step: int, extent: tuple[float, ...], world: bool) -> None:
    if isinstance(truth, (str, os.PathLike)):  # a file of polygons: rasterized at the picture's size
        from . import io

        draw_outlines(ax, _label_values(io.open(truth, like=_coarse_grid(image, step)), 1), extent)
    elif isinstance(truth, Image):  # on the image's grid (seamline.show checks it)
        draw_outlines(ax, _label_values(truth, step), extent)
    else:
        _draw_lines(ax, truth, image, world)


def _degrees(value: float, positive: str, negative: str, decimals: int) -> str:
    return f"{abs(value):.{decimals}f}°{positive if value >= 0 else negative}"


def _lonlat_ticks(ax: Any, crs: Any, extent: tuple[float, float, float, float]) -> None:
    """Label the x ticks with longitudes along the bottom edge and the y ticks with latitudes along the left."""
    import pyproj
    from matplotlib.ticker import FuncFormatter

    crs = pyproj.CRS.from_user_input(crs)
    lonlat = pyproj.Transformer.from_crs(crs, crs.geodetic_crs, always_xy=True)
    left, right, bottom, top = extent
    span = abs(np.subtract(*lonlat.transform([left, right], [bottom, bottom])[0]))
    decimals = int(np.clip(math.ceil(-math.log10(max(span, 1e-9))) + 1, 0, 6))
    ax.xaxis.set_major_formatter(
        FuncFormatter(lambda x, _: _degrees(lonlat.transform(x, min(bottom, top))[0], "E", "W", decimals))
    )
    ax.yaxis.set_major_formatter(
        FuncFormatter(lambda y, _: _degrees(lonlat.transform(min(left, right), y)[1], "N", "S", decimals))
    )
    ax.set_xlabel("longitude (along the bottom edge)")
    ax.set_ylabel("latitude (along the left edge)")


def _axis_labels(ax: Any, crs: Any, extent: tuple[float, float, float, float], lonlat: bool) -> None:
    from matplotlib.ticker import MaxNLocator

    ax.tick_params(labelsize=8)
    ax.tick_params(axis="y", labelrotation=90)
    for axis in (ax.xaxis, ax.yaxis):
        axis.set_major_locator(MaxNLocator(nbins=4, steps=[1, 2, 2.5, 5, 10]))
    if lonlat or getattr(crs, "is_geographic", False):
        _lonlat_ticks(ax, crs, extent)
        return
    ax.ticklabel_format(useOffset=False, style="plain")
    unit = getattr(crs.axis_info[0], "unit_name", "") if getattr(crs, "axis_info", None) else ""
    unit = {"metre": "m", "meter": "m", "foot": "ft", "US survey foot": "ftUS"}.get(unit, unit)
    name = getattr(crs, "name", crs)
    where = f" in {name}" if name and name != "unnamed" else ""
    ax.set_xlabel(f"x ({unit}){where}" if unit else f"x{where}")
    ax.set_ylabel(f"y ({unit})" if unit else "y")


def _scale_bar(ax: Any, crs: Any, extent: tuple[float, float, float, float]) -> None:
    from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar

    left, right, bottom, top = extent
    width = abs(right - left)
    per_unit = metres_per_unit(crs, (left + right) / 2, (bottom + top) / 2, width)
    if per_unit is None:
        return
    metres, label = scale_bar_length(0.25 * width * per_unit)
    bar = AnchoredSizeBar(
        ax.transData,
        metres / per_unit * np.sign(right - left),
        label,
        loc="lower left",
        pad=0.4,
        borderpad=0.6,
        sep=3,
        frameon=True,
        size_vertical=0,
        color="black",
    )
    bar.patch.set_alpha(0.75)
    ax.add_artist(bar)


def draw_map(
    ax: Any,
    image: Image,
    labels: Image | None,
    *,
    truth: Any = None,
    truth_label: str = "reference",
    bands: Sequence[int] | None = None,
    window: Any = None,
    alpha: float = 0.45,
    max_size: int = 1024,
    lonlat: bool = False,
) -> Any:
    """Draw a 2D image on *ax*, with labels, reference outlines, coordinates, a scale bar and a legend.

    Parameters are those of :func:`seamline.show`; *labels* is on the image's grid.

    Returns
    -------
    matplotlib.axes.Axes
    """
    step = preview_step(image.spatial_shape, max_size)
    pixels = decimated(image, step)
    if bands is None:
        bands = [0, 1, 2] if image.channels >= 3 else [0]
    picked = pixels[list(bands)].astype(float)
    nodata = image.meta.get("nodata")
    if nodata is not None:
        missing = np.isnan(pixels) if np.isnan(nodata) else pixels == nodata
        picked[:, missing.all(axis=0)] = np.nan
    low, high = display_range(picked, window)

    extent = _world_extent(image)
    world = extent is not None
    if extent is None:
        rows, cols = image.spatial_shape
        extent = (0.0, float(cols), float(rows), 0.0)
    ax.imshow(stretch(picked, low, high), interpolation="nearest", extent=extent)
    shown: set[int] = set()
    if labels is not None:
        values = _label_values(labels, step)
        shown = {int(v) for v in np.unique(values)}
        ax.imshow(label_rgba(values, labels.meta.get("colors")), alpha=alpha, interpolation="nearest", extent=extent)
    if truth is not None:
        _draw_truth(ax, truth, image, step, extent, world)
        ax.set_xlim(extent[0], extent[1])
        ax.set_ylim(extent[2], extent[3])
    if world:
        _axis_labels(ax, image.crs, extent, lonlat)
        _scale_bar(ax, image.crs, extent)
    else:
        ax.set_axis_off()
    meta = labels.meta if labels is not None else {}
    legend(
        ax,
        shown,
        names=meta.get("class_names"),
        colors=meta.get("colors"),
        alpha=alpha,
        outlines=truth_label if truth is not None else None,
    )
    return ax
