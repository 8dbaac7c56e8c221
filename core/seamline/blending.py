"""Weight windows, and how overlapping tiles are blended into one seamless output.

Every tile's output is multiplied by the same *weight window* (large in the middle,
small at the borders) and the weighted outputs are summed; each voxel is then divided by
the sum of the weights that reached it. That sum depends only on where tiles go and on
the window, never on the model, so any region of the output can be finished as soon as
the tiles that overlap it have run.

Sums are made in two steps, in an order fixed by tile placement alone:

1. :func:`add_tiles` adds the weighted outputs of a *run* of tiles, tile after tile,
   into parts (boxes that together cover the run), in place;
2. :func:`add_parts` adds the parts that overlap one region of the output, part after
   part, into that region.

:func:`weight_sum` repeats exactly these two steps on the window alone. A voxel's
weighted sum and its weight sum are therefore built by the same additions in the same
order, so a model that returns 1 everywhere blends to exactly 1, and no grouping of tiles
into batches or tasks can change a bit of the result.

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
from collections.abc import Sequence

import numpy as np
import torch
from scipy import ndimage

from .defaults import BLEND
from .errors import InputError
from .tiling import intersection

__all__ = ["BLENDS", "weight_window", "window_tensor", "add_tiles", "add_parts", "weight_sum"]

BLENDS = ("gaussian", "cosine", "constant", "nnunet")
_FLOOR = 1e-3
_SIGMA_SCALE = 0.125

#: A box: its first voxel and its shape.
Box = tuple[tuple[int, ...], tuple[int, ...]]


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


@functools.lru_cache(maxsize=8)
def window_tensor(tile_size: tuple[int, ...], blend: str = BLEND) -> torch.Tensor:
    """:func:`weight_window` as a CPU tensor (cached; do not modify it).

    Parameters
    ----------
    tile_size : tuple of int
    blend : str

    Returns
    -------
    torch.Tensor
    """
    return torch.from_numpy(weight_window(tile_size, blend).copy())


def _cut(start: Sequence[int], size: Sequence[int], lo: Sequence[int], shape: Sequence[int]) -> tuple | None:
    """:func:`~seamline.tiling.intersection`, or None where the box and the region do not meet."""
    inside, region = intersection(start, size, lo, shape)
    if any(s.start == s.stop for s in inside):
        return None
    return inside, region


def add_tiles(
    parts: Sequence[tuple[Sequence[int], torch.Tensor]],
    starts: Sequence[Sequence[int]],
    window: torch.Tensor,
    outputs: torch.Tensor | None = None,
) -> None:
    """Add weighted tile outputs into parts, in place, one tile after the other.

    Parameters
    ----------
    parts : sequence of (lo, tensor)
        Accumulators shaped ``(C, *box)`` and the first voxel of their box.
    starts : sequence of sequence of int
        Where each tile starts, in the parts' coordinates, in the order to add them.
    window : torch.Tensor
        The weight window, shaped like a tile, on the parts' device.
    outputs : torch.Tensor, optional
        The tiles' outputs, ``(len(starts), C, *tile)``. Without them the window itself
        is added (into one-channel parts): the weight sum of the same tiles.
    """
    tile = tuple(window.shape)
    for index, start in enumerate(starts):
        for lo, part in parts:
            cut = _cut(start, tile, lo, part.shape[1:])
            if cut is None:
                continue
            inside, region = cut
            target = part[(slice(None), *region)]
            if outputs is None:
                target.add_(window[inside])
            else:
                target.addcmul_(outputs[index][(slice(None), *inside)], window[inside])


def add_parts(
    pieces: Sequence[tuple[Sequence[int], np.ndarray]], lo: Sequence[int], shape: Sequence[int]
) -> np.ndarray:
    """Add parts into one region, in place, one part after the other.

    Parameters
    ----------
    pieces : sequence of (lo, values)
        Parts shaped ``(C, *box)`` (from :func:`add_tiles`) and their first voxel.
    lo, shape : sequence of int
        The region's first voxel and spatial shape, in the parts' coordinates.

    Returns
    -------
    numpy.ndarray
        ``float32``, shaped ``(C, *shape)``; zero where no part reaches.
    """
    total = np.zeros((pieces[0][1].shape[0], *shape), dtype=np.float32)
    for start, values in pieces:
        cut = _cut(start, values.shape[1:], lo, shape)
        if cut is not None:
            inside, region = cut
            total[(slice(None), *region)] += values[(slice(None), *inside)]
    return total


@functools.lru_cache(maxsize=16)
def _cached_weight_sum(
    tile_size: tuple[int, ...], blend: str, runs: tuple[tuple[Box, tuple[tuple[int, ...], ...]], ...], shape: tuple
) -> np.ndarray:
    window = window_tensor(tile_size, blend)
    pieces = []
    for (lo, size), starts in runs:
        part = torch.zeros((1, *size), dtype=torch.float32)
        add_tiles([(lo, part)], starts, window)
        pieces.append((lo, part.numpy()))
    total = add_parts(pieces, (0,) * len(shape), shape)[0]
    total.setflags(write=False)
    return total


def weight_sum(
    runs: Sequence[tuple[Box, Sequence[Sequence[int]]]],
    tile_size: Sequence[int],
    blend: str,
    lo: Sequence[int],
    shape: Sequence[int],
) -> np.ndarray:
    """The weight sum over a region, added in the same order as the weighted outputs.

    Parameters
    ----------
    runs : sequence of (box, starts)
        The parts that reach the region, in the order :func:`add_parts` adds them: each
        part's box ``(lo, shape)`` and the starts of the tiles added into it, in order.
    tile_size : sequence of int
        The tile's shape.
    blend : str
        The weight window.
    lo, shape : sequence of int
        The region's first voxel and spatial shape.

    Returns
    -------
    numpy.ndarray
        ``float32`` sums shaped *shape* (read-only: regions laid out alike share it).
    """
    relative = []
    for (start, size), starts in runs:
        # only the part of a box inside the region matters; the cut keeps every addition
        cut = _cut(start, size, lo, shape)
        if cut is None:
            continue
        box_lo = tuple(r.start for r in cut[1])
        box_size = tuple(r.stop - r.start for r in cut[1])
        moved = tuple(
            tuple(t - low for t, low in zip(s, lo, strict=True))
            for s in starts
            if _cut(tuple(t - low for t, low in zip(s, lo, strict=True)), tile_size, box_lo, box_size) is not None
        )
        relative.append(((box_lo, box_size), moved))
    return _cached_weight_sum(tuple(int(t) for t in tile_size), blend, tuple(relative), tuple(int(s) for s in shape))
