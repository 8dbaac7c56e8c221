"""Weight windows, and how overlapping tiles are blended into one seamless output.

Every tile's output is multiplied by the same *weight window* (large in the middle,
small at the borders) and the weighted outputs are summed; each voxel is then divided by
the sum of the weights that reached it. That sum depends only on where tiles go and on
the window, never on the model, so any region of the output can be finished as soon as
the tiles that overlap it have run: :func:`blend_region` does exactly this for one region.
Weighted outputs may be summed in any grouping first (:func:`accumulate`), for example
over a run of neighbouring tiles, which is smaller than the tiles themselves.

Windows (all ``float32``; the first three floored at ``1e-3`` like MONAI's ``compute_importance_map``):

``"gaussian"``
    a separable Gaussian with ``sigma = 0.125 * tile`` per axis, centred on the tile;
    equal to MONAI's ``mode="gaussian"`` importance map.
``"cosine"``
    a separable raised cosine, ``sin(pi * (i + 0.5) / tile)`` per axis.
``"constant"``
    ones: a plain average, MONAI's ``mode="constant"``.
``"nnunet"``
    nnU-Net's importance map (``compute_gaussian``): a separable Gaussian with ``sigma =
    tile / 8`` centred on voxel ``tile // 2``, scaled to a peak of 10 and rounded to
    float16, zeros raised to the smallest non-zero weight instead of the floor; equal to
    nnunetv2's map bit for bit.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
from scipy import ndimage

from .defaults import BLEND
from .errors import InputError
from .tiling import intersection

__all__ = ["BLENDS", "weight_window", "weight_sum", "accumulate", "blend_region"]

BLENDS = ("gaussian", "cosine", "constant", "nnunet")
_FLOOR = 1e-3
_SIGMA_SCALE = 0.125


def _profile(size: int, blend: str) -> np.ndarray:
    if blend == "gaussian":
        x = np.arange(-(size - 1) / 2.0, (size - 1) / 2.0 + 1, dtype=np.float32)
        return np.exp(x**2 / (-2 * (size * _SIGMA_SCALE) ** 2)).astype(np.float32)
    if blend == "cosine":
        return np.sin(np.pi * (np.arange(size, dtype=np.float64) + 0.5) / size).astype(np.float32)
    return np.ones(size, dtype=np.float32)


def _nnunet_window(tile_size: tuple[int, ...]) -> np.ndarray:
    """nnU-Net's importance map, computed axis by axis (the same products, so the same bits)."""
    profiles = []
    for size in tile_size:
        delta = np.zeros(size)
        delta[size // 2] = 1
        profiles.append(ndimage.gaussian_filter1d(delta, size / 8, mode="constant", cval=0))
    window = functools.reduce(np.multiply.outer, profiles)
    window = (window / (window.max() / 10)).astype(np.float32).astype(np.float16)
    window[window == 0] = window[window > 0].min()
    return window.astype(np.float32)


@functools.lru_cache(maxsize=8)
def weight_window(tile_size: tuple[int, ...], blend: str = BLEND) -> np.ndarray:
    """Return the weight window of a tile (read-only, cached).

    Parameters
    ----------
    tile_size : tuple of int
        The tile's shape.
    blend : {"gaussian", "cosine", "constant", "nnunet"}
        The window's shape.

    Returns
    -------
    numpy.ndarray
        ``float32`` weights shaped *tile_size*, all positive (at least ``1e-3`` but for ``"nnunet"``).

    Raises
    ------
    InputError
        If *blend* is not one of :data:`BLENDS`.
    """
    if blend not in BLENDS:
        raise InputError(f"blend must be one of {', '.join(BLENDS)}; got {blend!r}")
    if blend == "nnunet":
        window = _nnunet_window(tuple(int(t) for t in tile_size))
    else:
        window = functools.reduce(np.multiply.outer, [_profile(int(t), blend) for t in tile_size])
        window = np.maximum(window, max(float(window.min()), _FLOOR)).astype(np.float32)
    window.setflags(write=False)
    return window


def weight_sum(
    starts: Iterable[Sequence[int]], window: np.ndarray, lo: Sequence[int], shape: Sequence[int]
) -> np.ndarray:
    """Sum the weight windows of tiles over a region.

    Parameters
    ----------
    starts : iterable of sequence of int
        Where each tile starts (tiles that miss the region add nothing).
    window : numpy.ndarray
        The weight window, shaped like a tile.
    lo : sequence of int
        The region's first voxel.
    shape : sequence of int
        The region's shape.

    Returns
    -------
    numpy.ndarray
        ``float32`` sums shaped *shape*.
    """
    total = np.zeros(tuple(shape), dtype=np.float32)
    for start in starts:
        inside, region = intersection(start, window.shape, lo, shape)
        total[region] += window[inside]
    return total


def accumulate(
    pieces: Iterable[tuple[Sequence[int], np.ndarray]], lo: Sequence[int], shape: Sequence[int]
) -> np.ndarray:
    """Sum weighted outputs over a region.

    Parameters
    ----------
    pieces : iterable of (start, values)
        Weighted outputs shaped ``(C, *box)`` (one tile, or the sum over a run of tiles)
        and the first voxel of their box; the parts outside the region are ignored.
    lo : sequence of int
        The region's first voxel, in the pieces' coordinates.
    shape : sequence of int
        The region's spatial shape.

    Returns
    -------
    numpy.ndarray
        ``float32``, shaped ``(C, *shape)``.
    """
    total = None
    for start, values in pieces:
        if total is None:
            total = np.zeros((values.shape[0], *shape), dtype=np.float32)
        inside, region = intersection(start, values.shape[1:], lo, shape)
        total[(slice(None), *region)] += values[(slice(None), *inside)]
    return total


def blend_region(
    pieces: Sequence[tuple[Sequence[int], np.ndarray]],
    starts: Iterable[Sequence[int]],
    window: np.ndarray,
    lo: Sequence[int],
    shape: Sequence[int],
) -> np.ndarray:
    """Blend weighted outputs into one region of the output.

    Parameters
    ----------
    pieces : sequence of (start, values)
        Outputs already multiplied by *window*, as for :func:`accumulate`; together they
        hold every tile that overlaps the region.
    starts : iterable of sequence of int
        The starts of the tiles that overlap the region, for the weight sum.
    window : numpy.ndarray
        The weight window the outputs were multiplied by.
    lo : sequence of int
        The region's first voxel, in the tiles' coordinates.
    shape : sequence of int
        The region's spatial shape.

    Returns
    -------
    numpy.ndarray
        ``float32``, shaped ``(C, *shape)``: the weighted sum divided by the weight sum.
    """
    total = accumulate(pieces, lo, shape)
    total /= weight_sum(starts, window, lo, shape)
    return total
