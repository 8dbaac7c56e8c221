"""The engine's graph: runs of tiles feeding output chunks, in an order that bounds memory.

Tiles are grouped, by their placement alone, into *runs*: the tiles of one row (the same
start along the first axis) in a block of neighbours along the other axes: up to 4 tiles
in a row of a raster, up to 2 x 2 in a slab of a volume (so that a slab of a small volume
still makes several tasks, for several threads).
A run's weighted outputs are summed into *parts*, one box per row of output chunks that
the run reaches, each its own array (so that a part is freed as soon as its row of output
chunks is made). Three kinds of task:

*tile tasks*
    each takes neighbouring runs of one row (whole runs, at least ``batch_size`` tiles),
    reads the input under them once, runs the model on their tiles in batches and adds
    the weighted outputs into the runs' parts (:func:`seamline.blending.add_tiles`). Every
    tile belongs to one tile task, so every tile goes through the model exactly once.
*chunk tasks*
    each makes one output chunk (:func:`output_chunks`: rows as many steps between rows
    of tiles tall as fit in half a tile, at least one; whole tiles about 2^18 pixels wide
    along the last axis): it adds the parts that reach it, in run order, divides by the weight
    sum (:func:`seamline.blending.weight_sum`, the same additions on the window alone),
    marks nodata and finishes probabilities or labels.
*marker tasks*
    return None once their chunk is made. A tile task waits for the markers of the
    chunks, in the last row of output chunks that earlier rows of tiles complete, that lie
    beside it, so tiles never run far ahead of the chunks that free their sums. The
    markers carry no data, so workers exchange nothing for them. The input's reads wait
    for the markers of the first tile task that needs them (:mod:`seamline.gates`), so
    that idle threads do not read the image ahead; and a tile task's input waits until the
    tile task as many places before it as dask has threads has run.

Runs, parts and the order in which they are added depend on the tile placement only:
never on chunks, batch size, tasks or schedulers, so neither does the output (bit for
bit, as long as the model gives a tile the same output in any batch).

What the tasks do is :mod:`seamline.tasks`'s; this module only places them.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import torch
from dask.highlevelgraph import HighLevelGraph

from ._chunks import workers
from .gates import gated
from .logits import label_dtype
from .tasks import Job, Run, chunk_task, done, pick, tile_task
from .tiling import TileGrid, chunks_overlapping

__all__ = ["graph", "output_chunks"]

#: Tiles per run at most: 4 along the second axis of a raster, 2 x 2 along the last two of a volume.
RUN_TILES = 4

#: Output chunks are whole tiles wide along the last axis, about this many pixels
#: (voxels) in all: a few large writes instead of many small ones.
CHUNK_PIXELS = 2**18


def _run_length(ndim: int) -> int:
    """Tiles per run along each axis but the first."""
    return max(1, round(RUN_TILES ** (1 / max(ndim - 1, 1))))


def output_chunks(grid: TileGrid) -> tuple[tuple[int, ...], ...]:
    """The output's spatial chunks: rows a whole number of steps between rows of tiles tall, wide rows of whole tiles.

    Rows are the largest whole number of steps within half a tile (at least one step).
    With ``placement="monai"`` a row of output chunks so ends where a row of tiles begins
    (except at the last tile, moved back to end flush, and along an axis padded up to the
    tile): once a row of tiles has run, every row of output chunks above the next one can
    be made, and only the overlap of the tiles waits. nnU-Net's placement spreads tiles
    evenly, so there rows of chunks and of tiles need not line up; the graph's order
    (:func:`graph`) holds either way. Along the last axis, chunks are as many whole tiles wide as make about 2^18
    pixels (voxels) in all: a few large writes instead of many small ones.

    Parameters
    ----------
    grid : TileGrid

    Returns
    -------
    tuple of tuple of int
    """
    tile, step = grid.tile_size[0], grid.steps[0]
    height = step * max(1, tile // (2 * step))
    per_chunk = max(1, CHUNK_PIXELS // (height * math.prod(grid.tile_size[1:])))
    sizes = (height, *grid.tile_size[1:-1], grid.tile_size[-1] * per_chunk)
    return tuple(tuple(min(t, s - i) for i in range(0, s, t)) for s, t in zip(grid.shape, sizes, strict=True))


def _columns(bounds: Sequence[np.ndarray], lo: Sequence[int], hi: Sequence[int]) -> list[tuple[int, ...]]:
    """Indices of the output chunks, along the axes after the first, that overlap ``[lo, hi)``."""
    ranges = [
        range(max(int(np.searchsorted(b, low, "right")) - 1, 0), min(int(np.searchsorted(b, h, "left")), len(b) - 1))
        for b, low, h in zip(bounds, lo, hi, strict=True)
    ]
    return list(itertools.product(*ranges))


def _runs(grid: TileGrid, rows: Sequence[int]) -> dict[tuple[int, ...], Run]:
    """The runs, by (row of tiles, block index along each other axis), in C order."""
    runs = {}
    length = _run_length(len(grid.shape))
    blocks = [range(0, n, length) for n in grid.counts[1:]]
    for k in range(grid.counts[0]):
        for firsts in itertools.product(*blocks):
            indices = itertools.product(
                [k], *(range(f, min(f + length, n)) for f, n in zip(firsts, grid.counts[1:], strict=True))
            )
            starts = tuple(grid.start(i) for i in indices)
            lo = starts[0]
            hi = tuple(s + t for s, t in zip(starts[-1], grid.tile_size, strict=True))
            parts, part_rows = [], []
            for r, (top, bottom) in enumerate(itertools.pairwise(rows)):
                first, last = max(top, lo[0]), min(bottom, hi[0])
                if first < last:
                    parts.append(
                        ((first, *lo[1:]), (last - first, *(h - low for h, low in zip(hi[1:], lo[1:], strict=True))))
                    )
                    part_rows.append(r)
            runs[(k, *(f // length for f in firsts))] = Run(starts, tuple(parts), tuple(part_rows))
    return runs


def _tasks(runs: dict[tuple[int, ...], Run], batch_size: int) -> list[list[tuple[int, ...]]]:
    """Runs grouped into tile tasks: neighbours along the last axis, whole runs, at least a batch of tiles.

    A line's last few runs join the task before them rather than make a short task of their own.
    """
    tasks: list[list[tuple[int, ...]]] = []
    for _, line in itertools.groupby(runs, key=lambda key: key[:-1]):
        current: list[tuple[int, ...]] = []
        first = len(tasks)
        for key in line:
            current.append(key)
            if sum(len(runs[k].starts) for k in current) >= batch_size:
                tasks.append(current)
                current = []
        if current and len(tasks) > first:
            tasks[-1].extend(current)
        elif current:
            tasks.append(current)
    return tasks


def graph(x: da.Array, mask: da.Array | None, model: torch.nn.Module, grid: TileGrid, job: Job) -> da.Array:
    """The lazy, finished output of one prediction: tile tasks feeding chunk tasks.

    Parameters
    ----------
    x : dask.array.Array
        The input, ``(C, *spatial)``, in its own dtype and chunks.
    mask : dask.array.Array, optional
        True where the input has data, ``(1, *spatial)``, chunked like *x*.
    model : torch.nn.Module
    grid : TileGrid
    job : Job

    Returns
    -------
    dask.array.Array
        Scores or probabilities (float32, NaN for nodata) or labels, chunked by
        :func:`output_chunks`.
    """
    chunks = output_chunks(grid)
    token = job.token
    kinds = ("tiles", "ran", "pieces", "predict", "done")
    tiles_name, ran_name, pieces_name, name, done_name = (f"{kind}-{token}" for kind in kinds)
    model_key = f"model-{token}"
    layer: dict[Any, Any] = {model_key: model}
    bounds = [np.cumsum((0, *c)) + p for c, p in zip(chunks, grid.padding, strict=True)]
    runs = _runs(grid, bounds[0].tolist())
    last = [0] * len(chunks[0])  # the last row of tiles that reaches each row of output chunks
    for key, run in runs.items():
        for row in run.rows:
            last[row] = max(last[row], key[0])
    feeds: dict[tuple[int, ...], list] = {}  # output chunk index -> [(run key, part), ...] in run order
    needs: dict[Any, list] = {}  # input block -> the markers its reads wait for
    ahead = max(2, workers())  # tile tasks whose input may be read before the one before them is done
    for t, keys in enumerate(_tasks(runs, job.batch_size)):
        members = [runs[k] for k in keys]
        lo = members[0].starts[0]
        hi = tuple(max(s[a] for r in members for s in r.starts) + job.tile_size[a] for a in range(len(lo)))
        inner = [max(low - p, 0) for low, p in zip(lo, grid.padding, strict=True)]
        outer = [max(min(h - p, n), i + 1) for h, p, n, i in zip(hi, grid.padding, grid.shape, inner, strict=True)]
        pieces = chunks_overlapping(x.chunks[1:], inner, outer)
        blocks = [(x.name, 0, *index) for index, _, _ in pieces]
        masks = None if mask is None else [(mask.name, 0, *index) for index, _, _ in pieces]
        origins = [start for _, start, _ in pieces]
        shape = tuple(h - low for h, low in zip(hi, lo, strict=True))
        ready = [r for r in range(len(chunks[0])) if last[r] < keys[0][0]]
        after = [(done_name, ready[-1], *c) for c in _columns(bounds[1:], lo[1:], hi[1:])] if ready else []
        layer[(tiles_name, t)] = (tile_task, model_key, blocks, masks, origins, lo, shape, members, job, *after)
        layer[(ran_name, t)] = (done, (tiles_name, t))
        for block in [*blocks, *(masks or [])]:
            needs.setdefault(block, [*after, *([(ran_name, t - ahead)] if t >= ahead else [])])
        for i, (key, run) in enumerate(zip(keys, members, strict=True)):
            for p, (row, (p_lo, p_shape)) in enumerate(zip(run.rows, run.parts, strict=True)):
                layer[(pieces_name, *key, p)] = (pick, (tiles_name, t), i, p)
                p_hi = [low + n for low, n in zip(p_lo[1:], p_shape[1:], strict=True)]
                for c in _columns(bounds[1:], p_lo[1:], p_hi):
                    feeds.setdefault((row, *c), []).append(((pieces_name, *key, p), (p_lo, p_shape), run.starts))
    for index in itertools.product(*(range(len(c)) for c in chunks)):
        lo = tuple(int(b[i]) for b, i in zip(bounds, index, strict=True))
        shape = tuple(c[i] for c, i in zip(chunks, index, strict=True))
        fed = feeds[index]
        layer[(name, 0, *index)] = (
            chunk_task,
            [k for k, _, _ in fed],
            [(box, s) for _, box, s in fed],
            lo,
            shape,
            job,
        )
        layer[(done_name, *index)] = (done, (name, 0, *index))
    layer.update(gated([x] if mask is None else [x, mask], needs))
    dtype = label_dtype(job.channels) if job.output == "labels" else np.dtype(np.float32)
    channels = 1 if job.output == "labels" else job.channels
    hlg = HighLevelGraph.from_collections(name, layer, dependencies=[])
    return da.Array(hlg, name, ((channels,), *chunks), dtype=dtype)
