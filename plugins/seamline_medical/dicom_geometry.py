"""Where DICOM slices lie: slice order, the affine, and the checks a stack must pass.

A DICOM image says where it is in the patient's LPS frame (x to the patient's left, y
to the back, z to the head): ``ImagePositionPatient`` is the centre of its first pixel,
``ImageOrientationPatient`` the directions of its rows and columns, ``PixelSpacing``
the distances between rows and between columns. :func:`stack_geometry` turns the frames
of a series into the grid seamline reads them on, in the convention of the NIfTI
reader: voxel axes ``(i, j, k)`` = (column, row, slice), an affine from voxel centres to
RAS millimetres (``diag(-1, -1, 1)`` times the LPS one), as nibabel, dicom2nifti and
dcm2niix give:

- ``affine[:3, 0]`` = row direction x column spacing, ``affine[:3, 1]`` = column
  direction x row spacing (``PixelSpacing[1]`` and ``[0]``);
- slices are sorted by their position along the normal (row direction x column
  direction), so ``k`` runs along it whatever the file names or instance numbers say;
  ``affine[:3, 2]`` = normal x the slice spacing, the origin is the first slice's position.

A stack must be regular: all frames of one orientation and pixel spacing, no two at one
position, positions along the normal evenly spaced (within :data:`TOLERANCE` of the
spacing) and not shifted within the plane from slice to slice (gantry tilt, within
:data:`TOLERANCE` of a pixel). An irregular stack is refused, or, with ``resample=True``,
given a regular grid and a :class:`Resampling` that says how each of its slices is
interpolated from the acquired ones.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np

from seamline.errors import InputError

from .dicom_frames import Frame

__all__ = ["Stack", "Resampling", "stack_geometry", "frames_stack", "LPS_TO_RAS", "TOLERANCE"]

LPS_TO_RAS = np.diag([-1.0, -1.0, 1.0, 1.0])
#: Relative tolerance of the regularity checks: 1% of the slice spacing, or of a pixel.
TOLERANCE = 0.01


@dataclasses.dataclass(frozen=True)
class Resampling:
    """How the slices of a regular grid come from irregular acquired slices.

    Slice ``k`` of the grid is ``weights[k, 0] * A[sources[k, 0]] + weights[k, 1] *
    A[sources[k, 1]]``, where ``A[m]`` is acquired slice ``m`` (in slice order) moved
    within its plane by ``shifts[m]`` (voxels along i and j) onto the grid's in-plane
    lattice, bilinearly, ``fill`` outside it.

    Attributes
    ----------
    sources : numpy.ndarray
        ``(K, 2)`` acquired slice indices.
    weights : numpy.ndarray
        ``(K, 2)`` linear weights (summing to 1).
    shifts : numpy.ndarray
        ``(M, 2)``: where voxel ``(0, 0)`` of acquired slice ``m`` lies on the grid.
    shape : tuple of int
        The grid's in-plane shape ``(I, J)``.
    """

    sources: np.ndarray
    weights: np.ndarray
    shifts: np.ndarray
    shape: tuple[int, int]


@dataclasses.dataclass(frozen=True)
class Stack:
    """The grid of a series.

    Attributes
    ----------
    order : numpy.ndarray
        Frame indices in slice order (ascending along the normal).
    affine : numpy.ndarray
        4x4, voxel ``(i, j, k)`` centres to RAS mm.
    shape : tuple of int
        ``(I, J, K)`` = (columns, rows, slices) of the grid.
    resampling : Resampling or None
        None when the acquired slices are the grid's slices.
    """

    order: np.ndarray
    affine: np.ndarray
    shape: tuple[int, int, int]
    resampling: Resampling | None = None


def _same(values: np.ndarray, what: str, path: str | os.PathLike | None) -> np.ndarray:
    if not np.allclose(values, values[0], rtol=0, atol=1e-4):
        count = len(np.unique(np.round(values, 4), axis=0))
        raise InputError(f"its images have {count} different {what}; they do not form one volume", path)
    return values[0]


def _lps_affine(
    row: np.ndarray, column: np.ndarray, normal: np.ndarray, spacing: np.ndarray, origin: np.ndarray
) -> np.ndarray:
    """The RAS affine of axes *row* and *column* (scaled by *spacing*), slice step *normal*, at *origin* (LPS)."""
    affine = np.eye(4)
    affine[:3, 0], affine[:3, 1], affine[:3, 2], affine[:3, 3] = row * spacing[0], column * spacing[1], normal, origin
    return LPS_TO_RAS @ affine


def stack_geometry(
    positions: Sequence[Sequence[float]],
    orientations: Sequence[Sequence[float]],
    spacings: Sequence[Sequence[float]],
    *,
    columns: int,
    rows: int,
    thickness: float | None = None,
    resample: bool = False,
    path: str | os.PathLike | None = None,
) -> Stack:
    """The grid of a stack of frames, from their positions, orientations and spacings.

    Parameters
    ----------
    positions : sequence of (x, y, z)
        ``ImagePositionPatient`` of each frame, LPS mm.
    orientations : sequence of 6 floats
        ``ImageOrientationPatient`` of each frame.
    spacings : sequence of (row spacing, column spacing)
        ``PixelSpacing`` of each frame.
    columns, rows : int
        The frame size.
    thickness : float, optional
        The slice step of a single frame (``SpacingBetweenSlices`` or ``SliceThickness``;
        1 mm when None).
    resample : bool
        Give an irregular stack (uneven spacing, gantry tilt) a regular grid and a
        :class:`Resampling`, instead of refusing it.
    path : str or os.PathLike, optional
        The series' path, for messages.

    Returns
    -------
    Stack

    Raises
    ------
    InputError
        If the frames differ in orientation or pixel spacing, two lie at one position,
        or (without *resample*) the stack is irregular.
    """
    points = np.asarray(positions, dtype=float)
    orientation = _same(np.asarray(orientations, dtype=float), "orientations", path)
    pixel = _same(np.asarray(spacings, dtype=float), "pixel spacings", path)
    row, column = orientation[:3], orientation[3:]
    normal = np.cross(row, column)
    normal /= np.linalg.norm(normal)
    spacing = np.array([pixel[1], pixel[0]])  # along i (between columns), along j (between rows)
    distances = points @ normal
    order = np.argsort(distances, kind="stable")
    points, distances = points[order], distances[order]
    count = len(points)
    if count == 1:
        affine = _lps_affine(row, column, normal * (thickness or 1.0), spacing, points[0])
        return Stack(order, affine, (columns, rows, 1))
    gaps = np.diff(distances)
    if gaps.min() <= TOLERANCE * max(float(np.median(gaps)), 1e-6):
        places = len(np.unique(np.round(distances, 3)))
        raise InputError(
            f"holds {count} images at {places} positions (several echoes, phases or time points?); "
            "split them into series of one image per position",
            path,
        )
    step = (distances[-1] - distances[0]) / (count - 1)
    uneven = np.abs(distances - distances[0] - step * np.arange(count)).max() > TOLERANCE * step
    in_plane = (points - points[0]) @ np.stack([row, column]).T / spacing
    tilted = np.abs(in_plane).max() > TOLERANCE
    if not (uneven or tilted):
        return Stack(order, _lps_affine(row, column, normal * step, spacing, points[0]), (columns, rows, count))
    problem = "unevenly spaced slices" if uneven else "slices shifted within their plane (gantry tilt)"
    if uneven and tilted:
        problem = "unevenly spaced slices, shifted within their plane (gantry tilt)"
    if not resample:
        raise InputError(
            f"has {problem} (gaps {gaps.min():.4g} to {gaps.max():.4g} mm, in-plane shift up to "
            f"{np.abs(in_plane).max():.3g} pixels); open it with resample=True (--input-option resample=true) "
            "to interpolate a regular grid",
            path,
        )
    return _regular_grid(points[0], row, column, normal, spacing, distances, in_plane, (columns, rows), order)


def frames_stack(
    frames: Sequence[Frame],
    *,
    columns: int,
    rows: int,
    resample: bool = False,
    path: str | os.PathLike | None = None,
) -> Stack:
    """The grid of a series' frames (:func:`stack_geometry` on their position tags).

    Parameters
    ----------
    frames : sequence of Frame
        The series' frames.
    columns, rows : int
        The frame size.
    resample : bool
        As for :func:`stack_geometry`.
    path : str or os.PathLike, optional
        The series' path, for messages.

    Returns
    -------
    Stack

    Raises
    ------
    InputError
        If a frame has no position, orientation or pixel spacing (not a slice in patient
        space), or as :func:`stack_geometry` does.
    """
    positions, orientations, spacings = [], [], []
    for frame in frames:
        if frame.position is None or frame.orientation is None or frame.spacing is None:
            what = (
                "a position, orientation and pixel spacing for each frame"
                if frame.index is not None
                else ("ImagePositionPatient, ImageOrientationPatient or PixelSpacing")
            )
            raise InputError(
                f"has no {what}: not slices in patient space (projection radiographs, ultrasound, "
                "secondary captures, dose grids are not read)",
                frame.path,
            )
        positions.append(frame.position)
        orientations.append(frame.orientation)
        spacings.append(frame.spacing)
    return stack_geometry(
        positions,
        orientations,
        spacings,
        columns=columns,
        rows=rows,
        thickness=frames[0].thickness,
        resample=resample,
        path=path,
    )


def _regular_grid(
    origin: np.ndarray,
    row: np.ndarray,
    column: np.ndarray,
    normal: np.ndarray,
    spacing: np.ndarray,
    distances: np.ndarray,
    in_plane: np.ndarray,
    size: tuple[int, int],
    order: np.ndarray,
) -> Stack:
    """A regular orthogonal grid over every acquired slice (the median gap), and how to fill it.

    In the plane, the grid covers all slices (their bounding box, as dicom2nifti's
    resampling does); along the normal it runs from the first slice to the last.
    """
    gaps = np.diff(distances)
    count = round((distances[-1] - distances[0]) / float(np.median(gaps))) + 1
    step = (distances[-1] - distances[0]) / (count - 1)
    low = in_plane.min(axis=0)
    high = in_plane.max(axis=0) + np.asarray(size) - 1
    shape = tuple(int(np.ceil(h - lo - 1e-6)) + 1 for lo, h in zip(low, high, strict=True))
    corner = origin + low[0] * spacing[0] * row + low[1] * spacing[1] * column
    targets = distances[0] + step * np.arange(count)
    upper = np.clip(np.searchsorted(distances, targets, side="left"), 1, len(distances) - 1)
    lower = upper - 1
    fraction = np.clip((targets - distances[lower]) / (distances[upper] - distances[lower]), 0.0, 1.0)
    resampling = Resampling(
        sources=np.stack([lower, upper], axis=1),
        weights=np.stack([1.0 - fraction, fraction], axis=1),
        shifts=in_plane - low,
        shape=(shape[0], shape[1]),
    )
    affine = _lps_affine(row, column, normal * step, spacing, corner)
    return Stack(order, affine, (shape[0], shape[1], count), resampling)
