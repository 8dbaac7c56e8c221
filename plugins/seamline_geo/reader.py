"""Reading rasters lazily: one dask task per window, each with its own dataset handle.

Anything GDAL reads (GeoTIFF, COG, VRT, JPEG2000, ERDAS .img, ...) opens as an
:class:`~seamline.Image` whose dask chunks follow the file's internal blocks: whole
multiples of a tile for tiled files, full-width bands of several strips for striped ones.
A task opens the file, reads its window and closes it again, so the graph is safe on
threads and on dask.distributed alike and holds no open handle.

The Image keeps what the file says about its pixels: ``nodata`` (NaN once scale and
offset were applied, which also turns the data into float32), a validity ``mask`` when
the file has an internal or external mask band, ``band_names`` (band descriptions,
else ``"band<index>"``, never a sensor's ``"B<n>"``), ``class_names``/``colors`` for
label rasters seamline wrote, ``datetime`` (the text of the first of the tags
``ACQUISITIONDATE``, ``date`` and ``DATE`` the file has), ``created`` (its
``TIFFTAG_DATETIME``), and the file's ``path``. A file, or a tile of it, that GDAL cannot read is an
:class:`~seamline.errors.InputError` naming the file.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
from collections.abc import Iterator, Sequence
from typing import Any

import dask.array as da
import numpy as np
import rasterio
from dask.base import tokenize
from rasterio.enums import MaskFlags
from rasterio.errors import RasterioIOError
from rasterio.windows import Window

from seamline.errors import InputError
from seamline.image import Image
from seamline.stack import same_grid

from .footprint import Source
from .grid import affine_from_transform, from_windows, to_pyproj
from .warp import warp_reads

__all__ = ["open_raster", "open_scaled", "read_source"]

CLASS_NAMES_TAG = "SEAMLINE_CLASS_NAMES"
DATE_TAGS = ("ACQUISITIONDATE", "date", "DATE")  # when the pixels were acquired
TARGET_CHUNK_PIXELS = 2**20


def _default_chunks(block: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    """Whole blocks adding up to about a million pixels (a striped file gets full-width strips)."""
    (bh, bw), (height, width) = block, shape
    if bw >= width:
        rows = max(1, TARGET_CHUNK_PIXELS // (width * bh)) * bh
        return min(rows, height), width
    side = max(1, round(math.sqrt(TARGET_CHUNK_PIXELS / (bh * bw))))
    return min(side * bh, height), min(side * bw, width)


def _spatial_chunks(chunks: Any, block: tuple[int, int], shape: tuple[int, int]) -> tuple[int, int]:
    if chunks is None or chunks == "auto":
        return _default_chunks(block, shape)
    if isinstance(chunks, int):
        return min(chunks, shape[0]), min(chunks, shape[1])
    chunks = tuple(chunks)[-2:]
    return min(int(chunks[0]), shape[0]), min(int(chunks[1]), shape[1])


def _band_indexes(dataset: Any, bands: Sequence[int | str] | None, path: str) -> list[int]:
    names = _band_names(dataset, range(1, dataset.count + 1))
    if bands is None:
        return list(range(1, dataset.count + 1))
    indexes = []
    for band in bands:
        if isinstance(band, str) and not band.isdigit():
            if band not in names:
                raise InputError(f"has no band named {band!r}; its bands are {names}", path)
            indexes.append(names.index(band) + 1)
        elif not 1 <= int(band) <= dataset.count:
            raise InputError(f"has no band {band} (bands are numbered 1..{dataset.count})", path)
        else:
            indexes.append(int(band))
    return indexes


def _band_names(dataset: Any, indexes: Sequence[int]) -> list[str]:
    return [dataset.descriptions[i - 1] or f"band{i}" for i in indexes]


@contextlib.contextmanager
def _window_of(path: str, window: tuple[int, int, int, int]) -> Iterator[tuple[Any, Window]]:
    """Open *path* for reading *window*; a tile GDAL cannot decode is an InputError naming the file."""
    row, col, height, width = window
    try:
        with rasterio.open(path) as dataset:
            yield dataset, Window(col, row, width, height)
    except RasterioIOError as exc:
        detail = exc.__cause__ or exc
        problem = f"is corrupt or unreadable in rows {row}-{row + height}, cols {col}-{col + width} ({detail})"
        raise InputError(problem, path) from exc


def _read_window(
    path: str,
    indexes: list[int],
    scales: tuple[np.ndarray, np.ndarray] | None,
    nodata: float | None,
    window: tuple[int, int, int, int],
) -> np.ndarray:
    return read_source(path, indexes, scales, nodata, False, window)[0]


def _read_mask(path: str, window: tuple[int, int, int, int]) -> np.ndarray:
    with _window_of(path, window) as (dataset, where):
        return dataset.dataset_mask(window=where)[None] > 0


def read_source(
    path: str,
    indexes: list[int],
    scales: tuple[np.ndarray, np.ndarray] | None,
    nodata: float | None,
    masked: bool,
    window: tuple[int, int, int, int],
) -> tuple[np.ndarray, np.ndarray | None]:
    """Read one window of a raster file as a warp takes it (see :func:`seamline_geo.warp.warp_reads`).

    Parameters
    ----------
    path : str
        The raster.
    indexes : list of int
        1-based bands.
    scales : (numpy.ndarray, numpy.ndarray) or None
        Per-band scale and offset to apply: the data become float32, NaN where invalid.
    nodata : float or None
        With *scales*: the raw value marking invalid pixels (None or NaN: the file's own masks).
    masked : bool
        Also read the file's per-dataset mask.
    window : (int, int, int, int)
        ``(row, col, height, width)``.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None)
        The bands and, when *masked*, the validity mask (True = data).
    """
    with _window_of(path, window) as (dataset, where):
        data = dataset.read(indexes, window=where)
        valid = dataset.dataset_mask(window=where) > 0 if masked else None
        if scales is None:
            return data, valid
        if nodata is not None and not np.isnan(nodata):
            invalid = data == nodata
        else:
            invalid = dataset.read_masks(indexes, window=where) == 0
    out = (data * scales[0][:, None, None] + scales[1][:, None, None]).astype(np.float32)
    out[invalid] = np.nan
    return out, valid


def _stamp(path: str) -> float | None:
    """The modification time of a local file (None for URLs and other GDAL paths)."""
    return os.path.getmtime(path) if os.path.exists(path) else None


def _lazy(path: str, reader: Any, args: tuple, bands: int, chunks: tuple, dtype: Any) -> da.Array:
    """A dask array whose every chunk is ``reader(path, *args, window)``."""
    name = f"read-{os.path.basename(path)}-{tokenize(path, _stamp(path), reader.__name__, args, chunks)}"
    return from_windows(name, lambda window: (reader, path, *args, window), chunks, bands, dtype)


def open_raster(
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    bands: Sequence[int | str] | None = None,
    like: Image | None = None,
    resampling: str | None = None,
) -> Image:
    """Open a raster lazily as an :class:`~seamline.Image`, on its own grid or warped onto another.

    Parameters
    ----------
    path : str or os.PathLike
        Any raster GDAL reads.
    chunks : int or (int, int), optional
        Spatial chunk size in pixels; by default whole internal blocks adding up to about
        a million pixels (with *like*: *like*'s chunks).
    bands : sequence of int or str, optional
        Bands to read, by 1-based index or by name (the band description, else
        ``"band<index>"``); all by default.
    like : Image, optional
        A 2D Image whose grid the raster is brought onto: read as it is when the grids
        are the same, else warped chunk by chunk (:mod:`seamline_geo.warp`), each chunk
        reading only the source window under it.
    resampling : {"nearest", "bilinear", "cubic", "average", "mode"}, optional
        How to warp onto *like*'s grid (nearest by default).

    Returns
    -------
    Image
        Shaped ``(bands, rows, cols)``, with the file's affine and CRS (a ``pyproj.CRS``,
        or None), or *like*'s, and ``meta`` holding ``nodata``, ``band_names``,
        ``anchor="corner"``, ``path``, and where present ``mask``, ``class_names``,
        ``colors``, ``datetime`` and ``created``. A warped raster without nodata has a
        ``mask`` where the grid reaches beyond it.

    Raises
    ------
    InputError
        If GDAL cannot open the file, a band does not exist, or the raster cannot be warped
        (no CRS, an unknown resampling); when computed, if a tile of the file cannot be read.
    """
    return _open(os.fspath(path), chunks, bands, like, resampling, None)


def open_scaled(
    path: str | os.PathLike,
    *,
    scale: float | Sequence[float],
    offset: float | Sequence[float],
    nodata: float | None,
    like: Image | None = None,
    bands: Sequence[int | str] | None = None,
    resampling: str | None = None,
    chunks: Any = None,
) -> Image:
    """Open a raster whose scale, offset and nodata are stated elsewhere than in the file.

    STAC's ``raster:bands`` and a Sentinel-2 SAFE's metadata say how digital numbers
    become physical values, where the files themselves do not. As :func:`open_raster`,
    with those in place of the file's own.

    Parameters
    ----------
    path : str or os.PathLike
        Any raster GDAL reads.
    scale, offset : float or sequence of float
        ``value = number * scale + offset``, one for all bands or one per band.
    nodata : float or None
        The raw number marking no data (None: the file's own nodata or masks).
    like, bands, resampling, chunks
        As for :func:`open_raster`.

    Returns
    -------
    Image
        float32 values where scale or offset change them (NaN where there is no data),
        else the file's numbers with *nodata* as ``meta["nodata"]``.
    """
    return _open(os.fspath(path), chunks, bands, like, resampling, (scale, offset, nodata))


def _open(
    path: str,
    chunks: Any,
    bands: Sequence[int | str] | None,
    like: Image | None,
    resampling: str | None,
    stated: tuple[Any, Any, float | None] | None,
) -> Image:
    try:
        dataset = rasterio.open(path)
    except rasterio.errors.RasterioIOError as exc:
        raise InputError(f"not a readable raster ({exc})", path) from exc
    with dataset:
        indexes = _band_indexes(dataset, bands, path)
        shape = (len(indexes), dataset.height, dataset.width)
        nodata = dataset.nodatavals[indexes[0] - 1]
        scale, offset = [dataset.scales[i - 1] for i in indexes], [dataset.offsets[i - 1] for i in indexes]
        if stated is not None:
            scale, offset = stated[0], stated[1]
            nodata = nodata if stated[2] is None else stated[2]
        scales = (
            np.broadcast_to(np.asarray(scale, float), len(indexes)),
            np.broadcast_to(np.asarray(offset, float), len(indexes)),
        )
        rescale = bool(np.any(scales[0] != 1) or np.any(scales[1] != 0))
        dtype = np.dtype(np.float32) if rescale else np.dtype(dataset.dtypes[indexes[0] - 1])
        meta: dict[str, Any] = {
            "nodata": float("nan") if rescale and nodata is not None else nodata,
            # Bands without descriptions are unnamed (selectable as "band3"), so a model
            # card that names its bands matches them by position, not by invented names.
            "band_names": _band_names(dataset, indexes) if any(dataset.descriptions) else None,
            "anchor": "corner",
            "path": path,
        }
        flags = dataset.mask_flag_enums[indexes[0] - 1]
        masked = MaskFlags.per_dataset in flags or MaskFlags.alpha in flags
        _add_classes(dataset, indexes[0], meta)
        _add_dates(dataset, meta)
        affine, crs = affine_from_transform(dataset.transform), to_pyproj(dataset.crs)
        reading = (indexes, scales if rescale else None, nodata)
        if like is not None and not same_grid(affine, crs, shape[1:], like):
            source = Source(dataset.transform, crs, shape[1:], len(indexes), dtype, meta["nodata"], masked)
            read = functools.partial(read_source, path, *reading, masked)
            name = f"warp-{os.path.basename(path)}-{tokenize(path, _stamp(path))}"
            return warp_reads(name, read, source, like, resampling=resampling or "nearest", chunks=chunks, meta=meta)
        if like is not None:
            spatial = like.data.chunks[1:] if chunks is None else chunks
        else:
            spatial = _spatial_chunks(chunks, dataset.block_shapes[indexes[0] - 1], shape[1:])
        dims = tuple(da.core.normalize_chunks(spatial, shape[1:]))
        data = _lazy(path, _read_window, reading, len(indexes), dims, dtype)
        if masked:
            meta["mask"] = _lazy(path, _read_mask, (), 1, dims, np.dtype(bool))
        return Image(data, affine, crs, meta)


def _add_classes(dataset: Any, band: int, meta: dict[str, Any]) -> None:
    """Class names (seamline's tag) and colours (the band's colour table) of a label raster."""
    tags = dataset.tags()
    if CLASS_NAMES_TAG in tags:
        meta["class_names"] = {int(k): v for k, v in json.loads(tags[CLASS_NAMES_TAG]).items()}
    try:
        colormap = dataset.colormap(band)
    except ValueError:
        colormap = None
    if colormap:
        keep = meta.get("class_names", colormap)
        meta["colors"] = {int(k): tuple(colormap[k][:3]) for k in keep if k in colormap}


def _add_dates(dataset: Any, meta: dict[str, Any]) -> None:
    """When the pixels were acquired (the first of DATE_TAGS) and when the file was made (TIFFTAG_DATETIME)."""
    tags = dataset.tags()
    acquired = next((tags[tag] for tag in DATE_TAGS if tags.get(tag)), None)
    if acquired is not None:
        meta["datetime"] = acquired
    if tags.get("TIFFTAG_DATETIME"):
        meta["created"] = tags["TIFFTAG_DATETIME"]
