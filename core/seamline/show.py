"""Pictures: an image with its labels laid over it, a map for a scene and three slices for a volume.

:func:`show` draws with matplotlib and never computes more than it draws. A 2D scene
becomes a map (:mod:`seamline.map_preview`): world coordinates, a scale bar, the labels in
their class colours, a legend and reference outlines, read at about ``max_size`` pixels a
side (from the file's overviews when it has some). A volume becomes three orthogonal
slices in radiological convention (:mod:`seamline.volume_preview`), each true to scale.
:func:`write_preview` saves the picture as a PNG: it is ``seamline predict --preview``
and the demo's picture.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import numpy as np

from .atomic import atomic_output
from .errors import InputError
from .image import Image, crs_name, same_crs

__all__ = ["show", "write_preview"]

_INCHES = 7.0


def _as_image(array: Any, like: Image | None = None) -> Image:
    """An Image from an Image or an array; an array lies on *like*'s grid."""
    if isinstance(array, Image):
        return array
    array = np.asarray(array) if not hasattr(array, "chunks") else array
    if array.ndim == (like.ndim if like is not None else 2):
        array = array[None]
    if like is None:
        return Image.from_array(array)
    return Image.from_array(array, like.affine, like.crs)


def _on_grid(other: Any, image: Image, what: str) -> Image:
    """*other* as an Image on *image*'s grid (same shape, affine to a thousandth of a pixel, CRS), one channel."""
    other = _as_image(other, like=image)
    if other.spatial_shape != image.spatial_shape:
        raise InputError(f"{what} of shape {other.spatial_shape} do not match the image's {image.spatial_shape}")
    if not np.allclose(np.linalg.solve(np.asarray(image.affine), other.affine), np.eye(image.ndim + 1), atol=1e-3):
        raise InputError(f"{what} are not on the image's grid: their affines differ")
    if not same_crs(image.crs, other.crs):
        raise InputError(f"{what} are in {crs_name(other.crs)}, the image in {crs_name(image.crs)}")
    if other.channels != 1:
        raise InputError(f"{what} have {other.channels} channels; pictures take one channel of labels")
    return other


def _is_label_array(truth: Any) -> bool:
    """An Image or an integer array (not geometries, not a path)."""
    if isinstance(truth, Image):
        return True
    dtype = getattr(truth, "dtype", None)
    return dtype is not None and np.dtype(dtype).kind in "biu" and not hasattr(truth, "__geo_interface__")


def _reference(truth: Any, image: Image) -> Any:
    """Reference outlines ready to draw: labels on the image's grid, a file of polygons, or geometries."""
    if isinstance(truth, (str, os.PathLike)):
        from . import io

        if io.reader_for(truth).needs_grid and image.ndim == 2:
            return truth  # polygons: rasterized onto the picture's own grid when drawn
        truth = io.open(truth, like=image) if io.reader_for(truth).needs_grid else io.open(truth)
    if _is_label_array(truth):
        return _on_grid(truth, image, "reference labels")
    if truth is not None and image.ndim == 3:
        raise InputError("a volume's reference outlines are a label image on its grid, or a file of one")
    return truth


def _map_axes(ax: Any, image: Image) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        rows, cols = image.spatial_shape
        _, ax = plt.subplots(figsize=(_INCHES, _INCHES * min(max(rows / cols, 0.3), 3.0)))
        return ax
    return ax.add_subplot() if hasattr(ax, "add_subplot") else ax


def _volume_target(ax: Any) -> Any:
    if ax is None:
        import matplotlib.pyplot as plt

        return plt.figure()
    return [ax] if hasattr(ax, "imshow") else ax


def show(
    image: Any,
    labels: Any = None,
    *,
    truth: Any = None,
    truth_label: str = "reference",
    bands: Sequence[int] | None = None,
    window: Any = None,
    plane: str | None = None,
    point: Sequence[int] | None = None,
    alpha: float = 0.45,
    max_size: int = 1024,
    lonlat: bool = False,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw *image*, with *labels* laid over it and reference outlines around them.

    A scene ``(C, H, W)`` is drawn as a map: where it lies in its CRS (ticks in the CRS's
    units, or longitude and latitude), with a scale bar in ground metres, when it has a
    CRS; in pixels otherwise. A volume ``(C, I, J, K)`` is drawn as axial, coronal and
    sagittal slices in radiological convention (the patient's left on the screen's right,
    anterior up in the axial slice), each true to scale; see :mod:`seamline.volume_preview`.
    Labels are drawn in their class colours (``meta["colors"]``) with a legend of their
    class names (``meta["class_names"]``); 0 is background and stays clear.

    Parameters
    ----------
    image : Image or array-like
        A scene or a volume; a 2D array is one band.
    labels : Image or array-like, optional
        Labels on the same grid (one channel). An array is taken to be on the image's grid.
    truth : optional
        Reference outlines drawn over the labels: a label Image on the same grid, a file a
        reader opens (polygons are rasterized onto the picture's grid), or geometries for
        a map (a GeoDataFrame, reprojected to the image's CRS; anything with
        ``__geo_interface__``; a list of shapely geometries) in the image's CRS.
    truth_label : str
        The outlines' entry in the legend.
    bands : sequence of int, optional
        Which bands (0-based) make the RGB composite of a scene (the first three, or the
        first one, by default); for a volume, the first one given is drawn.
    window : (float, float) or dict, optional
        The intensities drawn from black to white: ``(low, high)`` (a CT window in HU,
        e.g. ``seamline_medical.presets.ct_window("bone")``), or a
        ``{"kind": "percentile", "low": 1, "high": 99}`` spec; the 2nd to 98th percentiles
        of the pixels drawn by default. See :func:`seamline.overlay.display_range`.
    plane : {"axial", "coronal", "sagittal"}, optional
        For a volume, draw only this slice.
    point : sequence of three int, optional
        For a volume, the voxel the slices pass through; by default the labels' centre
        of mass (the volume's centre without labels).
    alpha : float
        Opacity of the labels.
    max_size : int
        The picture is read at most this many pixels a side (strided, or from overviews).
    lonlat : bool
        Label a map's ticks in longitude and latitude instead of the CRS's units.
    title : str, optional
        Title of the picture.
    ax : matplotlib Axes, sequence of Axes or Figure, optional
        Where to draw: an Axes, one Axes per slice of a volume, or a Figure to add axes
        to; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes or list of matplotlib.axes.Axes
        The axes drawn on: one for a map or a single slice, three for a volume.

    Raises
    ------
    InputError
        If labels or reference labels are not on the image's grid, outlines are in
        another CRS that they cannot be reprojected from, a point is outside the volume,
        or a plane or window is not one of those above.

    Examples
    --------
    >>> import matplotlib
    >>> matplotlib.use("Agg")
    >>> scene = np.zeros((3, 40, 60), "uint8")
    >>> labels = np.zeros((40, 60), "uint8")
    >>> labels[10:20, 10:30] = 1
    >>> ax = show(scene, labels)
    >>> ax.get_images()[1].get_array()[15, 15].tolist()  # the first class colour, opaque
    [0.9019607843137255, 0.09803921568627451, 0.29411764705882354, 1.0]
    """
    from .map_preview import draw_map
    from .volume_preview import draw_volume

    image = _as_image(image)
    labels = None if labels is None else _on_grid(labels, image, "labels")
    truth = _reference(truth, image)
    options = {"truth": truth, "truth_label": truth_label, "bands": bands, "window": window, "alpha": alpha}
    if image.ndim == 2:
        ax = draw_map(_map_axes(ax, image), image, labels, max_size=max_size, lonlat=lonlat, **options)
        if title:
            ax.set_title(title)
        return ax
    planes = (plane,) if plane is not None else ("axial", "coronal", "sagittal")
    axes = draw_volume(_volume_target(ax), image, labels, planes=planes, point=point, max_size=max_size, **options)
    if title:
        axes[0].figure.suptitle(title)
    return axes[0] if plane is not None else axes


def write_preview(
    labels: Image,
    path: str | os.PathLike,
    *,
    image: Image,
    truth: Any = None,
    truth_label: str = "reference",
    window: Any = None,
    title: str | None = None,
    overwrite: bool = False,
) -> None:
    """Save a PNG of *labels* over *image* (the ``--preview`` output of ``seamline predict``).

    Parameters
    ----------
    labels : Image
        Predicted labels.
    path : str or os.PathLike
        The PNG to write.
    image : Image
        The input the labels were predicted from.
    truth, truth_label : optional
        Reference outlines and their legend entry, as for :func:`show`.
    window : optional
        The display window, as for :func:`show`; by default the model's own intensity
        window when the labels carry it (``meta["normalization"]`` of kind ``"window"``,
        e.g. a CT model's abdomen window), else percentiles.
    title : str, optional
        Title of the picture.
    overwrite : bool
        Replace an existing file.
    """
    from matplotlib.figure import Figure  # not pyplot: no backend switch, no figure left open

    if window is None and (labels.meta.get("normalization") or {}).get("kind") == "window":
        window = labels.meta["normalization"]
    figure = Figure(figsize=(_INCHES, _INCHES))
    with atomic_output(path, overwrite=overwrite) as tmp:
        show(image, labels, truth=truth, truth_label=truth_label, window=window, title=title, ax=figure)
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
