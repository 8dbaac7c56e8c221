"""Open and save images through whichever plugin handles the format.

:func:`open` asks each registered :class:`~seamline.plugins.Reader` whether it
``can_open`` the path (a cheap test: a suffix, a few magic bytes) and hands the path to
the first that says yes. :func:`save` does the same with writers. A format nobody handles
is an :class:`~seamline.errors.InputError` that lists what is supported.

An opened Image remembers the fingerprint of its file (``meta["sources"]``, see
:mod:`seamline.fingerprints`), and every Image made from it inherits it: :func:`save`
refuses to write over that file and to finish when the file changed while it was read.
"""

from __future__ import annotations

import builtins
import inspect
import os
from pathlib import Path
from typing import Any

from .atomic import write_problem
from .errors import InputError, SeamlineError
from .fingerprints import Fingerprint, reading
from .image import Image
from .plugins import registry
from .temporary import clean

__all__ = ["open", "open_stac", "save", "reader_for", "writer_for"]


def _supported(records: dict[str, Any]) -> str:
    parts = [f"{name} ({', '.join(r.suffixes)})" if r.suffixes else name for name, r in records.items()]
    return ", ".join(parts) if parts else "nothing (no plugins loaded)"


def _check_options(function: Any, options: dict[str, Any], what: str, path: str | os.PathLike | None) -> None:
    """An option the reader or writer does not take is the user's mistake, not a TypeError."""
    parameters = inspect.signature(function).parameters.values()
    if any(p.kind is p.VAR_KEYWORD for p in parameters):
        return  # it takes any keyword, and checks them itself
    unknown = sorted(set(options) - {p.name for p in parameters})
    if unknown:
        raise InputError(f"the {what} takes no option {', '.join(map(repr, unknown))}", path)


def reader_for(path: str | os.PathLike) -> Any:
    """Return the reader that accepts *path*.

    Parameters
    ----------
    path : str or os.PathLike
        The file or store to read.

    Returns
    -------
    seamline.plugins.Reader

    Raises
    ------
    InputError
        If the path does not exist or no reader accepts it.
    """
    path = os.fspath(path)
    if not Path(path).exists():
        clean(Path(path).absolute().parent)  # puts back an output a killed save had moved aside
    if not Path(path).exists():
        raise InputError("no such file or directory", path)
    readers = registry("readers")
    for reader in readers.values():
        if reader.can_open(path):
            return reader
    raise InputError(f"no reader for this format; supported: {_supported(readers)}", path)


def writer_for(path: str | os.PathLike) -> Any:
    """Return the writer that accepts *path*.

    Parameters
    ----------
    path : str or os.PathLike
        The file or store to write.

    Returns
    -------
    seamline.plugins.Writer

    Raises
    ------
    InputError
        If no writer accepts the path.
    """
    path = os.fspath(path)
    writers = registry("writers")
    for writer in writers.values():
        if writer.can_save(path):
            return writer
    raise InputError(f"no writer for this format; supported: {_supported(writers)}", path)


def open(path: str | os.PathLike | Any, *, chunks: Any = None, **options: Any) -> Image:
    """Open an image lazily with the reader that accepts *path*, or the one named ``reader=``.

    Parameters
    ----------
    path : str, os.PathLike or object
        A file (GeoTIFF, NIfTI, ...) or a store (Zarr); with ``reader=``, anything that
        reader takes (a URL, STAC items, ...).
    chunks : optional
        Dask chunks; by default the reader follows the file's own blocks.
    **options
        ``reader="name"`` chooses the reader (``seamline plugins --all`` lists them)
        instead of the first whose ``can_open`` accepts *path*; the rest go to the reader
        (for example ``bands=[3, 2, 1]`` for rasters, or ``like=scene,
        resampling="bilinear"`` to warp a raster onto another's grid).

    Returns
    -------
    Image
        A lazy image: nothing is read until it is computed. ``meta["sources"]`` holds
        the file's :class:`~seamline.fingerprints.Fingerprint`.

    Raises
    ------
    InputError
        If the file does not exist, no reader handles it, or the reader finds it broken.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> path = save(Image.from_array(np.ones((1, 64, 64), "uint8")), os.path.join(tempfile.mkdtemp(), "a.zarr"))
    >>> open(path)
    Image(shape=(1, 64, 64), dtype=uint8, spacing=(1.0, 1.0), crs=None)
    """
    reader = options.pop("reader", None)
    if reader is None:
        record = reader_for(path)
        path = os.fspath(path)
    else:
        readers = registry("readers")
        if reader not in readers:
            raise InputError(f"no reader named {reader!r}; installed: {', '.join(readers) or 'none'}")
        record = readers[reader]
        path = os.fspath(path) if isinstance(path, (str, os.PathLike)) else path
    where = path if isinstance(path, str) else None
    _check_options(record.open, options, f"{record.name} reader", where)
    sources = (Fingerprint.of(path),) if where is not None and os.path.exists(path) else ()
    try:
        image = record.open(path, chunks=chunks, **options)
    except SeamlineError:
        raise
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot be read as {record.name}: {exc}", where) from exc
    return image.replace(meta={**image.meta, "sources": (*image.meta.get("sources", ()), *sources)})


def open_stac(items: Any, **options: Any) -> Image:
    """Open STAC items as one Image, through the reader named ``"stac"`` (the geo plugin's).

    Parameters
    ----------
    items : pystac.Item, pystac.ItemCollection, dict, str or os.PathLike, or a list of them
        Items, an item collection, or JSON files or URLs of either.
    **options
        Passed to the reader: ``assets``, ``like``, ``crs``, ``resolution``, ``bbox``,
        ``date``, ``resampling``, ``chunks`` (see :func:`seamline_geo.stac.open_stac`).

    Returns
    -------
    Image
        The assets as bands on one grid, items of one date mosaicked (first valid pixel wins).

    Raises
    ------
    InputError
        If no plugin registers a ``"stac"`` reader, or the items cannot be read.
    """
    return open(items, reader="stac", **options)


def save(image: Image, path: str | os.PathLike, *, overwrite: bool = False, **options: Any) -> builtins.str:
    """Save *image* with the writer that accepts *path*, streaming and atomically.

    Parameters
    ----------
    image : Image
        The (lazy) image to write; it is computed window by window.
    path : str or os.PathLike
        Where to write; the suffix chooses the format.
    overwrite : bool
        Replace an existing output.
    **options
        Passed to the writer (compression, ``cog=True``, ...).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        If no writer handles the path, an option is not the writer's, the output exists
        and *overwrite* is false, the output is a file the image was read from (even
        with *overwrite*), or that file changed while it was read.
    SeamlineError
        If the file system refuses the write (permissions, a full disk).
    """
    writer = writer_for(path)
    _check_options(writer.save, options, f"{writer.name} writer", path)
    try:
        with reading(*image.meta.get("sources", ())):
            writer.save(image, os.fspath(path), overwrite=overwrite, **options)
    except SeamlineError:
        raise
    except Exception as exc:  # a writer that failed outside atomic_output
        problem = write_problem(exc, path)
        if problem is None:
            raise
        raise SeamlineError(f"cannot be written: {problem}", path) from exc
    return os.fspath(path)
