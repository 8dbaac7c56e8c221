"""The engine: a model run over tiles, blended into one lazy, seamless output.

:func:`predict` checks its options, fits the tile to the image and the model, and builds
the dask graph of :mod:`seamline.runs`; it runs nothing but probes: an empty batch (or one
blank tile), to learn how many channels the model returns, for each tile size that
:func:`fit_tile` tries, and on CUDA with ``batch_size=None`` one tile, to measure the
memory a tile takes (:func:`seamline.devices.auto_batch_size`). The probes run on this
process's device; the model is moved back where it was afterwards.

Tile placement is global (:mod:`seamline.tiling`) and the blending adds tile outputs in
an order fixed by that placement (:mod:`seamline.blending`), so the output does not
depend on chunks, schedulers or batch size, and with ``blend="gaussian"`` it equals
MONAI's ``sliding_window_inference(..., mode="gaussian")`` with the same tile (and with
``placement="nnunet", blend="nnunet"``, nnU-Net's sliding window). Computing
or storing the result chunk by chunk (``da.store``, :func:`seamline.save`) holds a few
rows of tiles in memory, never the image. The model is one key of the graph:
dask.distributed ships it to each worker once, and :mod:`seamline.devices` places it on
that worker's device once.

A tile larger than the image along an axis shrinks to the image there, padded up to the
smallest multiple of 2 the model accepts (tried from 1 up, with the probe), so that a
tile of 5000 on an 800 x 655 image runs one 800 x 655 tile (or 800 x 672 for a U-Net that
needs multiples of 32), not a 5000 x 5000 one of zeros.
"""

from __future__ import annotations

import math
import uuid
import warnings
from collections.abc import Sequence
from typing import Any

import dask.array as da
import numpy as np
import torch

from .blending import weight_window
from .defaults import BATCH_SIZE, BLEND, OVERLAP
from .devices import Amp, auto_batch_size, convolutional, probing, run_batch
from .errors import InputError, ModelError
from .image import Image
from .logits import label_dtype
from .runs import graph, output_chunks
from .tasks import Job
from .tiling import TileGrid, tile_grid, tile_sizes

__all__ = ["predict", "fit_tile", "OUTPUTS", "MIN_TILE_PIXELS"]

OUTPUTS = ("scores", "probabilities", "labels")
#: The fewest pixels (voxels) a requested tile may hold: 8 x 8 in 2D. Smaller tiles give a
#: model call per few pixels and blend windows with no middle; a floor on the count rather
#: than per axis keeps slice-wise tiles such as (224, 224, 1) possible.
MIN_TILE_PIXELS = 64
#: Warn when the tiles hold more than this many times the image's pixels (high overlap).
COVERAGE_WARNING = 10


def _channels(model: torch.nn.Module, bands: int, tile: tuple[int, ...], device: str, amp: Amp) -> int:
    """How many channels the model returns, from an empty batch (one blank tile if it needs one)."""
    try:
        return run_batch(model, np.zeros((0, bands, *tile), np.float32), device, amp).shape[1]
    except ModelError:
        return run_batch(model, np.zeros((1, bands, *tile), np.float32), device, amp).shape[1]


def fit_tile(
    model: torch.nn.Module,
    shape: Sequence[int],
    tile_size: Sequence[int],
    bands: int,
    *,
    device: str = "auto",
    amp: Amp = None,
) -> tuple[tuple[int, ...], int]:
    """Shrink a tile to an image smaller than it, padded to a multiple the model accepts.

    Along each axis where the image is shorter than the tile, the tile becomes the image's
    size rounded up to a multiple *m* of 1, 2, 4, ... (never past the tile): the first *m*
    for which the model takes the tile and keeps its size. Other axes keep the tile.

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode.
    shape : sequence of int
        The image's spatial shape.
    tile_size : sequence of int
        The tile asked for.
    bands : int
        Input channels.
    device : str
        Where to probe the model.
    amp : bool, "float16", "bfloat16" or None
        Mixed precision.

    Returns
    -------
    (tuple of int, int)
        The tile, and the number of channels the model returns.

    Raises
    ------
    ModelError
        If the model fails on the tile asked for as well.
    """
    tile = tuple(int(t) for t in tile_size)
    multiple = 1
    while True:
        fitted = tuple(t if s >= t else min(t, -(-s // multiple) * multiple) for s, t in zip(shape, tile, strict=True))
        try:
            return fitted, _channels(model, bands, fitted, device, amp)
        except ModelError:
            if fitted == tile:
                raise
        multiple *= 2


def _grid(image: Image, overlap: Any, fitted: tuple[int, ...], placement: str) -> TileGrid:
    grid = tile_grid(image.spatial_shape, fitted, overlap, placement=placement)
    covered = len(grid) * math.prod(grid.tile_size) / math.prod(image.spatial_shape)
    if covered > COVERAGE_WARNING:
        warnings.warn(
            f"{len(grid)} tiles of {list(grid.tile_size)} hold {covered:.0f} times the image's pixels "
            f"(overlap {overlap}); a lower overlap is as good and much faster",
            stacklevel=3,
        )
    return grid


def predict(
    image: Image | np.ndarray | da.Array,
    model: Any,
    *,
    tile_size: int | Sequence[int] | None = None,
    overlap: float | Sequence[float] | None = None,
    blend: str | None = None,
    placement: str | None = None,
    batch_size: int | None = None,
    device: str = "auto",
    amp: Amp = None,
    output: str = "scores",
    fit: bool | None = None,
    progress: bool = True,
) -> Image:
    """Run a segmentation model over an image tile by tile, blending tiles without seams.

    Parameters
    ----------
    image : Image, numpy.ndarray or dask.array.Array
        Shaped ``(C, *spatial)`` with 2 or 3 spatial axes. Pixels with a non-finite value
        in any band, with ``meta["nodata"]`` in every band, or False in ``meta["mask"]``
        have no data: the model sees 0 there and the output says nodata.
    model : torch.nn.Module or model bundle
        A module mapping ``(N, C, *tile)`` to ``(N, K, *tile)``; it is put in eval mode.
        A bundle (anything with a ``predict`` method) is handed the call, and supplies its
        own defaults for the options left unset.
    tile_size : int or sequence of int
        The tile's size in pixels, one integer for every spatial axis or one per axis
        (required for a module); a tile holds at least :data:`MIN_TILE_PIXELS`.
    overlap : float or sequence of float, optional
        The fraction of a tile shared with its neighbours, in ``[0, 1)`` (:data:`seamline.defaults.OVERLAP` by default).
    blend : {"gaussian", "cosine", "constant", "nnunet"}, optional
        The weight window; see :mod:`seamline.blending` (:data:`seamline.defaults.BLEND`
        by default).
    placement : {"monai", "nnunet"}, optional
        Where tiles go; see :mod:`seamline.tiling` (``"monai"`` by default).
    batch_size : int, optional
        Tiles per model call; by default :data:`seamline.defaults.BATCH_SIZE` on the
        CPU, and on a GPU as many as fill 40% of its free memory (up to 64), measured on
        the GPU of the process that calls ``predict``.
    device : str
        ``"auto"`` (CUDA if available where the tiles run, else CPU) or a torch device.
    amp : bool, "float16" or "bfloat16", optional
        Mixed precision; None means on for CUDA (bfloat16 from compute capability 8 on,
        else float16) and off for the CPU; a dtype's name turns it on in that dtype.
    output : {"scores", "probabilities", "labels"}
        The blended model outputs (``float32``); their softmax over channels (sigmoid for
        one channel); or the most likely class (``uint8``, ``uint16`` from 256 classes
        on; one channel is thresholded at probability 0.5).
    fit : bool, optional
        Shrink a tile larger than the image to the image (see :func:`fit_tile`; the
        default). False pads the image up to the tile instead, as MONAI and nnU-Net do.
    progress : bool
        Show a progress bar over tiles while the result is computed.

    Returns
    -------
    Image
        Lazy, with the input's spatial shape, affine, crs and meta. Nodata is NaN for
        scores and probabilities and the dtype's largest value for labels, recorded in
        ``meta["nodata"]``; ``meta["band_names"]`` and ``meta["mask"]`` (which describe
        the input) are dropped. A model output that is not finite is nodata too, with a
        warning that counts its pixels once the whole output is made.

    Raises
    ------
    InputError
        If an option is invalid or does not fit the image.
    ModelError
        If the model fails on a tile, or changes a tile's spatial size.

    Warns
    -----
    UserWarning
        When the overlap makes the tiles hold more than 10 times the image's pixels.

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
        given = dict(
            tile_size=tile_size,
            overlap=overlap,
            blend=blend,
            placement=placement,
            batch_size=batch_size,
            device=device,
            amp=amp,
            fit=fit,
        )
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
    if batch_size is not None and (not isinstance(batch_size, int | np.integer) or batch_size < 1):
        raise InputError(f"batch_size must be a whole number of at least 1, got {batch_size!r}")
    if not (amp is None or isinstance(amp, bool | np.bool_) or amp in ("float16", "bfloat16")):
        raise InputError(f"amp must be True, False, None, 'float16' or 'bfloat16'; got {amp!r}")
    tile = tile_sizes(tile_size, image.ndim)
    if math.prod(tile) < MIN_TILE_PIXELS:
        raise InputError(
            f"tile_size {list(tile)} holds {math.prod(tile)} pixels; a tile needs at least {MIN_TILE_PIXELS}"
        )
    blend = BLEND if blend is None else blend
    overlap = OVERLAP if overlap is None else overlap
    placement = "monai" if placement is None else placement
    fit = True if fit is None else fit
    # the options are checked before the model runs
    tile_grid(image.spatial_shape, tile, overlap, placement=placement)
    weight_window(tile, blend)
    model.eval()
    with probing(model):
        fitted, channels = (
            fit_tile(model, image.spatial_shape, tile, image.channels, device=device, amp=amp)
            if fit
            else (tile, _channels(model, image.channels, tile, device, amp))
        )
        batch = (
            auto_batch_size(model, image.channels, fitted, device, amp, BATCH_SIZE)
            if batch_size is None
            else int(batch_size)
        )
    grid = _grid(image, overlap, fitted, placement)
    mask = image.meta.get("mask")
    if mask is not None:
        mask = da.asarray(mask).astype(bool).reshape((1, *image.spatial_shape)).rechunk(((1,), *image.data.chunks[1:]))
    nodata = image.meta.get("nodata")
    job = Job(
        tile_size=grid.tile_size,
        padding=grid.padding,
        blend=blend,
        batch_size=batch,
        device=device,
        amp=amp,
        channels=channels,
        output=output,
        try_channels_last=convolutional(model, image.ndim),
        nodata=None if nodata is None else float(nodata),
        token=uuid.uuid4().hex[:12],
        tiles=len(grid),
        chunks=math.prod(len(c) for c in output_chunks(grid)),
        progress=progress,
    )
    data = graph(image.data.rechunk({0: -1}), mask, model, grid, job)
    meta = {k: v for k, v in image.meta.items() if k not in ("band_names", "mask", "nodata")}
    meta["nodata"] = np.iinfo(label_dtype(channels)).max if output == "labels" else math.nan
    return image.replace(data=data, meta=meta)
