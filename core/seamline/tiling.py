"""Where tiles go: one global, MONAI-compatible placement of tiles over an N-D image.

A :class:`TileGrid` is fixed by the image's spatial shape, the tile size and the
overlap, and by nothing else (not by chunks, workers or batch size). Along each axis:

- an axis shorter than the tile is padded symmetrically up to the tile (``(tile - size)
  // 2`` before, the rest after), exactly as ``monai.inferers.sliding_window_inference``
  pads; tile starts below are in these *padded* coordinates;
- tiles start every ``int(tile * (1 - overlap))`` voxels (at least 1), and the last tile
  is moved back so that it ends flush with the far edge.

That is ``placement="monai"``, the default. ``placement="nnunet"`` places tiles as
nnU-Net's ``compute_steps_for_sliding_window`` does: as many tiles as a step of
``tile * (1 - overlap)`` needs to reach the far edge, spread evenly from edge to edge
(starts rounded half to even). Both pad alike.

Tiles are numbered in C order over the axes (last axis fastest), which is MONAI's order,
so a tile's index names the same window in seamline and in MONAI.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
from collections.abc import Iterator, Sequence

import numpy as np

from .defaults import OVERLAP
from .errors import InputError

__all__ = ["TileGrid", "tile_grid", "tile_sizes", "per_axis", "intersection", "chunks_overlapping", "PLACEMENTS"]

PLACEMENTS = ("monai", "nnunet")


def per_axis(value: int | float | Sequence, ndim: int, name: str) -> tuple:
    """Return *value* repeated for *ndim* axes, or checked to have one entry per axis.

    Parameters
    ----------
    value : number or sequence
        One value for every axis, or one per axis.
    ndim : int
        The number of spatial axes.
    name : str
        The argument's name, for the error message.

    Returns
    -------
    tuple

    Raises
    ------
    InputError
        If a sequence does not have *ndim* entries.
    """
    if isinstance(value, Sequence) and not isinstance(value, str):
        if len(value) != ndim:
            raise InputError(f"{name} needs one value per spatial axis ({ndim}), got {list(value)}")
        return tuple(value)
    return (value,) * ndim


def tile_sizes(value: int | Sequence[int], ndim: int) -> tuple[int, ...]:
    """Return a tile size as one positive integer per axis, refusing anything but integers.

    Parameters
    ----------
    value : int or sequence of int
        One size for every axis, or one per axis (Python or NumPy integers).
    ndim : int
        The number of spatial axes.

    Returns
    -------
    tuple of int

    Raises
    ------
    InputError
        If a size is not an integer (``1.5``, ``"256"``, ``True``), is below 1, or the
        sequence does not have *ndim* entries.
    """
    sizes = per_axis(value, ndim, "tile_size")
    if not all(isinstance(t, int | np.integer) and not isinstance(t, bool | np.bool_) for t in sizes):
        raise InputError(f"tile_size must be whole numbers of pixels, got {value!r}")
    if any(t < 1 for t in sizes):
        raise InputError(f"tile_size must be positive, got {[int(t) for t in sizes]}")
    return tuple(int(t) for t in sizes)


@dataclasses.dataclass(frozen=True)
class TileGrid:
    """The tiles covering an image, in padded coordinates.

    Attributes
    ----------
    shape : tuple of int
        The image's spatial shape.
    tile_size : tuple of int
        The tile's shape.
    starts : tuple of tuple of int
        Per axis, the tile starts in padded coordinates, increasing (nnU-Net's placement
        repeats a start where its step is under one voxel, as nnU-Net does).
    padding : tuple of int
        Per axis, the padding before the image (non-zero only where it is shorter than a tile).
    steps : tuple of int
        Per axis, the scan interval: how far each tile starts from the one before (but
        the last, which ends flush with the far edge); with nnU-Net's placement, the
        even spacing of its starts, rounded down.
    """

    shape: tuple[int, ...]
    tile_size: tuple[int, ...]
    starts: tuple[tuple[int, ...], ...]
    padding: tuple[int, ...]
    steps: tuple[int, ...]

    @property
    def padded_shape(self) -> tuple[int, ...]:
        """The spatial shape after padding: at least one tile along each axis."""
        return tuple(max(s, t) for s, t in zip(self.shape, self.tile_size, strict=True))

    @property
    def counts(self) -> tuple[int, ...]:
        """The number of tiles along each axis."""
        return tuple(len(s) for s in self.starts)

    def __len__(self) -> int:
        """The number of tiles."""
        return math.prod(self.counts)

    def __iter__(self) -> Iterator[tuple[int, ...]]:
        """Tile indices in C order (MONAI's order)."""
        return itertools.product(*(range(n) for n in self.counts))

    def start(self, index: Sequence[int]) -> tuple[int, ...]:
        """The padded-coordinate start of the tile with *index*.

        Parameters
        ----------
        index : sequence of int
            The tile's position in the grid, one per spatial axis.

        Returns
        -------
        tuple of int
        """
        return tuple(starts[i] for starts, i in zip(self.starts, index, strict=True))

    def slices(self, index: Sequence[int]) -> tuple[slice, ...]:
        """The padded-coordinate window of the tile with *index*.

        Parameters
        ----------
        index : sequence of int
            The tile's position in the grid, one per spatial axis.

        Returns
        -------
        tuple of slice
        """
        return tuple(slice(s, s + t) for s, t in zip(self.start(index), self.tile_size, strict=True))

    def overlapping(self, lo: Sequence[int], hi: Sequence[int]) -> list[tuple[int, ...]]:
        """Indices, in C order, of the tiles that overlap the padded window ``[lo, hi)``.

        Parameters
        ----------
        lo, hi : sequence of int
            The window's first voxel and one past its last, per axis, in padded coordinates.

        Returns
        -------
        list of tuple of int
        """
        ranges = [
            [i for i, s in enumerate(starts) if s < h and s + t > low]
            for starts, t, low, h in zip(self.starts, self.tile_size, lo, hi, strict=True)
        ]
        return list(itertools.product(*ranges))


def _interval(size: int, tile: int, overlap: float) -> int:
    return tile if tile == size else max(int(tile * (1 - overlap)), 1)


def _axis_starts(size: int, tile: int, overlap: float) -> tuple[int, ...]:
    interval = _interval(size, tile, overlap)
    count = next(d for d in range(math.ceil(size / interval)) if d * interval + tile >= size) + 1
    return tuple(min(d * interval, size - tile) for d in range(count))


def _spread_starts(size: int, tile: int, overlap: float) -> tuple[int, ...]:
    count = math.ceil((size - tile) / (tile * (1 - overlap))) + 1
    spacing = (size - tile) / (count - 1) if count > 1 else 0.0
    return tuple(int(np.round(spacing * d)) for d in range(count))


def _spread_interval(size: int, tile: int, overlap: float) -> int:
    starts = _spread_starts(size, tile, overlap)
    return tile if len(starts) == 1 else max(1, (size - tile) // (len(starts) - 1))


def tile_grid(
    shape: Sequence[int],
    tile_size: int | Sequence[int],
    overlap: float | Sequence[float] = OVERLAP,
    *,
    placement: str = "monai",
) -> TileGrid:
    """Place tiles over an image of spatial *shape*, as MONAI's (or nnU-Net's) sliding window does.

    Parameters
    ----------
    shape : sequence of int
        The image's spatial shape.
    tile_size : int or sequence of int
        The tile's size, one for every axis or one per axis.
    overlap : float or sequence of float
        The fraction of a tile shared with its neighbour, in ``[0, 1)``.
    placement : {"monai", "nnunet"}
        Fixed steps with the last tile flush with the far edge (MONAI), or as many tiles
        as that step needs spread evenly (nnU-Net, whose ``tile_step_size`` is
        ``1 - overlap``).

    Returns
    -------
    TileGrid

    Raises
    ------
    InputError
        If the tile size is not a positive integer, the overlap is outside ``[0, 1)`` or
        the placement is unknown.

    Examples
    --------
    >>> tile_grid((100,), 40, overlap=0.5).starts
    ((0, 20, 40, 60),)
    >>> tile_grid((110,), 64, overlap=0.5, placement="nnunet").starts
    ((0, 23, 46),)
    """
    ndim = len(shape)
    tiles = tile_sizes(tile_size, ndim)
    overlaps = per_axis(overlap, ndim, "overlap")
    if not all(isinstance(o, int | float | np.integer | np.floating) and not isinstance(o, bool) for o in overlaps):
        raise InputError(f"overlap must be a number, got {overlap!r}")
    overlaps = tuple(float(o) for o in overlaps)
    if any(not 0 <= o < 1 for o in overlaps):
        raise InputError(f"overlap must be in [0, 1), got {list(overlaps)}")
    if placement not in PLACEMENTS:
        raise InputError(f"placement must be one of {', '.join(PLACEMENTS)}; got {placement!r}")
    starts, interval = (_axis_starts, _interval) if placement == "monai" else (_spread_starts, _spread_interval)
    padded = [max(int(s), t) for s, t in zip(shape, tiles, strict=True)]
    return TileGrid(
        shape=tuple(int(s) for s in shape),
        tile_size=tiles,
        starts=tuple(starts(p, t, o) for p, t, o in zip(padded, tiles, overlaps, strict=True)),
        padding=tuple((p - int(s)) // 2 for p, s in zip(padded, shape, strict=True)),
        steps=tuple(interval(p, t, o) for p, t, o in zip(padded, tiles, overlaps, strict=True)),
    )


def intersection(
    start: Sequence[int], size: Sequence[int], lo: Sequence[int], shape: Sequence[int]
) -> tuple[tuple[slice, ...], tuple[slice, ...]]:
    """Slices that cut the common part out of a box and out of a region.

    Parameters
    ----------
    start, size : sequence of int
        The box (a tile, a chunk): its first voxel and its shape.
    lo, shape : sequence of int
        The region: its first voxel and its shape, in the same coordinates.

    Returns
    -------
    (tuple of slice, tuple of slice)
        The common part, relative to the box and relative to the region (empty slices
        where they do not meet).
    """
    inside, region = [], []
    for s, t, low, n in zip(start, size, lo, shape, strict=True):
        first, last = max(s, low), max(min(s + t, low + n), max(s, low))
        inside.append(slice(first - s, last - s))
        region.append(slice(first - low, last - low))
    return tuple(inside), tuple(region)


def chunks_overlapping(
    chunks: Sequence[Sequence[int]], lo: Sequence[int], hi: Sequence[int]
) -> list[tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]]:
    """The chunks of a chunked array that overlap the window ``[lo, hi)``.

    Parameters
    ----------
    chunks : sequence of sequence of int
        The chunk sizes along each axis (dask's ``chunks``).
    lo, hi : sequence of int
        The window's first voxel and the voxel past its last, one per axis.

    Returns
    -------
    list of (index, start, size)
        Each overlapping chunk's block index, first voxel and shape, in C order; with
        :func:`intersection` they say which part of the chunk lands where in the window.
    """
    bounds = [np.cumsum((0, *c)) for c in chunks]
    ranges = [
        range(int(np.searchsorted(b, low, "right")) - 1, int(np.searchsorted(b, high, "left")))
        for b, low, high in zip(bounds, lo, hi, strict=True)
    ]
    return [
        (index, tuple(int(b[i]) for b, i in zip(bounds, index, strict=True)),
         tuple(int(c[i]) for c, i in zip(chunks, index, strict=True)))
        for index in itertools.product(*ranges)
    ]  # fmt: skip
