"""The engine: a model run over tiles, blended into one lazy, seamless output.

:func:`predict` builds a dask graph of two kinds of tasks and runs nothing (the model
sees one empty batch, to learn how many channels it returns):

*tile tasks*
    each takes a run of neighbouring tiles along the last axis (a whole number of
    batches, at least 4 tiles), reads the input under them, runs the model on them in
    batches of ``batch_size`` and returns their outputs multiplied by the weight window
    and summed over the run's box. Every tile belongs to exactly one tile task, so every
    tile goes through the model exactly once.
*chunk tasks*
    each makes one chunk of the output (one tile in size): it adds the sums of the tile
    tasks that overlap it and divides by the weight sum, which :mod:`seamline.blending`
    computes from the tile placement alone.

Tile placement is global (:mod:`seamline.tiling`), so the output does not depend on
chunks, schedulers or batch size, and with ``blend="gaussian"`` it equals MONAI's
``sliding_window_inference(..., mode="gaussian")``. Computing or storing the result
chunk by chunk (``da.store``, :func:`seamline.save`) holds a few rows of tiles in memory,
never the image. The model is one key of the graph: dask.distributed ships it to each
worker once, and :mod:`seamline.devices` places it on that worker's device once.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import threading
import uuid
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import torch
from dask.highlevelgraph import HighLevelGraph
from tqdm import tqdm

from .blending import accumulate, blend_region, weight_window
from .defaults import BATCH_SIZE, BLEND, OVERLAP
from .devices import run_batch, worker_threads
from .errors import InputError, ModelError
from .image import Image
from .logits import label_dtype, most_likely, probabilities
from .tiling import TileGrid, chunks_overlapping, tile_grid

__all__ = ["predict", "OUTPUTS"]

OUTPUTS = ("scores", "probabilities", "labels")
_MIN_TILES_PER_TASK = 4
#: Output chunks are one tile tall and whole tiles wide along the last axis, about this
#: many pixels (voxels) in all: a few large writes instead of many small ones.
_CHUNK_PIXELS = 2**18
_bars: dict[str, Any] = {}
_bars_lock = threading.Lock()


@dataclasses.dataclass(frozen=True)
class _Run:
    """What every tile task needs to know besides its tiles."""

    tile_size: tuple[int, ...]
    blend: str
    batch_size: int
    device: str
    amp: bool | None
    token: str
    total: int
    progress: bool


def _advance(run: _Run, tiles: int) -> None:
    """Count *tiles* on this run's progress bar (in the process that holds the bar)."""
    if not run.progress or worker_threads() is not None:
        return
    with _bars_lock:
        bar = _bars.get(run.token)
        if bar is None:
            bar = _bars[run.token] = tqdm(total=run.total, unit="tile", desc="predict")
        bar.update(tiles)
        if bar.n >= run.total:
            bar.close()
            del _bars[run.token]


def _run_tiles(
    model: torch.nn.Module, blocks: list, origins: list, lo: tuple, shape: tuple, starts: list, run: _Run, after: None
) -> np.ndarray:
    """Tile task: run the model on a run of tiles; return their weighted outputs summed over the run's box.

    *after* is the ordering dependency (see :func:`_graph`); it carries no data.
    """
    region = accumulate(zip(origins, blocks, strict=True), lo, shape)
    window = weight_window(run.tile_size, run.blend)
    tiles = [
        tuple(slice(s - low, s - low + t) for s, low, t in zip(st, lo, run.tile_size, strict=True)) for st in starts
    ]
    total = None
    for first in range(0, len(tiles), run.batch_size):
        batch = np.stack([region[(slice(None), *tile)] for tile in tiles[first : first + run.batch_size]])
        result = run_batch(model, batch, run.device, run.amp)
        result *= window
        if total is None:
            total = np.zeros((result.shape[1], *shape), dtype=np.float32)
        for values, tile in zip(result, tiles[first : first + run.batch_size], strict=True):
            total[(slice(None), *tile)] += values
        _advance(run, len(batch))
    return total


def _blend_chunk(sums: list, origins: list, starts: list, lo: tuple, shape: tuple, run: _Run) -> np.ndarray:
    """Chunk task: blend the tile-run sums that overlap one output chunk."""
    window = weight_window(run.tile_size, run.blend)
    return blend_region(list(zip(origins, sums, strict=True)), starts, window, lo, shape)


def _finish(scores: np.ndarray, valid: np.ndarray | None, kind: str, nodata: float | int) -> np.ndarray:
    """Turn blended scores into probabilities or labels, and mark nodata."""
    if kind == "labels":
        scores = most_likely(scores)
    elif kind == "probabilities":
        scores = probabilities(scores)
    if valid is not None:
        scores = np.where(valid[None], scores, np.asarray(nodata, dtype=scores.dtype))
    return scores


def _model_input(image: Image, grid: TileGrid, valid: da.Array | None) -> da.Array:
    """The float32 input the tiles read: nodata set to 0, padded where shorter than a tile."""
    data = image.data.astype(np.float32)
    if valid is not None:
        data = da.where(valid[None], data, np.float32(0))
    pads = [(p, q - s - p) for p, q, s in zip(grid.padding, grid.padded_shape, grid.shape, strict=True)]
    if any(any(p) for p in pads):
        data = da.pad(data, [(0, 0), *pads], mode="constant")
    return data.rechunk({0: -1})


def _channels(model: torch.nn.Module, bands: int, grid: TileGrid, device: str, amp: bool | None) -> int:
    """How many channels the model returns, from an empty batch (one blank tile if it needs one)."""
    try:
        return run_batch(model, np.zeros((0, bands, *grid.tile_size), np.float32), device, amp).shape[1]
    except ModelError:
        return run_batch(model, np.zeros((1, bands, *grid.tile_size), np.float32), device, amp).shape[1]


def _blocks_under(x: da.Array, lo: Sequence[int], hi: Sequence[int]) -> tuple[list, list]:
    """Keys and origins of the chunks of *x* that overlap the spatial window ``[lo, hi)``."""
    pieces = chunks_overlapping(x.chunks[1:], lo, hi)
    return [(x.name, 0, *index) for index, _, _ in pieces], [start for _, start, _ in pieces]


def _tile_runs(grid: TileGrid, batch_size: int) -> list[list[tuple[int, ...]]]:
    """Tiles grouped into tile tasks: runs of neighbours along the last axis, in tile order.

    A run is a whole number of batches and at least 4 tiles long.
    """
    length = batch_size * math.ceil(_MIN_TILES_PER_TASK / batch_size)
    last = grid.counts[-1]
    return [
        [(*lead, k) for k in range(first, min(first + length, last))]
        for lead in itertools.product(*(range(n) for n in grid.counts[:-1]))
        for first in range(0, last, length)
    ]


def _done(*_: Any) -> None:
    """Ordering task: finished once its dependencies are (it passes no data on)."""


def _graph(x: da.Array, model: torch.nn.Module, grid: TileGrid, run: _Run, chunks: tuple, channels: int) -> da.Array:
    """The lazy blended scores: tile tasks feeding chunk tasks.

    Dask's own task ordering would run tiles far ahead of the chunks that consume them,
    so a tile task also waits for every row of output chunks (along the first axis) that
    ends a tile or more before its tiles begin: a few rows of tiles are in memory at once.
    The wait passes no data (``done`` tasks return None), so workers exchange nothing for it.
    """
    name, tiles_name, done_name = f"predict-{run.token}", f"tiles-{run.token}", f"done-{run.token}"
    model_key = f"model-{run.token}"
    layer: dict[Any, Any] = {model_key: model}
    bounds = [np.cumsum((0, *c)) + p for c, p in zip(chunks, grid.padding, strict=True)]
    where: dict[tuple[int, ...], int] = {}
    boxes: list[tuple[int, ...]] = []
    for g, indices in enumerate(_tile_runs(grid, run.batch_size)):
        starts = [grid.start(i) for i in indices]
        lo, hi = starts[0], tuple(s + t for s, t in zip(starts[-1], grid.tile_size, strict=True))
        keys, origins = _blocks_under(x, lo, hi)
        shape = tuple(h - low for h, low in zip(hi, lo, strict=True))
        row = int(np.searchsorted(bounds[0][1:], lo[0] - grid.tile_size[0], "right")) - 1
        after = (done_name, row) if row >= 0 else None
        layer[(tiles_name, g)] = (_run_tiles, model_key, keys, origins, lo, shape, starts, run, after)
        where.update(dict.fromkeys(indices, g))
        boxes.append(lo)
    for index in itertools.product(*(range(len(c)) for c in chunks)):
        lo = tuple(int(b[i]) for b, i in zip(bounds, index, strict=True))
        shape = tuple(c[i] for c, i in zip(chunks, index, strict=True))
        overlapping = grid.overlapping(lo, [low + n for low, n in zip(lo, shape, strict=True)])
        groups = sorted({where[i] for i in overlapping})
        sums = [(tiles_name, g) for g in groups]
        origins = [boxes[g] for g in groups]
        starts = [grid.start(i) for i in overlapping]
        layer[(name, 0, *index)] = (_blend_chunk, sums, origins, starts, lo, shape, run)
        layer[(done_name, *index)] = (_done, (name, 0, *index))
    for row in range(len(chunks[0])):
        previous = [(done_name, row - 1)] if row else []
        others = itertools.product(*(range(len(c)) for c in chunks[1:]))
        layer[(done_name, row)] = (_done, [(done_name, row, *rest) for rest in others], *previous)
    graph = HighLevelGraph.from_collections(name, layer, dependencies=[x])
    return da.Array(graph, name, ((channels,), *chunks), dtype=np.float32)


def predict(
    image: Image | np.ndarray | da.Array,
    model: Any,
    *,
    tile_size: int | Sequence[int] | None = None,
    overlap: float | Sequence[float] | None = None,
    blend: str | None = None,
    placement: str = "monai",
    batch_size: int = BATCH_SIZE,
    device: str = "auto",
    amp: bool | None = None,
    output: str = "scores",
    progress: bool = True,
) -> Image:
    """Run a segmentation model over an image tile by tile, blending tiles without seams.

    Parameters
    ----------
    image : Image, numpy.ndarray or dask.array.Array
        Shaped ``(C, *spatial)`` with 2 or 3 spatial axes. Where ``meta["nodata"]`` (all
        bands equal to it) or ``meta["mask"]`` (False) marks no data, the model sees 0
        and the output says nodata.
    model : torch.nn.Module or model bundle
        A module mapping ``(N, C, *tile)`` to ``(N, K, *tile)``; it is put in eval mode.
        A bundle (anything with a ``predict`` method) is handed the call, and supplies its
        own defaults for the options left unset.
    tile_size : int or sequence of int
        The tile's size, one for every spatial axis or one per axis (required for a module).
    overlap : float or sequence of float, optional
        The fraction of a tile shared with its neighbours, in ``[0, 1)`` (:data:`seamline.defaults.OVERLAP` by default).
    blend : {"gaussian", "cosine", "constant", "nnunet"}, optional
        The weight window; see :mod:`seamline.blending` (:data:`seamline.defaults.BLEND`
        by default).
    placement : {"monai", "nnunet"}
        Where tiles go; see :mod:`seamline.tiling`.
    batch_size : int
        Tiles per model call.
    device : str
        ``"auto"`` (CUDA if available where the tiles run, else CPU) or a torch device.
    amp : bool, optional
        Mixed precision; None means on for CUDA (bfloat16, or float16) and off for the CPU.
    output : {"scores", "probabilities", "labels"}
        The blended model outputs (``float32``); their softmax over channels (sigmoid for
        one channel); or the most likely class (``uint8``, ``uint16`` from 256 classes
        on; one channel is thresholded at probability 0.5).
    progress : bool
        Show a progress bar over tiles while the result is computed.

    Returns
    -------
    Image
        Lazy, with the input's spatial shape, affine, crs and meta. Nodata is NaN for
        scores and probabilities and the dtype's largest value for labels, recorded in
        ``meta["nodata"]``; ``meta["band_names"]`` and ``meta["mask"]`` (which describe
        the input) are dropped.

    Raises
    ------
    InputError
        If an option is invalid or does not fit the image.
    ModelError
        If the model fails on a tile, or changes a tile's spatial size.

    Examples
    --------
    A model that returns its input shows that blending leaves no seams: the overlapping
    tiles' outputs average back to the image itself.

    >>> import numpy as np
    >>> image = Image.from_array(np.random.default_rng(0).random((2, 300, 500), dtype="float32"))
    >>> scores = predict(image, torch.nn.Identity(), tile_size=128, progress=False)
    >>> scores.shape, bool(np.allclose(scores.data.compute(), image.data.compute(), atol=1e-6))
    ((2, 300, 500), True)

    Nothing ran until ``compute``; ``seamline.save(scores, "scores.zarr")`` streams the
    result to disk a few rows of tiles at a time.
    """
    if not isinstance(model, torch.nn.Module) and hasattr(model, "predict"):
        given = dict(tile_size=tile_size, overlap=overlap, blend=blend, batch_size=batch_size, device=device, amp=amp)
        return model.predict(
            image, **{k: v for k, v in given.items() if v is not None}, output=output, progress=progress
        )
    image = image if isinstance(image, Image) else Image.from_array(image)
    if not isinstance(model, torch.nn.Module):
        raise ModelError(f"model must be a torch.nn.Module or a model bundle, got {type(model).__name__}")
    if image.ndim not in (2, 3):
        raise InputError(f"predict takes 2 or 3 spatial axes, got shape {image.shape}")
    if tile_size is None:
        raise InputError("tile_size is required when the model is a torch module")
    if output not in OUTPUTS:
        raise InputError(f"output must be one of {', '.join(OUTPUTS)}; got {output!r}")
    if batch_size < 1:
        raise InputError(f"batch_size must be at least 1, got {batch_size}")
    blend = BLEND if blend is None else blend
    grid = tile_grid(image.spatial_shape, tile_size, OVERLAP if overlap is None else overlap, placement=placement)
    weight_window(grid.tile_size, blend)
    model.eval()
    valid = image.valid_mask()
    x = _model_input(image, grid, valid)
    channels = _channels(model, image.channels, grid, device, amp)
    run = _Run(grid.tile_size, blend, batch_size, device, amp, uuid.uuid4().hex[:12], len(grid), progress)
    per_chunk = max(1, _CHUNK_PIXELS // math.prod(grid.tile_size))
    widths = (*grid.tile_size[:-1], grid.tile_size[-1] * per_chunk)
    chunks = tuple(tuple(min(t, s - i) for i in range(0, s, t)) for s, t in zip(grid.shape, widths, strict=True))
    scores = _graph(x, model, grid, run, chunks, channels)
    meta = {k: v for k, v in image.meta.items() if k not in ("band_names", "mask", "nodata")}
    if output == "labels":
        dtype = label_dtype(channels)
        nodata = np.iinfo(dtype).max
    else:
        dtype, nodata = np.dtype(np.float32), math.nan
    if valid is not None:
        meta["nodata"] = nodata
        valid = valid.rechunk(chunks)
    data = da.map_blocks(
        _finish,
        scores,
        valid,
        kind=output,
        nodata=nodata,
        dtype=dtype,
        chunks=((1 if output == "labels" else channels,), *chunks),
    )
    return image.replace(data=data, meta=meta)
