"""Warping rasters onto another grid, chunk by chunk, with the same pixels as a whole warp.

Each output chunk is one task: it reads the source window under the chunk (planned by
:mod:`seamline_geo.footprint`: the chunk's outline transformed into the source's pixels,
plus the kernel's reach), and warps that window with GDAL onto the chunk's grid. Two settings
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

from collections.abc import Callable
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from affine import Affine
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from rasterio.io import MemoryFile
from rasterio.vrt import WarpedVRT

from seamline.errors import InputError
from seamline.image import Image

from .footprint import RESAMPLINGS, Grid, Source, plan
from .grid import affine_from_transform, from_windows, to_pyproj, to_rasterio_crs, transform_from_affine

__all__ = ["EXACT", "warp_block", "warp_image", "warp_reads"]

EXACT = 1e-20  # the transformer tolerance, in pixels; see the module docstring


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
