"""Warping rasters onto another grid, chunk by chunk, with the same pixels as a whole warp.

Each output chunk is one task: it reads the source window under the chunk (the chunk's
outline, densified and transformed into the source's pixels, plus a margin for the
resampling kernel), and warps that window with GDAL onto the chunk's grid. Two settings
make the chunks agree with a warp of the whole raster, which GDAL's defaults do not:

- **An exact transformer.** GDAL approximates the coordinate transformation along each
  row of the region it warps (to 0.125 pixel); the approximation depends on the region,
  so a chunk would differ from the whole. Every destination pixel is transformed exactly
  here (rasterio 1.4's ``WarpedVRT`` refuses a tolerance of 0, so a tolerance of 1e-20
  pixel makes GDAL's approximating transformer transform each point exactly).
- **A fixed kernel scale.** When downsampling, GDAL widens the bilinear and cubic kernels
  by a scale it computes from each region's size; here the scale (GDAL's ``XSCALE`` and
  ``YSCALE`` warp options) is computed once for the grid, from the ratio of pixel sizes at
  its centre, and is the same in every chunk.

With both, a chunked warp equals a whole-raster warp with the same settings pixel for
pixel for nearest neighbour, and to the last bit of float32 for the others (the order of
floating-point operations follows the window). Nodata is kept per band, as GDAL's warper
does; a source without nodata gets a validity mask (``meta["mask"]``) wherever the grid
reaches beyond it or the source has a mask of its own, computed in the same warp as an
extra band of ones. Tasks hold paths or dask keys, never open datasets, so the graph
pickles to dask.distributed.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import pyproj
import rasterio
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.enums import Resampling
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT

from seamline.errors import InputError
from seamline.image import Image

from .grid import affine_from_transform, from_windows, to_pyproj, to_rasterio_crs, transform_from_affine

__all__ = ["RESAMPLINGS", "Grid", "Source", "plan", "warp_block", "warp_image", "warp_reads"]

#: Resampling by name: GDAL's method and its kernel radius in source pixels (before widening).
RESAMPLINGS: dict[str, tuple[Resampling, int]] = {
    "nearest": (Resampling.nearest, 0),
    "bilinear": (Resampling.bilinear, 1),
    "cubic": (Resampling.cubic, 2),
    "average": (Resampling.average, 0),
    "mode": (Resampling.mode, 0),
}
EXACT = 1e-20  # the transformer tolerance, in pixels; see the module docstring
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


def warp_block(
    block: np.ndarray,
    valid: np.ndarray | None,
    window: tuple[int, int, int, int],
    source: Source,
    grid_transform: Affine,
    grid_crs: Any,
    chunk: tuple[int, int, int, int],
    resampling: str,
    scale: tuple[float, float],
    with_validity: bool,
) -> np.ndarray:
    """Warp a source window onto one chunk of the grid with GDAL, exactly.

    Parameters
    ----------
    block : numpy.ndarray
        The source window, ``(bands, height, width)``, nodata as ``source.nodata``.
    valid : numpy.ndarray or None
        The source's own validity mask on the window (True = data), if it has one.
    window : (int, int, int, int)
        Where *block* lies in the source: ``(row, col, height, width)``.
    source : Source
        The source raster's grid and nodata.
    grid_transform, grid_crs
        The target grid.
    chunk : (int, int, int, int)
        The chunk of the target grid to fill.
    resampling : str
        A key of :data:`RESAMPLINGS`.
    scale : (float, float)
        GDAL's XSCALE and YSCALE.
    with_validity : bool
        Append a band that is 1 where the warp wrote data and 0 elsewhere.

    Returns
    -------
    numpy.ndarray
        ``(bands (+ 1), chunk height, chunk width)`` in the source's dtype.
    """
    row, col, height, width = window
    bands = block.shape[0]
    if with_validity:
        block = np.concatenate([block, np.ones((1, *block.shape[1:]), block.dtype)])
    profile = {
        "driver": "GTiff",
        "width": width,
        "height": height,
        "count": block.shape[0],
        "dtype": block.dtype.name,
        "crs": to_rasterio_crs(source.crs),
        "transform": source.transform @ Affine.translation(col, row),
        "nodata": source.nodata,
    }
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), MemoryFile() as memory:
        with memory.open(**profile) as dataset:
            dataset.write(block)
            if valid is not None:
                dataset.write_mask(valid.astype(np.uint8) * 255)
        with (
            memory.open() as dataset,
            WarpedVRT(
                dataset,
                crs=to_rasterio_crs(grid_crs),
                transform=grid_transform @ Affine.translation(chunk[1], chunk[0]),
                width=chunk[3],
                height=chunk[2],
                resampling=RESAMPLINGS[resampling][0],
                tolerance=EXACT,
                src_nodata=source.nodata,
                nodata=source.nodata,
                XSCALE=scale[0],
                YSCALE=scale[1],
            ) as vrt,
        ):
            out = vrt.read()
    if with_validity:
        out[bands] = out[bands] > 0
    return out


def _empty(source: Source, chunk: tuple[int, int, int, int], with_validity: bool) -> np.ndarray:
    fill = 0 if source.nodata is None else source.nodata
    out = np.full((source.bands + with_validity, chunk[2], chunk[3]), fill, source.dtype)
    if with_validity:
        out[-1] = 0
    return out


def _finish(data: da.Array, source: Source, with_validity: bool, grid: Grid, meta: dict[str, Any]) -> Image:
    """Split the validity band off into ``meta["mask"]`` and build the Image."""
    meta = {**meta, "nodata": source.nodata, "anchor": "corner"}
    meta.pop("mask", None)
    if with_validity:
        meta["mask"] = data[source.bands :] > 0
        data = data[: source.bands]
    return Image(data, affine_from_transform(grid.transform), to_pyproj(grid.crs), meta)


def _check(source: Source, grid: Grid, resampling: str, what: str | None) -> None:
    if resampling not in RESAMPLINGS:
        raise InputError(f"unknown resampling {resampling!r}; use one of {', '.join(RESAMPLINGS)}", what)
    if source.crs is None or grid.crs is None:
        side = "the grid" if source.crs is not None else "it"
        raise InputError(f"cannot be warped onto another grid: {side} has no CRS", what)


def _read_and_warp(
    read: Callable[[tuple[int, int, int, int]], tuple[np.ndarray, np.ndarray | None]],
    source: Source,
    grid_transform: Affine,
    grid_crs: Any,
    resampling: str,
    scale: tuple[float, float],
    with_validity: bool,
    window: tuple[int, int, int, int] | None,
    chunk: tuple[int, int, int, int],
) -> np.ndarray:
    if window is None:
        return _empty(source, chunk, with_validity)
    block, valid = read(window)
    return warp_block(block, valid, window, source, grid_transform, grid_crs, chunk, resampling, scale, with_validity)


def warp_reads(
    name: str,
    read: Callable[[tuple[int, int, int, int]], tuple[np.ndarray, np.ndarray | None]],
    source: Source,
    like: Image,
    *,
    resampling: str = "nearest",
    chunks: Any = None,
    meta: dict[str, Any] | None = None,
) -> Image:
    """Warp a raster onto *like*'s grid, lazily: each chunk reads only its own source window.

    Parameters
    ----------
    name : str
        A dask name prefix that identifies the source and how it is read (a path and its
        modification time, the bands, the scales).
    read : callable
        ``read(window)`` returns the source's bands on ``window = (row, col, height,
        width)`` and its validity mask there (or None). It runs inside the tasks, so it
        must pickle: a ``functools.partial`` of a module-level function and plain data.
    source : Source
        The source's grid, band count, dtype and nodata.
    like : Image
        The 2D Image whose grid, CRS and chunks the result takes.
    resampling : str
        A key of :data:`RESAMPLINGS`.
    chunks : optional
        Spatial chunks instead of *like*'s.
    meta : dict, optional
        Metadata for the result (band names, ...); ``nodata``, ``mask`` and ``anchor`` are set here.

    Returns
    -------
    Image

    Raises
    ------
    InputError
        If the source or the grid has no CRS, or the resampling is unknown.
    """
    grid = Grid.of(like, chunks)
    _check(source, grid, resampling, (meta or {}).get("path"))
    windows, scale = plan(source, grid, resampling)
    with_validity = source.nodata is None and (source.masked or not all(covered for _, covered in windows.values()))
    args = (source, grid.transform, grid.crs, resampling, scale, with_validity)
    name = f"{name}-{tokenize(read, *args, grid)}"

    def task(chunk: tuple[int, int, int, int]) -> tuple:
        return (_read_and_warp, read, *args, windows[chunk][0], chunk)

    data = from_windows(name, task, grid.chunks, source.bands + with_validity, source.dtype)
    return _finish(data, source, with_validity, grid, dict(meta or {}))


def _blocks_chunk(
    blocks: list,
    masks: list | None,
    offset: tuple[int, int],
    source: Source,
    grid_transform: Affine,
    grid_crs: Any,
    resampling: str,
    scale: tuple[float, float],
    with_validity: bool,
    window: tuple[int, int, int, int],
    chunk: tuple[int, int, int, int],
) -> np.ndarray:
    row, col, height, width = window
    rows, cols = slice(row - offset[0], row - offset[0] + height), slice(col - offset[1], col - offset[1] + width)
    block = np.block(blocks)[:, rows, cols]
    valid = None if masks is None else np.block(masks)[0, rows, cols]
    return warp_block(block, valid, window, source, grid_transform, grid_crs, chunk, resampling, scale, with_validity)


def warp_image(image: Image, like: Image, resampling: str = "nearest", *, chunks: Any = None) -> Image:
    """Warp a lazy 2D Image onto *like*'s grid, chunk by chunk.

    Each output chunk depends only on the source chunks under its window (plus the
    kernel's margin), so the whole source is never held at once.

    Parameters
    ----------
    image : Image
        A 2D Image with a CRS.
    like : Image
        The 2D Image whose grid, CRS and chunks the result takes.
    resampling : str
        A key of :data:`RESAMPLINGS`.
    chunks : optional
        Spatial chunks instead of *like*'s.

    Returns
    -------
    Image
        With *image*'s bands, dtype, band names and nodata.

    Raises
    ------
    InputError
        If either has no CRS, the image is not 2D, or the resampling is unknown.
    """
    if image.ndim != 2:
        raise InputError(f"only 2D images can be warped, got spatial shape {image.spatial_shape}")
    grid = Grid.of(like, chunks)
    mask = image.meta.get("mask")
    source = Source(
        transform_from_affine(np.asarray(image.affine)),
        image.crs,
        (image.spatial_shape[0], image.spatial_shape[1]),
        image.channels,
        np.dtype(image.dtype),
        image.meta.get("nodata"),
        masked=mask is not None,
    )
    _check(source, grid, resampling, image.meta.get("path"))
    windows, scale = plan(source, grid, resampling)
    with_validity = source.nodata is None and (source.masked or not all(covered for _, covered in windows.values()))
    data = image.data.rechunk({0: -1})
    masks = None
    if mask is not None:
        masks = da.asarray(mask).astype(bool).reshape((1, *image.spatial_shape)).rechunk(((1,), *data.chunks[1:]))
    starts = [np.cumsum((0, *sizes)) for sizes in data.chunks[1:]]
    args = (source, grid.transform, grid.crs, resampling, scale, with_validity)
    name = f"warp-{tokenize(data.name, None if masks is None else masks.name, *args, grid)}"
    graph: dict[Any, Any] = {}
    for i, chunk in enumerate(grid.windows()):
        window = windows[chunk][0]
        key = (name, 0, *divmod(i, len(grid.chunks[1])))
        if window is None:
            graph[key] = (_empty, source, chunk, with_validity)
            continue
        row, col, height, width = window
        ii = _touched(starts[0], row, row + height)
        jj = _touched(starts[1], col, col + width)
        blocks = [[(data.name, 0, a, b) for b in jj] for a in ii]
        mask_blocks = None if masks is None else [[(masks.name, 0, a, b) for b in jj] for a in ii]
        offset = (int(starts[0][ii[0]]), int(starts[1][jj[0]]))
        graph[key] = (_blocks_chunk, blocks, mask_blocks, offset, *args, window, chunk)
    dependencies = [data] if masks is None else [data, masks]
    hlg = HighLevelGraph.from_collections(name, graph, dependencies=dependencies)
    warped = da.Array(hlg, name, ((source.bands + with_validity,), *grid.chunks), dtype=source.dtype)
    return _finish(warped, source, with_validity, grid, dict(image.meta))


def _touched(starts: np.ndarray, begin: int, end: int) -> list[int]:
    """The indexes of the chunks (starting at *starts*, with the total last) that ``[begin, end)`` touches."""
    first = int(np.searchsorted(starts, begin, side="right")) - 1
    last = int(np.searchsorted(starts, end, side="left")) - 1
    return list(range(first, last + 1))
