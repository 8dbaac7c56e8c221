"""Patch sampling from lazy images: regions, nodata and nnU-Net's foreground oversampling.

Training reads small patches out of images that need not fit in memory. A
:class:`TrainingPair` holds a (normalized, lazy) image, its lazy label image on the same
grid, and the window (*region*) patches may come from; only each patch's window is ever
computed. The validation region is a separate window of the same image (a half, or a
list of windows), so validation measures a place the network never saw, not random
pixels next to training ones (:mod:`.regions`; :func:`split_region` and
:func:`free_window` are re-exported here).

:class:`PatchSampler` draws a batch from a seeded ``numpy.random.Generator``:

- a share (``foreground_fraction``) of the patches is centred on a random voxel of a
  random foreground class (nnU-Net's oversampling), found through a coarse index: one
  cell per ``cell`` voxels along each axis, saying which classes occur in it. The index
  is computed once, chunk by chunk; afterwards one cell is read at full resolution to
  pick the voxel;
- the others are placed uniformly in the region;
- a patch never reads outside its region nor touches an excluded window: one longer
  than the region is centred on it and padded with ``ignore_index``, one that touches an
  excluded window is placed again;
- patches that are mostly nodata are drawn again; nodata voxels get ``ignore_index``.
"""

from __future__ import annotations

import dataclasses
import math
from collections import OrderedDict
from collections.abc import Sequence

import dask
import dask.array as da
import numpy as np

from ..image import Image, check_same_grid
from ..tiling import chunks_overlapping, intersection
from .regions import AXIS_NAMES, Region, free_window, overlaps, patch_shape, patch_start, split_region

__all__ = [
    "TrainingPair",
    "PatchSampler",
    "BlockCache",
    "split_region",
    "free_window",
    "read_labels",
    "AXIS_NAMES",
]


@dataclasses.dataclass(init=False)
class TrainingPair:
    """An image, its labels and the region patches are drawn from.

    Parameters
    ----------
    image : Image
        The network's input (normalized, lazy).
    labels : Image
        One channel of class ids on the same grid; ``ignore_index`` where unknown.
    valid : dask.array.Array, optional
        Spatial boolean mask of valid (not nodata) pixels.
    region : tuple of slice, optional
        Where patches may lie; the whole grid by default.
    exclude : list of tuple of slice
        Windows patches must not touch (validation windows inside the region).
    """

    image: Image
    labels: Image
    valid: da.Array | None
    region: Region
    exclude: list[Region]

    def __init__(
        self,
        image: Image,
        labels: Image,
        valid: da.Array | None = None,
        region: Region | None = None,
        exclude: Sequence[Region] = (),
    ) -> None:
        check_same_grid(image, labels, ("image", "labels"))
        self.image, self.labels, self.valid = image, labels, valid
        self.region = tuple(slice(0, n) for n in image.spatial_shape) if region is None else region
        self.exclude = list(exclude)


def _compute(*arrays: da.Array) -> list[np.ndarray]:
    return [np.asarray(a) for a in dask.compute(*arrays, scheduler="synchronous")]


class BlockCache:
    """Reads windows of a dask array, keeping computed chunks up to a byte budget.

    Patches overlap the same chunks again and again (a vector label chunk is rasterized,
    a compressed block decoded); the cache computes each chunk once and drops the least
    recently used ones past *max_bytes*, so memory stays bounded by the budget, not by
    the image.

    Parameters
    ----------
    data : dask.array.Array
        The array.
    max_bytes : int
        The budget.
    """

    def __init__(self, data: da.Array, max_bytes: int) -> None:
        self.data = data
        self.max_bytes = max_bytes
        self.blocks: OrderedDict[tuple[int, ...], np.ndarray] = OrderedDict()
        self.size = 0

    def _block(self, index: tuple[int, ...]) -> np.ndarray:
        if index in self.blocks:
            self.blocks.move_to_end(index)
            return self.blocks[index]
        block = np.asarray(self.data.blocks[index].compute(scheduler="synchronous"))
        self.blocks[index] = block
        self.size += block.nbytes
        while self.size > self.max_bytes and len(self.blocks) > 1:
            self.size -= self.blocks.popitem(last=False)[1].nbytes
        return block

    def read(self, window: Sequence[slice]) -> np.ndarray:
        """Return ``data[window]`` (one slice per axis, steps of 1) as NumPy."""
        window = [slice(*s.indices(n)[:2]) for s, n in zip(window, self.data.shape, strict=True)]
        lo, hi = [s.start for s in window], [s.stop for s in window]
        out = np.empty([b - a for a, b in zip(lo, hi, strict=True)], dtype=self.data.dtype)
        for index, start, size in chunks_overlapping(self.data.chunks, lo, hi):
            inside, region = intersection(start, size, lo, out.shape)
            out[region] = self._block(index)[inside]
        return out


class PatchSampler:
    """Draw training patches from lazy images.

    Parameters
    ----------
    pairs : sequence of TrainingPair
        What to sample from; each pair is chosen with probability proportional to its
        region's size.
    patch_size : int or sequence of int
        Patch shape (one per spatial axis, or one for all).
    classes : int
        Number of classes (label values ``0..classes-1``; others are ignored).
    foreground_fraction : float
        Share of patches centred on a foreground voxel.
    min_valid : float
        Patches with a smaller share of valid voxels are drawn again (a few times).
    ignore_index : int
        Label given to nodata and padding.
    cell : int, optional
        Coarse index cell size in voxels (half the patch by default).
    cache_bytes : int
        Budget for computed chunks kept between patches (see :class:`BlockCache`).
    """

    def __init__(
        self,
        pairs: Sequence[TrainingPair],
        patch_size: int | Sequence[int],
        *,
        classes: int,
        foreground_fraction: float = 0.33,
        min_valid: float = 0.5,
        ignore_index: int = 255,
        cell: int | None = None,
        cache_bytes: int = 256 * 2**20,
    ) -> None:
        self.pairs = list(pairs)
        ndim = self.pairs[0].image.ndim
        self.patch_size = patch_shape(patch_size, ndim)
        self.fallback = [free_window(p.region, p.exclude, self.patch_size) for p in self.pairs]
        self.classes = classes
        self.foreground_fraction = foreground_fraction
        self.min_valid = min_valid
        self.ignore_index = ignore_index
        self.cell = tuple(max(1, s // 2) for s in self.patch_size) if cell is None else (int(cell),) * ndim
        budget = cache_bytes // (3 * len(self.pairs))
        self.caches = [
            [BlockCache(a, budget) for a in (p.image.data, p.labels.data[0], p.valid) if a is not None]
            for p in self.pairs
        ]
        volumes = np.array([math.prod(s.stop - s.start for s in p.region) for p in self.pairs], dtype=np.float64)
        self.weights = volumes / volumes.sum()
        self.index = [self._coarse_index(pair) for pair in self.pairs]

    def _coarse_index(self, pair: TrainingPair) -> np.ndarray:
        """Boolean ``(classes, *cells)``: which foreground classes occur in each cell of the region."""
        labels = pair.labels.data[(0, *pair.region)]
        if pair.valid is not None:
            labels = da.where(pair.valid[pair.region], labels, self.ignore_index)
        pad = [(0, -n % c) for n, c in zip(labels.shape, self.cell, strict=True)]
        labels = da.pad(labels, pad, constant_values=self.ignore_index)
        present = da.stack([labels == c for c in range(1, self.classes)])
        axes = {axis + 1: c for axis, c in enumerate(self.cell)}
        return _compute(da.coarsen(np.any, present, axes))[0] if self.classes > 1 else np.zeros((0,))

    def _window(self, pair: TrainingPair, centre: Sequence[int] | None, rng: np.random.Generator) -> Region:
        window = []
        for axis, (span, size) in enumerate(zip(pair.region, self.patch_size, strict=True)):
            room = span.stop - span.start - size
            wanted = span.start + int(rng.integers(0, room + 1)) if centre is None and room > 0 else span.start
            start = patch_start(span, size, wanted if centre is None else centre[axis] - size // 2)
            window.append(slice(start, start + size))
        return tuple(window)

    def _place(self, rng: np.random.Generator, foreground: bool) -> tuple[int, Region]:
        """A pair and a window in its region that touches none of its excluded windows."""
        for _ in range(100):
            pair_index = int(rng.choice(len(self.pairs), p=self.weights))
            pair = self.pairs[pair_index]
            centre = self._foreground_centre(pair_index, rng) if foreground else None
            window = self._window(pair, centre, rng)
            if not any(overlaps(window, other) for other in pair.exclude):
                return pair_index, window
        return pair_index, self.fallback[pair_index]

    def _foreground_centre(self, pair_index: int, rng: np.random.Generator) -> list[int] | None:
        index, pair = self.index[pair_index], self.pairs[pair_index]
        present = [c for c in range(index.shape[0]) if index[c].any()] if index.size else []
        if not present:
            return None
        cls = present[int(rng.integers(len(present)))]
        cells = np.argwhere(index[cls])
        cell = cells[int(rng.integers(len(cells)))]
        origin = [s.start + int(i) * c for s, i, c in zip(pair.region, cell, self.cell, strict=True)]
        window = tuple(slice(o, min(o + c, s.stop)) for o, c, s in zip(origin, self.cell, pair.region, strict=True))
        labels = self.caches[pair_index][1].read(window)
        voxels = np.argwhere(labels == cls + 1)
        if not len(voxels):
            return None
        voxel = voxels[int(rng.integers(len(voxels)))]
        return [o + int(v) for o, v in zip(origin, voxel, strict=True)]

    def _read(self, pair_index: int, window: Region) -> tuple[np.ndarray, np.ndarray]:
        pair, caches = self.pairs[pair_index], self.caches[pair_index]
        inside = tuple(
            slice(max(w.start, r.start), min(w.stop, r.stop)) for w, r in zip(window, pair.region, strict=True)
        )
        image = caches[0].read((slice(None), *inside))
        labels, *valid = (cache.read(inside) for cache in caches[1:])
        labels = labels.astype(np.int64)
        labels[(labels < 0) | (labels >= self.classes)] = self.ignore_index
        if valid:
            labels[~valid[0]] = self.ignore_index
            image = np.where(valid[0][None], image, 0)
        pad = [(i.start - w.start, w.stop - i.stop) for w, i in zip(window, inside, strict=True)]
        if any(p != (0, 0) for p in pad):
            image = np.pad(image, [(0, 0), *pad])
            labels = np.pad(labels, pad, constant_values=self.ignore_index)
        return image.astype(np.float32), labels

    def sample(self, rng: np.random.Generator, *, foreground: bool = False) -> tuple[np.ndarray, np.ndarray]:
        """Draw one patch: ``(image (C, *patch), labels (*patch))``.

        Parameters
        ----------
        rng : numpy.random.Generator
            The source of randomness (same seed, same patches).
        foreground : bool
            Centre the patch on a foreground voxel when there is one.

        Returns
        -------
        tuple of numpy.ndarray
            float32 image and int64 labels.
        """
        for _ in range(10):
            pair_index, window = self._place(rng, foreground)
            image, labels = self._read(pair_index, window)
            if np.mean(labels != self.ignore_index) >= self.min_valid or self.pairs[pair_index].valid is None:
                break
        return image, labels

    def batch(self, rng: np.random.Generator, size: int) -> tuple[np.ndarray, np.ndarray]:
        """Draw *size* patches, a ``foreground_fraction`` share of them on foreground.

        Parameters
        ----------
        rng : numpy.random.Generator
            The source of randomness.
        size : int
            Batch size.

        Returns
        -------
        tuple of numpy.ndarray
            Images ``(B, C, *patch)`` and labels ``(B, *patch)``.
        """
        foreground = max(1, round(size * self.foreground_fraction)) if self.foreground_fraction > 0 else 0
        patches = [self.sample(rng, foreground=i < foreground) for i in range(size)]
        return np.stack([p[0] for p in patches]), np.stack([p[1] for p in patches])


def read_labels(labels: Image, *, label_map: dict[int, int] | None, ignore_index: int) -> Image:
    """Map source label values to class ids lazily (values not in the map become 0).

    Parameters
    ----------
    labels : Image
        One-channel label image.
    label_map : dict, optional
        Source value (any integer, negative ones included) to class id; None leaves
        values as they are.
    ignore_index : int
        Kept as it is by the map, unless the map names it.

    Returns
    -------
    Image
    """
    if not label_map:
        return labels
    mapping = {ignore_index: ignore_index, **{int(k): int(v) for k, v in label_map.items()}}
    sources = np.array(sorted(mapping), dtype=np.int64)
    targets = np.array([mapping[s] for s in sources.tolist()], dtype=np.int64)

    def remap(block: np.ndarray) -> np.ndarray:
        block = block.astype(np.int64)
        position = np.searchsorted(sources, block).clip(max=len(sources) - 1)
        return np.where(sources[position] == block, targets[position], 0)

    return labels.replace(data=da.map_blocks(remap, labels.data, dtype=np.int64))
