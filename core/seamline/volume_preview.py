"""Volume previews: three orthogonal slices in radiological convention, true to scale.

A volume's world coordinates are RAS millimetres, nibabel's convention: x grows toward
the patient's Right, y toward Anterior, z toward Superior, whatever order its voxels are
stored in. Each plane is drawn the way a radiologist reads it:

========  ==========  ===============================  ===========
plane     fixed axis  screen left -> right             screen up
========  ==========  ===============================  ===========
axial     z           patient's right -> left (R, L)   anterior
coronal   y           patient's right -> left (R, L)   superior
sagittal  x           anterior -> posterior (A, P)     superior
========  ==========  ===============================  ===========

so a structure on the patient's left appears on the right of the screen in the axial and
coronal views. The voxel axis closest to each world axis is read off the affine (as
nibabel's ``io_orientation`` does for axis-aligned and slightly oblique volumes), so a
volume stored LPS, RAS or with its axes permuted looks the same. Each slice is drawn with
its voxels' true proportions (from the spacing) and letters at its edges, and the slices
cross at the labels' centre of mass (or a chosen voxel). Only the three slices are read,
and a coarse copy of the labels to find where they cross.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from .errors import InputError
from .image import Image
from .map_preview import preview_step
from .overlay import display_range, draw_outlines, label_rgba, legend, stretch

__all__ = ["draw_volume", "voxel_axes", "crossing_point", "plane_view", "PLANES"]

#: Each plane's fixed world axis, then the world axes along the screen's rows and columns.
PLANES: dict[str, tuple[int, int, int]] = {"axial": (2, 1, 0), "coronal": (1, 2, 0), "sagittal": (0, 2, 1)}
#: The letters of each world axis's high and low ends (RAS: x to the Right, y Anterior, z Superior).
_ENDS = {0: ("R", "L"), 1: ("A", "P"), 2: ("S", "I")}
_WORLD_NAMES = "xyz"
_COARSE_SIZE = 128
_WIDTH_INCHES = 11.0


def voxel_axes(affine: np.ndarray) -> tuple[list[int], list[int]]:
    """The world axis closest to each voxel axis, and whether the voxel index runs along it or against it.

    Parameters
    ----------
    affine : numpy.ndarray
        A 4x4 voxel-to-RAS affine.

    Returns
    -------
    (list of int, list of int)
        ``world[v]`` (0 for x, 1 for y, 2 for z) and ``sign[v]`` (+1 or -1) of each voxel axis *v*.

    Examples
    --------
    >>> voxel_axes(np.diag([-1.0, -1.0, 2.0, 1.0]))  # LPS
    ([0, 1, 2], [-1, -1, 1])
    >>> voxel_axes(np.array([[0, 0, 1, 0], [1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1.0]]))
    ([1, 2, 0], [1, 1, 1])
    """
    linear = np.asarray(affine, dtype=float)[:3, :3]
    closeness = np.abs(linear / np.linalg.norm(linear, axis=0))
    world = [0, 0, 0]
    for _ in range(3):
        w, v = np.unravel_index(np.argmax(closeness), closeness.shape)
        world[v] = int(w)
        closeness[w, :] = -1
        closeness[:, v] = -1
    return world, [1 if linear[world[v], v] > 0 else -1 for v in range(3)]


def crossing_point(image: Image, labels: Image | None, point: Sequence[int] | None = None) -> tuple[int, int, int]:
    """The voxel the three slices pass through.

    Parameters
    ----------
    image : Image
        The volume.
    labels : Image, optional
        Labels on its grid; the slices cross at the centre of mass of the labelled voxels,
        found on a copy strided to about 128 voxels a side.
    point : sequence of three int, optional
        A voxel index to use instead.

    Returns
    -------
    tuple of int
        The centre of the volume when there is no point and nothing is labelled.

    Raises
    ------
    InputError
        If *point* is not a voxel of the volume.
    """
    shape = image.spatial_shape
    if point is not None:
        if len(point) != 3 or not all(0 <= int(p) < s for p, s in zip(point, shape, strict=True)):
            raise InputError(f"point {tuple(point)} is not a voxel of a volume of shape {shape}")
        return _voxel(point)
    centre = _voxel([s // 2 for s in shape])
    if labels is None:
        return centre
    from scipy import ndimage

    step = preview_step(shape, _COARSE_SIZE)
    values = np.asarray(labels.data[0, ::step, ::step, ::step])
    nodata = labels.meta.get("nodata")
    labelled = (values != 0) & (values != nodata) if nodata is not None else values != 0
    if not labelled.any():
        return centre
    mass = np.asarray(ndimage.center_of_mass(labelled)) * step
    return _voxel([np.clip(round(m), 0, s - 1) for m, s in zip(mass, shape, strict=True)])


def _voxel(index: Sequence[Any]) -> tuple[int, int, int]:
    i, j, k = (int(v) for v in index)
    return i, j, k


def plane_view(
    image: Image, plane: str, point: Sequence[int], *, max_size: int = 1024
) -> tuple[np.ndarray, tuple[float, float]]:
    """One slice through *point*, turned and flipped into radiological convention.

    Parameters
    ----------
    image : Image
        A volume (or labels) with a voxel-to-RAS affine.
    plane : {"axial", "coronal", "sagittal"}
        Which slice.
    point : sequence of three int
        The voxel it passes through.
    max_size : int
        The slice is strided down to at most this many pixels a side before reading.

    Returns
    -------
    (numpy.ndarray, (float, float))
        The slice ``(channels, rows, cols)``, row 0 at the top of the screen and column 0
        at its left, and the height and width of one of its pixels in millimetres.
    """
    if plane not in PLANES:
        raise InputError(f"plane must be one of {', '.join(PLANES)}, got {plane!r}")
    world, sign = voxel_axes(np.asarray(image.affine))
    normal, row_axis, col_axis = (world.index(w) for w in PLANES[plane])
    step = preview_step((image.spatial_shape[row_axis], image.spatial_shape[col_axis]), max_size)
    key: list[Any] = [slice(None, None, step)] * 3
    key[normal] = int(point[normal])
    pixels = np.asarray(image.data[tuple([slice(None), *key])])
    if row_axis > col_axis:
        pixels = pixels.swapaxes(1, 2)
    # Row 0 at the top shows the high end of the row's world axis (A, S); column 0 at the
    # left the high end of the column's (R, A): flip an axis whose index runs up that axis.
    if sign[row_axis] > 0:
        pixels = pixels[:, ::-1]
    if sign[col_axis] > 0:
        pixels = pixels[:, :, ::-1]
    spacing = image.spacing
    return pixels, (spacing[row_axis] * step, spacing[col_axis] * step)


def _letters(ax: Any, plane: str) -> None:
    import matplotlib.patheffects as effects

    _, row_axis, col_axis = PLANES[plane]
    style = {"color": "white", "fontsize": 9, "transform": ax.transAxes, "weight": "bold"}
    style["path_effects"] = [effects.withStroke(linewidth=2, foreground="black")]
    top, bottom = _ENDS[row_axis]
    left, right = _ENDS[col_axis]
    ax.text(0.5, 0.98, top, ha="center", va="top", **style)
    ax.text(0.5, 0.02, bottom, ha="center", va="bottom", **style)
    ax.text(0.02, 0.5, left, ha="left", va="center", **style)
    ax.text(0.98, 0.5, right, ha="right", va="center", **style)


def _new_axes(figure: Any, sizes: list[tuple[float, float]]) -> list[Any]:
    """One axes per slice in a row, all at one scale (millimetres per inch), as a viewer shows them."""
    inches_per_mm = _WIDTH_INCHES / sum(width for _, width in sizes)
    height = max(height for height, _ in sizes) * inches_per_mm
    figure.set_size_inches(_WIDTH_INCHES + 2.5, height + 0.8)
    ratios = [width for _, width in sizes]
    return list(figure.subplots(1, len(sizes), gridspec_kw={"width_ratios": ratios, "wspace": 0.05}, squeeze=False)[0])


def draw_volume(
    target: Any,
    image: Image,
    labels: Image | None,
    *,
    truth: Image | None = None,
    truth_label: str = "reference",
    planes: Sequence[str] = ("axial", "coronal", "sagittal"),
    point: Sequence[int] | None = None,
    bands: Sequence[int] | None = None,
    window: Any = None,
    alpha: float = 0.45,
    max_size: int = 1024,
) -> list[Any]:
    """Draw slices of a volume side by side, with labels, reference outlines and a legend.

    Parameters are those of :func:`seamline.show`; *target* is a matplotlib Figure to add
    axes to, or a sequence of one axes per plane.

    Returns
    -------
    list of matplotlib.axes.Axes
    """
    channel = int(bands[0]) if bands is not None else 0
    point = crossing_point(image, labels, point)
    views = [plane_view(image[channel], plane, point, max_size=max_size) for plane in planes]
    low, high = display_range(np.concatenate([v[0].ravel() for v in views]).astype(float), window)
    sizes = [(v[0].shape[1] * v[1][0], v[0].shape[2] * v[1][1]) for v in views]
    axes = _new_axes(target, sizes) if hasattr(target, "add_subplot") else list(target)
    if len(axes) != len(planes):
        raise InputError(f"{len(planes)} planes need {len(planes)} axes, got {len(axes)}")
    world = np.asarray(image.affine) @ [*point, 1]
    shown: set[int] = set()
    for ax, plane, (pixels, _), (height, width) in zip(axes, planes, views, sizes, strict=True):
        extent = (0.0, width, height, 0.0)
        ax.imshow(stretch(pixels, low, high), interpolation="nearest", extent=extent)
        if labels is not None:
            values = plane_view(labels, plane, point, max_size=max_size)[0][0]
            shown |= {int(v) for v in np.unique(values)}
            ax.imshow(
                label_rgba(values, labels.meta.get("colors")), alpha=alpha, interpolation="nearest", extent=extent
            )
        if truth is not None:
            draw_outlines(ax, plane_view(truth, plane, point, max_size=max_size)[0][0], extent)
        normal = PLANES[plane][0]
        ax.set_title(f"{plane}, {_WORLD_NAMES[normal]} = {world[normal]:.1f} mm", fontsize=10)
        ax.set_axis_off()
        _letters(ax, plane)
    meta = labels.meta if labels is not None else {}
    legend(
        axes[-1],
        shown,
        names=meta.get("class_names"),
        colors=meta.get("colors"),
        alpha=alpha,
        outlines=truth_label if truth is not None else None,
    )
    return axes
