"""Working chunk by chunk: the helpers every chunked algorithm of the core shares.

The core's chunked algorithms (labels, measurements, metrics, surfaces, post-processing,
polygons) all take one-channel Images or bare arrays, reduce every chunk to something
small in parallel (:func:`map_chunks`), combine those parts in memory, and, where they
return a raster, wrap it like their input (:func:`like_input`). Grids are checked where
two inputs meet (:func:`matched_pair`).
"""

from __future__ import annotations

import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import dask
import dask.array as da
import numpy as np

from .errors import InputError
from .image import Image, check_same_grid

__all__ = ["spatial_array", "matched_pair", "like_input", "neighbours", "chunk_origins", "map_chunks", "workers"]

T = TypeVar("T")


def spatial_array(image: Any, name: str = "labels") -> da.Array:
    """Return the spatial dask array of a one-channel Image, or of an array.

    Parameters
    ----------
    image : Image, numpy.ndarray or dask.array.Array
        An Image with one channel, or an array shaped like the spatial axes only.
    name : str
        What the argument is called, for the error message.

    Returns
    -------
    dask.array.Array
        Shaped like the spatial axes.

    Raises
    ------
    InputError
        If an Image has more than one channel.
    """
    if isinstance(image, Image):
        if image.channels != 1:
            raise InputError(f"{name} must have one channel, got {image.channels}")
        return image.data[0]
    return image if isinstance(image, da.Array) else da.asarray(np.asarray(image))


def matched_pair(prediction: Any, truth: Any) -> tuple[da.Array, da.Array]:
    """Check that prediction and truth lie on one grid and return their spatial arrays.

    Parameters
    ----------
    prediction, truth : Image, numpy.ndarray or dask.array.Array
        One-channel Images or spatial arrays of integer labels.

    Returns
    -------
    tuple of dask.array.Array
        The prediction and the truth, the truth rechunked like the prediction.

    Raises
    ------
    InputError
        If a dtype is not integer, the shapes differ, or both are Images with different
        affines or CRSs (see :func:`seamline.image.check_same_grid`).
    """
    pred, true = spatial_array(prediction, "prediction"), spatial_array(truth, "truth")
    for array, name in ((pred, "prediction"), (true, "truth")):
        if not (np.issubdtype(array.dtype, np.integer) or array.dtype == bool):
            raise InputError(f"{name} must hold integer labels, got {array.dtype}")
    check_same_grid(
        prediction if isinstance(prediction, Image) else pred,
        truth if isinstance(truth, Image) else true,
        ("prediction", "truth"),
    )
    return pred, true.rechunk(pred.chunks)


def like_input(result: da.Array, image: Any) -> Any:
    """Wrap a spatial result like the input: an Image (same affine, crs, meta) or the array.

    Parameters
    ----------
    result : dask.array.Array
        Spatial, on the input's grid.
    image : Image or array-like
        The input it was computed from.

    Returns
    -------
    Image or dask.array.Array
    """
    if isinstance(image, Image):
        return image.replace(data=result[None])
    return result


def neighbours(padded: np.ndarray, footprint: np.ndarray) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Views of a chunk padded by one voxel: (interior, its neighbour at each offset).

    Parameters
    ----------
    padded : numpy.ndarray
        A chunk with a one-voxel halo on every side.
    footprint : numpy.ndarray
        The structuring element; every non-centre offset in it is yielded once.

    Yields
    ------
    tuple of numpy.ndarray
        The interior and the interior shifted by one offset, same shape.
    """
    interior = tuple(slice(1, n - 1) for n in padded.shape)
    for offset in np.argwhere(footprint) - 1:
        if offset.any():
            yield (
                padded[interior],
                padded[tuple(slice(1 + d, n - 1 + d) for d, n in zip(offset, padded.shape, strict=True))],
            )


def chunk_origins(chunks: Sequence[Sequence[int]]) -> list[tuple[int, ...]]:
    """The first voxel of every chunk, in C order of the chunks.

    Parameters
    ----------
    chunks : sequence of sequence of int
        Chunk sizes along each axis (dask's ``chunks``).

    Returns
    -------
    list of tuple of int
    """
    starts = [np.cumsum((0, *c[:-1])).tolist() for c in chunks]
    return [tuple(int(s) for s in origin) for origin in itertools.product(*starts)]


def map_chunks(
    function: Callable[..., T],
    *arrays: da.Array | None,
    per_chunk: Sequence[Sequence[Any]] | None = None,
    **constants: Any,
) -> list[T]:
    """Reduce every chunk of some arrays to a small part, in parallel, and return the parts.

    ``function(*blocks, *per_chunk[i], **constants)`` runs once per chunk ``i`` on the dask
    scheduler in use (threads, processes or dask.distributed), and only what it returns
    comes back, so a chunked algorithm holds its parts, never the arrays.

    Parameters
    ----------
    function : callable
        Takes one NumPy block of each array (None for an array given as None), then the
        chunk's entries of *per_chunk*, then the *constants*.
    *arrays : dask.array.Array or None
        Arrays with the same chunks.
    per_chunk : sequence of sequence, optional
        Extra positional arguments for each chunk, in C order of the chunks (for example
        ``[(origin,) for origin in chunk_origins(chunks)]``).
    **constants
        Keyword arguments passed to every call.

    Returns
    -------
    list
        One result per chunk, in C order of the chunks.

    Raises
    ------
    ValueError
        If the arrays are chunked differently.
    """
    present = [a for a in arrays if a is not None]
    if any(a.chunks != present[0].chunks for a in present):
        raise ValueError("map_chunks needs arrays with the same chunks")
    count = int(np.prod(present[0].numblocks))
    blocks = [a.to_delayed().ravel() if a is not None else [None] * count for a in arrays]
    extra = per_chunk if per_chunk is not None else [()] * count
    tasks = [
        dask.delayed(function)(*chunk, *more, **constants)
        for chunk, more in zip(zip(*blocks, strict=True), extra, strict=True)
    ]
    return list(dask.compute(*tasks))


def workers() -> int:
    """How many tasks the dask scheduler in use runs at once (the threads of a distributed client's workers).

    Returns
    -------
    int
    """
    if "distributed" in sys.modules:
        from distributed import default_client

        try:
            return max(1, sum(default_client().nthreads().values()))
        except ValueError:  # no client
            pass
    return int(dask.config.get("num_workers", None) or os.cpu_count() or 1)
