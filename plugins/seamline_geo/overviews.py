"""Pictures of large rasters from their overviews: the geo plugin's ``seamline_overview``.

A preview of a huge scene needs a few hundred pixels a side. When the Image's pixels
are a raster file's, untouched (what :func:`~seamline_geo.reader.open_raster` returned,
or a window, a stride or some bands of it: its dask graph is one read of the file and
slices of it), they are read again with rasterio at the picture's size, and GDAL takes
them from the file's overviews (a COG has them) instead of decoding every block.
Anything else (computed data, a warp, rescaled bands) is left to the core, which reads
every step-th pixel chunk by chunk.
"""

from __future__ import annotations

import math
import os

import dask.array as da
import numpy as np
import rasterio
from dask.highlevelgraph import HighLevelGraph, MaterializedLayer
from rasterio.enums import Resampling
from rasterio.windows import Window

from seamline.image import Image

from .grid import affine_from_transform

__all__ = ["file_window", "read_overview"]


def _read_layer(image: Image, path: str) -> str | None:
    """The name of the one layer that reads *path*, when the rest of the graph only slices it."""
    prefix = f"read-{os.path.basename(path)}-"
    names = list(image.data.dask.layers)
    reads = [n for n in names if n.startswith(prefix)]
    if len(reads) != 1 or not all(n in reads or n.startswith("getitem-") for n in names):
        return None
    return reads[0]


def _bands(image: Image, read: str, path: str) -> list[int] | None:
    """The file's band (1-based) behind each channel of *image*.

    The image's graph runs, for one pixel, on a stand-in for the read whose every pixel
    holds its band number, so whatever slicing of bands followed the read is followed
    exactly. None when the read rescales its values (they are not the file's then).
    """
    layers = dict(image.data.dask.layers)
    stand_in = {}
    for key, task in layers[read].items():
        if not (isinstance(task, tuple) and len(task) > 4 and task[1] == path and isinstance(task[2], list)):
            return None
        if task[3] is not None:  # scale and offset applied on reading
            return None
        indexes, (_, _, height, width) = task[2], task[-1]
        stand_in[key] = (np.broadcast_to, np.asarray(indexes)[:, None, None], (len(indexes), height, width))
    layers[read] = MaterializedLayer(stand_in)
    graph = HighLevelGraph(layers, dict(image.data.dask.dependencies))
    probe = da.Array(graph, image.data.name, image.data.chunks, dtype=np.int64)
    return [int(band) for band in np.asarray(probe[:, 0, 0]).ravel()]


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
    if image.ndim != 2 or not isinstance(path, str) or not os.path.isfile(path):
        return None
    read = _read_layer(image, path)
    indexes = None if read is None else _bands(image, read, path)
    if indexes is None:
        return None
    with rasterio.open(path) as dataset:
        if any(np.dtype(dataset.dtypes[i - 1]) != image.dtype for i in indexes):
            return None
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
