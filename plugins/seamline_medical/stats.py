"""Organ statistics: one row per label of a label volume, in millilitres and millimetres.

:func:`organ_statistics` turns :func:`seamline.measure.measure` (voxel counts, centroids,
bounding boxes and mean intensity, reduced chunk by chunk) into the table a clinician
reads: the label's id and name, its voxel count, its volume in mL (voxels times the
voxel volume ``|det(affine[:3, :3])|`` mm³, divided by 1000), its centroid in world
millimetres (RAS), its bounding box in voxel indices, and the mean intensity of the
input volume under it. Names come from the label volume's own label table, or from a
JSON file (:func:`load_names`). :func:`write_statistics` saves the table as CSV or JSON.

Millilitres and millimetres need a volume in world millimetres (a NIfTI volume, whose
``meta["anchor"]`` is ``"center"``), and labels: a volume with negative values, or with
more than :data:`MAX_UNDECLARED_LABELS` distinct values and nothing that declares it a
label volume (names, or the NIfTI intent ``label``), is an intensity volume and refused.
"""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image, check_same_grid
from seamline.measure import measure

__all__ = [
    "organ_statistics",
    "load_names",
    "write_statistics",
    "measure_labels",
    "write_stats_output",
    "check_stats_output",
    "STATS_SUFFIXES",
    "MAX_UNDECLARED_LABELS",
]

STATS_SUFFIXES = (".csv", ".json")
#: Voxels per block that :func:`seamline.measure.measure` works on (it holds tens of bytes per voxel of a block).
MEASURE_VOXELS = 2**18
#: More distinct values than this, in a volume not declared a label volume, is an intensity volume.
MAX_UNDECLARED_LABELS = 1000


def load_names(path: str | os.PathLike, *, key: str | None = None, ids: Any = None) -> dict[int, str]:
    """Read label names from JSON: a flat ``{id: name}`` mapping or a file of such tables.

    Parameters
    ----------
    path : str or os.PathLike
        A JSON file: ``{"1": "spleen", ...}``, or ``{"total": {...}, "total_mr": {...}}``
        (keys starting with ``_`` are comments and ignored).
    key : str, optional
        Which table of a nested file to use.
    ids : iterable of int, optional
        The label ids present; with a nested file and no *key*, the one table that names
        them all is chosen.

    Returns
    -------
    dict of int to str

    Raises
    ------
    InputError
        If the file is not such JSON, *key* is missing, or the table cannot be chosen.
    """
    try:
        content = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read label names: {exc}", path) from exc
    if not isinstance(content, dict):
        raise InputError("label names must be a JSON object", path)
    content = {k: v for k, v in content.items() if not str(k).startswith("_")}
    tables = {k: v for k, v in content.items() if isinstance(v, dict)}
    if not tables:
        table = content
    elif key is not None:
        if key not in tables:
            raise InputError(f"has no table {key!r}; it has {', '.join(tables)}", path)
        table = tables[key]
    else:
        wanted = {int(i) for i in ids} - {0} if ids is not None else set()
        fitting = [k for k, t in tables.items() if wanted <= {int(i) for i in t}]
        if len(fitting) != 1:
            raise InputError(f"holds tables {', '.join(tables)}; choose one (--names-key)", path)
        table = tables[fitting[0]]
    try:
        return {int(k): str(v) for k, v in table.items()}
    except (TypeError, ValueError) as exc:
        raise InputError(f"label ids must be integers: {exc}", path) from exc


def _stats_suffix(path: str | os.PathLike) -> str:
    suffix = Path(path).suffix.lower()
    if suffix not in STATS_SUFFIXES:
        raise InputError(f"statistics are written as {' or '.join(STATS_SUFFIXES)}", path)
    return suffix


def check_stats_output(path: str | os.PathLike | None, image: Image) -> None:
    """Check, before any work, that statistics of *image* can be written to *path*.

    Parameters
    ----------
    path : str or os.PathLike or None
        The statistics file (``.csv`` or ``.json``); None checks *image* only.
    image : Image
        The (lazy, unread) volume whose labels are measured: the input of
        ``seamline predict``, or the label volume of ``seamline stats``.

    Raises
    ------
    InputError
        If the suffix is neither, or *image* is not a volume in world millimetres
        (``meta["anchor"] != "center"``, e.g. a raster), naming the file at fault.
    """
    if path is not None:
        _stats_suffix(path)
    if image.meta.get("anchor") != "center":
        raise InputError(
            "is not a volume in world millimetres (NIfTI); statistics in mL and mm need one", image.meta.get("path")
        )


def _check_labels(labels: Image, ids: pd.Index) -> None:
    """Refuse what is an intensity volume: negative ids, or too many undeclared ones."""
    path = labels.meta.get("path")
    if len(ids) and ids.min() < 0:
        raise InputError(f"has negative values (down to {ids.min()}): an intensity volume, not labels", path)
    header = labels.meta.get("nifti_header")
    declared = bool(labels.meta.get("class_names")) or (header is not None and header.get_intent()[0] == "label")
    if len(ids) > MAX_UNDECLARED_LABELS and not declared:
        raise InputError(
            f"has {len(ids)} distinct values and is not marked as labels (NIfTI intent 'label'): "
            "an intensity volume, not labels",
            path,
        )


def measure_labels(labels: Image, image: Image | None = None) -> pd.DataFrame:
    """:func:`seamline.measure.measure` on blocks of at most :data:`MEASURE_VOXELS` voxels.

    Splitting the reader's large slabs costs no extra reads and bounds the memory
    ``measure`` needs per block.

    Parameters
    ----------
    labels : Image
        An integer label image with one channel.
    image : Image, optional
        One channel of intensities on the same grid.

    Returns
    -------
    pandas.DataFrame
        As :func:`seamline.measure.measure`.
    """
    if max(int(np.prod(block)) for block in itertools.product(*labels.data.chunks)) > MEASURE_VOXELS:
        limit = MEASURE_VOXELS * labels.dtype.itemsize
        labels = labels.replace(data=labels.data.rechunk((1, *("auto",) * labels.ndim), block_size_limit=limit))
    return measure(labels, image)


def organ_statistics(
    labels: Image,
    image: Image | None = None,
    *,
    names: Mapping[int, str] | str | os.PathLike | None = None,
    names_key: str | None = None,
) -> pd.DataFrame:
    """One row per label: id, name, voxels, volume in mL, world centroid, bounding box, mean intensity.

    Parameters
    ----------
    labels : Image
        An integer label volume with one channel (0 is background).
    image : Image, optional
        The intensity volume on the same grid; adds ``mean_intensity`` (one column per
        channel, ``mean_intensity_<band>``, when it has several).
    names : mapping of int to str, or path, optional
        Label names, or a JSON file of them (see :func:`load_names`); by default
        ``labels.meta["class_names"]``. Unnamed labels get ``"label <id>"``.
    names_key : str, optional
        Which table of a *names* file holding several.

    Returns
    -------
    pandas.DataFrame
        Columns ``id``, ``name``, ``voxels``, ``volume_ml``, ``centroid_x_mm``,
        ``centroid_y_mm``, ``centroid_z_mm``, ``bbox_start_<axis>`` and
        ``bbox_stop_<axis>`` (voxel indices, stop exclusive) and the intensity columns;
        one row per label present, ascending ids.

    Raises
    ------
    InputError
        If the labels are not integers, look like intensities (negative values, or
        more than :data:`MAX_UNDECLARED_LABELS` distinct values with neither names nor
        a label intent), or *image* is on another grid.
    """
    if not np.issubdtype(labels.dtype, np.integer):
        raise InputError(f"labels must be integers, got {labels.dtype}", labels.meta.get("path"))
    if image is not None:
        check_same_grid(labels, image, ("labels", "image"))
    table = measure_labels(labels, image[0] if image is not None else None)
    _check_labels(labels, table.index)
    if isinstance(names, str | os.PathLike):
        names = load_names(names, key=names_key, ids=table.index)
    names = names if names is not None else labels.meta.get("class_names") or {}
    n = labels.ndim
    voxel_ml = abs(float(np.linalg.det(labels.affine[:n, :n]))) / 1000.0
    out = pd.DataFrame(
        {
            "id": table.index.to_numpy(),
            "name": [names.get(int(i), f"label {i}") for i in table.index],
            "voxels": table["voxels"].to_numpy(),
            "volume_ml": table["voxels"].to_numpy() * voxel_ml,
        }
    )
    for name in "xyz"[:n]:
        out[f"centroid_{name}_mm"] = table[f"centroid_{name}"].to_numpy()
    for axis in range(n):
        out[f"bbox_start_{axis}"] = table[f"bbox_start_{axis}"].to_numpy()
        out[f"bbox_stop_{axis}"] = table[f"bbox_stop_{axis}"].to_numpy()
    if image is not None:
        bands = image.meta.get("band_names") or list(range(image.channels))
        for channel in range(image.channels):
            column = "mean_intensity" if image.channels == 1 else f"mean_intensity_{bands[channel]}"
            means = (
                table["intensity_mean"] if channel == 0 else measure_labels(labels, image[channel])["intensity_mean"]
            )
            out[column] = means.to_numpy()
    return out


def write_statistics(table: pd.DataFrame, path: str | os.PathLike, *, overwrite: bool = False) -> str:
    """Write a statistics table as CSV or JSON (a list of records), atomically.

    Parameters
    ----------
    table : pandas.DataFrame
        From :func:`organ_statistics`.
    path : str or os.PathLike
        ``.csv`` or ``.json``.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        If the suffix is neither, or the file exists and *overwrite* is false.
    """
    suffix = _stats_suffix(path)
    with atomic_output(path, overwrite=overwrite) as tmp:
        if suffix == ".csv":
            table.to_csv(tmp, index=False)
        else:
            tmp.write_text(table.to_json(orient="records", indent=1))
    return os.fspath(path)


def write_stats_output(
    labels: Image, path: str | os.PathLike, *, image: Image | None = None, overwrite: bool = False
) -> str:
    """The ``stats`` output of ``seamline predict``: the statistics of predicted labels.

    Parameters
    ----------
    labels : Image
        Predicted labels on the input's grid (``class_names`` in meta name the rows).
    path : str or os.PathLike
        ``.csv`` or ``.json``.
    image : Image, optional
        The input volume, for the mean intensity per label.
    overwrite : bool
        Replace an existing file.

    Returns
    -------
    str
        The path written.
    """
    return write_statistics(organ_statistics(labels, image), path, overwrite=overwrite)
