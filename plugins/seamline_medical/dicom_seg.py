"""Writing labels as a DICOM segmentation (SEG) with highdicom, referencing the source series.

:func:`save_seg` writes one segment per class, ``1 .. the largest id`` (named or
present; id 0 is background and no segment), so that a segment's number is its label id
and the SEG reloads to the same label volume. Each segment takes its name from
``meta["class_names"]`` (``label <id>`` when unnamed), its colour from ``meta["colors"]``
(as CIELab, the SEG's colour space) and its codes from :mod:`.segment_codes` (SNOMED CT
for common organs, "Tissue" otherwise). The segmentation is binary, holds only frames
where a segment is present, and copies the patient and study of its source, as DICOM
requires.

A SEG lies on the grid of the images it segments. The source series is found in the
labels' ``meta["dicom"]`` (labels predicted from a DICOM series carry it), or given as
``reference=`` (a DICOM path, or an Image opened from one). The labels must lie on that
series' grid, in any axis order (:func:`seamline_medical.grids.place`); a series the
reader resampled (uneven spacing, gantry tilt) has no frames for a SEG to reference and
is refused. highdicom needs the whole label volume, so it is computed into memory (one
byte per voxel for up to 255 classes).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from seamline.atomic import atomic_output
from seamline.errors import InputError
from seamline.image import Image

from .dicom_files import read_header, without_values
from .dicom_geometry import frames_stack
from .dicom_series import Series
from .formats import can_save_seg
from .grids import place
from .segment_codes import segment_codes

__all__ = ["save_seg", "source_grid", "source_of"]

#: The largest label id a SEG is written for.
MAX_SEGMENTS = 65535
#: Without class names, more ids than this make an intensity image, not labels.
MAX_UNNAMED_SEGMENTS = 255
#: Attributes a SEG copies from its source that DICOM lets be empty, but not missing.
COPIED_TYPE2 = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
)


def source_grid(series: Series) -> tuple[np.ndarray, tuple[int, int, int]]:
    """The affine and shape of a series' own grid (its frames in slice order).

    Parameters
    ----------
    series : Series
        As the DICOM reader leaves it in ``meta["dicom"]``.

    Returns
    -------
    affine : numpy.ndarray
    shape : tuple of int
    """
    stack = frames_stack(series.frames, columns=series.columns, rows=series.rows)
    return stack.affine, stack.shape


def source_of(image: Image, reference: Any, path: str | os.PathLike) -> Series:
    """The DICOM series a SEG of *image* references: *reference*'s, else the image's own.

    Parameters
    ----------
    image : Image
        The labels.
    reference : str, os.PathLike, Image or None
        A DICOM path, or an Image opened from one.
    path : str or os.PathLike
        The SEG being written, for messages.

    Returns
    -------
    Series
        Frames in slice order.

    Raises
    ------
    InputError
        If no source series is known, or it was resampled by the reader.
    """
    own = image.meta.get("dicom")
    if isinstance(reference, Image):
        series = reference.meta.get("dicom")
    elif reference is not None:
        from .dicom_read import open_dicom

        choice = own.uid if isinstance(own, Series) else None
        series = open_dicom(reference, series=choice).meta["dicom"]
    else:
        series = own
    if not isinstance(series, Series):
        raise InputError(
            "a DICOM SEG references the images it segments: pass reference=<the DICOM series> "
            "(the labels do not come from a DICOM series)",
            path,
        )
    if series.resampled:
        raise InputError(
            "the source series was resampled onto a regular grid when read (uneven spacing or gantry "
            "tilt): a SEG cannot reference its frames; save the labels as NIfTI instead",
            path,
        )
    return series


def _labels(image: Image, path: Path) -> np.ndarray:
    """The label ids as one in-memory (i, j, k) array; nodata voxels belong to no segment."""
    if image.channels != 1 or image.ndim != 3 or not np.issubdtype(image.dtype, np.integer):
        raise InputError(f"a SEG holds one channel of integer labels in 3D, not {image.dtype} {image.shape}", path)
    labels = np.asarray(image.data[0].compute())
    nodata = image.meta.get("nodata")
    if nodata is not None and np.isfinite(nodata):
        labels = np.where(labels == nodata, 0, labels)
    if labels.size and (labels.min() < 0 or labels.max() > MAX_SEGMENTS):
        raise InputError(f"label ids must be 0..{MAX_SEGMENTS} for a SEG, found {labels.min()}..{labels.max()}", path)
    return labels.astype(np.uint8 if labels.max(initial=0) <= 255 else np.uint16)


def _descriptions(image: Image, top: int) -> list[Any]:
    """One SegmentDescription per id 1..top: name, codes, colour."""
    import highdicom as hd
    from pydicom.sr.codedict import codes

    import seamline

    names = {int(k): str(v) for k, v in (image.meta.get("class_names") or {}).items()}
    colors = {int(k): v for k, v in (image.meta.get("colors") or {}).items()}
    algorithm = hd.AlgorithmIdentificationSequence(
        name="seamline", version=seamline.__version__, family=codes.cid7162.ArtificialIntelligence
    )
    descriptions = []
    for number in range(1, top + 1):
        name = names.get(number) or f"label {number}"
        found = segment_codes(name)
        color = colors.get(number)
        description = hd.seg.SegmentDescription(
            segment_number=number,
            segment_label=name[:64],
            segmented_property_category=found.category,
            segmented_property_type=found.type,
            algorithm_type="AUTOMATIC",
            algorithm_identification=algorithm,
            display_color=None if color is None else hd.color.CIELabColor.from_rgb(*(int(c) for c in color[:3])),
        )
        if found.laterality is not None:
            side = found.laterality
            description.SegmentedPropertyTypeModifierCodeSequence = [
                hd.sr.CodedConcept(side.value, side.scheme_designator, side.meaning)
            ]
        descriptions.append(description)
    return descriptions


def _source(file: str, thickness: float) -> Any:
    """A source file's header with everything a SEG copies from it.

    Attributes DICOM lets be empty are set empty where missing; a missing ``SliceThickness``
    becomes the slice step *thickness*.
    """
    header = read_header(file)
    for keyword in COPIED_TYPE2:
        if keyword not in header:
            setattr(header, keyword, "")
    if header.get("SliceThickness") in (None, ""):
        header.SliceThickness = f"{thickness:.6g}"
    return header


def _frames(series: Series, labels: np.ndarray, step: float, path: Path) -> tuple[list[Any], np.ndarray]:
    """The source datasets and the label frames in their order: (frames, rows, columns)."""
    files = series.files
    if all(frame.index is None for frame in series.frames):
        return [_source(f, step) for f in files], np.ascontiguousarray(labels.transpose(2, 1, 0))
    if len(files) != 1:
        raise InputError(f"the source series spreads its frames over {len(files)} multi-frame files", path)
    source = _source(files[0], step)
    frames = np.zeros((int(source.NumberOfFrames), series.rows, series.columns), labels.dtype)
    for k, frame in enumerate(series.frames):
        frames[frame.index] = labels[:, :, k].T
    return [source], frames


def save_seg(
    image: Image,
    path: str | os.PathLike,
    *,
    overwrite: bool = False,
    reference: Any = None,
    series_number: int | None = None,
    series_description: str = "Segmentation (seamline)",
) -> str:
    """Save a label volume as a DICOM SEG, atomically.

    Parameters
    ----------
    image : Image
        Integer labels, one channel, on the source series' grid (any axis order).
        ``meta["class_names"]`` and ``meta["colors"]`` name and colour the segments.
    path : str or os.PathLike
        The ``.dcm`` file to write.
    overwrite : bool
        Replace an existing file.
    reference : str, os.PathLike or Image, optional
        The source series (a DICOM path, or an Image read from one); by default the
        series the labels were predicted from (``meta["dicom"]``).
    series_number : int, optional
        The SEG's ``SeriesNumber``; the source's plus 1000 by default.
    series_description : str
        The SEG's ``SeriesDescription``.

    Returns
    -------
    str
        The path written.

    Raises
    ------
    InputError
        If the path is not ``.dcm``, no source series is known, the labels are not on its
        grid or not integer labels, or the output exists and *overwrite* is false.
    """
    import highdicom as hd

    import seamline

    path = Path(path)
    if not can_save_seg(path):
        raise InputError("is not a DICOM path (.dcm)", path)
    series = source_of(image, reference, path)
    affine, shape = source_grid(series)
    labels = place(_labels(image, path), np.asarray(image.affine), affine, shape, path=path)
    named = [int(k) for k in (image.meta.get("class_names") or {})]
    top = max([*named, int(labels.max(initial=0))])
    if not named and top > MAX_UNNAMED_SEGMENTS:
        raise InputError(f"values up to {top} and no class names: an intensity image, not labels for a SEG", path)
    if top == 0:
        raise InputError("the labels hold no class but background: a SEG needs at least one segment", path)
    sources, frames = _frames(series, labels, float(np.linalg.norm(affine[:3, 2])), path)
    try:
        segmentation = hd.seg.Segmentation(
            source_images=sources,
            pixel_array=frames,
            segmentation_type=hd.seg.SegmentationTypeValues.BINARY,
            segment_descriptions=_descriptions(image, top),
            series_instance_uid=hd.UID(),
            series_number=series_number if series_number is not None else 1000 + (series.number or 0),
            sop_instance_uid=hd.UID(),
            instance_number=1,
            manufacturer="seamline",
            manufacturer_model_name="seamline",
            software_versions=seamline.__version__,
            device_serial_number="0",
            series_description=series_description,
        )
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise InputError(f"highdicom cannot make a SEG of this source ({without_values(exc)})", path) from exc
    with atomic_output(path, overwrite=overwrite) as tmp:
        segmentation.save_as(tmp)
    return os.fspath(path)
