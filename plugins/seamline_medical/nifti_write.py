"""Writing NIfTI: streamed block by block, atomically, with the source's geometry kept.

:func:`save_nifti` streams the dask blocks into a memory-mapped ``.nii`` and, for
``.nii.gz``, compresses that file in one pass; at most one uncompressed copy of the
volume exists on disk, never one in memory. The memory-mapped file gets its whole size
on disk before the first voxel is written (``posix_fallocate``): a write through a
memory map onto a full disk would kill the process (SIGBUS) instead of raising an error.

The source header (``meta["nifti_header"]``) is the template, header extensions
included. When the image still sits
on its source grid, the sform, qform, their codes and the units are copied verbatim, so
the saved file has exactly the source geometry. On another grid (a window, a
reorientation, a resampling) the step from the new voxel grid to the source's,
``inv(source affine) @ affine``, is applied to the sform and to the qform each, so each
keeps its own code and meaning (a scanner qform and an aligned sform stay distinct).
Label volumes are written as :mod:`.label_table` describes, with their JSON sidecar
replaced together with the volume.
"""

from __future__ import annotations

import contextlib
import errno
import gzip
import json
import os
import shutil
from pathlib import Path
from typing import Any, cast

import dask.array as da
import nibabel as nib
import numpy as np

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image

from .formats import can_save, refuse_options
from .label_table import is_label_extension, label_dtype, label_extension, label_table, mark_as_labels, sidecar_path
from .nifti_read import VoxelFile

__all__ = ["save_nifti"]

#: dtypes NIfTI cannot store, and the dtype they are saved as.
STORED_AS = {np.dtype(bool): np.dtype(np.uint8), np.dtype(np.float16): np.dtype(np.float32)}


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
    """Keep the source's sform/qform bytes on its own grid; else move each onto the new grid."""
    sform_code = int(image.meta.get("sform_code", header["sform_code"]))
    qform_code = int(image.meta.get("qform_code", header["qform_code"]))
    source = header.get_best_affine()
    if np.array_equal(source, affine) and (sform_code, qform_code) == (header["sform_code"], header["qform_code"]):
        return
    step = np.linalg.inv(source) @ affine  # new voxel index -> source voxel index
    sform = header.get_sform() @ step if header["sform_code"] else affine
    qform = header.get_qform() @ step if header["qform_code"] else affine
    if qform_code:
        try:
            header.set_qform(qform, code=qform_code, strip_shears=False)
        except nib.spatialimages.HeaderDataError:  # a shear has no qform; the sform carries it
            sform, sform_code, qform_code = (sform, sform_code, 0) if sform_code else (qform, qform_code, 0)
    if not (sform_code or qform_code):
        sform_code = 2
    header.set_sform(sform if sform_code else None, code=sform_code)
    if not qform_code:
        header.set_qform(None, code=0)
        # set_qform sets pixdim; without a qform, pixdim holds the sform's voxel sizes
        zooms = np.linalg.norm(sform[:3, :3], axis=0)
        header.set_zooms((*zooms, *header.get_zooms()[3:]))


def _reserve(file: Any, size: int) -> None:
    """Make *file* *size* bytes long with its blocks allocated, or raise ENOSPC now."""
    try:
        os.posix_fallocate(file.fileno(), 0, size)
        return
    except AttributeError:  # no posix_fallocate (macOS): check the free space instead
        pass
    except OSError as exc:
        if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP, errno.ENOTSUP):
            raise
    if shutil.disk_usage(os.path.dirname(os.path.abspath(file.name))).free < size - file.tell():
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), file.name)
    file.truncate(size)


def _write_nii(header: Any, data: da.Array, path: Path) -> None:
    """Write *header* then stream *data* (disk order: i, j, k[, t]) into the file, block by block."""
    header["vox_offset"] = 0
    with open(path, "wb") as f:
        header.write_to(f)
        offset = int(header.get_data_offset())
        _reserve(f, offset + data.size * data.dtype.itemsize)
    target = VoxelFile(path, header.get_data_dtype(), offset, data.shape)
    da.store(data, cast(Any, target), lock=False)  # dask's annotation omits the targets it takes


def _write_nii_gz(header: Any, data: da.Array, path: Path, name: str, compresslevel: int) -> None:
    """Write a scratch ``.nii`` beside *path*, then gzip it into *path* (stored name *name*, no time).

    The scratch file extends *path*'s temporary name, so that it is removed with it, by
    :func:`seamline.atomic.atomic_output`, or by a later save when this process dies.
    """
    raw = path.with_name(path.name + ".raw.nii")
    try:
        _write_nii(header, data, raw)
        with (
            open(raw, "rb") as src,
            open(path, "wb") as out,
            gzip.GzipFile(filename=name, mode="wb", fileobj=out, compresslevel=compresslevel, mtime=0) as dst,
        ):
            shutil.copyfileobj(src, dst, 16 * 2**20)
    finally:
        raw.unlink(missing_ok=True)


def save_nifti(
    image: Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    labels: bool | None = None,
    compresslevel: int = 6,
    **options: Any,
) -> str:
    """Save *image* as NIfTI (``.nii`` or ``.nii.gz``), streaming and atomically.

    Parameters
    ----------
    image : Image
        Shaped ``(C, i, j, k)`` (or ``(C, H, W)``, saved with a third axis of 1); C > 1
        becomes the fourth NIfTI axis. A source header in ``meta["nifti_header"]`` is the
        template: its sform/qform codes and units are kept, and its sform and qform are
        copied byte for byte when ``image.affine`` equals the header's affine. bool is
        saved as uint8, float16 as float32.
    path : str or os.PathLike
        Output path; ``.nii.gz`` is gzip-compressed.
    overwrite : bool
        Replace an existing file (and its label sidecar; a stale sidecar beside a volume
        saved without labels is removed).
    labels : bool, optional
        Save as a label volume (uint8/uint16, ``intent_code="label"``, label table).
        By default: when the image is integer and ``meta`` has ``class_names``.
    compresslevel : int
        gzip level for ``.nii.gz``.
    **options
        None are taken; any is refused (the writer contract's ``**options``).

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        If an option is given, the path is not NIfTI, the output or its label sidecar
        exists and *overwrite* is false, or label ids are negative or exceed uint16.
    """
    path = Path(path)
    refuse_options(options, "writer", path)
    if not can_save(path):
        raise InputError("is not a NIfTI path (.nii or .nii.gz)", path)
    names = image.meta.get("class_names")
    if labels is None:
        labels = names is not None and np.issubdtype(image.dtype, np.integer)
    data = image.data if image.ndim == 3 else image.data[..., None]
    dtype = label_dtype(image) if labels else STORED_AS.get(image.dtype, image.dtype)
    voxels = data[0] if data.shape[0] == 1 else da.moveaxis(data, 0, -1)
    header = _template(image)
    header.set_data_shape(voxels.shape)
    header.set_data_dtype(dtype)
    header.set_slope_inter(np.nan, np.nan)
    header.set_xyzt_units(*image.meta.get("units", header.get_xyzt_units()))
    _set_geometry(header, _affine_3d(image.affine), image)
    kept = [extension for extension in header.extensions if not is_label_extension(extension)]
    header.extensions.clear()
    header.extensions.extend(kept)
    table = label_table(names, image.meta.get("colors")) if labels and names else None
    if labels:
        mark_as_labels(header)
    else:
        header.set_intent("none")
    if table is not None:
        header.extensions.append(label_extension(table))
    voxels = voxels.astype(dtype)
    sidecar = sidecar_path(path)
    with contextlib.ExitStack() as outputs:
        tmp = outputs.enter_context(atomic_output(path, overwrite=overwrite))
        if table is not None:
            outputs.enter_context(atomic_output(sidecar, overwrite=overwrite)).write_text(json.dumps(table, indent=1))
        if path.name.lower().endswith(".nii"):
            _write_nii(header, voxels, tmp)
        else:
            _write_nii_gz(header, voxels, tmp, path.name, compresslevel)
    if table is None and overwrite:
        sidecar.unlink(missing_ok=True)
    return os.fspath(path)
