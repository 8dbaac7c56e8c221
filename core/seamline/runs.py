"""The engine's graph: runs of tiles feeding output chunks, in an order that bounds memory.

Tiles are grouped, by their placement alone, into *runs*: the tiles of one row (the same
start along the first axis) in a block of up to 4 x 4 neighbours along the other axes.
A run's weighted outputs are summed into *parts*, one box per row of output chunks that
the run reaches, each its own array (so that a part is freed as soon as its row of output
chunks is made). Three kinds of task:

*tile tasks*
    each takes neighbouring runs of one row (whole runs, at least ``batch_size`` tiles),
    reads the input under them once, runs the model on their tiles in batches and adds
    the weighted outputs into the runs' parts (:func:`seamline.blending.add_tiles`). Every
    tile belongs to one tile task, so every tile goes through the model exactly once.
*chunk tasks*
    each makes one output chunk (:func:`output_chunks`: rows as tall as the step between
    rows of tiles, whole tiles about 2^18 pixels wide along the last axis): it adds the
    parts that reach it, in run order, divides by the weight
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

Nodata travels as NaN: where the input has none (non-finite, ``nodata`` in every band,
or masked) the model sees 0 and the tile's output is set to NaN, and a non-finite model
output stays what it is; a chunk task turns every non-finite pixel into nodata, counting
those the model made.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import torch
from dask.highlevelgraph import HighLevelGraph
from tqdm import tqdm

from ._chunks import workers
from .blending import add_parts, add_tiles, weight_sum, window_tensor
from .devices import Feeder, channels_last_refused, forward, placed, resolve_device, to_host, turn, worker_threads
from .errors import ModelError
from .gates import gated
from .logits import label_dtype, most_likely, probabilities
from .tiling import TileGrid, chunks_overlapping, intersection

__all__ = ["Job", "graph", "output_chunks"]

#: Tiles per run along each axis but the first.
RUN_TILES = 4
#: Output chunks are whole tiles wide along the last axis, about this many pixels
#: (voxels) in all: a few large writes instead of many small ones.
CHUNK_PIXELS = 2**18

_bars: dict[str, Any] = {}
_tallies: dict[str, list[int]] = {}
_shared_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class Job:
    """What every task of one prediction needs to know besides its own tiles."""

    tile_size: tuple[int, ...]
    padding: tuple[int, ...]
    blend: str
    batch_size: int
    device: str
    amp: bool | None
    channels: int
    output: str
    channels_last: bool
    nodata: float | None
    token: str
    tiles: int
    chunks: int
    progress: bool


@dataclasses.dataclass(frozen=True)
class _Run:
    starts: tuple[tuple[int, ...], ...]
    parts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (lo, shape) per row of output chunks
    rows: tuple[int, ...]  # the row of output chunks of each part


@dataclasses.dataclass(frozen=True)
class _Piece:
    """One part of a run, summed: where it lies, its values, whether it may hold non-finite
    values, and the pixels (padded coordinates) where the model returned non-finite ones."""

    lo: tuple[int, ...]
    values: np.ndarray
    flagged: bool
    model_nan: np.ndarray | None


def output_chunks(grid: TileGrid) -> tuple[tuple[int, ...], ...]:
    """The output's spatial chunks: rows as tall as the step between rows of tiles, wide rows of whole tiles.

    Rows are a whole number of steps, at least half a tile, so that a row of output
    chunks ends where a row of tiles begins: once a row of tiles has run, every row of
    output chunks above the next one can be made, and only the overlap of the tiles
    waits. Along the last axis, chunks are as many whole tiles wide as make about 2^18
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


def _advance(job: Job, tiles: int) -> None:
    """Count *tiles* on this job's progress bar (in the process that holds the bar)."""
    if not job.progress or worker_threads() is not None:
        return
    with _shared_lock:
        bar = _bars.get(job.token)
        if bar is None:
            bar = _bars[job.token] = tqdm(total=job.tiles, unit="tile", desc="predict")
        bar.update(tiles)
        if bar.n >= job.tiles:
            bar.close()
            del _bars[job.token]


def _tally(job: Job, model_nan: int) -> None:
    """Count a finished chunk and its pixels the model made nodata; warn once all chunks are made.

    In a dask.distributed worker, which never sees all chunks, each chunk warns for itself.
    """
    if worker_threads() is not None:
        if model_nan:
            warnings.warn(f"the model returned NaN or infinity at {model_nan} pixels; they are nodata", stacklevel=2)
        return
    with _shared_lock:
        tally = _tallies.setdefault(job.token, [0, 0])
        tally[0] += 1
        tally[1] += model_nan
        if tally[0] < job.chunks:
            return
        del _tallies[job.token]
    if tally[1]:
        warnings.warn(f"the model returned NaN or infinity at {tally[1]} pixels; they are nodata", stacklevel=2)


def _read(blocks: list, masks: list | None, origins: list, lo: tuple, shape: tuple, job: Job) -> tuple:
    """The float32 input under a box (padded coordinates), 0 in padding and nodata, and where it has none."""
    region = np.zeros((blocks[0].shape[0], *shape), dtype=np.float32)
    missing = None
    for i, (block, origin) in enumerate(zip(blocks, origins, strict=True)):
        start = tuple(o + p for o, p in zip(origin, job.padding, strict=True))
        inside, where = intersection(start, block.shape[1:], lo, shape)
        piece = block[(slice(None), *inside)]
        bad = None
        if np.issubdtype(piece.dtype, np.floating) and not np.isfinite(piece.sum(dtype=np.float64)):
            bad = ~np.isfinite(piece).all(axis=0)
        if job.nodata is not None and not np.isnan(job.nodata):
            at_nodata = (piece == job.nodata).all(axis=0)
            bad = at_nodata if bad is None else bad | at_nodata
        if masks is not None:
            masked = ~masks[i][(0, *inside)].astype(bool)
            bad = masked if bad is None else bad | masked
        region[(slice(None), *where)] = piece
        if bad is not None and bad.any():
            if missing is None:
                missing = np.zeros(shape, dtype=bool)
            missing[where] |= bad
    if missing is not None:
        region[:, missing] = 0
    return region, missing


def _tile_task(
    model: torch.nn.Module, blocks: list, masks: list | None, origins: list, lo: tuple, shape: tuple,
    runs: list[_Run], job: Job, *after: None,
) -> list[list[_Piece]]:  # fmt: skip
    """Tile task: run the model on some runs of tiles; return each run's parts, summed.

    *after* are the markers this task waits for (see :func:`graph`); they carry no data.
    """
    region, missing = _read(blocks, masks, origins, lo, shape, job)
    where = resolve_device(job.device)
    layout = job.channels_last and not channels_last_refused(model)
    feeder = Feeder(where, layout)
    tiles = [(r, start) for r, run in enumerate(runs) for start in run.starts]
    batches = [[tiles[i] for i in batch] for batch in _batches(len(tiles), job.batch_size)]

    def cut(batch: list) -> torch.Tensor:
        host = feeder.host((len(batch), region.shape[0], *job.tile_size))
        values = host.numpy()
        for j, (_, start) in enumerate(batch):
            values[j] = region[(slice(None), *_within(start, lo, job.tile_size))]
        return host

    hosts = [cut(b) for b in batches] if feeder.cuda else map(cut, batches)  # on a GPU, cut before taking it
    module = placed(model, where, layout, len(job.tile_size))
    with turn(where), torch.inference_mode():
        window = feeder.window(window_tensor(job.tile_size, job.blend))
        absent = None if missing is None else feeder.send(torch.from_numpy(missing))
        parts = [[(p_lo, feeder.zeros((job.channels, *p_shape))) for p_lo, p_shape in run.parts] for run in runs]
        for batch, host in zip(batches, hosts, strict=True):
            sent = feeder.send(host) if layout else feeder.send(host).contiguous()
            try:
                outputs = forward(module, sent, where, job.amp)
            except ModelError:
                if not layout:
                    raise
                # a model that refuses channels-last memory (a view of its features) runs as it came
                channels_last_refused(model, refused=True)
                layout, module = False, placed(model, where, False, len(job.tile_size))
                outputs = forward(module, sent.contiguous(), where, job.amp)
            if absent is not None:
                for j, (_, start) in enumerate(batch):
                    outputs[j].masked_fill_(absent[_within(start, lo, job.tile_size)], math.nan)
            for r, group in itertools.groupby(range(len(batch)), key=lambda j: batch[j][0]):
                members = list(group)
                add_tiles(parts[r], [batch[j][1] for j in members], window, outputs[members[0] : members[-1] + 1])
        sums = torch.stack([part.sum() for run_parts in parts for _, part in run_parts])
        finite = to_host(torch.isfinite(sums))
        flags = iter(~finite)  # a part whose sum is finite holds no NaN and no infinity
        pieces = [[_piece(p_lo, to_host(part), next(flags), missing, lo) for p_lo, part in run] for run in parts]
    _advance(job, len(tiles))
    return pieces


def _within(start: Sequence[int], lo: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    """The slices of a box (*start*, *size*) inside a region that starts at *lo*."""
    return tuple(slice(s - low, s - low + n) for s, low, n in zip(start, lo, size, strict=True))


def _piece(p_lo: tuple, values: np.ndarray, flagged: bool, missing: np.ndarray | None, lo: tuple) -> _Piece:
    """A part as it leaves its tile task, with the pixels where the model (not the input) made non-finite values."""
    if not flagged:
        return _Piece(p_lo, values, False, None)
    bad = ~np.isfinite(values).all(axis=0)
    if missing is not None:
        bad &= ~missing[_within(p_lo, lo, bad.shape)]
    return _Piece(p_lo, values, True, np.argwhere(bad) + np.asarray(p_lo) if bad.any() else None)


def _pick(pieces: list[list[_Piece]], run: int, part: int) -> _Piece:
    return pieces[run][part]


def _chunk_task(pieces: list[_Piece], runs: list, lo: tuple, shape: tuple, job: Job) -> np.ndarray:
    """Chunk task: blend the parts that reach one output chunk, mark nodata, finish the output."""
    scores = add_parts([(p.lo, p.values) for p in pieces], lo, shape)
    scores /= weight_sum(runs, job.tile_size, job.blend, lo, shape)
    invalid, model_nan = None, 0
    if any(p.flagged for p in pieces):
        invalid = ~np.isfinite(scores).all(axis=0)
        found = [p.model_nan - np.asarray(lo) for p in pieces if p.model_nan is not None]
        if found:
            inside = np.concatenate(found)
            inside = inside[((inside >= 0) & (inside < np.asarray(shape))).all(axis=1)]
            model_nan = len(np.unique(np.ravel_multi_index(inside.T, shape))) if len(inside) else 0
        if not invalid.any():
            invalid = None
    _tally(job, model_nan)
    if job.output == "labels":
        labels = most_likely(np.nan_to_num(scores) if invalid is not None else scores)
        if invalid is not None:
            labels[0][invalid] = np.iinfo(labels.dtype).max
        return labels
    if job.output == "probabilities":
        scores = probabilities(scores)
    if invalid is not None:
        scores[:, invalid] = np.nan
    return scores


def _columns(bounds: Sequence[np.ndarray], lo: Sequence[int], hi: Sequence[int]) -> list[tuple[int, ...]]:
    """Indices of the output chunks, along the axes after the first, that overlap ``[lo, hi)``."""
    ranges = [
        range(max(int(np.searchsorted(b, low, "right")) - 1, 0), min(int(np.searchsorted(b, h, "left")), len(b) - 1))
        for b, low, h in zip(bounds, lo, hi, strict=True)
    ]
    return list(itertools.product(*ranges))


def _done(*_: Any) -> None:
    """Marker task: finished once its chunk is (it passes no data on)."""


def _runs(grid: TileGrid, rows: Sequence[int]) -> dict[tuple[int, ...], _Run]:
    """The runs, by (row of tiles, block index along each other axis), in C order."""
    runs = {}
    blocks = [range(0, n, RUN_TILES) for n in grid.counts[1:]]
    for k in range(grid.counts[0]):
        for firsts in itertools.product(*blocks):
            indices = itertools.product(
                [k], *(range(f, min(f + RUN_TILES, n)) for f, n in zip(firsts, grid.counts[1:], strict=True))
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
            runs[(k, *(f // RUN_TILES for f in firsts))] = _Run(starts, tuple(parts), tuple(part_rows))
    return runs


def _tasks(runs: dict[tuple[int, ...], _Run], batch_size: int) -> list[list[tuple[int, ...]]]:
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


def _batches(count: int, batch_size: int) -> list[range]:
    """Tile positions in batches of *batch_size*; a batch of one tile only if that is all there is.

    Torch's CPU convolutions take another path for a batch of one, which changes the last
    bits of their output; so a last batch of one shares the batch before it evenly.
    """
    batches = [range(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]
    if batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        start, stop = batches[-2].start, count
        middle = start + (stop - start + 1) // 2
        batches[-2:] = [range(start, middle), range(middle, stop)]
    return batches


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
        layer[(tiles_name, t)] = (_tile_task, model_key, blocks, masks, origins, lo, shape, members, job, *after)
        layer[(ran_name, t)] = (_done, (tiles_name, t))
        for block in [*blocks, *(masks or [])]:
            needs.setdefault(block, [*after, *([(ran_name, t - ahead)] if t >= ahead else [])])
        for i, (key, run) in enumerate(zip(keys, members, strict=True)):
            for p, (row, (p_lo, p_shape)) in enumerate(zip(run.rows, run.parts, strict=True)):
                layer[(pieces_name, *key, p)] = (_pick, (tiles_name, t), i, p)
                p_hi = [low + n for low, n in zip(p_lo[1:], p_shape[1:], strict=True)]
                for c in _columns(bounds[1:], p_lo[1:], p_hi):
                    feeds.setdefault((row, *c), []).append(((pieces_name, *key, p), (p_lo, p_shape), run.starts))
    for index in itertools.product(*(range(len(c)) for c in chunks)):
        lo = tuple(int(b[i]) for b, i in zip(bounds, index, strict=True))
        shape = tuple(c[i] for c, i in zip(chunks, index, strict=True))
        fed = feeds[index]
        layer[(name, 0, *index)] = (
            _chunk_task,
            [k for k, _, _ in fed],
            [(box, s) for _, box, s in fed],
            lo,
            shape,
            job,
        )
        layer[(done_name, *index)] = (_done, (name, 0, *index))
    layer.update(gated([x] if mask is None else [x, mask], needs))
    dtype = label_dtype(job.channels) if job.output == "labels" else np.dtype(np.float32)
    channels = 1 if job.output == "labels" else job.channels
    hlg = HighLevelGraph.from_collections(name, layer, dependencies=[])
    return da.Array(hlg, name, ((channels,), *chunks), dtype=dtype)
