"""Where the model runs: one device-placed model per process, one batch at a time.

The engine's tasks may run in threads of one process (dask's threaded scheduler) or in
worker processes (dask.distributed). Either way:

- ``device="auto"`` is resolved in the process that runs the model: CUDA when
  ``torch.cuda.is_available()`` there, else the CPU. Each worker so owns the device it
  sees; give workers one GPU each the usual way (``CUDA_VISIBLE_DEVICES``, dask-cuda).
- The model is moved to that device once per process and reused by every task
  (:func:`placed`); it is never copied per task.
- Mixed precision (:func:`autocast`) is on by default on CUDA, in bfloat16 where the GPU
  supports it and float16 otherwise; it is off on the CPU unless asked for (bfloat16).
- One batch runs at a time in a process (a process-wide lock around the model call),
  using all of torch's own threads. Dask's other threads meanwhile read input and blend
  outputs, so torch and dask do not oversubscribe the cores with competing model calls.
  In a dask.distributed worker, torch is limited to the worker's thread count, so that
  several worker processes on one machine share its cores instead of each taking all.
"""

from __future__ import annotations

import contextlib
import threading
import weakref
from typing import Any

import numpy as np
import torch

from .errors import ModelError

__all__ = ["resolve_device", "autocast", "placed", "run_batch", "worker_threads"]

_lock = threading.RLock()
_placed: weakref.WeakKeyDictionary[torch.nn.Module, torch.device] = weakref.WeakKeyDictionary()


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


def autocast(device: torch.device, amp: bool | None = None) -> contextlib.AbstractContextManager:
    """Return the mixed-precision context for running a model on *device*.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    amp : bool or None
        Mixed precision on or off; None means on for CUDA and off for the CPU.

    Returns
    -------
    contextlib.AbstractContextManager
        ``torch.autocast`` in bfloat16 (float16 on CUDA devices without bfloat16), or a
        no-op context.
    """
    enabled = device.type == "cuda" if amp is None else bool(amp)
    if not enabled:
        return contextlib.nullcontext()
    half = device.type == "cuda" and not torch.cuda.is_bf16_supported()
    return torch.autocast(device.type, dtype=torch.float16 if half else torch.bfloat16)


def worker_threads() -> int | None:
    """The thread count of the dask.distributed worker running this code.

    Returns
    -------
    int or None
        None when this code does not run in a worker.
    """
    try:
        from distributed import get_worker

        return int(get_worker().state.nthreads)
    except (ImportError, ValueError, AttributeError):
        return None


def placed(model: torch.nn.Module, device: torch.device) -> torch.nn.Module:
    """Return *model* moved to *device* (in place), moving it only when it is elsewhere.

    Parameters
    ----------
    model : torch.nn.Module
        The model (this process's copy of it).
    device : torch.device
        Where it should run.

    Returns
    -------
    torch.nn.Module
        The same module, on *device*.
    """
    with _lock:
        weight = next(model.parameters(), None)  # the user may have moved the model since
        if _placed.get(model) != device or (weight is not None and weight.device.type != device.type):
            threads = worker_threads()
            if threads is not None:
                torch.set_num_threads(threads)
            model.to(device)
            _placed[model] = device
    return model


def run_batch(model: torch.nn.Module, batch: np.ndarray, device: str = "auto", amp: bool | None = None) -> np.ndarray:
    """Run *model* on a batch of tiles under ``torch.inference_mode``.

    Parameters
    ----------
    model : torch.nn.Module
        The model, in eval mode.
    batch : numpy.ndarray
        ``float32`` tiles shaped ``(N, C, *tile)``.
    device : str
        The device name (``"auto"`` is resolved here).
    amp : bool or None
        Mixed precision, as for :func:`autocast`.

    Returns
    -------
    numpy.ndarray
        The model's ``float32`` output, shaped ``(N, K, *tile)``.

    Raises
    ------
    ModelError
        If the model fails, or does not return one tensor of shape ``(N, K, *tile)``.
    """
    where = resolve_device(device)
    with _lock:
        module = placed(model, where)
        with torch.inference_mode(), autocast(where, amp):
            try:
                result: Any = module(torch.from_numpy(batch).to(where))
            except Exception as exc:
                raise ModelError(f"the model failed on tiles of shape {list(batch.shape)}: {exc}") from exc
        if not isinstance(result, torch.Tensor):
            raise ModelError(f"the model must return one tensor, got {type(result).__name__}")
        if result.ndim != batch.ndim or result.shape[0] != batch.shape[0] or result.shape[2:] != batch.shape[2:]:
            raise ModelError(
                f"the model turned tiles of shape {list(batch.shape)} into {list(result.shape)}; "
                "it must keep the batch and spatial sizes"
            )
        return result.float().cpu().numpy()
