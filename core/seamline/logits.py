"""From a network's outputs to probabilities and labels, the same way everywhere.

A segmentation network returns one score per class and pixel. With several classes the
probabilities are the softmax over classes, and the label is the class with the highest
score (scores and probabilities agree on it). With one class the probability is the
sigmoid of the score, and the label is 1 where that probability exceeds 0.5, that is,
where the score is positive. The engine, ``seamline predict --probabilities`` and bundles
whose labels come from resampled probabilities all go through these functions, so
labels never depend on the road taken.

Region-based outputs (nnU-Net's region-based training) are the exception: each channel
is the sigmoid of one of several overlapping regions, and the labels are painted region
by region (:func:`paint_regions`). Such probabilities carry the order in
``meta["regions_class_order"]``, and :func:`labels_of` follows it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from .image import Image

__all__ = ["label_dtype", "probabilities", "most_likely", "paint_regions", "labels_of"]


def label_dtype(channels: int) -> np.dtype:
    """The label type for a network with *channels* outputs: uint8, or uint16 from 256 classes on.

    Parameters
    ----------
    channels : int
        Number of output channels (one channel means two classes, 0 and 1).

    Returns
    -------
    numpy.dtype
    """
    return np.dtype(np.uint8 if channels < 256 else np.uint16)


def probabilities(scores: np.ndarray) -> np.ndarray:
    """Softmax over the first axis, or the sigmoid of a single channel.

    Parameters
    ----------
    scores : numpy.ndarray
        ``(K, *spatial)`` raw network outputs.

    Returns
    -------
    numpy.ndarray
        Same shape and float type; NaN stays NaN.
    """
    if scores.shape[0] == 1:
        return np.exp(-np.logaddexp(0, -scores)).astype(scores.dtype)
    exp = np.exp(scores - scores.max(axis=0, keepdims=True))
    return exp / exp.sum(axis=0, keepdims=True)


def most_likely(values: np.ndarray, *, kind: str = "scores") -> np.ndarray:
    """The most likely class of every pixel.

    Parameters
    ----------
    values : numpy.ndarray
        ``(K, *spatial)`` scores or probabilities, without NaN.
    kind : {"scores", "probabilities"}
        What *values* holds; it matters for one channel only (threshold 0 or 0.5).

    Returns
    -------
    numpy.ndarray
        ``(1, *spatial)`` labels of :func:`label_dtype`.
    """
    if values.shape[0] == 1:
        picked = values[0] > (0.5 if kind == "probabilities" else 0.0)
    else:
        picked = values.argmax(axis=0)
    return picked.astype(label_dtype(values.shape[0]))[None]


def paint_regions(probabilities: np.ndarray, order: Sequence[int]) -> np.ndarray:
    """Labels of region probabilities: each region paints its label where its probability exceeds 0.5.

    Parameters
    ----------
    probabilities : numpy.ndarray
        ``(R, *spatial)``, one sigmoid channel per region.
    order : sequence of int
        The label each region paints, in painting order (a later region paints over an
        earlier one): nnU-Net's ``regions_class_order``.

    Returns
    -------
    numpy.ndarray
        ``(1, *spatial)`` labels of :func:`label_dtype`, 0 where no region reaches 0.5.
    """
    painted = np.zeros(probabilities.shape[1:], dtype=label_dtype(max(order) + 1))
    for channel, value in enumerate(order):
        painted[probabilities[channel] > 0.5] = value
    return painted[None]


def labels_of(probabilities: Image) -> Image:
    """The most likely class of every pixel of a probabilities Image, lazily, nodata kept.

    Parameters
    ----------
    probabilities : Image
        ``(K, *spatial)`` probabilities; NaN (the engine's nodata) in any channel marks
        a pixel without data.

    Returns
    -------
    Image
        ``(1, *spatial)`` labels of :func:`label_dtype`; pixels without data take the
        dtype's largest value, recorded as ``meta["nodata"]`` when the input had nodata.
        Region probabilities (``meta["regions_class_order"]``) are painted
        (:func:`paint_regions`).
    """
    order = probabilities.meta.get("regions_class_order")
    dtype = label_dtype(probabilities.channels if order is None else max(order) + 1)
    nodata = np.iinfo(dtype).max

    def pick(block: np.ndarray) -> np.ndarray:
        missing = np.isnan(block).any(axis=0)
        values = np.nan_to_num(block)
        labels = most_likely(values, kind="probabilities") if order is None else paint_regions(values, order)
        return np.where(missing[None], dtype.type(nodata), labels) if missing.any() else labels

    data = probabilities.data.rechunk({0: -1})
    labels = data.map_blocks(pick, dtype=dtype, chunks=((1,), *data.chunks[1:]))
    meta = {k: v for k, v in probabilities.meta.items() if k not in ("band_names", "regions_class_order")}
    if meta.get("nodata") is not None:
        meta["nodata"] = nodata
    return probabilities.replace(data=labels, meta=meta)
