"""Where the model runs: one placed model per process, batches fed to it without waiting.

The engine's tasks run in threads of one process (dask's threaded scheduler) or in
worker processes (dask.distributed). Either way:

- ``device="auto"`` is resolved in the process that runs the model: CUDA when
  ``torch.cuda.is_available()`` there, else the CPU. Each worker so owns the device it
  sees; give workers one GPU each the usual way (``CUDA_VISIBLE_DEVICES``, dask-cuda).
- The model is moved to that device once per process and reused by every task
  (:func:`placed`); it is never copied per task.
- Mixed precision (:func:`autocast`) is on by default on CUDA, in bfloat16 on GPUs of
  compute capability 8 and later (Ampere on), where it runs natively, and float16 on older
  ones; it is off on the CPU unless asked for (bfloat16). Either dtype may be asked for by name.

How tasks share the device (:func:`turn`):

- **CPU**: every dask thread is a worker of its own. A task that runs in one of dask's
  threads limits torch to one thread (OpenMP's per-thread setting, through threadpoolctl)
  while it runs its tiles, so that *n* dask threads keep *n* cores busy with *n* model
  calls side by side, none waiting at another's barrier. Small networks scale much better
  so than by splitting each call over the cores. Code run in the main thread (dask's
  synchronous scheduler, or a direct call) keeps all of torch's threads.
- **CUDA**: one task at a time holds the GPU (a lock per device). Before taking it, a
  task reads its input and cuts its batches into pinned host memory, so dask's other
  threads prepare the next tasks while the GPU computes. Holding it, the task copies each
  batch on a second CUDA stream (``non_blocking``), so the copy of one batch overlaps the
  model on the one before, and blends on the GPU (:class:`seamline.transfer.Feeder`).

Copies to and from the device are :mod:`seamline.transfer`'s. Every call that only CUDA
can make is a small function of its own (``_autocast``, ``_peak_memory``,
``_free_memory`` here; the copies' there) or a ``torch.cuda`` function, so the tests run
the CUDA path's logic on the CPU with those calls replaced.
"""

from __future__ import annotations

import contextlib
import functools
import itertools
import sys
import threading
import weakref
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np
import torch

from . import transfer
from .errors import ModelError
from .transfer import Feeder, to_host

__all__ = [
    "Amp",
    "resolve_device",
    "autocast_dtype",
    "autocast",
    "convolutional",
    "channels_last_refused",
    "placed",
    "probing",
    "turn",
    "forward",
    "run_batch",
    "auto_batch_size",
    "worker_threads",
]

_lock = threading.RLock()
_device_locks: dict[tuple[str, int | None], threading.Lock] = {}
_placed: weakref.WeakKeyDictionary[torch.nn.Module, tuple] = weakref.WeakKeyDictionary()
_refuse_channels_last: weakref.WeakSet[torch.nn.Module] = weakref.WeakSet()
#: The share of free GPU memory that ``batch_size=None`` fills with one batch.
_MEMORY_SHARE = 0.4
_MAX_AUTO_BATCH = 64
#: Mixed precision: on, off, None (on for CUDA, off for the CPU), or on in the dtype named.
Amp = bool | Literal["float16", "bfloat16"] | None


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """Return the torch device that *device* names in this process.

    Parameters
    ----------
    device : str or torch.device
        ``"auto"`` (CUDA if available, else CPU), or any torch device name.

    Returns
    -------
    torch.device
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


def autocast_dtype(device: torch.device, amp: Amp = None) -> torch.dtype | None:
    """The dtype a model runs in under mixed precision on *device*, or None without it.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    amp : bool, "float16", "bfloat16" or None
        Mixed precision on or off, or on in the dtype named; None means on for CUDA and
        off for the CPU.

    Returns
    -------
    torch.dtype or None
        The dtype named; else bfloat16, but float16 on a GPU of compute capability below 8
        (which only emulates bfloat16); None when mixed precision is off.
    """
    if isinstance(amp, str):
        return torch.float16 if amp == "float16" else torch.bfloat16
    if not (device.type == "cuda" if amp is None else amp):
        return None
    if device.type == "cuda" and torch.cuda.get_device_capability(device)[0] < 8:
        return torch.float16
    return torch.bfloat16


def autocast(device: torch.device, amp: Amp = None) -> contextlib.AbstractContextManager:
    """Return the mixed-precision context for running a model on *device*.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    amp : bool, "float16", "bfloat16" or None
        As for :func:`autocast_dtype`.

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast`` in :func:`autocast_dtype`, or a no-op context.
    """
    dtype = autocast_dtype(device, amp)
    return contextlib.nullcontext() if dtype is None else _autocast(device.type, dtype)


def _autocast(device_type: str, dtype: torch.dtype) -> contextlib.AbstractContextManager:
    return torch.autocast(device_type, dtype=dtype)


def worker_threads() -> int | None:
    """The thread count of the dask.distributed worker running this code.

    Returns
    -------
    int or None
        None when this code does not run in a worker.
    """
    if "distributed" not in sys.modules:  # no worker without it; and importing it costs a second
        return None
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def convolutional(model: torch.nn.Module, ndim: int) -> bool:
    """Whether *model* has convolutions over *ndim* spatial axes (so channels-last memory may speed it up).

    Parameters
    ----------
    model : torch.nn.Module
    ndim : int
        2 or 3.

    Returns
    -------
    bool
    """
    kinds = (torch.nn.Conv2d, torch.nn.ConvTranspose2d) if ndim == 2 else (torch.nn.Conv3d, torch.nn.ConvTranspose3d)
    return any(isinstance(module, kinds) for module in model.modules())


def channels_last_refused(model: torch.nn.Module, refused: bool = False) -> bool:
    """Whether *model* failed in channels-last memory in this process (and, with *refused*, note that it did).

    Parameters
    ----------
    model : torch.nn.Module
    refused : bool
        Note that it failed so.

    Returns
    -------
    bool
    """
    with _lock:
        if refused:
            _refuse_channels_last.add(model)
        return model in _refuse_channels_last


def _memory_format(ndim: int, channels_last: bool) -> torch.memory_format:
    if not channels_last:
        return torch.contiguous_format
    return torch.channels_last if ndim == 2 else torch.channels_last_3d


def placed(
    model: torch.nn.Module, device: torch.device, channels_last: bool = False, ndim: int = 2
) -> tuple[torch.nn.Module, bool]:
    """Return *model* moved to *device* (in place), moving it only when it is elsewhere.

    Parameters
    ----------
    model : torch.nn.Module
        The model (this process's copy of it).
    device : torch.device
        Where it should run.
    channels_last : bool
        Keep its weights in channels-last memory (NHWC, NDHWC), where oneDNN's and
        cuDNN's convolutions are fastest, unless the model refused it in this process
        (:func:`channels_last_refused`): then it stays contiguous.
    ndim : int
        The number of spatial axes (2 or 3), which says which channels-last format.

    Returns
    -------
    (torch.nn.Module, bool)
        The same module, on *device*, and whether its weights are in channels-last
        memory: the layout its batches must come in.
    """
    with _lock:
        channels_last = channels_last and model not in _refuse_channels_last
        layout = _memory_format(ndim, channels_last)
        # the user (or the trainer) may have moved the model or changed its layout since
        weight = next(model.parameters(), None)
        kernels = [p for p in model.parameters() if p.ndim == ndim + 2]
        wanted = (device, channels_last, ndim)
        if (
            _placed.get(model) != wanted
            or (weight is not None and weight.device.type != device.type)
            or not all(kernel.is_contiguous(memory_format=layout) for kernel in kernels)
        ):
            transfer._to(model, device)
            model.to(memory_format=layout)
            _placed[model] = wanted
    return model, channels_last


@contextlib.contextmanager
def probing(model: torch.nn.Module) -> Iterator[None]:
    """The context in which the process that builds a graph runs *model* to probe it.

    The probes place the model on this process's device (a GPU, say); on leaving, it is
    moved back where it was, so that the graph ships it as the caller gave it, to workers
    that may have no such device.

    Parameters
    ----------
    model : torch.nn.Module
    """
    first = next(itertools.chain(model.parameters(), model.buffers()), None)
    try:
        yield
    finally:
        if first is not None:
            transfer._to(model, first.device)


@functools.cache
def _openmp() -> Any:
    """threadpoolctl's controller of the loaded OpenMP runtimes, or None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:  # pragma: no cover - threadpoolctl is a dependency
        return None
    selected = ThreadpoolController().select(user_api="openmp")
    return selected if selected.lib_controllers else None  # no OpenMP runtime found: nothing to limit


def _device_lock(device: torch.device) -> threading.Lock:
    """The lock of one device: ``cuda`` and ``cuda:0`` (when it is the current one) share it."""
    index = device.index
    if device.type == "cuda" and index is None:
        index = torch.cuda.current_device()
    with _lock:
        return _device_locks.setdefault((device.type, index), threading.Lock())


@contextlib.contextmanager
def turn(device: torch.device) -> Iterator[None]:
    """The context in which one task runs its batches on *device*.

    On the CPU, in any thread but the main one, torch uses one thread inside it (so that
    dask's threads run model calls side by side); without threadpoolctl, one task at a
    time runs instead, on all of torch's threads. On a GPU, one task at a time holds it.

    Parameters
    ----------
    device : torch.device
        Where the task's batches run.
    """
    if device.type == "cpu" and threading.current_thread() is threading.main_thread():
        yield
        return
    openmp = _openmp() if device.type == "cpu" else None
    if openmp is None:
        with _device_lock(device):
            yield
        return
    torch.get_num_threads()  # a fresh thread sets torch's thread count on first use: do it before limiting
    with openmp.limit(limits=1):
        yield


def forward(model: torch.nn.Module, batch: torch.Tensor, device: torch.device, amp: Amp) -> torch.Tensor:
    """Run *model* on a batch of tiles under ``torch.inference_mode`` (and autocast).

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode, on *device*.
    batch : torch.Tensor
        Tiles shaped ``(N, C, *tile)`` on *device*.
    device : torch.device
        Where the model runs.
    amp : bool, "float16", "bfloat16" or None
        Mixed precision, as for :func:`autocast`.

    Returns
    -------
    torch.Tensor
        The model's float32 output, shaped ``(N, K, *tile)``, on *device*.

    Raises
    ------
    ModelError
        If the model fails, or does not return one tensor of shape ``(N, K, *tile)``.
    """
    with torch.inference_mode(), autocast(device, amp):
        try:
            result: Any = model(batch)
        except Exception as exc:
            raise ModelError(f"the model failed on tiles of shape {list(batch.shape)}: {exc}") from exc
    if not isinstance(result, torch.Tensor):
        raise ModelError(f"the model must return one tensor, got {type(result).__name__}")
    if result.ndim != batch.ndim or result.shape[0] != batch.shape[0] or result.shape[2:] != batch.shape[2:]:
        raise ModelError(
            f"the model turned tiles of shape {list(batch.shape)} into {list(result.shape)}; "
            "it must keep the batch and spatial sizes"
        )
    return result.float()


def run_batch(
    model: torch.nn.Module,
    batch: np.ndarray,
    device: str = "auto",
    amp: Amp = None,
    channels_last: bool = False,
) -> np.ndarray:
    """Run *model* on one batch of tiles, from and to NumPy.

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode.
    batch : numpy.ndarray
        ``float32`` tiles shaped ``(N, C, *tile)``.
    device : str
        The device name (``"auto"`` is resolved here).
    amp : bool, "float16", "bfloat16" or None
        Mixed precision, as for :func:`autocast`.
    channels_last : bool
        Run the model in channels-last memory (see :func:`placed`).

    Returns
    -------
    numpy.ndarray
        The model's ``float32`` output, shaped ``(N, K, *tile)``.

    Raises
    ------
    ModelError
        As :func:`forward`.
    """
    where = resolve_device(device)
    module, channels_last = placed(model, where, channels_last, batch.ndim - 2)
    feeder = Feeder(where, channels_last)
    host = feeder.host(batch.shape)
    host.numpy()[...] = batch
    with turn(where):
        return to_host(forward(module, feeder.send(host), where, amp))


def _peak_memory(model: torch.nn.Module, batch: torch.Tensor, device: torch.device, amp: Amp) -> int:
    """The GPU memory one batch takes in the model, in bytes."""
    torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device)
    torch.cuda.reset_peak_memory_stats(device)
    forward(model, batch, device, amp)
    return max(int(torch.cuda.max_memory_allocated(device)) - before, 1)


def _free_memory(device: torch.device) -> int:
    return int(torch.cuda.mem_get_info(device)[0])


def auto_batch_size(
    model: torch.nn.Module,
    bands: int,
    tile_size: tuple[int, ...],
    device: str,
    amp: Amp,
    default: int,
) -> int:
    """Tiles per model call: sized from free memory on a GPU, *default* on the CPU.

    On CUDA, one tile is run to measure what a tile takes, and a batch fills
    ``0.4`` of the free memory (1 to 64 tiles).

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode.
    bands : int
        Input channels.
    tile_size : tuple of int
        The tile's shape.
    device : str
        The device name (``"auto"`` is resolved here).
    amp : bool, "float16", "bfloat16" or None
        Mixed precision, as for :func:`autocast`.
    default : int
        The batch size on the CPU.

    Returns
    -------
    int
    """
    where = resolve_device(device)
    if where.type != "cuda":
        return default
    module, _ = placed(model, where, False, len(tile_size))
    feeder = Feeder(where)
    with turn(where):
        per_tile = _peak_memory(module, feeder.send(feeder.host((1, bands, *tile_size)).zero_()), where, amp)
        return int(np.clip(_free_memory(where) * _MEMORY_SHARE // per_tile, 1, _MAX_AUTO_BATCH))
