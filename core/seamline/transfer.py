"""Batches to the device and sums back: pinned memory and a copy stream on CUDA, nothing on the CPU.

A tile task cuts its tiles into a host buffer (:meth:`Feeder.host`), sends each batch to
the device (:meth:`Feeder.send`), adds the model's outputs into accumulators made there
(:meth:`Feeder.zeros`), and brings only those back (:func:`to_host`). On the CPU every
step shares memory: nothing is copied. On CUDA the host buffer is page-locked, so a copy
needs no staging, and each batch is copied on a second stream without blocking, so the
copy of one batch overlaps the model's work on the one before.

Every call that only CUDA can make is a small function of its own here (``_pinned``,
``_to``, ``_zeros``, ``_copy_stream``, ``_on_stream``, ``_after_copy``), so the tests run
the CUDA path's logic on the CPU with those calls replaced.
"""

from __future__ import annotations

import contextlib
from typing import Any

import numpy as np
import torch

__all__ = ["Feeder", "to_host"]


def _to(value: Any, device: torch.device, non_blocking: bool = False) -> Any:
    """``value.to(device)``: a module or a tensor (the tests replace it to stay on the CPU)."""
    return value.to(device, non_blocking=non_blocking)


def _pinned(shape: tuple[int, ...]) -> torch.Tensor:
    """Page-locked host memory, which a GPU copies from without waiting."""
    return torch.empty(shape, dtype=torch.float32, pin_memory=True)


def _zeros(shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    return torch.zeros(shape, dtype=torch.float32, device=device)


def _copy_stream(device: torch.device) -> Any:
    return torch.cuda.Stream(device)


def _on_stream(stream: Any) -> contextlib.AbstractContextManager:
    return torch.cuda.stream(stream)


def _after_copy(tensor: torch.Tensor, device: torch.device, stream: Any) -> None:
    """Make the compute stream wait for a copy made on *stream*, and keep its memory until used."""
    current = torch.cuda.current_stream(device)
    current.wait_stream(stream)
    tensor.record_stream(current)


class Feeder:
    """Host batches to the device: pinned and copied on a second stream on CUDA, shared on the CPU.

    Parameters
    ----------
    device : torch.device
        Where the model runs.
    channels_last : bool
        Cut batches into channels-last memory (``(N, *tile, C)``), for a model whose
        weights are in it (see :func:`seamline.devices.placed`).

    Examples
    --------
    >>> feeder = Feeder(torch.device("cpu"))
    >>> host = feeder.host((2, 1, 8, 8))  # cut tiles into host[...]
    >>> feeder.send(host).shape
    torch.Size([2, 1, 8, 8])
    """

    def __init__(self, device: torch.device, channels_last: bool = False) -> None:
        self.device = device
        self.cuda = device.type == "cuda"
        self.channels_last = channels_last
        self._stream: Any = None

    def host(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 host buffer ``(N, C, *tile)`` to cut a batch into (page-locked on CUDA).

        With ``channels_last`` its memory is ``(N, *tile, C)``, as the model takes it.

        Parameters
        ----------
        shape : tuple of int

        Returns
        -------
        torch.Tensor
        """
        order = (0, *range(2, len(shape)), 1) if self.channels_last else tuple(range(len(shape)))
        stored = tuple(shape[i] for i in order)
        buffer = _pinned(stored) if self.cuda else torch.empty(stored, dtype=torch.float32)
        return buffer.permute(*(order.index(i) for i in range(len(shape))))

    def send(self, batch: torch.Tensor) -> torch.Tensor:
        """The batch on the device; on CUDA the copy runs on its own stream without blocking.

        Parameters
        ----------
        batch : torch.Tensor
            From :meth:`host`.

        Returns
        -------
        torch.Tensor
        """
        if not self.cuda:
            return batch
        if self._stream is None:
            self._stream = _copy_stream(self.device)
        with _on_stream(self._stream):
            moved = _to(batch, self.device, non_blocking=True)
        _after_copy(moved, self.device, self._stream)
        return moved

    def zeros(self, shape: tuple[int, ...]) -> torch.Tensor:
        """A float32 accumulator on the device.

        Parameters
        ----------
        shape : tuple of int

        Returns
        -------
        torch.Tensor
        """
        return _zeros(shape, self.device) if self.cuda else torch.zeros(shape, dtype=torch.float32)

    def window(self, window: torch.Tensor) -> torch.Tensor:
        """A CPU tensor (the weight window) on the device.

        Parameters
        ----------
        window : torch.Tensor

        Returns
        -------
        torch.Tensor
        """
        return _to(window, self.device) if self.cuda else window


def to_host(tensor: torch.Tensor) -> np.ndarray:
    """A tensor's values as a NumPy array (shared with it on the CPU, copied from a GPU).

    Parameters
    ----------
    tensor : torch.Tensor

    Returns
    -------
    numpy.ndarray
    """
    if tensor.device.type != "cpu":
        tensor = _to(tensor, torch.device("cpu"))
    return tensor.numpy()
