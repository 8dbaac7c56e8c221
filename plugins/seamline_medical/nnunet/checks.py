"""The values of nnU-Net's pipeline checked one by one: for plans.json and for imported cards alike.

A model folder's plans.json and dataset.json, and the ``pipeline`` of a card that
``seamline import-model`` wrote from them, come from elsewhere; nothing in them is
trusted to be the type it should be. Each function here checks one kind of value (a
vector of spacings, a permutation of axes, a normalization scheme, resampling numbers,
regions and the order they are painted in, mirroring axes) and returns it in its plain
form, or raises a :class:`~seamline.errors.ModelError` in one line naming the file and
the field. :mod:`.plans` runs them on what it reads from the plans, and
:func:`check_pipeline` runs the same ones on a card's ``pipeline``, so that an imported
bundle is refused when it loads, not halfway through a prediction.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from seamline.bundle_files import MAX_SIZE
from seamline.errors import ModelError, first_line

__all__ = [
    "MALFORMED",
    "NORMALIZATIONS",
    "READERS",
    "CT_KEYS",
    "check_pipeline",
    "malformed",
    "label_value",
    "mirror_axes",
    "normalization_scheme",
    "numbers_of",
    "permutation",
    "regions",
    "resampling",
    "vector",
]

#: What Python raises on JSON of the wrong shape: turned into one-line errors naming the file.
MALFORMED = (TypeError, ValueError, AttributeError, KeyError, IndexError, RuntimeError, RecursionError, OverflowError)
#: Normalization schemes reproduced (nnunetv2's default_normalization_schemes).
NORMALIZATIONS = (
    "CTNormalization",
    "ZScoreNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
    "NoNormalization",
)
#: Image readers whose axis order seamline reproduces; True where the reader reorients to RAS first.
READERS = {"SimpleITKIO": False, "NibabelIO": False, "NibabelIOWithReorient": True}
#: CTNormalization's numbers: the dataset's foreground mean, std and percentiles.
CT_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")
_PIPELINE_KEYS = (
    "reorient",
    "transpose_forward",
    "spacing",
    "tile_step_size",
    "normalization",
    "resampling",
    "regions",
)

Source = str | os.PathLike | None


def _whole(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


@contextlib.contextmanager
def malformed(source: Source) -> Iterator[None]:
    """Turn what Python raises on JSON of an unexpected shape (:data:`MALFORMED`) into a ModelError naming *source*.

    The checks here catch what they know; this catches the rest, so that a value of a
    type nobody foresaw is still one line naming the file, never a traceback.
    """
    try:
        yield
    except ModelError as exc:
        if exc.path is not None:
            raise
        raise ModelError(exc.message, source) from exc
    except MALFORMED as exc:
        raise ModelError(f"is not what nnU-Net writes ({type(exc).__name__}: {first_line(exc)})", source) from exc


def vector(value: Any, where: str, source: Source, *, whole: bool = False) -> list[Any]:
    """Three positive numbers (whole ones with *whole*): a spacing or a patch size.

    Parameters
    ----------
    value : object
    where : str
        The field, for the message.
    source : path, optional
        The file, for the message.
    whole : bool
        Whole numbers (a patch size) rather than real ones (a spacing).

    Returns
    -------
    list of float or int
    """
    kind = _whole if whole else _real
    if not isinstance(value, list) or len(value) != 3 or not all(kind(v) and v > 0 for v in value):
        what = "whole" if whole else "finite"
        raise ModelError(
            f"{where} {value!r} is not 3 positive {what} numbers (seamline runs 3D configurations)", source
        )
    return [int(v) if whole else float(v) for v in value]


def permutation(value: Any, where: str, source: Source) -> list[int]:
    """A permutation of the axes 0, 1, 2 (``transpose_forward``)."""
    if not isinstance(value, list) or not all(_whole(v) for v in value) or sorted(value) != [0, 1, 2]:
        raise ModelError(f"{where} {value!r} is not a permutation of 0, 1, 2", source)
    return [int(v) for v in value]


def normalization_scheme(value: Any, where: str, source: Source) -> str:
    """One of :data:`NORMALIZATIONS`."""
    if not isinstance(value, str) or value not in NORMALIZATIONS:
        raise ModelError(f"{where} {value!r} is not one of {', '.join(NORMALIZATIONS)}", source)
    return value


def numbers_of(entry: Any, keys: Sequence[str], where: str, source: Source) -> dict[str, float]:
    """The finite numbers *entry* holds under *keys* (CTNormalization's statistics)."""
    if not isinstance(entry, Mapping) or not all(_real(entry.get(key)) for key in keys):
        raise ModelError(f"{where} needs finite numbers {', '.join(keys)}", source)
    return {key: float(entry[key]) for key in keys}


def resampling(step: Any, where: str, source: Source) -> dict[str, Any] | None:
    """nnU-Net's resampling numbers: spline order 0-5, order_z 0 or 1, force_separate_z, threshold.

    Parameters
    ----------
    step : mapping or None
        ``{"order", "order_z", "force_separate_z", "threshold"}``; None for no resampling.
    where : str
    source : path, optional

    Returns
    -------
    dict or None
    """
    if step is None:
        return None
    if not isinstance(step, Mapping):
        raise ModelError(f"{where} is not a JSON object", source)
    values: list[Any] = [step.get(k) for k in ("order", "order_z", "force_separate_z", "threshold")]
    order, order_z, force, threshold = values
    if not _whole(order) or not 0 <= order <= 5:
        raise ModelError(f"{where}: order {order!r} is not a spline order from 0 to 5", source)
    if order_z not in (0, 1) or isinstance(order_z, bool):
        raise ModelError(f"{where}: order_z {order_z!r} is not 0 or 1", source)
    if force is not None and not isinstance(force, bool):
        raise ModelError(f"{where}: force_separate_z {force!r} is not true, false or null", source)
    if not _real(threshold) or threshold <= 0:
        raise ModelError(f"{where}: the anisotropy threshold {threshold!r} is not a positive number", source)
    return {"order": int(order), "order_z": int(order_z), "force_separate_z": force, "threshold": float(threshold)}


def label_value(value: Any, where: str, source: Source) -> int:
    """A label value: a whole number from 0 to 65535 (JSON may write it as 1.0)."""
    if not (_whole(value) or (_real(value) and float(value).is_integer())) or not 0 <= value <= MAX_SIZE - 1:
        raise ModelError(f"{where} {value!r} is not a label value (a whole number from 0 to {MAX_SIZE - 1})", source)
    return int(value)


def regions(
    found: Any, order: Any, where: str, source: Source, *, classes: int | None = None
) -> tuple[list[list[int]] | None, list[int] | None]:
    """Region-based labels: each region's label values, and the value each is painted as.

    Parameters
    ----------
    found : list of list of int, or None
        The label values each network head stands for; None for plain labels.
    order : list of int, or None
        ``regions_class_order``: the value each region is painted as, in painting order.
    where : str
    source : path, optional
    classes : int, optional
        How many classes the card names: painted values must be below it.

    Returns
    -------
    (list of list of int, list of int) or (None, None)
    """
    if found is None and order is None:
        return None, None
    if not isinstance(found, list) or not isinstance(order, list) or not found or len(found) != len(order):
        raise ModelError(f"{where}: regions_class_order must list one label value for each region", source)
    values = [
        [label_value(v, f"{where} regions[{i}]", source) for v in (r if isinstance(r, list) else [None])]
        for i, r in enumerate(found)
    ]
    painted = [label_value(v, f"{where} regions_class_order[{i}]", source) for i, v in enumerate(order)]
    if classes is not None and max(painted) >= classes:
        raise ModelError(f"{where}: regions_class_order paints {max(painted)}, but there are {classes} classes", source)
    return values, painted


def mirror_axes(value: Any, where: str, source: Source) -> list[int]:
    """The spatial axes nnU-Net may mirror: distinct whole numbers from 0 to 2 (none for None)."""
    if value is None:
        return []
    if not isinstance(value, list | tuple) or not all(_whole(a) and 0 <= a <= 2 for a in value):
        raise ModelError(f"{where} {value!r} is not a list of spatial axes 0, 1, 2", source)
    if len(set(value)) != len(value):
        raise ModelError(f"{where} {value!r} names an axis twice", source)
    return [int(a) for a in value]


def check_pipeline(pipeline: Any, *, channels: int, heads: int, classes: int, source: Source = None) -> dict[str, Any]:
    """A card's nnU-Net ``pipeline``, every value checked as :mod:`.plans` checks the plans'.

    Parameters
    ----------
    pipeline : mapping
        The card's ``pipeline``.
    channels : int
        The card's input channels: one normalization step each.
    heads : int
        The network's output channels: one region each when regions are set.
    classes : int
        The card's classes: painted region values must be below it.
    source : path, optional
        The bundle, named in errors.

    Returns
    -------
    dict
        The pipeline, with ``reader`` set to ``"SimpleITKIO"`` (nnU-Net's default reader)
        where a card written before seamline recorded it lacks it.

    Raises
    ------
    ModelError
        If a step is missing or a value is not what nnU-Net's pipeline takes.
    """
    if not isinstance(pipeline, Mapping):
        raise ModelError("the card's pipeline is not a JSON object", source)
    missing = [key for key in _PIPELINE_KEYS if key not in pipeline]
    if missing:
        raise ModelError(f"the card's nnunet pipeline lacks {', '.join(missing)}", source)
    where = "pipeline"
    reader = pipeline.get("reader", "SimpleITKIO")
    if not isinstance(reader, str) or reader not in READERS:
        raise ModelError(f"{where}.reader {reader!r} is not one of {', '.join(READERS)}", source)
    if not isinstance(pipeline["reorient"], bool):
        raise ModelError(f"{where}.reorient {pipeline['reorient']!r} is not true or false", source)
    step = pipeline["tile_step_size"]
    if not _real(step) or not 0 < step <= 1:
        raise ModelError(f"{where}.tile_step_size {step!r} is not a number in (0, 1]", source)
    steps = pipeline["normalization"]
    if not isinstance(steps, list) or len(steps) != channels:
        raise ModelError(f"{where}.normalization needs one step for each of the {channels} channels", source)
    normalization = []
    for channel, entry in enumerate(steps):
        at = f"{where}.normalization[{channel}]"
        scheme = normalization_scheme(
            entry.get("scheme") if isinstance(entry, Mapping) else None, f"{at}.scheme", source
        )
        if not isinstance(entry.get("use_mask"), bool):
            raise ModelError(f"{at}.use_mask {entry.get('use_mask')!r} is not true or false", source)
        numbers = numbers_of(entry, CT_KEYS, at, source) if scheme == "CTNormalization" else {}
        normalization.append({"scheme": scheme, "use_mask": entry["use_mask"], **numbers})
    stages = pipeline["resampling"]
    if not isinstance(stages, Mapping) or set(stages) != {"data", "probabilities"}:
        raise ModelError(f"{where}.resampling needs data and probabilities", source)
    found, order = regions(pipeline["regions"], pipeline.get("regions_class_order"), where, source, classes=classes)
    if found is not None and len(found) != heads:
        raise ModelError(f"{where}: {len(found)} regions for a network with {heads} outputs", source)
    return {
        **pipeline,
        "reader": reader,
        "transpose_forward": permutation(pipeline["transpose_forward"], f"{where}.transpose_forward", source),
        "spacing": vector(pipeline["spacing"], f"{where}.spacing", source),
        "patch_size": vector(pipeline.get("patch_size"), f"{where}.patch_size", source, whole=True),
        "normalization": normalization,
        "resampling": {k: resampling(v, f"{where}.resampling.{k}", source) for k, v in stages.items()},
        "regions": found,
        "regions_class_order": order,
    }
