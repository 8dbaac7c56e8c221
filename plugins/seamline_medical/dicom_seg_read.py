"""Reading a DICOM segmentation (SEG) as a label volume, on its source's grid when given.

A SEG holds binary (or fractional) frames per segment, often only where a segment is
present. :func:`open_seg` combines its segments into one label volume whose value is the
segment number (overlapping segments are an error), with the segment labels as
``meta["class_names"]`` and their recommended colours as ``meta["colors"]``.

Which grid: with ``like=`` (the reader is registered with ``needs_grid``, so
``seamline predict`` and ``seamline evaluate`` pass the image they pair it with), the
labels are put on that image's grid. When ``like`` is the DICOM series the SEG
references, highdicom looks the frames up by source instance (and frame), exactly;
otherwise the SEG's own volume must share voxels with ``like``'s grid
(:func:`seamline_medical.grids.place`). Without ``like`` the grid is the SEG's own
volume: from its first to its last frame that holds a segment. The file is read whole,
as highdicom does; the labels are a dask array over that one block.
"""

from __future__ import annotations

import os
from typing import Any

import dask.array as da
import numpy as np

from seamline.errors import InputError
from seamline.image import Image

from .dicom_files import without_values
from .dicom_geometry import LPS_TO_RAS
from .dicom_series import Series
from .grids import place

__all__ = ["open_seg"]

#: highdicom's volume axes (slice, row, column) -> seamline's (column, row, slice).
_TO_COLUMN_ROW_SLICE = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)


def _segments(segmentation: Any) -> tuple[dict[int, str], dict[int, tuple[int, int, int]]]:
    """Segment names and colours by segment number."""
    import highdicom as hd

    names, colors = {0: "background"}, {}
    for item in segmentation.SegmentSequence:
        number = int(item.SegmentNumber)
        names[number] = str(item.get("SegmentLabel", f"segment {number}"))
        lab = item.get("RecommendedDisplayCIELabValue")
        if lab is not None:
            red, green, blue = hd.color.CIELabColor.from_dicom_value(lab).to_rgb()
            colors[number] = (int(red), int(green), int(blue))
    return names, colors


def _own_volume(segmentation: Any, dtype: np.dtype, path: str) -> tuple[np.ndarray, np.ndarray]:
    """The SEG's own volume as (i, j, k) = (column, row, slice) and its RAS affine, k along the normal."""
    try:
        volume = segmentation.get_volume(combine_segments=True, dtype=dtype)
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"its frames do not form one volume ({without_values(exc)})", path) from exc
    array = np.asarray(volume.array).transpose(2, 1, 0)
    affine = LPS_TO_RAS @ np.asarray(volume.affine, dtype=float) @ _TO_COLUMN_ROW_SLICE
    lps = LPS_TO_RAS @ affine
    if np.dot(np.cross(lps[:3, 0], lps[:3, 1]), lps[:3, 2]) < 0:
        array = array[:, :, ::-1]
        flip = np.eye(4)
        flip[2, 2], flip[2, 3] = -1, array.shape[2] - 1
        affine = affine @ flip
    return np.ascontiguousarray(array), affine


def _by_source(segmentation: Any, series: Series, dtype: np.dtype) -> np.ndarray | None:
    """The labels for each frame of *series*, by source reference, or None if it is not the SEG's source."""
    referenced = {uid for _, series_uid, uid in segmentation.get_source_image_uids() if series_uid == series.uid}
    frames = series.frames
    if not {f.sop_instance_uid for f in frames} & referenced:
        return None
    options = {"combine_segments": True, "dtype": dtype}
    if all(f.index is None for f in frames):
        stack = segmentation.get_pixels_by_source_instance([f.sop_instance_uid for f in frames], **options)
    elif len({f.sop_instance_uid for f in frames}) == 1:
        numbers = [(f.index or 0) + 1 for f in frames]
        stack = segmentation.get_pixels_by_source_frame(frames[0].sop_instance_uid, numbers, **options)
    else:
        return None
    return np.ascontiguousarray(np.asarray(stack).transpose(2, 1, 0))


def open_seg(path: str | os.PathLike, *, chunks: Any = None, like: Image | None = None) -> Image:
    """Open a DICOM SEG as a label volume.

    Parameters
    ----------
    path : str or os.PathLike
        The SEG file.
    chunks : optional
        Dask chunks for the ``(1, i, j, k)`` array (one block by default).
    like : Image, optional
        Put the labels on this image's grid: by source reference when it is the SEG's
        source series, else by shared voxels.

    Returns
    -------
    Image
        ``(1, i, j, k)`` labels (uint8, or uint16 past 255 segments) = segment numbers;
        ``meta`` holds ``anchor="center"``, ``path``, ``class_names``, ``colors`` and,
        with a DICOM ``like``, its ``dicom`` series.

    Raises
    ------
    InputError
        If the file is not a readable SEG, its segments overlap, its frames do not form
        one volume, or it does not share voxels with ``like``.
    """
    import highdicom as hd

    path = os.fspath(path)
    try:
        segmentation = hd.seg.segread(path)
    except (ValueError, OSError, AttributeError, KeyError, TypeError) as exc:
        raise InputError(f"cannot be read as a DICOM SEG ({without_values(exc)})", path) from exc
    names, colors = _segments(segmentation)
    dtype = np.dtype(np.uint8 if max(names) <= 255 else np.uint16)
    series = like.meta.get("dicom") if like is not None else None
    try:
        labels = None
        if like is not None and isinstance(series, Series) and not series.resampled:
            labels = _by_source(segmentation, series, dtype)
        if labels is not None and like is not None:
            affine = like.affine
        else:
            labels, affine = _own_volume(segmentation, dtype, path)
            if like is not None:
                target = np.asarray(like.affine)
                labels = place(labels, affine, target, like.spatial_shape, path=path, what="its segments")
                affine = like.affine
    except InputError:
        raise
    except (ValueError, RuntimeError) as exc:
        raise InputError(f"its segments cannot be combined into labels ({without_values(exc)})", path) from exc
    data = da.from_array(labels[None], chunks=chunks if chunks is not None else -1)
    meta: dict[str, Any] = {
        "anchor": "center",
        "path": path,
        "class_names": names,
        "colors": colors,
        "sform_code": 1,
        "qform_code": 1,
        "units": ("mm", "unknown"),
    }
    if isinstance(series, Series):
        meta["dicom"] = series
    return Image(data, affine, None, meta)
