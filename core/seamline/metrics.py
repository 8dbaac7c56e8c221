"""Segmentation metrics that scale to huge images: everything from summed confusion matrices.

Each chunk of a prediction and its ground truth is reduced to a small ``K x K`` confusion
matrix (rows: true class, columns: predicted class); the matrices of all chunks add up to
the matrix of the whole image, and every overlap metric follows from it exactly: per-class
IoU, Dice, precision, recall and F1, pixel accuracy and mean class accuracy. Surface
metrics (boundary F1, HD95, surface Dice) come from :mod:`seamline.surface`, instance
metrics (PQ, object F1) from :mod:`seamline.instances`.

:func:`evaluate` gathers them into a :class:`Report`: a per-class pandas table and the
summary figures, printable and JSON-ready.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pandas as pd

from ._chunks import map_chunks, matched_pair
from .errors import InputError
from .image import Image
from .instances import instance_metrics
from .surface import boundary_f1, surface_distance_table

__all__ = ["Report", "confusion_matrix", "evaluate", "scores_from_confusion"]


def _chunk_confusion(pred: np.ndarray, true: np.ndarray, classes: int | None, ignore: int | None) -> np.ndarray:
    """Confusion matrix of one chunk; its size is the chunk's largest label + 1 if unknown."""
    pred, true = pred.ravel().astype(np.int64), true.ravel().astype(np.int64)
    if ignore is not None:
        keep = true != ignore
        pred, true = pred[keep], true[keep]
    if pred.size and min(pred.min(), true.min()) < 0:
        raise InputError("labels must not be negative")
    size = classes if classes is not None else int(max(pred.max(initial=0), true.max(initial=0))) + 1
    if pred.size and max(pred.max(), true.max()) >= size:
        raise InputError(f"a label is {max(pred.max(), true.max())}, outside 0..{size - 1} for {size} classes")
    return np.bincount(true * size + pred, minlength=size * size).reshape(size, size)


def confusion_matrix(
    prediction: Any, truth: Any, *, num_classes: int | None = None, ignore_index: int | None = None
) -> np.ndarray:
    """Count voxels by (true class, predicted class), chunk by chunk.

    Parameters
    ----------
    prediction, truth : Image, numpy.ndarray or dask.array.Array
        Integer labels on one grid.
    num_classes : int, optional
        Number of classes; by default the largest label + 1.
    ignore_index : int, optional
        A truth value whose voxels are not counted (e.g. 255 for "unlabelled").

    Returns
    -------
    numpy.ndarray
        ``(K, K)`` int64, rows true class and columns predicted class.

    Raises
    ------
    InputError
        If the grids differ or a label is negative or not below *num_classes*.
    """
    return _summed_confusion(*matched_pair(prediction, truth), num_classes, ignore_index)


def _summed_confusion(pred: da.Array, true: da.Array, num_classes: int | None, ignore_index: int | None) -> np.ndarray:
    """The confusion matrices of all chunks, added up."""
    parts = map_chunks(_chunk_confusion, pred, true, classes=num_classes, ignore=ignore_index)
    size = max(part.shape[0] for part in parts)
    total = np.zeros((size, size), dtype=np.int64)
    for part in parts:
        total[: part.shape[0], : part.shape[1]] += part
    return total


def _ratio(numerator: np.ndarray, denominator: np.ndarray) -> np.ndarray:
    """numerator / denominator, NaN where the denominator is 0."""
    out = np.full(np.shape(numerator), np.nan)
    return np.divide(numerator, denominator, out=out, where=denominator > 0)


def scores_from_confusion(confusion: np.ndarray) -> pd.DataFrame:
    """Per-class overlap scores from a confusion matrix.

    Parameters
    ----------
    confusion : numpy.ndarray
        ``(K, K)``, rows true class and columns predicted class.

    Returns
    -------
    pandas.DataFrame
        Indexed by class id, columns ``iou``, ``dice``, ``precision``, ``recall``, ``f1``
        and ``support`` (true voxels). A score whose denominator is 0 is NaN.
    """
    tp = np.diag(confusion).astype(float)
    fp = confusion.sum(axis=0) - tp
    fn = confusion.sum(axis=1) - tp
    precision, recall = _ratio(tp, tp + fp), _ratio(tp, tp + fn)
    table = pd.DataFrame(
        {
            "iou": _ratio(tp, tp + fp + fn),
            "dice": _ratio(2 * tp, 2 * tp + fp + fn),
            "precision": precision,
            "recall": recall,
            "f1": _ratio(2 * precision * recall, precision + recall),
            "support": confusion.sum(axis=1),
        }
    )
    table.index.name = "class"
    return table


@dataclasses.dataclass
class Report:
    """The result of :func:`evaluate`.

    Attributes
    ----------
    per_class : pandas.DataFrame
        One row per class (index: class id); columns ``name`` (when known), ``iou``,
        ``dice``, ``precision``, ``recall``, ``f1``, ``support`` (true voxels),
        ``boundary_f1`` and, when a spacing was given, ``hd95`` and ``surface_dice``.
    confusion : numpy.ndarray
        The ``K x K`` confusion matrix (rows true, columns predicted).
    pixel_accuracy : float
        Correct voxels over all counted voxels.
    mean_accuracy : float
        Mean recall over the classes present in the truth.
    mean_iou, mean_dice : float
        Means over the classes present in the prediction or the truth (NaN rows skipped).
    mean_boundary_f1, mean_hd95, mean_surface_dice : float or None
        Likewise, or None when not computed.
    objects : dict or None
        Object scores of connected components (``pq``, ``sq``, ``rq``, ``f1``, ``tp``,
        ``fp``, ``fn``, ...; see :func:`seamline.instances.instance_metrics`) when asked.
    """

    per_class: pd.DataFrame
    confusion: np.ndarray
    pixel_accuracy: float
    mean_accuracy: float
    mean_iou: float
    mean_dice: float
    mean_boundary_f1: float | None = None
    mean_hd95: float | None = None
    mean_surface_dice: float | None = None
    objects: dict[str, float] | None = None

    @property
    def summary(self) -> dict[str, float]:
        """The summary figures that were computed, by name."""
        names = ("pixel_accuracy", "mean_accuracy", "mean_iou", "mean_dice", "mean_boundary_f1", "mean_hd95",
                 "mean_surface_dice")  # fmt: skip
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}

    def to_dict(self) -> dict[str, Any]:
        """Return the report as plain JSON-ready data (NaN and inf become None)."""

        def clean(value: Any) -> Any:
            if isinstance(value, (float, np.floating)):
                return float(value) if math.isfinite(value) else None
            return value.item() if isinstance(value, np.generic) else value

        rows = [
            {"class": int(cls), **{k: clean(v) for k, v in row.items()}}
            for cls, row in self.per_class.to_dict("index").items()
        ]
        return {
            "summary": {k: clean(v) for k, v in self.summary.items()},
            "per_class": rows,
            "confusion_matrix": self.confusion.tolist(),
            **({"objects": {k: clean(v) for k, v in self.objects.items()}} if self.objects is not None else {}),
        }

    def __str__(self) -> str:
        table = self.per_class.to_string(float_format=lambda v: f"{v:.4f}", na_rep="-")
        figures = {**self.summary, **{f"objects_{k}": v for k, v in (self.objects or {}).items()}}
        summary = "\n".join(
            f"{key:>18}: {value}" if isinstance(value, int) else f"{key:>18}: {value:.4f}"
            for key, value in figures.items()
        )
        return f"{table}\n\n{summary}"


def _class_names(class_names: Any, truth: Any, classes: int) -> list[str] | None:
    if class_names is None and isinstance(truth, Image):
        class_names = truth.meta.get("class_names")
    if class_names is None:
        return None
    if isinstance(class_names, Mapping):
        return [str(class_names.get(i, class_names.get(str(i), ""))) for i in range(classes)]
    names = [str(name) for name in class_names]
    if len(names) != classes:
        raise InputError(f"{len(names)} class names given for {classes} classes")
    return names


def _linear(spacing: Any, prediction: Any, ndim: int) -> np.ndarray | None:
    """The voxel-to-world linear map for surface metrics, or None to skip them."""
    if spacing is None or spacing is False:
        return None
    if spacing is True:
        if not isinstance(prediction, Image):
            raise InputError("spacing=True needs an Image to take the spacing from")
        return prediction.affine[:ndim, :ndim]
    spacing = np.atleast_1d(np.asarray(spacing, dtype=float))
    if spacing.size != ndim or not np.all(spacing > 0):
        raise InputError(f"spacing needs {ndim} positive values, got {spacing.tolist()}")
    return np.diag(spacing)


def evaluate(
    prediction: Any,
    truth: Any,
    *,
    num_classes: int | None = None,
    spacing: Sequence[float] | bool | None = None,
    class_names: Mapping[int, str] | Sequence[str] | None = None,
    ignore_index: int | None = None,
    tolerance: float = 1.0,
    boundary_tolerance: float | None = 2.0,
    objects: bool = False,
    connectivity: int | None = None,
) -> Report:
    """Evaluate predicted labels against the truth, chunk by chunk.

    Parameters
    ----------
    prediction, truth : Image, numpy.ndarray or dask.array.Array
        Integer labels ``0..K-1`` on one grid (one-channel Images or spatial arrays).
    num_classes : int, optional
        K; by default the largest label + 1.
    spacing : sequence of float or bool, optional
        Voxel size per spatial axis in world units (mm); adds ``hd95`` and
        ``surface_dice``. True takes it from the prediction Image's affine (oblique
        affines included).
    class_names : mapping or sequence of str, optional
        Names per class id; by default the truth Image's ``meta["class_names"]``.
    ignore_index : int, optional
        A truth value whose voxels the overlap scores skip (surface metrics see them as
        one more region, not of any class).
    tolerance : float
        Surface Dice tolerance in world units.
    boundary_tolerance : float, optional
        Boundary F1 tolerance in voxels; None skips boundary F1.
    objects : bool
        Also score objects: the connected components of every non-zero class, matched
        at IoU > 0.5 whatever their class (PQ, SQ, RQ, object F1), in
        :attr:`Report.objects`.
    connectivity : int, optional
        Neighbour count for *objects* (4 or 8 in 2D, 6, 18 or 26 in 3D).

    Returns
    -------
    Report
        Per-class table and summary figures.

    Raises
    ------
    InputError
        If the grids differ, labels are out of range, or an option is invalid.

    Notes
    -----
    Each family of metrics reads the labels again (confusion, boundaries, surfaces,
    objects); a lazy prediction is best saved and reopened (or persisted) first.

    Examples
    --------
    >>> import numpy as np
    >>> report = evaluate(np.array([[0, 1], [1, 1]]), np.array([[0, 1], [0, 1]]), boundary_tolerance=None)
    >>> round(report.mean_iou, 4), report.pixel_accuracy
    (0.5833, 0.75)
    """
    if tolerance < 0 or (boundary_tolerance is not None and boundary_tolerance < 0):
        raise InputError(f"tolerances must be >= 0, got {tolerance} and {boundary_tolerance}")
    pred, true = matched_pair(prediction, truth)
    linear = _linear(spacing, prediction, pred.ndim)
    confusion = _summed_confusion(pred, true, num_classes, ignore_index)
    classes = confusion.shape[0]
    table = scores_from_confusion(confusion)
    if boundary_tolerance is not None:
        table["boundary_f1"] = boundary_f1(pred, true, classes=classes, tolerance=boundary_tolerance)
    if linear is not None:
        table = table.join(
            surface_distance_table(pred, true, classes=classes, linear=linear, tolerance=tolerance).set_axis(
                table.index
            )
        )
    names = _class_names(class_names, truth, classes)
    if names is not None:
        table.insert(0, "name", names)
    total = confusion.sum()
    means = {f"mean_{c}": _mean(table[c]) for c in ("iou", "dice", "boundary_f1", "hd95", "surface_dice") if c in table}
    return Report(
        per_class=table,
        confusion=confusion,
        pixel_accuracy=float(np.trace(confusion) / total) if total else np.nan,
        mean_accuracy=_mean(table["recall"]),
        **means,
        objects=instance_metrics(pred, true, components=True, connectivity=connectivity) if objects else None,
    )


def _mean(column: pd.Series) -> float:
    """Mean of the non-NaN values, NaN when there are none."""
    values = column.to_numpy(dtype=float)
    values = values[~np.isnan(values)]
    return float(values.mean()) if values.size else np.nan
