"""Zarr stores: an Image on disk, chunk by chunk, readable and writable in parallel.

A seamline ``.zarr`` store is one Zarr array (format 3 by default; format 2 stores are
read too) holding ``data``, with three attributes:

``affine``
    the ``(N+1) x (N+1)`` matrix as nested lists;
``crs``
    the CRS as WKT (from its ``to_wkt()``, or the text given), or null; read back as a ``pyproj.CRS``
    when pyproj is installed, else as the WKT string;
``meta``
    the JSON-able part of ``meta`` (entries that are not JSON, such as a lazy mask or a
    file header object, are left out). ``class_names`` and ``colors`` get their integer
    keys back on reading.

Writing streams: every dask chunk is written by one task straight into its own Zarr
chunk (no locks, no chunk shared by two tasks), so memory is bounded by the chunks in
flight and the write runs on any dask scheduler, dask.distributed included. The store
appears at its path only once it is complete (:func:`seamline.atomic.atomic_output`).
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Literal, cast

import dask.array as da
import numpy as np
import zarr

from .atomic import atomic_output
from .errors import InputError
from .image import Image
from .plugins import Reader, Writer

__all__ = ["can_open", "can_save", "open_zarr", "save_zarr", "READER", "WRITER"]

log = logging.getLogger(__name__)
_INTEGER_KEYED = ("class_names", "colors")


def can_open(path: str) -> bool:
    """Whether *path* is a Zarr array store (a directory with Zarr metadata).

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
    """
    p = Path(path)
    return p.is_dir() and ((p / "zarr.json").is_file() or (p / ".zarray").is_file())


def can_save(path: str) -> bool:
    """Whether *path* names a Zarr store (it ends in ``.zarr``).

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
    """
    return Path(path).suffix.lower() == ".zarr"


def _plain(value: Any) -> Any:
    """*value* with NumPy scalars, arrays and tuples made plain JSON types."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple | np.ndarray):
        return [_plain(v) for v in value]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _json_meta(meta: dict[str, Any]) -> dict[str, Any]:
    kept = {}
    for key, value in meta.items():
        try:
            kept[key] = json.loads(json.dumps(_plain(value)))
        except (TypeError, ValueError):
            log.debug("meta[%r] is not JSON and is not stored in the Zarr attributes", key)
    return kept


def _crs_from_text(text: str | None) -> Any:
    if text is None:
        return None
    try:
        from pyproj import CRS
    except ImportError:
        return text
    return CRS.from_user_input(text)


def open_zarr(path: str | os.PathLike, *, chunks: Any = None) -> Image:
    """Open a Zarr store lazily as an Image.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.zarr`` directory.
    chunks : optional
        Dask chunks; the store's own chunks by default.

    Returns
    -------
    Image
        Lazy; the affine, CRS and meta come from the store's attributes (the identity,
        None and ``{}`` when it has none).
    """
    array = zarr.open_array(os.fspath(path), mode="r")
    attrs: dict[str, Any] = dict(array.attrs)
    meta = dict(attrs.get("meta", {}))
    for key in _INTEGER_KEYED:
        if isinstance(meta.get(key), dict):
            meta[key] = {int(k): tuple(v) if isinstance(v, list) else v for k, v in meta[key].items()}
    data = da.from_zarr(array, chunks=chunks if chunks is not None else array.chunks)
    return Image(data, attrs.get("affine"), _crs_from_text(attrs.get("crs")), meta)


def save_zarr(image: Image, path: str | os.PathLike, *, overwrite: bool = False, zarr_format: Literal[2, 3] = 3) -> str:
    """Write *image* to a Zarr store, chunk by chunk, atomically.

    Parameters
    ----------
    image : Image
        The (lazy) image; its dask chunks become the store's chunks (irregular chunks are
        first made regular).
    path : str or os.PathLike
        The ``.zarr`` directory to create.
    overwrite : bool
        Replace an existing store.
    zarr_format : {3, 2}
        The Zarr format version.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    OutputExistsError
        If *path* exists and *overwrite* is false.
    InputError
        If *zarr_format* is not 2 or 3.
    """
    if zarr_format not in (2, 3):
        raise InputError(f"zarr_format must be 2 or 3, got {zarr_format!r}")
    data = image.data
    if any(len(set(c[:-1])) > 1 or (len(c) > 1 and c[-1] > c[0]) for c in data.chunks):
        data = data.rechunk(data.chunksize)
    crs = image.crs.to_wkt() if hasattr(image.crs, "to_wkt") else None if image.crs is None else str(image.crs)
    attributes = {
        "affine": np.asarray(image.affine).tolist(),
        "crs": crs,
        "meta": _json_meta(dict(image.meta)),
    }
    with atomic_output(path, overwrite=overwrite) as tmp:
        target = zarr.create_array(
            os.fspath(tmp),
            shape=data.shape,
            chunks=tuple(c[0] for c in data.chunks),
            dtype=data.dtype,
            fill_value=_plain(image.meta.get("nodata")),
            attributes=attributes,
            zarr_format=zarr_format,
        )
        da.store(data, cast(Any, target), lock=False)  # dask's annotation omits the targets it takes
    return os.fspath(path)


READER = Reader(
    name="zarr",
    can_open=can_open,
    open=open_zarr,
    suffixes=(".zarr",),
    description="Zarr array stores (format 2 or 3) with affine, CRS and meta",
)
WRITER = Writer(
    name="zarr",
    can_save=can_save,
    save=save_zarr,
    suffixes=(".zarr",),
    description="Zarr array stores, written chunk by chunk in parallel",
)
