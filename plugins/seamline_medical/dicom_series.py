"""DICOM series: grouping the files at a path into series, and choosing one.

Every file at the path (:func:`seamline_medical.dicom_files.dicom_files`) has its header
read, without its pixels, and the files are grouped by ``SeriesInstanceUID`` into
:class:`Series`: a stack of :class:`~seamline_medical.dicom_frames.Frame` records, one
per 2D image (a multi-frame file gives several).

Objects that are not images (structured reports, RT structure sets and plans, key
objects, presentation states: anything without ``Rows``) and segmentations (SEG) form
series of their own kind; they are listed, never read as images. Localizer images mixed
into a series of slices are left out of it. :func:`choose_series` picks the series to
read: the one image series, or the one named by ``SeriesNumber`` or
``SeriesInstanceUID``; otherwise the error lists the series.

Patient and study identifiers are kept in :attr:`Series.identifiers`, for writers that
must copy them (a DICOM SEG), and never shown: a :class:`Series` prints and formats
without them.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping

import pydicom

from seamline.errors import InputError

from .dicom_files import dicom_files, read_header, without_values
from .dicom_frames import Frame, frames_of
from .formats import SEG_SOP_CLASS

__all__ = ["Series", "find_series", "choose_series", "IDENTIFIERS"]

#: Attributes that identify the patient or the study: kept in ``Series.identifiers``, never printed.
IDENTIFIERS = (
    "PatientName",
    "PatientID",
    "PatientBirthDate",
    "PatientSex",
    "PatientAge",
    "OtherPatientIDs",
    "StudyDate",
    "StudyTime",
    "StudyID",
    "AccessionNumber",
    "ReferringPhysicianName",
    "InstitutionName",
)


@dataclasses.dataclass(frozen=True, repr=False)
class Series:
    """A DICOM series: what it is, and its frames.

    Attributes
    ----------
    uid : str
        ``SeriesInstanceUID``.
    number : int or None
        ``SeriesNumber``.
    description : str
        ``SeriesDescription``.
    modality : str
        ``Modality`` (CT, MR, SEG, SR, ...).
    kind : str
        ``"image"`` for images, ``"SEG"`` for segmentations, else the object's SOP class
        name (``"Comprehensive SR Storage"``, ...).
    frames : tuple of Frame
        The images (empty for objects that are not images); in file order, or in slice
        order once the reader has sorted them.
    rows, columns, samples : int
        The frame size and samples per pixel (0 for objects that are not images).
    transfer_syntaxes : tuple of str
        The transfer syntax UIDs of its files.
    study_uid, frame_of_reference_uid, sop_class_uid : str
        ``StudyInstanceUID``, ``FrameOfReferenceUID``, ``SOPClassUID``.
    pixel_format : tuple
        ``(BitsAllocated, BitsStored, PixelRepresentation, PhotometricInterpretation)``.
    image_type : tuple of str
        ``ImageType`` (``ORIGINAL``, ``PRIMARY``, ``AXIAL``, ``MOSAIC``, ...).
    resampled : bool
        True when the reader interpolated a regular grid: its frames are not the grid's slices.
    identifiers : dict
        Patient and study identifiers (:data:`IDENTIFIERS`); never printed.
    """

    uid: str
    number: int | None
    description: str
    modality: str
    kind: str
    frames: tuple[Frame, ...]
    rows: int
    columns: int
    samples: int
    transfer_syntaxes: tuple[str, ...]
    study_uid: str = ""
    frame_of_reference_uid: str = ""
    sop_class_uid: str = ""
    pixel_format: tuple = ()
    image_type: tuple[str, ...] = ()
    resampled: bool = False
    identifiers: Mapping[str, str] = dataclasses.field(default_factory=dict, compare=False)

    @property
    def files(self) -> tuple[str, ...]:
        """The files of its frames, each once, in frame order."""
        return tuple(dict.fromkeys(frame.path for frame in self.frames))

    def summary(self) -> str:
        """One line: number, description, modality, size, kind and UID (no identifiers)."""
        size = f"{self.columns}x{self.rows}x{len(self.frames)}" if self.kind == "image" else self.kind
        number = "-" if self.number is None else self.number
        return f"#{number} {self.description!r} {self.modality} {size} (uid {self.uid})"

    def __repr__(self) -> str:
        return f"Series({self.summary()}; patient and study identifiers hidden)"


def _kind(ds: pydicom.Dataset) -> str:
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class == SEG_SOP_CLASS:
        return "SEG"
    if "Rows" in ds and "Columns" in ds:
        return "image"
    name = getattr(ds.get("SOPClassUID"), "name", "") or str(ds.get("Modality", "")) or "unknown object"
    return str(name)


def _is_localizer(ds: pydicom.Dataset) -> bool:
    return "LOCALIZER" in [str(v).upper() for v in (ds.get("ImageType") or [])]


def _series(headers: list[tuple[str, pydicom.Dataset]]) -> Series:
    """A Series from the headers of its files (localizers left out when slices remain)."""
    kept = [(p, ds) for p, ds in headers if not _is_localizer(ds)] or headers
    first = kept[0][1]
    kind = _kind(first)
    frames = [frame for path, ds in kept for frame in frames_of(ds, path)] if kind == "image" else []
    syntaxes = {str(getattr(ds.get("file_meta", None), "TransferSyntaxUID", "") or "") for _, ds in kept}
    number = first.get("SeriesNumber")
    pixel_format = tuple(first.get(k) for k in ("BitsAllocated", "BitsStored", "PixelRepresentation"))
    return Series(
        uid=str(first.get("SeriesInstanceUID", "")),
        number=None if number in (None, "") else int(number),
        description=str(first.get("SeriesDescription", "")),
        modality=str(first.get("Modality", "")),
        kind=kind,
        frames=tuple(frames),
        rows=int(first.get("Rows") or 0),
        columns=int(first.get("Columns") or 0),
        samples=int(first.get("SamplesPerPixel") or 1),
        transfer_syntaxes=tuple(sorted(syntaxes - {""})),
        study_uid=str(first.get("StudyInstanceUID", "")),
        frame_of_reference_uid=str(first.get("FrameOfReferenceUID", "")),
        sop_class_uid=str(first.get("SOPClassUID", "")),
        pixel_format=(*pixel_format, str(first.get("PhotometricInterpretation", ""))),
        image_type=tuple(str(v).upper() for v in (first.get("ImageType") or [])),
        identifiers={k: str(first.get(k)) for k in IDENTIFIERS if first.get(k) not in (None, "")},
    )


def _check_uniform(series: Series, headers: list[tuple[str, pydicom.Dataset]]) -> None:
    """Every image of a series has the same size and pixel format."""
    formats = {
        tuple(str(ds.get(k)) for k in ("Rows", "Columns", "SamplesPerPixel", "BitsAllocated", "PixelRepresentation"))
        for _, ds in headers
        if not _is_localizer(ds)
    }
    if len(formats) > 1:
        raise InputError(f"series {series.summary()} mixes {len(formats)} image sizes or pixel formats")


def find_series(path: str | os.PathLike) -> list[Series]:
    """Every series at *path*, in ``SeriesNumber`` order.

    Parameters
    ----------
    path : str or os.PathLike
        A folder, a DICOMDIR (or a folder holding one), or a DICOM file.

    Returns
    -------
    list of Series
        Image series and objects that are not images alike.

    Raises
    ------
    InputError
        If a file cannot be read as DICOM, or a series mixes images of different sizes.
    """
    files, forced = dicom_files(path)
    groups: dict[str, list[tuple[str, pydicom.Dataset]]] = {}
    found = []
    for file in files:
        ds = read_header(file, force=forced)
        groups.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((file, ds))
    for headers in groups.values():
        try:
            series = _series(headers)
        except (ValueError, TypeError, AttributeError) as exc:
            what = without_values(exc)
            raise InputError(f"has an attribute that cannot be read ({what})", headers[0][0]) from exc
        if series.kind == "image":
            _check_uniform(series, headers)
        found.append(series)
    return sorted(found, key=lambda s: (s.number is None, s.number or 0, s.uid))


def choose_series(found: list[Series], choice: int | str | None, path: str | os.PathLike) -> Series:
    """The image series to read: the only one, or the one *choice* names.

    Parameters
    ----------
    found : list of Series
        From :func:`find_series`.
    choice : int, str or None
        A ``SeriesNumber`` (int, or a string of digits) or a ``SeriesInstanceUID``.
    path : str or os.PathLike
        The path the user gave, for messages.

    Returns
    -------
    Series

    Raises
    ------
    InputError
        If nothing matches, several series match, the match is not an image, or there is
        no choice and the path holds no image series or several.
    """
    images = [s for s in found if s.kind == "image"]
    listing = "; ".join(s.summary() for s in (images or found))
    if choice is None:
        if len(images) == 1:
            return images[0]
        if not images:
            kinds = ", ".join(sorted({s.kind for s in found}))
            raise InputError(f"holds no images, only {kinds}: {listing}", path)
        raise InputError(
            f"holds {len(images)} image series; choose one with series=NUMBER or UID "
            f"(--input-option series=... on the command line): {listing}",
            path,
        )
    text = str(choice).strip()
    matches = [s for s in found if s.uid == text]
    if not matches and text.lstrip("-").isdigit():
        matches = [s for s in found if s.number == int(text)]
    if len(matches) != 1:
        what = "no series" if not matches else f"{len(matches)} series"
        raise InputError(f"{what} match series={choice!r}; the series are: {listing}", path)
    if matches[0].kind != "image":
        raise InputError(f"series {matches[0].summary()} is a {matches[0].kind} object, not images", path)
    return matches[0]
