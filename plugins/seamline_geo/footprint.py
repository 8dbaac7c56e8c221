"""Which source window each chunk of a grid reads, and how wide the resampling kernel is.

A warp onto a grid (:mod:`seamline_geo.warp`) runs one task per output chunk, and each
task reads only the part of the source under its chunk. :func:`plan` finds that part:
the chunk's outline (pixel corners every :data:`EDGE_STEP` pixels along its edges, and
through its middle) is transformed into the source's pixel coordinates, and the bounding
window, grown by the kernel's reach, is clipped to the source. The kernel's reach is its
radius in source pixels, widened when downsampling (as GDAL widens bilinear and cubic
kernels), plus 2 pixels. A chunk whose outline lands outside the source reads nothing.

:func:`plan` also fixes the kernel scale for the whole grid (GDAL's ``XSCALE`` and
``YSCALE``: destination pixels per source pixel), from the ratio of pixel sizes at the
grid's centre, so that every chunk resamples with the same kernel.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import dask.array as da
import numpy as np
import pyproj
from affine import Affine
from rasterio.enums import Resampling

from seamline.errors import InputError
from seamline.image import Image

from .grid import to_pyproj, transform_from_affine

__all__ = ["RESAMPLINGS", "EDGE_STEP", "Grid", "Source", "plan"]

#: Resampling by name: GDAL's method and its kernel radius in source pixels (before widening).
RESAMPLINGS: dict[str, tuple[Resampling, int]] = {
    "nearest": (Resampling.nearest, 0),
    "bilinear": (Resampling.bilinear, 1),
    "cubic": (Resampling.cubic, 2),
    "average": (Resampling.average, 0),
    "mode": (Resampling.mode, 0),
}
EDGE_STEP = 8  # pixels between the points sampled along a chunk's outline


@dataclasses.dataclass(frozen=True)
class Grid:
    """A target grid in rasterio's terms: transform, CRS, shape and dask chunks."""

    transform: Affine
    crs: Any
    shape: tuple[int, int]
    chunks: tuple[tuple[int, ...], tuple[int, ...]]

    @classmethod
    def of(cls, like: Image, chunks: Any = None) -> Grid:
        """The grid of a 2D Image (its chunks, or *chunks*)."""
        if not isinstance(like, Image) or like.ndim != 2:
            raise InputError("like= must be a 2D Image (a raster or a window of one)")
        shape = like.spatial_shape
        spatial = like.data.chunks[1:] if chunks is None else da.core.normalize_chunks(chunks, shape)
        rows, cols = (tuple(int(size) for size in sizes) for sizes in spatial)
        return cls(transform_from_affine(np.asarray(like.affine)), like.crs, (shape[0], shape[1]), (rows, cols))

    def windows(self) -> list[tuple[int, int, int, int]]:
        """Every chunk as ``(row, col, height, width)``, row-major."""
        rows, cols = (np.cumsum((0, *sizes[:-1])) for sizes in self.chunks)
        return [
            (int(r), int(c), int(h), int(w))
            for r, h in zip(rows, self.chunks[0], strict=True)
            for c, w in zip(cols, self.chunks[1], strict=True)
        ]


@dataclasses.dataclass(frozen=True)
class Source:
    """What a warp needs to know about the raster it reads from."""

    transform: Affine
    crs: Any
    shape: tuple[int, int]
    bands: int
    dtype: np.dtype
    nodata: float | None
    masked: bool = False  # the source has a validity mask of its own


def _apply(transform: Affine, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """*transform* applied to arrays of points."""
    t = transform
    return t.a * x + t.b * y + t.c, t.d * x + t.e * y + t.f


def _scale(source: Source, grid: Grid, transformer: pyproj.Transformer) -> tuple[float, float]:
    """GDAL's XSCALE and YSCALE (destination pixels per source pixel) at the grid's centre."""
    row, col = grid.shape[0] / 2, grid.shape[1] / 2
    xs, ys = _apply(grid.transform, np.array([col, col + 1, col]), np.array([row, row, row + 1]))
    sx, sy = transformer.transform(xs, ys)
    cols, rows = _apply(~source.transform, np.asarray(sx), np.asarray(sy))
    step_x = math.hypot(cols[1] - cols[0], rows[1] - rows[0])
    step_y = math.hypot(cols[2] - cols[0], rows[2] - rows[0])
    if not (np.isfinite(step_x) and np.isfinite(step_y)) or step_x == 0 or step_y == 0:
        return 1.0, 1.0
    return 1 / step_x, 1 / step_y


def _outline(window: tuple[int, int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-corner points along a window's edges and through its middle, as (rows, cols)."""
    row, col, height, width = window
    rs = np.linspace(row, row + height, max(2, height // EDGE_STEP + 2))
    cs = np.linspace(col, col + width, max(2, width // EDGE_STEP + 2))
    mid_r, mid_c = np.full(cs.size, row + height / 2), np.full(rs.size, col + width / 2)
    rows = np.concatenate([rs, rs, np.full(cs.size, row), np.full(cs.size, row + height), rs, mid_r])
    cols = np.concatenate([np.full(rs.size, col), np.full(rs.size, col + width), cs, cs, mid_c, cs])
    return rows, cols


def plan(
    source: Source, grid: Grid, resampling: str
) -> tuple[dict[tuple[int, int, int, int], tuple[tuple[int, int, int, int] | None, bool]], tuple[float, float]]:
    """The source window each chunk reads, whether the source covers the chunk, and the kernel scale.

    Returns
    -------
    windows : dict
        Chunk ``(row, col, height, width)`` to ``(source window or None, covered)``:
        the ``(row, col, height, width)`` of the source to read (None when the chunk falls
        outside the source), and whether every pixel of the chunk lies inside the source.
    scale : (float, float)
        GDAL's XSCALE and YSCALE for this grid.
    """
    transformer = pyproj.Transformer.from_crs(to_pyproj(grid.crs), to_pyproj(source.crs), always_xy=True)
    scale = _scale(source, grid, transformer)
    radius = RESAMPLINGS[resampling][1]
    margin = math.ceil(radius / min(1.0, *scale)) + 2
    windows = grid.windows()
    outlines = [_outline(window) for window in windows]
    sizes = [rows.size for rows, _ in outlines]
    rows = np.concatenate([r for r, _ in outlines])
    cols = np.concatenate([c for _, c in outlines])
    xs, ys = _apply(grid.transform, cols, rows)
    sx, sy = transformer.transform(xs, ys)
    src_cols, src_rows = _apply(~source.transform, np.asarray(sx), np.asarray(sy))
    height, width = source.shape
    result: dict[tuple[int, int, int, int], tuple[tuple[int, int, int, int] | None, bool]] = {}
    for window, part_r, part_c in zip(
        windows, np.split(src_rows, np.cumsum(sizes)[:-1]), np.split(src_cols, np.cumsum(sizes)[:-1]), strict=True
    ):
        finite = np.isfinite(part_r) & np.isfinite(part_c)
        if not finite.any():
            result[window] = (None, False)
            continue
        r, c = part_r[finite], part_c[finite]
        covered = bool(
            finite.all() and r.min() >= 1 and c.min() >= 1 and r.max() <= height - 1 and c.max() <= width - 1
        )
        r0, r1 = max(0, math.floor(r.min()) - margin), min(height, math.ceil(r.max()) + margin)
        c0, c1 = max(0, math.floor(c.min()) - margin), min(width, math.ceil(c.max()) + margin)
        result[window] = ((r0, c0, r1 - r0, c1 - c0), covered) if r0 < r1 and c0 < c1 else (None, False)
    return result, scale
