"""Pictures: an image with its labels laid over it, for 2D scenes and volume slices.

:func:`show` draws one picture with matplotlib. It never computes more than it draws: a
large scene is strided down to about ``max_size`` pixels a side before anything is read,
and a volume computes only the slice shown. Bands become an RGB (or grey) composite with a
2-98 percentile stretch; labels are coloured by class (``meta["colors"]`` when present)
and drawn with ``alpha``; background (0) and nodata are left clear.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from .atomic import atomic_output
from .colors import class_color
from .errors import InputError
from .image import Image

__all__ = ["show", "write_preview"]


def _as_image(array: Any) -> Image:
    if isinstance(array, Image):
        return array
    array = np.asarray(array) if not hasattr(array, "chunks") else array
    if array.ndim == 2:
        array = array[None]
    return Image.from_array(array)


def _view(image: Image, axis: int, index: int | None, max_size: int) -> tuple[np.ndarray, int, int | None]:
    """The 2D picture of *image* (channels first) that will be drawn, computed."""
    if image.ndim == 3:
        axis = axis % 3
        size = image.spatial_shape[axis]
        index = size // 2 if index is None else index
        if not 0 <= index < size:
            raise InputError(f"slice {index} is outside axis {axis} of size {size}")
        key: list[Any] = [slice(None)] * 3
        key[axis] = slice(index, index + 1)
        image = image.window(*key)
        plane = image.data[(slice(None), *(0 if k == axis else slice(None) for k in range(3)))]
    else:
        plane = image.data
    step = max(1, int(np.ceil(max(plane.shape[1:]) / max_size)))
    return np.asarray(plane[:, ::step, ::step]), axis, index


def _composite(pixels: np.ndarray, bands: Sequence[int] | None, nodata: Any) -> np.ndarray:
    if bands is None:
        bands = [0, 1, 2] if pixels.shape[0] >= 3 else [0]
    picked = pixels[list(bands)].astype(float)
    valid = np.ones(picked.shape[1:], bool) if nodata is None else ~np.all(pixels == nodata, axis=0)
    low, high = np.nanpercentile(picked[:, valid], [2, 98]) if valid.any() else (0.0, 1.0)
    scaled = np.clip((picked - low) / max(high - low, 1e-12), 0, 1)
    rgb = np.moveaxis(scaled, 0, -1)
    return rgb[..., 0] if rgb.shape[-1] == 1 else rgb


def _colours(values: np.ndarray, colors: Mapping[int, Sequence[int]] | None) -> np.ndarray:
    """RGBA of every label (alpha 0 for background), through a lookup table of the labels present."""
    present, where = np.unique(values, return_inverse=True)
    table = np.array([(*((colors or {}).get(int(v)) or class_color(int(v)))[:3], 255 * (v != 0)) for v in present])
    return table[where.reshape(values.shape)] / 255.0


def show(
    image: Any,
    labels: Any = None,
    *,
    bands: Sequence[int] | None = None,
    axis: int = -1,
    index: int | None = None,
    alpha: float = 0.45,
    max_size: int = 1024,
    title: str | None = None,
    ax: Any = None,
) -> Any:
    """Draw *image*, with *labels* laid over it.

    Parameters
    ----------
    image : Image or array-like
        A scene ``(C, H, W)`` or a volume ``(C, I, J, K)``; a 2D array is one band.
    labels : Image or array-like, optional
        Labels on the same grid (one channel); 0 is background and stays clear.
    bands : sequence of int, optional
        Which bands (0-based) make the RGB composite; the first three (or the first one)
        by default.
    axis, index : int
        For volumes, the spatial axis to slice across and the slice (the middle one by
        default). ``axis=-1`` is the axial plane of a RAS-oriented NIfTI volume.
    alpha : float
        Opacity of the labels.
    max_size : int
        The picture is strided down to at most this many pixels a side before reading.
    title : str, optional
        Axes title.
    ax : matplotlib.axes.Axes, optional
        Where to draw; a new figure when omitted.

    Returns
    -------
    matplotlib.axes.Axes

    Raises
    ------
    InputError
        If labels and image grids differ or a slice is out of range.
    """
    image = _as_image(image)
    pixels, axis, index = _view(image, axis, index, max_size)
    if ax is None:
        import matplotlib.pyplot as plt

        _, ax = plt.subplots(figsize=(7, 7 * pixels.shape[1] / max(pixels.shape[2], 1)))
    ax.imshow(_composite(pixels, bands, image.meta.get("nodata")), cmap="gray", interpolation="nearest")
    if labels is not None:
        labels = _as_image(labels)
        if labels.spatial_shape != image.spatial_shape:
            raise InputError(f"labels of shape {labels.spatial_shape} do not match the image's {image.spatial_shape}")
        values = _view(labels, axis, index, max_size)[0][0]
        nodata = labels.meta.get("nodata")
        if nodata is not None:
            values = np.where(values == nodata, 0, values)
        ax.imshow(_colours(values, labels.meta.get("colors")), alpha=alpha, interpolation="nearest")
    where = f" (axis {axis}, slice {index})" if image.ndim == 3 else ""
    ax.set_title((title or "") + where)
    ax.set_axis_off()
    return ax


def write_preview(labels: Image, path: str | os.PathLike, *, image: Image, overwrite: bool = False) -> None:
    """Save a PNG of *labels* over *image* (the ``--preview`` output of ``seamline predict``).

    Parameters
    ----------
    labels : Image
        Predicted labels.
    path : str or os.PathLike
        The PNG to write.
    image : Image
        The input the labels were predicted from.
    overwrite : bool
        Replace an existing file.
    """
    from matplotlib.figure import Figure  # not pyplot: no backend switch, no figure left open

    figure = Figure(figsize=(7, 7))
    with atomic_output(path, overwrite=overwrite) as tmp:
        show(image, labels, title=os.path.basename(os.fspath(path)), ax=figure.add_subplot())
        figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
