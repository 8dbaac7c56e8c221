"""Pictures of large rasters from their overviews: the geo plugin's ``seamline_overview``.

A preview of a huge scene needs a few hundred pixels a side. When the Image's pixels
are a raster file's, untouched (what :func:`~seamline_geo.reader.open_raster` returned,
or a window, a stride or some bands of it), they are read again with rasterio at the
picture's size, and GDAL takes them from the file's overviews (a COG has them) instead
of decoding every block. Anything else (computed data, a warp, rescaled bands) is left to
the core, which reads every step-th pixel chunk by chunk.
"""

from __future__ import annotations

import math
import os

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from seamline.image import Image

from .grid import affine_from_transform
from .reader import _band_names

__all__ = ["file_window", "read_overview"]


def _untouched_read(image: Image, path: str) -> bool:
    """The data is one read of *path* and nothing but slices of it."""
    read = f"read-{os.path.basename(path)}-"
    names = list(image.data.dask.layers)
    return sum(n.startswith(read) for n in names) == 1 and all(
        n.startswith(read) or n.startswith("getitem-") for n in names
    )


def file_window(image: Image) -> tuple[str, list[int], tuple[int, int], tuple[int, int]] | None:
    """Where an image's pixels lie in their raster file, when they are the file's own.

    Parameters
    ----------
    image : seamline.Image
        A 2D image.

    Returns
    -------
    (str, list of int, (int, int), (int, int)) or None
        The path, the 1-based bands, the first pixel's ``(row, col)`` and the stride along
        rows and columns; None when the pixels are not a plain read of a raster file.
    """
    path = image.meta.get("path")
    if image.ndim != 2 or not isinstance(path, str) or not os.path.isfile(path) or not _untouched_read(image, path):
        return None
    with rasterio.open(path) as dataset:
        names = _band_names(dataset, range(1, dataset.count + 1))
        wanted = list(image.meta.get("band_names") or [])
        if len(wanted) != image.channels or any(names.count(name) != 1 for name in wanted):
            return None
        indexes = [names.index(name) + 1 for name in wanted]
        if any(np.dtype(dataset.dtypes[i - 1]) != image.dtype for i in indexes):
            return None  # rescaled on reading
        relative = np.linalg.solve(affine_from_transform(dataset.transform), np.asarray(image.affine))
    whole = np.round(relative)
    if not np.allclose(relative, whole, atol=1e-6) or whole[0, 1] or whole[1, 0] or min(whole[0, 0], whole[1, 1]) < 1:
        return None
    return path, indexes, (int(whole[0, 2]), int(whole[1, 2])), (int(whole[0, 0]), int(whole[1, 1]))


def read_overview(image: Image, step: int) -> np.ndarray | None:
    """Every *step*-th pixel of *image*, as GDAL reads it at that size (from overviews when there are some).

    Parameters
    ----------
    image : seamline.Image
        A 2D image.
    step : int
        The stride along rows and columns.

    Returns
    -------
    numpy.ndarray or None
        Shaped like ``image.data[:, ::step, ::step]``; None when the pixels are not a file's.
    """
    found = file_window(image)
    if found is None:
        return None
    path, indexes, (row, col), (row_step, col_step) = found
    rows, cols = image.spatial_shape
    with rasterio.open(path) as dataset:
        height = min(rows * row_step, dataset.height - row)
        width = min(cols * col_step, dataset.width - col)
        shape = (len(indexes), math.ceil(rows / step), math.ceil(cols / step))
        window = Window(col, row, width, height)
        return dataset.read(indexes, window=window, out_shape=shape, resampling=Resampling.nearest)
