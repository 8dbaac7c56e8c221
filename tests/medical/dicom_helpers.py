"""Writing DICOM series for tests: a volume on an affine, as one file per slice, with pydicom.

:func:`write_series` stores a ``(i, j, k)`` volume whose affine maps voxel centres to RAS
mm as a CT or MR series: slice ``k`` is a file whose ``ImagePositionPatient`` and
``ImageOrientationPatient`` come from the affine (converted to LPS), pixels
``volume[:, :, k].T`` (rows, columns), stored through a rescale chosen so that the
stored values are exact integers. :func:`acquisitions` gives the same anatomy stored in
several orientations (axial, sagittal, coronal, oblique, feet first, reversed order).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import CTImageStorage, ExplicitVRLittleEndian, MRImageStorage, generate_uid

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
PATIENT = {"PatientName": "Doe^Jane", "PatientID": "TEST-0001", "PatientBirthDate": "19700101", "PatientSex": "F"}


def _ds(value: float) -> str:
    """A DS string of at most 16 characters holding *value* as closely as it can."""
    for digits in range(15, 0, -1):
        text = f"{value:.{digits}g}"
        if len(text) <= 16:
            return text
    raise ValueError(value)


def write_series(
    volume: np.ndarray,
    affine: np.ndarray,
    folder: Path,
    *,
    modality: str = "CT",
    rescale: tuple[float, float] = (1.0, 0.0),
    stored: type = np.int16,
    bits_stored: int | None = None,
    reverse_files: bool = False,
    series_number: int = 1,
    description: str = "test series",
    series_uid: str | None = None,
    study_uid: str | None = None,
    frame_of_reference_uid: str | None = None,
    patient: dict | None = None,
    positions: np.ndarray | None = None,
    transfer_syntax: str = ExplicitVRLittleEndian,
) -> list[Path]:
    """Write *volume* (i, j, k) on *affine* (RAS) as one DICOM file per slice; return the files.

    ``stored = (value - intercept) / slope`` must be exact integers in *stored*'s range
    (*bits_stored* of it, all its bits by default).
    *positions* (K x 3, LPS) overrides the affine's slice positions (uneven, tilted stacks).
    With *reverse_files*, file names and instance numbers run against the slice order.
    """
    folder.mkdir(parents=True, exist_ok=True)
    lps = LPS_TO_RAS @ np.asarray(affine, dtype=float)
    spacing_i, spacing_j = np.linalg.norm(lps[:3, 0]), np.linalg.norm(lps[:3, 1])
    row, column = lps[:3, 0] / spacing_i, lps[:3, 1] / spacing_j
    slope, intercept = rescale
    values = (np.asarray(volume, dtype=np.float64) - intercept) / slope
    bits = bits_stored or np.dtype(stored).itemsize * 8
    low, high = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if np.dtype(stored).kind == "i" else (0, 2**bits - 1)
    if not np.array_equal(values, np.round(values)) or values.min() < low or values.max() > high:
        raise ValueError("the rescale does not give exact stored integers within the stored bits")
    values = values.astype(stored)
    series_uid = series_uid or generate_uid()
    study_uid = study_uid or generate_uid()
    frame_uid = frame_of_reference_uid or generate_uid()
    sop_class = CTImageStorage if modality == "CT" else MRImageStorage
    count = volume.shape[2]
    paths = []
    for k in range(count):
        position = lps[:3, :] @ [0, 0, k, 1] if positions is None else positions[k]
        number = count - k if reverse_files else k + 1
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = sop_class
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = Dataset()
        ds.file_meta = meta
        ds.SOPClassUID, ds.SOPInstanceUID = sop_class, meta.MediaStorageSOPInstanceUID
        ds.Modality, ds.SeriesDescription = modality, description
        ds.SeriesNumber, ds.InstanceNumber = series_number, number
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study_uid, series_uid, frame_uid
        ds.StudyDate, ds.StudyTime, ds.StudyID, ds.AccessionNumber = "20240101", "120000", "1", "A1"
        ds.ReferringPhysicianName, ds.Manufacturer = "", "seamline tests"
        for key, value in (patient or PATIENT).items():
            setattr(ds, key, value)
        ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
        ds.PositionReferenceIndicator = ""
        ds.ImagePositionPatient = [_ds(v) for v in position]
        ds.ImageOrientationPatient = [_ds(v) for v in (*row, *column)]
        ds.PixelSpacing = [_ds(spacing_j), _ds(spacing_i)]
        ds.SliceThickness = _ds(abs(float(np.linalg.norm(lps[:3, 2]))))
        ds.Rows, ds.Columns = volume.shape[1], volume.shape[0]
        ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, "MONOCHROME2"
        bits = np.dtype(stored).itemsize * 8
        ds.BitsAllocated, ds.BitsStored, ds.HighBit = bits, bits_stored or bits, (bits_stored or bits) - 1
        ds.PixelRepresentation = int(np.issubdtype(stored, np.signedinteger))
        if rescale != (1.0, 0.0):
            ds.RescaleSlope, ds.RescaleIntercept = _ds(slope), _ds(intercept)
            ds.RescaleType = "HU" if modality == "CT" else "US"
        ds.PixelData = np.ascontiguousarray(values[:, :, k].T).tobytes()
        if transfer_syntax != ExplicitVRLittleEndian:
            ds.compress(transfer_syntax)
        path = folder / f"slice_{number:04d}.dcm"
        ds.save_as(path, enforce_file_format=True)
        paths.append(path)
    return paths


def flip(volume: np.ndarray, affine: np.ndarray, axes: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy with voxel axes *axes* reversed."""
    affine = np.array(affine, dtype=float)
    for axis in axes:
        step = np.eye(4)
        step[axis, axis], step[axis, 3] = -1, volume.shape[axis] - 1
        affine = affine @ step
    return np.flip(volume, axes), affine


def permute(volume: np.ndarray, affine: np.ndarray, order: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    """The same anatomy with voxel axes in *order* (new axis a is old axis order[a])."""
    step = np.eye(4)
    step[:3, :3] = np.eye(3)[:, list(order)]
    return np.transpose(volume, order), np.asarray(affine, dtype=float) @ step


def rotate(affine: np.ndarray, degrees: tuple[float, float, float]) -> np.ndarray:
    """The affine turned about x, then y, then z (an oblique acquisition of the same voxels)."""
    rotation = np.eye(4)
    for axis, angle in enumerate(np.radians(degrees)):
        c, s = np.cos(angle), np.sin(angle)
        a, b = [x for x in range(3) if x != axis]
        turn = np.eye(4)
        turn[a, a], turn[a, b], turn[b, a], turn[b, b] = c, -s, s, c
        rotation = turn @ rotation
    return rotation @ np.asarray(affine, dtype=float)


def acquisitions(volume: np.ndarray, affine: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray, bool]]:
    """The same anatomy stored as several acquisitions: name -> (volume, affine, reversed files)."""
    return {
        "axial": (volume, affine, False),
        "sagittal": (*permute(volume, affine, (1, 2, 0)), False),
        "coronal": (*permute(volume, affine, (0, 2, 1)), False),
        "oblique": (volume, rotate(affine, (20.0, -15.0, 30.0)), False),
        "feet_first": (*flip(volume, affine, (0, 2)), False),
        "reversed": (*flip(volume, affine, (2,)), True),
    }
