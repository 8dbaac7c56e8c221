"""Reading NIfTI lazily: a dask array over the file's voxels, and the header kept whole.

:func:`open_nifti` builds a dask array over the file without reading it: an
uncompressed ``.nii`` is memory-mapped (:class:`VoxelFile`, which pickles as a path, so
dask.distributed workers map the file themselves), a ``.nii.gz`` is sliced through
nibabel's array proxy (:class:`CompressedVoxels`, which pickles as a path too), one slab
of whole ``(i, j)`` planes per chunk (the order the voxels lie on disk). With
``indexed_gzip`` installed nibabel seeks within the compressed stream instead of
decompressing it from the start for every slab.

The voxel axes stay nibabel's ``(i, j, k)`` (a 2D file gets ``k`` of size 1); a 4D
file's fourth axis becomes the channel axis. The affine is ``img.affine``, the sform or
qform that nibabel chooses, and the header travels in ``meta`` so that
:func:`seamline_medical.nifti_write.save_nifti` can write it back. A file shorter than
its header says is refused when opened (``.nii``, and a ``.nii.gz`` whose header claims
more voxels than its compressed size could hold) or when the missing voxels are read
(``.nii.gz``), as an :class:`~seamline.errors.InputError` naming the file.
"""

from __future__ import annotations

import os
import zlib
from typing import Any, Literal

import dask.array as da
import nibabel as nib
import numpy as np

from seamline.errors import InputError
from seamline.image import Image

from .formats import refuse_options
from .label_table import read_label_table

__all__ = ["open_nifti", "VoxelFile", "CompressedVoxels", "CHUNK_BYTES"]

CHUNK_BYTES = 64 * 2**20
#: The most deflate can compress: a gzip file holds at most about this many times its size.
GZIP_RATIO = 1032
_BROKEN_STREAM = (EOFError, OSError, zlib.error)


def _slab_chunks(shape: tuple[int, ...], itemsize: int) -> tuple[int, ...]:
    """Whole (i, j) planes, as many as fit in CHUNK_BYTES, one channel at a time."""
    if len(shape) == 2:
        return shape
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

    @property
    def nbytes(self) -> int:
        """The size the file must have: the offset plus the voxels."""
        return self.offset + int(np.prod(self.shape)) * self.dtype.itemsize

    def _map(self, mode: Literal["r", "r+"]) -> np.memmap:
        return np.memmap(self.path, dtype=self.dtype, mode=mode, offset=self.offset, shape=self.shape, order="F")

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.array(self._map("r")[key])

    def __setitem__(self, key: Any, value: np.ndarray) -> None:
        target = self._map("r+")
        target[key] = value
        target.flush()


class CompressedVoxels:
    """The voxels of a ``.nii.gz`` through nibabel's array proxy, scaled, as a dask source.

    Pickles as its path: each process loads its own proxy. A stream that ends early or
    is corrupt is an :class:`~seamline.errors.InputError` naming the file.

    Parameters
    ----------
    path : str
        The ``.nii.gz`` file.
    dtype : numpy.dtype
        The dtype of the scaled voxels.
    shape : tuple of int
        The file's array shape.
    """

    def __init__(self, path: str, dtype: np.dtype, shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.shape, self.ndim = path, np.dtype(dtype), shape, len(shape)
        self._proxy: Any = None

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_proxy": None}

    def __getitem__(self, key: Any) -> np.ndarray:
        if self._proxy is None:
            self._proxy = nib.load(self.path).dataobj  # type: ignore[attr-defined]  # every image nibabel loads here has one
        try:
            return np.asarray(self._proxy[key], dtype=self.dtype)
        except _BROKEN_STREAM as exc:
            raise InputError(f"is truncated or corrupt ({type(exc).__name__}: {exc})", self.path) from exc


def _voxels(img: Any, path: str) -> da.Array:
    """The file's voxels as a lazy array shaped like the file, (i, j[, k[, t]])."""
    shape = tuple(int(s) for s in img.shape)
    proxy = img.dataobj
    claimed = int(proxy.offset) + int(np.prod(shape, dtype=object)) * np.dtype(proxy.dtype).itemsize
    size = os.path.getsize(path)
    if not path.lower().endswith(".nii") and claimed > size * GZIP_RATIO + 2**20:
        raise InputError(
            f"is truncated or corrupt: its header claims {shape} voxels ({claimed} bytes), "
            f"more than a gzip file of {size} bytes can hold",
            path,
        )
    try:
        dtype = np.asarray(proxy[(slice(0, 1),) * len(shape)]).dtype
    except _BROKEN_STREAM as exc:
        raise InputError(f"is truncated or corrupt ({type(exc).__name__}: {exc})", path) from exc
    chunks = _slab_chunks(shape, dtype.itemsize)
    if not path.lower().endswith(".nii"):
        return da.from_array(CompressedVoxels(path, dtype, shape), chunks=chunks)
    source = VoxelFile(path, proxy.dtype, proxy.offset, shape)
    if size < source.nbytes:
        raise InputError(f"is truncated: {size} bytes, but its header needs {source.nbytes}", path)
    voxels = da.from_array(source, chunks=chunks)
    slope, inter = float(proxy.slope), float(proxy.inter)
    if (slope, inter) != (1.0, 0.0):
        voxels = (voxels.astype(dtype) * dtype.type(slope) + dtype.type(inter)).astype(dtype)
    return voxels


def open_nifti(path: str | os.PathLike, *, chunks: Any = None, **options: Any) -> Image:
    """Open a NIfTI-1 or NIfTI-2 file lazily.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.nii`` or ``.nii.gz`` file, 2D, 3D or 4D.
    chunks : optional
        Dask chunks for the ``(C, i, j, k)`` array; by default slabs of whole ``(i, j)``
        planes of about 64 MiB, one channel per chunk.
    **options
        None are taken; any is refused (the reader contract's ``**options``).

    Returns
    -------
    Image
        Shaped ``(C, i, j, k)`` (C = 1 for a 2D or 3D file, the fourth axis otherwise;
        k = 1 for a 2D file), with ``affine = img.affine`` and ``meta`` holding
        ``anchor="center"``, ``path``, ``nifti_header``, ``sform_code``, ``qform_code``,
        ``units`` and, for label volumes written by seamline, ``class_names`` and ``colors``.

    Raises
    ------
    InputError
        If an option is given, the file is not NIfTI, is shorter than its header says,
        has a zero-sized axis, more than four axes, or an affine that cannot be
        inverted. A ``.nii.gz`` whose stream ends early raises it when read.
    """
    path = os.fspath(path)
    refuse_options(options, "reader", path)
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
    table = read_label_table(header)
    if table is not None:
        meta["class_names"], colors = table
        if colors:
            meta["colors"] = colors
    return Image(data, affine, None, meta)
