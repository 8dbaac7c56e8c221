"""Placing the voxels of one grid on another grid that shares them, without interpolation.

Two grids share voxels when one's voxel index maps to the other's by a signed
permutation of the axes and an integer shift: the same voxel centres, stored in another
axis order or direction, or a window of the other. A DICOM SEG holds the labels of its
source series this way (often only the slices that have labels), and labels predicted on
a series may be stored reoriented. :func:`place` moves an array onto the target grid by
transposes, flips and a copy into a zero-filled array; grids that do not share voxels are
an :class:`~seamline.errors.InputError`, never resampled.
"""

from __future__ import annotations

import os

import numpy as np

from seamline.errors import InputError

__all__ = ["place", "voxel_map"]

#: How far (in voxels) a mapped voxel centre may be from an integer index.
ATOL = 1e-3


def voxel_map(source_affine: np.ndarray, target_affine: np.ndarray) -> tuple[list[int], np.ndarray, np.ndarray] | None:
    """How a source voxel index maps to a target index, if the grids share voxels.

    Parameters
    ----------
    source_affine, target_affine : numpy.ndarray
        4x4 voxel-to-world matrices.

    Returns
    -------
    (axes, signs, shift) or None
        Target axis ``a`` runs along source axis ``axes[a]`` in direction ``signs[a]``:
        ``target[a] = signs[a] * source[axes[a]] + shift[a]``. None when the mapping is
        not a signed permutation with an integer shift (within :data:`ATOL` voxels).
    """
    mapping = np.linalg.inv(np.asarray(target_affine, dtype=float)) @ np.asarray(source_affine, dtype=float)
    rounded = np.round(mapping)
    if not np.allclose(mapping, rounded, rtol=0, atol=ATOL):
        return None
    matrix = rounded[:3, :3]
    if not (np.all(np.abs(matrix).sum(axis=0) == 1) and np.all(np.abs(matrix).sum(axis=1) == 1)):
        return None
    axes = [int(np.flatnonzero(matrix[a])[0]) for a in range(3)]
    signs = np.array([matrix[a, axes[a]] for a in range(3)])
    return axes, signs, rounded[:3, 3].astype(int)


def place(
    array: np.ndarray,
    affine: np.ndarray,
    target_affine: np.ndarray,
    target_shape: tuple[int, ...],
    *,
    path: str | os.PathLike | None = None,
    what: str = "the labels",
) -> np.ndarray:
    """Move *array* (on grid *affine*) onto the grid ``(target_affine, target_shape)``.

    Parameters
    ----------
    array : numpy.ndarray
        3D, on the source grid.
    affine : numpy.ndarray
        The source grid's affine.
    target_affine : numpy.ndarray
        The target grid's affine.
    target_shape : tuple of int
        The target grid's shape.
    path : str or os.PathLike, optional
        The file, for messages.
    what : str
        What *array* is, for messages.

    Returns
    -------
    numpy.ndarray
        Shaped *target_shape*, *array*'s dtype; zero where the source has no voxel.

    Raises
    ------
    InputError
        If the grids do not share voxels, or non-zero voxels fall outside the target.
    """
    found = voxel_map(affine, target_affine)
    if found is None:
        raise InputError(f"{what} are not on the grid of the reference (not the same voxel centres)", path)
    axes, signs, shift = found
    moved = np.transpose(array, axes)
    start = shift.copy()
    for a in range(3):
        if signs[a] < 0:
            moved = np.flip(moved, a)
            start[a] -= moved.shape[a] - 1
    low = np.maximum(start, 0)
    high = np.minimum(start + np.array(moved.shape), np.asarray(target_shape))
    if np.any(high <= low):
        raise InputError(f"{what} lie entirely outside the reference grid", path)
    inside = tuple(slice(lo - s, hi - s) for lo, hi, s in zip(low, high, start, strict=True))
    if np.count_nonzero(moved) != np.count_nonzero(moved[inside]):
        raise InputError(f"{what} have voxels outside the reference grid", path)
    out = np.zeros(tuple(target_shape), dtype=array.dtype)
    out[tuple(slice(lo, hi) for lo, hi in zip(low, high, strict=True))] = moved[inside]
    return out
