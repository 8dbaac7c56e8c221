"""Reading a DICOM series lazily: a dask array built slice by slice, on the series' grid.

:func:`open_dicom` reads every header (no pixels) to find and choose the series
(:mod:`.dicom_series`) and its grid (:mod:`.dicom_geometry`), decodes one frame to learn
the pixel type, and returns an :class:`~seamline.image.Image` over a dask array whose
chunks are slabs of whole slices (:class:`SliceStack`, which pickles as file names, so
dask.distributed workers read the files themselves). Each chunk decodes its own files
with ``pydicom.pixels.pixel_array``, one frame at a time, and applies the rescale.

Voxel types follow SimpleITK: the stored type when every slope is 1 and every intercept
0; with integer slopes and intercepts, the smallest integer type that holds every value
the stored bits can take after the rescale (``int16`` for a typical CT); otherwise
``float32``. A decoded value outside the stored bits' range is an error, never a
wrapped integer.

Compressed files are decoded by whichever pydicom plugin is installed (python-gdcm,
pylibjpeg, pillow; RLE natively); a transfer syntax no installed plugin decodes is an
:class:`~seamline.errors.InputError` that names it, raised when the series is opened.
"""

from __future__ import annotations

import dataclasses
import numbers
import os
from typing import Any

import dask.array as da
import numpy as np
import pydicom
from dask.base import tokenize
from pydicom.pixels import get_decoder, pixel_array
from pydicom.uid import UID
from scipy import ndimage

from seamline.errors import InputError
from seamline.image import Image

from .dicom_files import without_values
from .dicom_geometry import Resampling, frames_stack
from .dicom_series import Series, choose_series, find_series
from .formats import is_part10

__all__ = ["open_dicom", "SliceStack", "voxel_dtype", "CHUNK_BYTES"]

#: Slices per chunk: as many whole slices as fit in this many bytes.
CHUNK_BYTES = 32 * 2**20
_INTEGERS = (np.uint8, np.int8, np.uint16, np.int16, np.uint32, np.int32)
_DECODE_ERRORS = (ValueError, RuntimeError, NotImplementedError, OSError, EOFError, AttributeError, KeyError)


def _decode(path: str, index: int | None, forced: bool) -> np.ndarray:
    """One frame's stored values, ``(rows, columns[, samples])``."""
    try:
        if forced:
            return pixel_array(pydicom.dcmread(path, force=True), index=index)
        return pixel_array(path, index=index)
    except _DECODE_ERRORS as exc:
        raise InputError(f"pixel data cannot be decoded ({without_values(exc)})", path) from exc


@dataclasses.dataclass(frozen=True)
class SliceStack:
    """The voxels of a DICOM series as a dask source, ``(C, I, J, K)``: samples, column, row, slice.

    Parameters
    ----------
    frames : tuple of (path, frame index, slope, intercept)
        The acquired frames, in slice order.
    shape : tuple of int
        ``(C, I, J, K)`` of the grid.
    dtype : numpy.dtype
        The voxel type after the rescale.
    limits : (float, float)
        The range of values the stored bits can hold.
    resampling : Resampling, optional
        How the grid's slices come from the frames, when they are not the frames.
    fill : float
        The value of grid voxels outside every frame (resampling only).
    forced : bool
        Read files without the Part 10 preamble.
    """

    frames: tuple[tuple[str, int | None, float, float], ...]
    shape: tuple[int, ...]
    dtype: np.dtype
    limits: tuple[float, float]
    resampling: Resampling | None = None
    fill: float = 0.0
    forced: bool = False

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __dask_tokenize__(self) -> str:
        return tokenize(self.frames, self.shape, str(self.dtype), self.resampling is not None, self.fill)

    def frame(self, m: int) -> np.ndarray:
        """Acquired frame *m*, rescaled, as ``(C, columns, rows)`` in float64 or the voxel type."""
        path, index, slope, intercept = self.frames[m]
        stored = _decode(path, index, self.forced)
        stored = stored[..., None] if stored.ndim == 2 else stored
        if stored.size and np.issubdtype(stored.dtype, np.integer):
            low, high = stored.min(), stored.max()
            if low < self.limits[0] or high > self.limits[1]:
                raise InputError(
                    f"holds values {low}..{high}, beyond what its BitsStored allow ({self.limits[0]:g}.."
                    f"{self.limits[1]:g})",
                    path,
                )
        values = stored.transpose(2, 1, 0)
        if (slope, intercept) != (1.0, 0.0):
            values = values.astype(np.float64) * slope + intercept
        return values if self.resampling is not None else values.astype(self.dtype, copy=False)

    def _moved(self, m: int) -> np.ndarray:
        """Frame *m* moved onto the grid's in-plane lattice (bilinear, ``fill`` outside)."""
        plan = self.resampling
        assert plan is not None
        values = self.frame(m).astype(np.float64)
        out = np.empty((values.shape[0], *plan.shape))
        for c, plane in enumerate(values):
            ndimage.affine_transform(
                plane, np.ones(2), -plan.shifts[m], plan.shape, out[c], order=1, mode="constant", cval=self.fill
            )
        return out

    def _slice(self, k: int, cache: dict[int, np.ndarray]) -> np.ndarray:
        if self.resampling is None:
            return self.frame(k)
        total = np.zeros((self.shape[0], *self.resampling.shape))
        for m, weight in zip(self.resampling.sources[k], self.resampling.weights[k], strict=True):
            if weight > 0:
                if m not in cache:
                    cache[m] = self._moved(int(m))
                total += weight * cache[m]
        return total.astype(self.dtype)

    def __getitem__(self, key: Any) -> np.ndarray:
        # dask may fuse a later index into the read: integers pick one position (and drop the axis).
        key = (key if isinstance(key, tuple) else (key,)) + (slice(None),) * 4
        picked = tuple(axis for axis, k in enumerate(key[:4]) if isinstance(k, numbers.Integral))
        channels, columns, rows, slices = (
            slice(int(k) % n, int(k) % n + 1) if isinstance(k, numbers.Integral) else k
            for k, n in zip(key[:4], self.shape, strict=True)
        )
        cache: dict[int, np.ndarray] = {}
        planes = [self._slice(k, cache)[channels, columns, rows] for k in range(*slices.indices(self.shape[3]))]
        if not planes:
            block = np.empty((*self.shape[:3], 0), self.dtype)[channels, columns, rows]
        else:
            block = np.stack(planes, axis=-1)
        return block.squeeze(axis=picked) if picked else block


def voxel_dtype(stored: np.dtype, bits_stored: int | None, rescales: set[tuple[float, float]]) -> np.dtype:
    """The voxel type after rescaling, as SimpleITK chooses it.

    Parameters
    ----------
    stored : numpy.dtype
        The decoded frames' type.
    bits_stored : int or None
        ``BitsStored`` (the type's width when None).
    rescales : set of (slope, intercept)
        Every frame's rescale.

    Returns
    -------
    numpy.dtype
        *stored* when every rescale is the identity; the smallest integer type that holds
        the rescaled range of the stored bits when every slope and intercept is an
        integer; float32 otherwise.
    """
    if rescales <= {(1.0, 0.0)} or not np.issubdtype(stored, np.integer):
        return stored if rescales <= {(1.0, 0.0)} else np.dtype(np.float32)
    low, high = _limits(stored, bits_stored)
    if all(float(s).is_integer() and float(i).is_integer() for s, i in rescales):
        ends = [s * v + i for s, i in rescales for v in (low, high)]
        for integer in _INTEGERS:
            if np.iinfo(integer).min <= min(ends) and max(ends) <= np.iinfo(integer).max:
                return np.dtype(integer)
    return np.dtype(np.float32)


def _limits(stored: np.dtype, bits_stored: int | None) -> tuple[float, float]:
    """The range of values *bits_stored* bits of *stored*'s signedness can hold."""
    if not np.issubdtype(stored, np.integer):
        return -np.inf, np.inf
    bits = min(int(bits_stored or stored.itemsize * 8), stored.itemsize * 8)
    if np.issubdtype(stored, np.signedinteger):
        return -(2.0 ** (bits - 1)), 2.0 ** (bits - 1) - 1
    return 0.0, 2.0**bits - 1


def _check_decodable(series: Series, path: str) -> None:
    """Every transfer syntax of the series has a decoder installed; else name the syntax."""
    for syntax in series.transfer_syntaxes:
        uid = UID(syntax)
        if not uid.is_encapsulated:
            continue
        try:
            decoder = get_decoder(uid)
        except NotImplementedError as exc:
            raise InputError(
                f"its pixel data is compressed as {uid.name} ({uid}), which pydicom cannot decode", path
            ) from exc
        if not decoder.is_available:
            raise InputError(
                f"its pixel data is compressed as {uid.name} ({uid}) and no decoder for it is installed "
                "(pip install python-gdcm, or pylibjpeg with its openjpeg and libjpeg plugins)",
                path,
            )


def _check_images(series: Series, path: str) -> None:
    """Refuse what is not a stack of slices in patient space."""
    if "MOSAIC" in series.image_type:
        raise InputError("is a Siemens mosaic (several slices tiled in one image), which is not read", path)
    if series.pixel_format[-1] == "PALETTE COLOR":
        raise InputError("is a palette colour image, which is not read", path)


def _chunks(shape: tuple[int, ...], itemsize: int, chunks: Any) -> Any:
    if chunks is not None:
        return chunks
    plane = shape[0] * shape[1] * shape[2] * itemsize
    return (shape[0], shape[1], shape[2], int(max(1, min(shape[3], CHUNK_BYTES // max(plane, 1)))))


def open_dicom(
    path: str | os.PathLike,
    *,
    chunks: Any = None,
    series: int | str | None = None,
    resample: bool = False,
) -> Image:
    """Open a DICOM series lazily: a folder, a DICOMDIR, or one (multi-frame) file.

    Parameters
    ----------
    path : str or os.PathLike
        A folder (searched recursively), a ``DICOMDIR`` or a folder holding one, or a file.
    chunks : optional
        Dask chunks for the ``(C, i, j, k)`` array; by default slabs of whole slices of
        at most 32 MiB.
    series : int or str, optional
        Which series: its ``SeriesNumber`` or ``SeriesInstanceUID``. Needed when *path*
        holds several image series.
    resample : bool
        Interpolate a regular grid (linear along the slices, bilinear within them) for a
        series with unevenly spaced slices or gantry tilt, instead of refusing it. The
        voxels are then float32, and voxels outside every acquired slice take the lowest
        value the stored bits can hold, rescaled (-1024 for a typical CT).

    Returns
    -------
    Image
        Shaped ``(C, i, j, k)`` = (samples per pixel, column, row, slice), slices sorted
        along the normal; ``affine`` from voxel centres to RAS mm (the NIfTI reader's
        convention); ``meta`` holds ``anchor="center"``, ``path``, ``sform_code`` and
        ``qform_code`` 1 (scanner), ``units``, and ``dicom``: the :class:`Series`, frames
        in slice order, with the patient and study identifiers (never printed).

    Raises
    ------
    InputError
        If the path holds no image series, several with no *series* chosen, a series
        that is not slices in patient space, an irregular stack (without *resample*),
        pixel data compressed with a syntax no installed decoder reads, or a file that
        cannot be read.
    """
    path = os.fspath(path)
    chosen = choose_series(find_series(path), series, path)
    _check_images(chosen, path)
    _check_decodable(chosen, path)
    frames = chosen.frames
    stack = frames_stack(frames, columns=chosen.columns, rows=chosen.rows, resample=resample, path=path)
    ordered = tuple(frames[int(m)] for m in stack.order)
    forced = os.path.isfile(path) and not is_part10(path)
    first = _decode(ordered[0].path, ordered[0].index, forced)
    stored = first.dtype.newbyteorder("=")
    limits = _limits(stored, chosen.pixel_format[1])
    rescales = {(f.slope, f.intercept) for f in ordered}
    dtype = voxel_dtype(stored, chosen.pixel_format[1], rescales)
    fill = 0.0
    if stack.resampling is not None:
        dtype = np.dtype(np.float32)
        fill = min(s * limits[0] + i for s, i in rescales) if np.isfinite(limits[0]) else 0.0
    samples = first.shape[2] if first.ndim == 3 else 1
    shape = (samples, *stack.shape)
    source = SliceStack(
        tuple((f.path, f.index, f.slope, f.intercept) for f in ordered),
        shape,
        dtype,
        limits,
        stack.resampling,
        fill,
        forced,
    )
    data = da.from_array(source, chunks=_chunks(shape, dtype.itemsize, chunks), meta=np.empty((0,) * 4, dtype))
    source_series = dataclasses.replace(chosen, frames=ordered, resampled=stack.resampling is not None)
    meta = {
        "anchor": "center",
        "path": path,
        "sform_code": 1,
        "qform_code": 1,
        "units": ("mm", "unknown"),
        "dicom": source_series,
    }
    return Image(data, stack.affine, None, meta)
