"""Label volumes in NIfTI: the storage dtype, the header fields, and the label table.

A label volume (an integer image with ``meta["class_names"]``) is saved as uint8 when
every id fits, else uint16 (:func:`label_dtype`; negative ids or ids above 65535 are an
error), with ``intent_code`` ``label`` and none of the intensity header's display fields
(:func:`mark_as_labels`). Its names and colours travel as a *label table*
(:func:`label_table`) written twice: in the header as a comment extension
(:func:`label_extension`, read back by :func:`read_label_table`), so the file describes
itself, and in a JSON sidecar beside it (:func:`sidecar_path`), for other tools.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask
import nibabel as nib
import numpy as np

from seamline.errors import InputError
from seamline.image import Image

__all__ = [
    "label_table",
    "sidecar_path",
    "read_label_table",
    "label_extension",
    "is_label_extension",
    "label_dtype",
    "mark_as_labels",
]

LABEL_TABLE_KEY = "seamline_label_table"
_COMMENT = 6  # NIFTI_ECODE_COMMENT: the extension code that carries the label table


def label_table(class_names: Mapping[int, str], colors: Mapping[int, Any] | None = None) -> dict[str, dict]:
    """The label table seamline writes with a label volume.

    Parameters
    ----------
    class_names : mapping of int to str
        Label id to name.
    colors : mapping of int to (r, g, b), optional
        Label id to colour.

    Returns
    -------
    dict
        ``{"<id>": {"name": ..., "color": [r, g, b]}}`` (``color`` only where given),
        ids in increasing order.
    """
    colors = colors or {}
    table = {}
    for key in sorted(class_names, key=int):
        entry: dict[str, Any] = {"name": str(class_names[key])}
        if key in colors:
            entry["color"] = [int(c) for c in colors[key]]
        table[str(int(key))] = entry
    return table


def sidecar_path(path: str | os.PathLike) -> Path:
    """Where the label table of a label volume is written: ``OUT.nii.gz`` -> ``OUT.labels.json``.

    Parameters
    ----------
    path : str or os.PathLike
        The NIfTI path.

    Returns
    -------
    pathlib.Path
    """
    path = Path(path)
    stem = path.name[: -len(".nii.gz")] if path.name.lower().endswith(".nii.gz") else path.stem
    return path.with_name(f"{stem}.labels.json")


def read_label_table(header: Any) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]] | None:
    """The names and colours of a header's label table extension, if it has one.

    Parameters
    ----------
    header : nibabel.Nifti1Header

    Returns
    -------
    (dict of int to str, dict of int to (r, g, b)) or None
        Names by label id, and colours for the ids the table gives one.
    """
    for extension in header.extensions:
        table = _table_of(extension)
        if table is not None:
            entries = table[LABEL_TABLE_KEY].items()
            names = {int(k): str(v["name"]) for k, v in entries}
            colors = {int(k): _rgb(v["color"]) for k, v in entries if v.get("color")}
            return names, colors
    return None


def _table_of(extension: Any) -> dict[str, Any] | None:
    """The JSON of a label table extension, or None for any other extension."""
    if extension.get_code() != _COMMENT:
        return None
    try:
        table = json.loads(extension.get_content().rstrip(b"\x00"))
    except (ValueError, UnicodeDecodeError):
        return None
    return table if isinstance(table, dict) and LABEL_TABLE_KEY in table else None


def is_label_extension(extension: Any) -> bool:
    """Whether a header extension is a label table (written by :func:`label_extension`).

    Parameters
    ----------
    extension : nibabel.nifti1.Nifti1Extension

    Returns
    -------
    bool
    """
    return _table_of(extension) is not None


def label_extension(table: Mapping[str, Any]) -> nib.nifti1.Nifti1Extension:
    """The header extension that carries *table* (from :func:`label_table`).

    Parameters
    ----------
    table : mapping
        A label table.

    Returns
    -------
    nibabel.nifti1.Nifti1Extension
        A comment extension holding ``{"seamline_label_table": table}`` as JSON.
    """
    return nib.nifti1.Nifti1Extension(_COMMENT, json.dumps({LABEL_TABLE_KEY: table}).encode())


def label_dtype(image: Image) -> np.dtype:
    """The smallest of uint8 and uint16 that holds every label id of *image*.

    A uint8 or uint16 image whose named ids fit keeps its dtype unread; otherwise the
    ids' minimum and maximum are computed in one pass over the data.

    Parameters
    ----------
    image : Image
        An integer label image; ``meta["class_names"]`` may name ids beyond those present.

    Returns
    -------
    numpy.dtype

    Raises
    ------
    InputError
        If an id is negative or above 65535.
    """
    names = image.meta.get("class_names") or {}
    named = [int(k) for k in names]
    top = max(named, default=0)
    if image.dtype in (np.uint8, np.uint16) and top <= np.iinfo(image.dtype).max:
        return image.dtype
    low, high = dask.compute(image.data.min(), image.data.max())
    low, top = int(low), max(top, int(high))
    path = image.meta.get("path")
    if low < 0:
        raise InputError(f"label ids must not be negative (found {low}); is this an intensity image?", path)
    if top > np.iinfo(np.uint16).max:
        raise InputError(f"label ids up to {top} do not fit in uint16", path)
    return np.dtype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)


def mark_as_labels(header: Any) -> None:
    """Make *header* a label volume's: intent ``label``, no intensity display fields.

    Parameters
    ----------
    header : nibabel.Nifti1Header
        Changed in place: ``intent_code`` label (1002), ``intent_name``, ``cal_min``,
        ``cal_max``, ``descrip`` and ``aux_file`` cleared.
    """
    header.set_intent("label")
    header["cal_min"], header["cal_max"] = 0, 0
    header["descrip"], header["aux_file"] = b"", b""


def _rgb(color: Any) -> tuple[int, int, int]:
    r, g, b = (int(c) for c in color[:3])
    return (r, g, b)
