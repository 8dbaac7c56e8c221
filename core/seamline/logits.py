"""From a network's outputs to probabilities and labels, the same way everywhere.

A segmentation network returns one score per class and pixel. With several classes the
probabilities are the softmax over classes, and the label is the class with the highest
score (scores and probabilities agree on it). With one class the probability is the
sigmoid of the score, and the label is 1 where that probability exceeds 0.5, that is,
where the score is positive. The engine and ``seamline predict --probabilities`` both go
through these functions, so labels never depend on the road taken.
"""

from __future__ import annotations

import numpy as np

__all__ = ["label_dtype", "probabilities", "most_likely"]


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
