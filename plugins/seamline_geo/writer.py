"""Writing rasters as tiled GeoTIFF or Cloud-Optimized GeoTIFF, window by window.

The lazy image is rechunked onto tile boundaries and stored with one ``da.store``: each
chunk is written to its window by the task that computed it, one writer at a time, so
memory is bounded by the chunks in flight, never by the raster, and a prediction runs
every tile once. By default a ``.tif`` is written as a COG: the tiles go to a temporary
tiled GeoTIFF beside the target, and GDAL's COG driver then copies it (block by block)
into the final layout with overviews. ``cog=False`` skips that second pass and leaves a plain tiled GeoTIFF.

Label rasters (integer data with ``class_names`` or ``colors`` in ``meta``) get a colour
table and their class names in the ``SEAMLINE_CLASS_NAMES`` tag (JSON), which the reader
turns back into ``meta``. Overviews use nearest-neighbour resampling for integer data
(labels keep their values) and averaging for floating-point data (scores). Every band is
written as data (photometric MINISBLACK): GDAL would otherwise tag three or four uint8
bands as RGB(A), and a fourth band (near-infrared) would read back as a transparency mask.
A validity mask (``meta["mask"]``, as the reader gives for a file with a mask band) is
written as the file's internal per-dataset mask, so it reads back as it was.
"""

from __future__ import annotations

import json
import numbers
import os
import uuid
from pathlib import Path
from typing import Any, cast

import dask.array as da
import numpy as np
import rasterio
import rasterio.shutil
from dask.utils import SerializableLock
from rasterio.windows import Window

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image

from .grid import to_rasterio_crs, transform_from_affine
from .reader import CLASS_NAMES_TAG

__all__ = ["save_geotiff", "COMPRESSIONS"]

# Lossless codecs both GDAL's GTiff and COG drivers write (labels must keep their values).
COMPRESSIONS = ("deflate", "zstd", "lzw", "lzma", "packbits", "none")


def _aligned(data: Any, blocksize: int) -> Any:
    """Rechunk so every chunk boundary falls on a tile boundary (kept if it already does)."""
    spatial = []
    for sizes in data.chunks[1:]:
        inner = sizes[:-1]
        if all(size % blocksize == 0 for size in inner):
            spatial.append(sizes)
        else:
            spatial.append(max(1, round(max(sizes) / blocksize)) * blocksize)
    return data.rechunk((data.shape[0], *spatial))


class _Windows:
    """A ``da.store`` target: each block goes to its window of the GeoTIFF at *path*.

    It holds only the path, so it pickles to any worker; each write opens the file in
    update mode, under the store's lock (a GeoTIFF takes one writer at a time).
    """

    def __init__(self, path: Path) -> None:
        self.path = os.fspath(path)

    def __setitem__(self, index: tuple[slice, slice, slice], block: np.ndarray) -> None:
        _, rows, cols = index
        with rasterio.open(self.path, "r+") as dataset:
            dataset.write(block, window=Window.from_slices(rows, cols))


class _Mask(_Windows):
    """A ``da.store`` target for the validity mask: each block goes to the file's internal mask."""

    def __setitem__(self, index: tuple[slice, slice, slice], block: np.ndarray) -> None:
        _, rows, cols = index
        with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(self.path, "r+") as dataset:
            dataset.write_mask(np.where(block[0], np.uint8(255), np.uint8(0)), window=Window.from_slices(rows, cols))


def _writer_lock() -> Any:
    """A lock every writer shares: a cluster-wide one when a dask.distributed client is active."""
    try:
        from distributed import Lock, default_client

        default_client()
    except (ImportError, ValueError):
        return SerializableLock()
    return Lock(f"seamline-geotiff-{uuid.uuid4().hex}")


def _profile(image: Image, dtype: np.dtype, compress: str, blocksize: int, nodata: Any) -> dict[str, Any]:
    return {
        "driver": "GTiff",
        "width": image.spatial_shape[1],
        "height": image.spatial_shape[0],
        "count": image.channels,
        "dtype": dtype.name,
        "crs": to_rasterio_crs(image.crs),
        "transform": transform_from_affine(image.affine),
        "nodata": nodata,
        "tiled": True,
        "blockxsize": blocksize,
        "blockysize": blocksize,
        "compress": compress,
        "interleave": "band",
        "photometric": "MINISBLACK",
        "BIGTIFF": "IF_SAFER",
    }


def _write_tiles(image: Image, path: Path, profile: dict[str, Any], blocksize: int) -> None:
    data = _aligned(image.data.astype(profile["dtype"]), blocksize)
    meta = image.meta
    mask = meta.get("mask")
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dataset:
        if mask is not None:
            dataset.write_mask(True)
        for band, name in enumerate(meta.get("band_names") or (), start=1):
            dataset.set_band_description(band, str(name))
        acquired = meta.get("datetime", meta.get("date"))  # a reader's tag, or a STAC item's date
        if acquired is not None:
            dataset.update_tags(ACQUISITIONDATE=str(acquired))
        if np.issubdtype(profile["dtype"], np.integer) and meta.get("class_names"):
            names = {int(k): str(v) for k, v in meta["class_names"].items()}
            dataset.update_tags(**{CLASS_NAMES_TAG: json.dumps(names)})
        if profile["dtype"] in ("uint8", "uint16") and meta.get("colors"):
            dataset.write_colormap(1, {int(k): (*map(int, rgb[:3]), 255) for k, rgb in meta["colors"].items()})
    if mask is None:
        da.store(data, cast(Any, _Windows(path)), lock=_writer_lock())  # dask's annotation omits such targets
        return
    mask = _aligned(da.asarray(mask).astype(bool).reshape((1, *image.spatial_shape)), blocksize)
    da.store([data, mask], cast(Any, [_Windows(path), _Mask(path)]), lock=_writer_lock())


def save_geotiff(
    image: Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    cog: bool = True,
    compress: str = "deflate",
    nodata: float | None = None,
    blocksize: int = 512,
) -> None:
    """Write *image* to a (Cloud-Optimized) GeoTIFF, streaming and atomically.

    Parameters
    ----------
    image : Image
        A 2D image shaped ``(bands, rows, cols)``; it is computed chunk by chunk.
    path : str or os.PathLike
        The ``.tif``/``.tiff`` to write.
    overwrite : bool
        Replace an existing file.
    cog : bool
        Write a Cloud-Optimized GeoTIFF with overviews (default); False writes a tiled GeoTIFF.
    compress : str
        Lossless GDAL compression: ``"deflate"`` (default), ``"zstd"``, ``"lzw"``,
        ``"lzma"``, ``"packbits"`` or ``"none"``.
    nodata : float, optional
        The nodata value; ``image.meta["nodata"]`` by default.
    blocksize : int
        Tile size in pixels (a positive multiple of 16).

    Raises
    ------
    InputError
        If the image is not 2D, the blocksize is not a positive multiple of 16, or the
        compression is unknown (all checked before anything is opened).
    OutputExistsError
        If *path* exists and *overwrite* is false.
    """
    if image.ndim != 2:
        raise InputError(f"GeoTIFF holds 2D images, got spatial shape {image.spatial_shape}", path)
    if not isinstance(blocksize, numbers.Integral) or blocksize <= 0 or blocksize % 16:
        raise InputError(f"blocksize must be a positive multiple of 16, got {blocksize!r}", path)
    if str(compress).lower() not in COMPRESSIONS:
        raise InputError(f"unknown compression {compress!r}; use one of {', '.join(COMPRESSIONS)}", path)
    compress = compress.lower()
    dtype = np.dtype(np.uint8) if image.dtype == bool else np.dtype(image.dtype)
    nodata = image.meta.get("nodata") if nodata is None else nodata
    profile = _profile(image, dtype, compress, blocksize, nodata)
    with atomic_output(path, overwrite=overwrite) as tmp:
        if not cog:
            _write_tiles(image, tmp, profile, blocksize)
            return
        tiles = tmp.with_name(tmp.name + ".tiles.tif")  # removed with tmp by atomic_output
        _write_tiles(image, tiles, profile, blocksize)
        resampling = "NEAREST" if np.issubdtype(dtype, np.integer) else "AVERAGE"
        rasterio.shutil.copy(
            tiles,
            tmp,
            driver="COG",
            COMPRESS=compress.upper(),
            BLOCKSIZE=blocksize,
            RESAMPLING=resampling,
            OVERVIEWS="AUTO",
            BIGTIFF="IF_SAFER",
        )
