"""What the engine's tasks do: run tiles into sums, blend sums into output chunks.

A *tile task* (:func:`tile_task`) reads the input under a few runs of tiles once (non-
finite pixels, ``nodata`` in every band and masked pixels set to 0 and remembered), cuts
their tiles into batches, runs the model, sets the outputs of pixels without data to
NaN, and adds the weighted outputs into the runs' parts on the device; it returns each
part (a :class:`Piece`) with a flag when its sum is not finite, and the pixels where the
model, not the input, made a non-finite value.

A *chunk task* (:func:`chunk_task`) adds the parts that reach one output chunk, divides
by the weight sum made of the same additions, turns every non-finite pixel into nodata
and finishes probabilities or labels. Chunks count the pixels the model made nodata; once
all are made, one warning says how many.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import re
import threading
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from tqdm import tqdm

from .blending import add_parts, add_tiles, weight_sum, window_tensor
from .devices import Amp, channels_last_refused, forward, placed, resolve_device, turn, worker_threads
from .errors import ModelError
from .logits import most_likely, probabilities
from .tiling import intersection
from .transfer import Feeder, to_host

__all__ = ["Job", "Run", "Piece", "tile_task", "chunk_task", "pick", "done", "batch_ranges"]

_bars: dict[str, Any] = {}
_tallies: dict[str, list[int]] = {}
_shared_lock = threading.Lock()
#: What torch says when a model's code needs its features in the contiguous layout (``view``, strides).
_LAYOUT_ERROR = re.compile(r"\b(view|strides?|contiguous)\b")


@dataclasses.dataclass(frozen=True)
class Job:
    """What every task of one prediction needs to know besides its own tiles.

    ``try_channels_last`` says that the model is convolutional: its tasks run it in
    channels-last memory unless it refuses that (see :func:`seamline.devices.placed`).
    """

    tile_size: tuple[int, ...]
    padding: tuple[int, ...]
    blend: str
    batch_size: int
    device: str
    amp: Amp
    channels: int
    output: str
    try_channels_last: bool
    nodata: float | None
    token: str
    tiles: int
    chunks: int
    progress: bool


@dataclasses.dataclass(frozen=True)
class Run:
    """A run of tiles: their starts, in order, and its parts (one box per row of output chunks it reaches)."""

    starts: tuple[tuple[int, ...], ...]
    parts: tuple[tuple[tuple[int, ...], tuple[int, ...]], ...]  # (lo, shape) per row of output chunks
    rows: tuple[int, ...]  # the row of output chunks of each part


@dataclasses.dataclass(frozen=True)
class Piece:
    """One part of a run, summed: where it lies, its values, whether it may hold non-finite
    values, and the pixels (padded coordinates) where the model returned non-finite ones."""

    lo: tuple[int, ...]
    values: np.ndarray
    flagged: bool
    model_nan: np.ndarray | None


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


def tile_task(
    model: torch.nn.Module, blocks: list, masks: list | None, origins: list, lo: tuple, shape: tuple,
    runs: list[Run], job: Job, *after: None,
) -> list[list[Piece]]:  # fmt: skip
    """Run the model on some runs of tiles; return each run's parts, summed.

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode (this process's copy).
    blocks : list of numpy.ndarray
        The input's blocks under the tiles, ``(C, *block)``.
    masks : list of numpy.ndarray, optional
        The mask's blocks (True where the input has data), ``(1, *block)``, like *blocks*.
    origins : list of tuple of int
        Where each block starts in the image.
    lo, shape : tuple of int
        The box the tiles cover, in padded coordinates.
    runs : list of Run
        The runs of tiles this task runs.
    job : Job
    *after : None
        The markers this task waits for (see :func:`seamline.runs.graph`); they carry no data.

    Returns
    -------
    list of list of Piece
        Each run's parts, in order.

    Raises
    ------
    ModelError
        If the model fails on a batch, or changes a tile's size.
    """
    region, missing = _read(blocks, masks, origins, lo, shape, job)
    where = resolve_device(job.device)
    module, layout = placed(model, where, job.try_channels_last, len(job.tile_size))  # contiguous once refused
    feeder = Feeder(where, layout)
    tiles = [(r, start) for r, run in enumerate(runs) for start in run.starts]
    batches = [[tiles[i] for i in batch] for batch in batch_ranges(len(tiles), job.batch_size)]

    def cut(batch: list) -> torch.Tensor:
        host = feeder.host((len(batch), region.shape[0], *job.tile_size))
        values = host.numpy()
        for j, (_, start) in enumerate(batch):
            values[j] = region[(slice(None), *_within(start, lo, job.tile_size))]
        return host

    hosts = [cut(b) for b in batches] if feeder.cuda else map(cut, batches)  # on a GPU, cut before taking it
    with turn(where), torch.inference_mode():
        window = feeder.window(window_tensor(job.tile_size, job.blend))
        absent = None if missing is None else feeder.send(torch.from_numpy(missing))
        parts = [[(p_lo, feeder.zeros((job.channels, *p_shape))) for p_lo, p_shape in run.parts] for run in runs]
        for batch, host in zip(batches, hosts, strict=True):
            sent = feeder.send(host) if layout else feeder.send(host).contiguous()
            try:
                outputs = forward(module, sent, where, job.amp)
            except ModelError as exc:
                if not layout or not _layout_error(exc):
                    raise
                # a model that refuses channels-last memory (a view of its features) runs contiguous
                channels_last_refused(model, refused=True)
                module, layout = placed(model, where, False, len(job.tile_size))
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


def _layout_error(exc: ModelError) -> bool:
    """Whether the model failed for its features' memory layout (not, say, for lack of memory)."""
    cause = exc.__cause__
    return (
        isinstance(cause, RuntimeError)
        and not isinstance(cause, torch.OutOfMemoryError)
        and bool(_LAYOUT_ERROR.search(str(cause)))
    )


def _within(start: Sequence[int], lo: Sequence[int], size: Sequence[int]) -> tuple[slice, ...]:
    """The slices of a box (*start*, *size*) inside a region that starts at *lo*."""
    return tuple(slice(s - low, s - low + n) for s, low, n in zip(start, lo, size, strict=True))


def _piece(p_lo: tuple, values: np.ndarray, flagged: bool, missing: np.ndarray | None, lo: tuple) -> Piece:
    """A part as it leaves its tile task, with the pixels where the model (not the input) made non-finite values."""
    if not flagged:
        return Piece(p_lo, values, False, None)
    bad = ~np.isfinite(values).all(axis=0)
    if missing is not None:
        bad &= ~missing[_within(p_lo, lo, bad.shape)]
    return Piece(p_lo, values, True, np.argwhere(bad) + np.asarray(p_lo) if bad.any() else None)


def pick(pieces: list[list[Piece]], run: int, part: int) -> Piece:
    """One part of one run, out of a tile task's result.

    Parameters
    ----------
    pieces : list of list of Piece
        A tile task's result.
    run, part : int
        The run's place in the task, and the part's in the run.

    Returns
    -------
    Piece
    """
    return pieces[run][part]


def chunk_task(pieces: list[Piece], runs: list, lo: tuple, shape: tuple, job: Job) -> np.ndarray:
    """Blend the parts that reach one output chunk, mark nodata, finish the output.

    Parameters
    ----------
    pieces : list of Piece
        The parts that reach the chunk, in run order.
    runs : list of ((tuple of int, tuple of int), tuple of tuple of int)
        Each part's box (lo, shape) and its run's tile starts, for the weight sum.
    lo, shape : tuple of int
        The chunk's box, in padded coordinates.
    job : Job

    Returns
    -------
    numpy.ndarray
        Scores or probabilities (float32, NaN for nodata), or labels ``(1, *shape)``.
    """
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


def done(*_: Any) -> None:
    """Marker task: finished once its dependencies are (it passes no data on).

    Parameters
    ----------
    *_ : Any
        The results of the tasks it waits for, unused.
    """


def batch_ranges(count: int, batch_size: int) -> list[range]:
    """Tile positions in batches of *batch_size*; a batch of one tile only if that is all there is.

    Torch's CPU convolutions take another path for a batch of one, which changes the last
    bits of their output; so a last batch of one shares the batch before it evenly (or,
    with a batch size of 2, joins it: three tiles cannot make two batches of two).

    Parameters
    ----------
    count : int
        The number of tiles.
    batch_size : int
        Tiles per batch.

    Returns
    -------
    list of range
        Consecutive batches covering ``range(count)``: none of one tile unless *count* or
        *batch_size* is 1, none above *batch_size* but a last one of 3 for a batch size of 2.
    """
    batches = [range(i, min(i + batch_size, count)) for i in range(0, count, batch_size)]
    if batch_size > 1 and len(batches) > 1 and len(batches[-1]) == 1:
        start = batches[-2].start
        middle = start + (count - start) // 2 if batch_size > 2 else count
        batches[-2:] = [b for b in (range(start, middle), range(middle, count)) if b]
    return batches
