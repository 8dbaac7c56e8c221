"""NIfTI in and out: lazy reading, streaming writing, the header kept whole.

Reading (:func:`open_nifti`) builds a dask array over the file without reading it: an
uncompressed ``.nii`` is memory-mapped (:class:`VoxelFile`, which pickles as a path, so
dask.distributed workers map the file themselves), a ``.nii.gz`` is sliced through
nibabel's array proxy, one slab of whole ``(i, j)`` planes per chunk (the order the
voxels lie on disk).
The voxel axes stay nibabel's ``(i, j, k)``; a 4D file's fourth axis becomes the channel
axis. The affine is ``img.affine``, the sform or qform that nibabel chooses, and the
header travels in ``meta`` so that :func:`save_nifti` can write it back.

Writing (:func:`save_nifti`) streams the dask blocks into a memory-mapped ``.nii`` and,
for ``.nii.gz``, compresses that file in one pass; at most one uncompressed copy of the
volume exists on disk, never one in memory. When the image still sits on its source
grid, the header's sform, qform, their codes and the units are copied verbatim, so the
saved file has exactly the source geometry. Label volumes (integer images with
``meta["class_names"]``) are saved as uint8 or uint16 with ``intent_code`` ``label``
and a label table (see :func:`label_table`) in a JSON header extension and a JSON
sidecar beside the file.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import dask.array as da
import nibabel as nib
import numpy as np

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image

__all__ = ["can_open", "can_save", "open_nifti", "save_nifti", "label_table", "sidecar_path", "VoxelFile", "SUFFIXES"]

SUFFIXES = (".nii", ".nii.gz")
LABEL_TABLE_KEY = "seamline_label_table"
CHUNK_BYTES = 64 * 2**20
_COMMENT = 6  # NIFTI_ECODE_COMMENT: the extension code that carries the label table


def _is_nifti_path(path: str | os.PathLike) -> bool:
    name = os.fspath(path).lower()
    return name.endswith(SUFFIXES)


def can_open(path: str | os.PathLike) -> bool:
    """Whether *path* looks like a NIfTI file (by its suffix).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return _is_nifti_path(path) and Path(path).is_file()


def can_save(path: str | os.PathLike) -> bool:
    """Whether *path* asks for NIfTI (``.nii`` or ``.nii.gz``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return _is_nifti_path(path)


def _slab_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Whole (i, j) planes, as many as fit in CHUNK_BYTES, one channel at a time."""
    plane = shape[0] * shape[1] * itemsize
    depth = int(max(1, min(shape[2], CHUNK_BYTES // max(plane, 1))))
    return (shape[0], shape[1], depth) + (1,) * (len(shape) - 3)


class VoxelFile:
    """The voxel block of an uncompressed ``.nii``, memory-mapped block by block.

    A dask source (``__getitem__``) and store target (``__setitem__``) that pickles as a
    path, not as voxels: every access maps the file afresh, so workers in other
    processes (dask.distributed on one file system) read and write in place too.

    Parameters
    ----------
    path : str or os.PathLike
        The ``.nii`` file.
    dtype : numpy.dtype
        The on-disk dtype (with its byte order).
    offset : int
        Where the voxels start (``vox_offset``).
    shape : tuple of int
        The file's array shape, Fortran order on disk.
    """

    def __init__(self, path: str | os.PathLike, dtype: np.dtype, offset: int, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.offset, self.shape = os.fspath(path), np.dtype(dtype), int(offset), shape
        self.ndim = len(shape)

    def _map(self, mode: str) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode, offset=self.offset, shape=self.shape, order="F")

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._map("r")[key])

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        target = self._map("r+")
        target[key] = value
        target.flush()


class _ScaledProxy:
    """nibabel's array proxy, announcing the dtype its (scaled) slices really have."""

    def __init__(self, proxy: Any, dtype: np.dtype) -> None:
        self.proxy, self.dtype = proxy, dtype
        self.shape, self.ndim = tuple(proxy.shape), len(proxy.shape)

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self.proxy[key], dtype=self.dtype)


def _voxels(img: Any, path: str) -> da.Array:
    """The file's voxels as a lazy array shaped like the file, (i, j, k[, t])."""
    shape = tuple(int(s) for s in img.shape)
    proxy = img.dataobj
    dtype = np.asarray(proxy[(slice(0, 1),) * len(shape)]).dtype
    chunks = _slab_chunks(shape, dtype.itemsize)
    if path.lower().endswith(".nii"):
        voxels = da.from_array(VoxelFile(path, proxy.dtype, proxy.offset, shape), chunks=chunks)
        slope, inter = float(proxy.slope), float(proxy.inter)
        if (slope, inter) != (1.0, 0.0):
            voxels = (voxels.astype(dtype) * dtype.type(slope) + dtype.type(inter)).astype(dtype)
        return voxels
    return da.from_array(_ScaledProxy(proxy, dtype), chunks=chunks)


def _label_names(header: Any) -> dict[int, str] | None:
    for extension in header.extensions:
        if extension.get_code() != _COMMENT:
            continue
        try:
            table = json.loads(extension.get_content().rstrip(b"\x00"))
        except (ValueError, UnicodeDecodeError):
            continue
        if isinstance(table, dict) and LABEL_TABLE_KEY in table:
            return {int(k): str(v["name"]) for k, v in table[LABEL_TABLE_KEY].items()}
    return None


def open_nifti(path: str | os.PathLike, chunks: Any = None) -> Image:
    """Open a NIfTI-1 or NIfTI-2 file lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file, 3D or 4D.
    chunks : optional
        Dask chunks for the ``(C, i, j, k)`` array; by default slabs of whole ``(i, j)``
        planes of about 64 MiB, one channel per chunk.

    Returns
    -------
    Image
        Shaped ``(C, i, j, k)`` (C = 1 for a 3D file, the fourth axis otherwise), with
        ``affine = img.affine`` and ``meta`` holding ``anchor="center"``,
        ``path``, ``nifti_header``, ``sform_code``, ``qform_code``, ``units`` and, for label
        volumes written by seamline, ``class_names``.

    Raises
    ------
    InputError
        If the file is not NIfTI, has a zero-sized axis, more than four axes, or an
        affine that cannot be inverted.
    """
    path = os.fspath(path)
    try:
        img = nib.load(path)
    except (nib.filebasedimages.ImageFileError, OSError, EOFError, ValueError) as exc:
        raise InputError(f"cannot be read as NIfTI: {exc}", path) from exc
    if not isinstance(img, nib.Nifti1Image | nib.Nifti2Image):
        raise InputError(f"is {type(img).__name__}, not NIfTI-1 or NIfTI-2", path)
    shape = tuple(int(s) for s in img.shape)
    if 0 in shape:
        raise InputError(f"has a zero-sized dimension, shape {shape}", path)
    if not 2 <= len(shape) <= 4:
        raise InputError(f"has {len(shape)} dimensions; only 2D, 3D and 4D NIfTI are supported", path)
    affine = np.asarray(img.affine, dtype=float)
    det = np.linalg.det(affine[:3, :3])
    if not np.all(np.isfinite(affine)) or not np.isfinite(det) or abs(det) < 1e-12:
        raise InputError("has an affine that cannot be inverted (singular or not finite)", path)
    voxels = _voxels(img, path)
    if voxels.ndim == 2:
        voxels = voxels[:, :, None]
    data = voxels[None] if voxels.ndim == 3 else da.moveaxis(voxels, -1, 0)
    if chunks is not None:
        data = data.rechunk(chunks)
    header = img.header
    meta: dict[str, Any] = {
        "anchor": "center",
        "path": path,
        "nifti_header": header.copy(),
        "sform_code": int(header["sform_code"]),
        "qform_code": int(header["qform_code"]),
        "units": tuple(header.get_xyzt_units()),
    }
    names = _label_names(header)
    if names is not None:
        meta["class_names"] = names
    return Image(data, affine, None, meta)


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


def _template(image: Image) -> Any:
    """A header to start from: the source's, else nibabel's default for this affine."""
    header = image.meta.get("nifti_header")
    if header is not None:
        return header.copy()
    return nib.Nifti1Image(np.zeros((1, 1, 1), np.uint8), _affine_3d(image.affine)).header


def _affine_3d(affine: np.ndarray) -> np.ndarray:
    if affine.shape == (4, 4):
        return affine
    full = np.eye(4)
    full[:2, :2] = affine[:2, :2]
    full[:2, 3] = affine[:2, 2]
    return full


def _set_geometry(header: Any, affine: np.ndarray, image: Image) -> None:
    """Keep the source's sform/qform bytes on its own grid; else write *affine* with its codes."""
    if np.array_equal(header.get_best_affine(), affine):
        return
    sform_code = int(image.meta.get("sform_code", header["sform_code"]))
    qform_code = int(image.meta.get("qform_code", header["qform_code"]))
    header.set_sform(affine, code=sform_code or 2)
    try:
        header.set_qform(affine, code=qform_code, strip_shears=False)
    except nib.spatialimages.HeaderDataError:  # a shear has no qform; the sform carries it
        header.set_qform(None, code=0)


def _label_dtype(image: Image) -> np.dtype:
    names = image.meta.get("class_names") or {}
    top = max((int(k) for k in names), default=0)
    if image.dtype in (np.uint8, np.uint16) and top <= np.iinfo(image.dtype).max:
        return image.dtype
    top = max(top, int(image.data.max().compute()))
    if top > np.iinfo(np.uint16).max:
        raise InputError(f"label ids up to {top} do not fit in uint16")
    return np.dtype(np.uint8 if top <= np.iinfo(np.uint8).max else np.uint16)


def _write_nii(header: Any, data: da.Array, path: Path) -> None:
    """Write *header* then stream *data* (disk order: i, j, k[, t]) into the file, block by block."""
    header["vox_offset"] = 0
    with open(path, "wb") as f:
        header.write_to(f)
        offset = int(header.get_data_offset())
        f.truncate(offset + data.size * data.dtype.itemsize)
    da.store(data, VoxelFile(path, header.get_data_dtype(), offset, data.shape), lock=False)


def save_nifti(
    image: Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    labels: bool | None = None,
    compresslevel: int = 6,
) -> str:
    """Save *image* as NIfTI (``.nii`` or ``.nii.gz``), streaming and atomically.

    Parameters
    ----------
    image : Image
        Shaped ``(C, i, j, k)`` (or ``(C, H, W)``, saved with a third axis of 1); C > 1
        becomes the fourth NIfTI axis. A source header in ``meta["nifti_header"]`` is the
        template: its sform/qform codes and units are kept, and its sform and qform are
        copied byte for byte when ``image.affine`` equals the header's affine.
    path : str or os.PathLike
        Output path; ``.nii.gz`` is gzip-compressed.
    overwrite : bool
        Replace an existing file.
    labels : bool, optional
        Save as a label volume (uint8/uint16, ``intent_code="label"``, label table).
        By default: when the image is integer and ``meta`` has ``class_names``.
    compresslevel : int
        gzip level for ``.nii.gz``.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        If the path is not NIfTI, the output exists and *overwrite* is false, or label ids
        exceed uint16.
    """
    path = Path(path)
    if not can_save(path):
        raise InputError("is not a NIfTI path (.nii or .nii.gz)", path)
    names = image.meta.get("class_names")
    if labels is None:
        labels = names is not None and np.issubdtype(image.dtype, np.integer)
    affine = _affine_3d(image.affine)
    data = image.data if image.ndim == 3 else image.data[..., None]
    dtype = _label_dtype(image) if labels else image.dtype
    voxels = data[0] if data.shape[0] == 1 else da.moveaxis(data, 0, -1)
    header = _template(image)
    header.set_data_shape(voxels.shape)
    header.set_data_dtype(dtype)
    header.set_slope_inter(np.nan, np.nan)
    header.set_xyzt_units(*image.meta.get("units", header.get_xyzt_units()))
    _set_geometry(header, affine, image)
    header.extensions.clear()
    header.set_intent("label" if labels else "none")
    if labels and names:
        table = {LABEL_TABLE_KEY: label_table(names, image.meta.get("colors"))}
        header.extensions.append(nib.nifti1.Nifti1Extension(_COMMENT, json.dumps(table).encode()))
    voxels = voxels.astype(dtype)
    with atomic_output(path, overwrite=overwrite) as tmp:
        if path.name.lower().endswith(".nii"):
            _write_nii(header, voxels, tmp)
        else:
            with tempfile.TemporaryDirectory(dir=tmp.parent, prefix=".seamline-") as scratch:
                raw = Path(scratch) / "volume.nii"
                _write_nii(header, voxels, raw)
                with open(raw, "rb") as src, gzip.open(tmp, "wb", compresslevel=compresslevel) as dst:
                    shutil.copyfileobj(src, dst, 16 * 2**20)
    if labels and names:
        with atomic_output(sidecar_path(path), overwrite=True) as tmp:
            tmp.write_text(json.dumps(label_table(names, image.meta.get("colors")), indent=1))
    return os.fspath(path)
