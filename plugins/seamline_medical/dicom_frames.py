"""The frames of one DICOM image file: where each lies and how its values scale.

A single-frame file is one :class:`Frame`. An enhanced multi-frame file gives one per
item of its ``PerFrameFunctionalGroupsSequence``: position, orientation, pixel spacing,
slice step and rescale are looked up in that item, then in the shared functional groups,
then at the top level. A classic multi-frame file (ultrasound cine, a dose grid) has no
position for each frame: its frames get none, and the reader refuses them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable
from typing import Any

import pydicom

__all__ = ["Frame", "frames_of"]


@dataclasses.dataclass(frozen=True)
class Frame:
    """One 2D image of a series: a file, and the frame within it for a multi-frame file.

    Attributes
    ----------
    path : str
        The file.
    index : int or None
        The 0-based frame number in a multi-frame file; None for a single-frame file.
    position, orientation, spacing : tuple of float or None
        ``ImagePositionPatient`` (LPS mm), ``ImageOrientationPatient`` (row then column
        direction cosines) and ``PixelSpacing`` (between rows, between columns); None
        when the image does not say.
    slope, intercept : float
        ``RescaleSlope`` and ``RescaleIntercept`` (1 and 0 when absent).
    thickness : float or None
        ``SpacingBetweenSlices``, else ``SliceThickness``: the slice step of a single slice.
    sop_instance_uid : str
        The image's ``SOPInstanceUID``.
    """

    path: str
    index: int | None
    position: tuple[float, ...] | None
    orientation: tuple[float, ...] | None
    spacing: tuple[float, ...] | None
    slope: float
    intercept: float
    thickness: float | None
    sop_instance_uid: str


def _number(value: Any) -> float | None:
    return None if value is None or value == "" else float(value)


def _lookup(groups: Iterable[Any], sequence: str, keyword: str) -> Any:
    """An attribute of a functional group: in the per-frame item first, then the shared one."""
    for group in groups:
        if group is not None and sequence in group and len(group[sequence].value) and keyword in group[sequence][0]:
            return group[sequence][0][keyword].value
    return None


def _floats(value: Any) -> tuple[float, ...] | None:
    return None if value is None else tuple(float(v) for v in value)


def frames_of(ds: pydicom.Dataset, path: str) -> list[Frame]:
    """One Frame per image of a file: per-frame functional groups for enhanced multi-frame files.

    Parameters
    ----------
    ds : pydicom.Dataset
        The file's header (an image).
    path : str
        The file.

    Returns
    -------
    list of Frame
        One for a single-frame file; one per frame of a multi-frame file (without a
        position each unless the file has per-frame functional groups).
    """
    uid = str(ds.get("SOPInstanceUID", ""))
    thickness = _number(ds.get("SpacingBetweenSlices")) or _number(ds.get("SliceThickness"))
    slope, intercept = _number(ds.get("RescaleSlope")), _number(ds.get("RescaleIntercept"))
    if "PerFrameFunctionalGroupsSequence" not in ds:
        count = int(ds.get("NumberOfFrames") or 1)  # several frames here have no position each
        return [
            Frame(
                path,
                None if count == 1 else index,
                _floats(ds.get("ImagePositionPatient")) if count == 1 else None,
                _floats(ds.get("ImageOrientationPatient")),
                _floats(ds.get("PixelSpacing")),
                1.0 if slope is None else slope,
                0.0 if intercept is None else intercept,
                thickness,
                uid,
            )
            for index in range(count)
        ]
    shared = ds.SharedFunctionalGroupsSequence[0] if ds.get("SharedFunctionalGroupsSequence") else None
    frames = []
    for index, item in enumerate(ds.PerFrameFunctionalGroupsSequence):
        groups = (item, shared)
        frame_slope = _number(_lookup(groups, "PixelValueTransformationSequence", "RescaleSlope"))
        frame_intercept = _number(_lookup(groups, "PixelValueTransformationSequence", "RescaleIntercept"))
        step = _number(_lookup(groups, "PixelMeasuresSequence", "SpacingBetweenSlices"))
        frames.append(
            Frame(
                path,
                index,
                _floats(_lookup(groups, "PlanePositionSequence", "ImagePositionPatient")),
                _floats(_lookup(groups, "PlaneOrientationSequence", "ImageOrientationPatient")),
                _floats(_lookup(groups, "PixelMeasuresSequence", "PixelSpacing")),
                frame_slope if frame_slope is not None else (1.0 if slope is None else slope),
                frame_intercept if frame_intercept is not None else (0.0 if intercept is None else intercept),
                step or _number(_lookup(groups, "PixelMeasuresSequence", "SliceThickness")) or thickness,
                uid,
            )
        )
    return frames
