"""Several images as the bands of one, on one grid, warped lazily where grids differ.

:func:`stack` builds one multi-band Image from Images and paths. Its grid is the first
input's, that of ``like=``, or one given as CRS, resolution and bounds (:func:`grid`).
Every input is brought onto that grid before it joins:

- a path is opened by its reader with ``like=<the grid>``: the geo plugin's raster reader
  reads a raster as it is when it already sits on the grid, and warps it chunk by chunk
  when it does not (each chunk reading only the source window under it);
- an Image already on the grid joins as it is; one on another grid is warped by the
  plugin implementing ``seamline_warp`` (the geo plugin, for rasters with a CRS).

Two inputs on different grids are never put side by side unwarped: an input that no
plugin can bring onto the grid is an :class:`~seamline.errors.InputError`. The core does
no geometry itself; it only compares grids (affine, CRS, shape).

A stack's pixel is valid where every input is valid there: ``meta["mask"]`` is the
intersection of the inputs' validity (their nodata and masks), and ``meta["nodata"]`` is
kept only when every input has the same nodata value.
"""

from __future__ import annotations

import inspect
import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np

from . import io
from .errors import InputError
from .image import Image
from .plugins import call_hook

__all__ = ["stack", "grid", "same_grid", "band_names", "RESAMPLINGS"]

RESAMPLINGS = ("nearest", "bilinear", "cubic", "average", "mode")
GRID_CHUNK = 1024
_UNNAMED = re.compile(r"band\d+")


def same_grid(affine: Any, crs: Any, shape: Sequence[int], like: Image) -> bool:
    """Whether a raster with *affine*, *crs* and spatial *shape* sits exactly on *like*'s grid.

    Parameters
    ----------
    affine : array-like
        Its ``(N+1) x (N+1)`` affine.
    crs : object
        Its CRS (compared with ``==``), or None.
    shape : sequence of int
        Its spatial shape.
    like : Image
        The grid to compare with.

    Returns
    -------
    bool
        True when the shapes are equal, the CRSs equal (or both None) and the affines
        agree to a millionth of a pixel.
    """
    if tuple(int(s) for s in shape) != like.spatial_shape:
        return False
    if (crs is None) != (like.crs is None) or (crs is not None and not crs == like.crs):
        return False
    grid = np.asarray(like.affine, dtype=float)
    size = float(np.abs(grid[:-1, :-1]).max())
    return bool(np.allclose(np.asarray(affine, dtype=float), grid, rtol=0, atol=1e-6 * size))


def grid(
    *,
    crs: Any,
    resolution: float | Sequence[float],
    bounds: Sequence[float],
    chunks: int | Sequence[int] = GRID_CHUNK,
) -> Image:
    """A north-up 2D grid as an Image whose data are never read: a ``like=`` for :func:`stack` and readers.

    Parameters
    ----------
    crs : object
        The grid's CRS (anything its readers take: ``"EPSG:32645"``, a ``pyproj.CRS``, ...).
    resolution : float or (float, float)
        Pixel size in CRS units, or ``(x size, y size)``.
    bounds : (float, float, float, float)
        ``(left, bottom, right, top)`` in CRS units. The grid starts at ``(left, top)``;
        its size is the bounds' extent divided by the resolution, rounded to whole pixels.
    chunks : int or (int, int)
        Chunk size of the images brought onto it.

    Returns
    -------
    Image
        One band of zeros (lazy) with the grid's affine, CRS and chunks.

    Raises
    ------
    InputError
        If the resolution is not positive or the bounds are empty.
    """
    sizes = [resolution, resolution] if isinstance(resolution, (int, float)) else list(resolution)
    rx, ry = float(sizes[0]), float(sizes[1])
    left, bottom, right, top = map(float, bounds)
    if not (rx > 0 and ry > 0):
        raise InputError(f"a grid needs a positive resolution, got {resolution!r}")
    width, height = round((right - left) / rx), round((top - bottom) / ry)
    if width < 1 or height < 1:
        raise InputError(f"the grid bounds {tuple(bounds)} hold no pixel at resolution {resolution!r}")
    spatial = da.core.normalize_chunks(chunks, (height, width))
    data = da.zeros((1, height, width), dtype=np.uint8, chunks=((1,), *spatial))
    affine = np.array([[0.0, rx, left], [-ry, 0.0, top], [0.0, 0.0, 1.0]])
    return Image(data, affine, crs, {"anchor": "corner", "band_names": ["grid"]})


def band_names(image: Image, path: str | os.PathLike | None = None) -> list[str]:
    """The names an input's bands take in a stack.

    A band keeps its name (a raster's band description); an unnamed one (``band<n>``, or
    none) from a file is named after the file: ``<stem>`` for a single band, else
    ``<stem>.band<n>``. :func:`stack` uses these names when some input names its bands.

    Parameters
    ----------
    image : Image
        The input.
    path : str or os.PathLike, optional
        The file it came from.

    Returns
    -------
    list of str
    """
    names = [str(n) for n in image.meta.get("band_names") or [f"band{i}" for i in range(1, image.channels + 1)]]
    if path is None:
        return names
    stem = Path(os.fspath(path).rstrip("/\\")).stem
    if image.channels == 1 and _UNNAMED.fullmatch(names[0]):
        return [stem]
    return [f"{stem}.{name}" if _UNNAMED.fullmatch(name) else name for name in names]


def _reader_options(path: str, options: dict[str, Any]) -> dict[str, Any]:
    """The options of *options* that the reader of *path* takes."""
    parameters = inspect.signature(io.reader_for(path).open).parameters
    if any(p.kind is p.VAR_KEYWORD for p in parameters.values()):
        return options
    return {k: v for k, v in options.items() if k in parameters}


def _warped(image: Image, target: Image, resampling: str, source: Any) -> Image:
    if same_grid(image.affine, image.crs, image.spatial_shape, target):
        return image
    warped = call_hook("seamline_warp", image=image, like=target, resampling=resampling)
    if warped is None:
        raise InputError("lies on another grid than the stack and no plugin can warp it", source)
    return warped


def _on_grid(item: Image | str | os.PathLike, target: Image | None, resampling: str) -> Image:
    """*item* opened (if a path) and brought onto *target*'s grid (None: its own grid)."""
    if isinstance(item, Image):
        return item if target is None else _warped(item, target, resampling, item.meta.get("path"))
    path = os.fspath(item)
    if target is None:
        return io.open(path)
    options = _reader_options(path, {"like": target, "resampling": resampling})
    image = io.open(path, **options)
    return image if "like" in options else _warped(image, target, resampling, path)


def _target(first: Image, like: Image | None, crs: Any, resolution: Any, bounds: Any, chunks: Any) -> Image:
    """The stack's grid: *like*, the first input's, or one built from crs, resolution and bounds."""
    if like is not None:
        return like
    if crs is None and resolution is None and bounds is None:
        return first
    if first.ndim != 2:
        raise InputError("a grid given by crs, resolution and bounds is 2D; the first input is not")
    same_crs = crs is None or crs == first.crs
    if not same_crs and (resolution is None or bounds is None):
        raise InputError("a grid in another CRS than the first input's needs resolution= and bounds= in that CRS")
    if resolution is None:
        resolution = (first.spacing[1], first.spacing[0])
    if bounds is None:
        height, width = first.spatial_shape
        corners = first.affine @ np.array([[0, 0, height, height], [0, width, 0, width], [1, 1, 1, 1]], dtype=float)
        bounds = (corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max())
    return grid(
        crs=first.crs if crs is None else crs, resolution=resolution, bounds=bounds, chunks=chunks or GRID_CHUNK
    )


def _common_nodata(images: list[Image]) -> Any:
    values = [image.meta.get("nodata") for image in images]
    if any(v is None for v in values):
        return None
    first = values[0]
    if all(v == first or (v != v and first != first) for v in values):  # NaN equals NaN here
        return first
    return None


def stack(
    inputs: Sequence[Image | str | os.PathLike],
    *,
    names: Sequence[str] | None = None,
    like: Image | None = None,
    crs: Any = None,
    resolution: float | Sequence[float] | None = None,
    bounds: Sequence[float] | None = None,
    resampling: str = "nearest",
    chunks: int | Sequence[int] | None = None,
) -> Image:
    """Stack Images and files as the bands of one Image on one grid, lazily.

    Parameters
    ----------
    inputs : sequence of Image, str or os.PathLike
        The inputs, in band order; a file gives all its bands.
    names : sequence of str, optional
        One name per band of the stack. By default each band keeps its name, and unnamed
        bands of files are named after the file (see :func:`band_names`); when no input
        names any band, neither does the stack (a model then takes its bands in order).
    like : Image, optional
        An image whose grid (affine, CRS, shape, chunks) the stack takes.
    crs, resolution, bounds : optional
        A north-up grid instead (see :func:`grid`); what is not given comes from the first
        input (a grid in another CRS than the first input's needs all three).
    resampling : {"nearest", "bilinear", "cubic", "average", "mode"}
        How inputs on another grid are warped.
    chunks : int or (int, int), optional
        Spatial chunks of the stack (by default those of the grid).

    Returns
    -------
    Image
        Bands in input order, of the inputs' common dtype, with ``band_names`` (or None),
        and ``mask`` where any input has no data.

    Raises
    ------
    InputError
        If there is no input, the names do not fit, two bands share a name, or an input
        cannot be opened or brought onto the grid.

    Examples
    --------
    >>> scene = seamline.stack(["red.tif", "green.tif", "blue.tif", "nir.tif"])  # doctest: +SKIP
    >>> both = seamline.stack(["scene.tif", "dem.tif"], names=["red", "green", "blue", "nir", "elevation"],
    ...                       resampling="bilinear")  # doctest: +SKIP
    """
    inputs = list(inputs)
    if not inputs:
        raise InputError("stack needs at least one input")
    if resampling not in RESAMPLINGS:
        raise InputError(f"unknown resampling {resampling!r}; use one of {', '.join(RESAMPLINGS)}")
    first = _on_grid(inputs[0], like, resampling)
    target = _target(first, like, crs, resolution, bounds, chunks)
    if target is not first and like is None:
        first = _on_grid(inputs[0], target, resampling)
    images = [first, *(_on_grid(item, target, resampling) for item in inputs[1:])]
    paths = [None if isinstance(item, Image) else item for item in inputs]
    derived = [name for image, path in zip(images, paths, strict=True) for name in band_names(image, path)]
    if names is not None:
        names = [str(n) for n in names]
        if len(names) != len(derived):
            raise InputError(f"{len(names)} names for {len(derived)} bands ({', '.join(derived)})")
    elif any(image.meta.get("band_names") for image in images):
        names = derived
    if names is not None:
        repeated = sorted({n for n in names if names.count(n) > 1})
        if repeated:
            raise InputError(f"bands {repeated} appear more than once in the stack; name the bands with names=")
    spatial = target.data.chunks[1:] if chunks is None else da.core.normalize_chunks(chunks, target.spatial_shape)
    dtype = np.result_type(*(image.dtype for image in images))
    data = da.concatenate([image.data.astype(dtype).rechunk({1: spatial[0], 2: spatial[1]}) for image in images])
    valid = [v for v in (image.valid_mask() for image in images) if v is not None]
    meta: dict[str, Any] = {"band_names": names, "nodata": _common_nodata(images), "anchor": first.meta.get("anchor")}
    if valid:
        mask = valid[0].rechunk(spatial)
        for more in valid[1:]:
            mask = mask & more.rechunk(spatial)
        meta["mask"] = mask[None]
    files = [os.fspath(p) for p in paths if p is not None]
    if files:
        meta["source"] = ", ".join(files)
    fingerprints = tuple(dict.fromkeys(f for image in images for f in image.meta.get("sources", ())))
    if fingerprints:
        meta["sources"] = fingerprints  # every input's file, for seamline.save to protect
    return Image(data, target.affine, first.crs, meta)
