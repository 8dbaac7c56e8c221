"""Instance metrics: panoptic quality and object F1, from joint label-pair counts.

Two instance maps (0 is background, every other value one object) are compared through
the number of voxels each (predicted id, true id) pair shares. Each chunk counts its own
pairs; the counts add up over chunks, so the whole image is never in memory. From them
come every object's size and every overlapping pair's IoU. A predicted and a true object
match when their IoU exceeds 0.5, which makes the matching unique (two objects cannot
both overlap a third by more than half of their union). Then, as in Kirillov et al.'s
panoptic segmentation:

- ``RQ = TP / (TP + FP / 2 + FN / 2)`` (recognition quality, the object F1),
- ``SQ`` = the mean IoU of the matched pairs (segmentation quality),
- ``PQ = SQ x RQ``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from ._chunks import map_chunks, matched_pair
from .labels import label

__all__ = ["instance_metrics"]


def _chunk_pairs(pred: np.ndarray, true: np.ndarray) -> pd.Series:
    """Voxel counts per (predicted id, true id) pair in one chunk."""
    frame = pd.DataFrame({"pred": pred.ravel().astype(np.int64), "true": true.ravel().astype(np.int64)})
    return frame.value_counts()


def instance_metrics(prediction: Any, truth: Any, *, components: bool = False, connectivity: int | None = None) -> dict:
    """Panoptic quality and object F1 of predicted instances against true instances.

    Parameters
    ----------
    prediction, truth : Image, numpy.ndarray or dask.array.Array
        Instance maps on one grid: 0 is background, every other value one object.
    components : bool
        Treat the inputs as masks (or class maps) and make each connected component an
        object first, with :func:`seamline.labels.label` (``by_value=True``).
    connectivity : int, optional
        Neighbour count for *components* (4 or 8 in 2D, 6, 18 or 26 in 3D).

    Returns
    -------
    dict
        ``pq``, ``sq``, ``rq``, ``precision``, ``recall``, ``f1`` (object F1, equal to
        ``rq``), and the counts ``tp``, ``fp``, ``fn``. Scores are NaN when neither map
        has an object.

    Raises
    ------
    InputError
        If the grids differ.
    """
    pred, true = matched_pair(prediction, truth)
    if components:
        pred, true = (
            label(pred, connectivity=connectivity, by_value=True)[0],
            label(true, connectivity=connectivity, by_value=True)[0],
        )
    parts = map_chunks(_chunk_pairs, pred, true)
    joint = pd.concat(parts).groupby(level=[0, 1]).sum()
    pred_size = joint.groupby(level=0).sum().drop(0, errors="ignore")
    true_size = joint.groupby(level=1).sum().drop(0, errors="ignore")
    overlaps = joint[(joint.index.get_level_values(0) > 0) & (joint.index.get_level_values(1) > 0)]
    p_ids, t_ids = overlaps.index.get_level_values(0), overlaps.index.get_level_values(1)
    union = pred_size.loc[p_ids].to_numpy() + true_size.loc[t_ids].to_numpy() - overlaps.to_numpy()
    iou = overlaps.to_numpy() / union
    matched = iou[iou > 0.5]
    tp = len(matched)
    fp, fn = len(pred_size) - tp, len(true_size) - tp
    return _scores(tp, fp, fn, float(matched.sum()))


def _scores(tp: int, fp: int, fn: int, iou_sum: float) -> dict:
    """PQ, SQ, RQ and object precision/recall/F1 from the match counts."""

    def ratio(a: float, b: float) -> float:
        return a / b if b else float("nan")

    rq = ratio(tp, tp + 0.5 * fp + 0.5 * fn)
    sq = ratio(iou_sum, tp) if tp else (0.0 if fp + fn else float("nan"))
    return {
        "pq": sq * rq,
        "sq": sq,
        "rq": rq,
        "precision": ratio(tp, tp + fp),
        "recall": ratio(tp, tp + fn),
        "f1": rq,
        "tp": tp,
        "fp": fp,
        "fn": fn,
    }
