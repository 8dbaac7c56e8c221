"""Per-label measurements of a lazy label map, chunk by chunk.

:func:`measure` gives one row per label: its voxel count, centroid (voxel index and, for
an Image, world coordinates), bounding box and, when an intensity image is given, the
mean, minimum and maximum intensity under it. Each chunk is reduced on its own to sums,
minima and maxima per label present in it; those partial tables are small, and adding
them up gives the exact figures, so the label map is never held in memory whole.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._chunks import chunk_origins, map_chunks, spatial_array
from .image import Image, check_same_grid

__all__ = ["measure"]

_HOW = {"voxels": "sum", "sum": "sum", "min": "min", "max": "max"}


def _chunk_table(labels: np.ndarray, intensity: np.ndarray | None, origin: tuple[int, ...]) -> pd.DataFrame:
    """Sums, minima and maxima per label in one chunk (coordinates are global)."""
    where = np.nonzero(labels)
    columns: dict[str, Any] = {"label": labels[where]}
    for axis, (coordinate, start) in enumerate(zip(where, origin, strict=True)):
        columns[f"i{axis}"] = coordinate + start
    if intensity is not None:
        columns["value"] = intensity[where].astype(np.float64)
    frame = pd.DataFrame(columns)
    aggregations = {"voxels": ("label", "size")}
    for column in list(columns)[1:]:
        for how in ("sum", "min", "max"):
            aggregations[f"{how}_{column}"] = (column, how)
    return frame.groupby("label").agg(**aggregations)


def measure(labels: Any, image: Any = None) -> pd.DataFrame:
    """Measure every label of a label map: size, centroid, bounding box, intensity.

    Parameters
    ----------
    labels : Image, numpy.ndarray or dask.array.Array
        Integer labels (0 is background): an Image with one channel, or an array shaped
        like the spatial axes only. For an Image, centroids are also given in world
        coordinates through its affine.
    image : Image, numpy.ndarray or dask.array.Array, optional
        Intensities on the same grid (one channel); adds ``intensity_mean``,
        ``intensity_min`` and ``intensity_max``.

    Returns
    -------
    pandas.DataFrame
        Indexed by ``label`` (ascending, only labels present), with columns ``voxels``;
        ``centroid_0``, ``centroid_1``, ... (voxel index space, per spatial axis);
        ``centroid_x``, ``centroid_y`` (and ``centroid_z``) in world coordinates of voxel
        centres when *labels* is an Image; ``bbox_start_<axis>`` and ``bbox_stop_<axis>``
        (a slice: the stop is exclusive, as :func:`scipy.ndimage.find_objects`); and the
        intensity columns when *image* is given.

    Raises
    ------
    InputError
        If an input has more than one channel or *image* is on another grid (shape, affine
        or CRS).

    Examples
    --------
    >>> import numpy as np
    >>> table = measure(np.array([[1, 1, 0], [0, 2, 2]]))
    >>> table["voxels"].tolist(), table["centroid_1"].tolist()
    ([2, 2], [0.5, 1.5])
    """
    array = spatial_array(labels, "labels")
    intensity = None
    if image is not None:
        intensity = spatial_array(image, "image")
        check_same_grid(
            labels if isinstance(labels, Image) else array,
            image if isinstance(image, Image) else intensity,
            ("labels", "image"),
        )
        intensity = intensity.rechunk(array.chunks)
    origins = [(origin,) for origin in chunk_origins(array.chunks)]
    tables = map_chunks(_chunk_table, array, intensity, per_chunk=origins)
    combined = pd.concat(tables)
    totals = combined.groupby(level=0).agg({c: _HOW[c.split("_")[0]] for c in combined.columns})
    return _finish(totals, array.ndim, labels, intensity is not None)


def _finish(totals: pd.DataFrame, ndim: int, labels: Any, has_intensity: bool) -> pd.DataFrame:
    """Turn summed partials into the user's columns."""
    voxels = totals["voxels"].astype(np.int64)
    out = pd.DataFrame({"voxels": voxels}, index=totals.index.astype(np.int64).rename("label"))
    centroid = np.stack([totals[f"sum_i{axis}"] / voxels for axis in range(ndim)], axis=1).reshape(-1, ndim)
    for axis in range(ndim):
        out[f"centroid_{axis}"] = centroid[:, axis]
    if isinstance(labels, Image):
        shift = 0.5 if labels.meta.get("anchor") == "corner" else 0.0
        world = (labels.affine[:ndim, :ndim] @ (centroid + shift).T).T + labels.affine[:ndim, ndim]
        for axis, name in enumerate("xyz"[:ndim]):
            out[f"centroid_{name}"] = world[:, axis]
    for axis in range(ndim):
        out[f"bbox_start_{axis}"] = totals[f"min_i{axis}"].astype(np.int64)
        out[f"bbox_stop_{axis}"] = totals[f"max_i{axis}"].astype(np.int64) + 1
    if has_intensity:
        out["intensity_mean"] = totals["sum_value"] / voxels
        out["intensity_min"] = totals["min_value"]
        out["intensity_max"] = totals["max_value"]
    return out
