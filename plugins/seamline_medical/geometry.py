"""The geometry round trip: onto the model's grid, and back onto the input's, exactly.

A model sees every volume the same way: axes ordered and pointing as RAS (right,
anterior, superior; or the axis codes its card names), at the spacing it was trained
on. :func:`prepare_input` (the ``seamline_prepare_input`` hook) brings a volume there and
returns ``restore``, which brings a prediction back onto the input's own grid:

1. :func:`reorient` permutes and flips the voxel axes to the closest RAS order
   (``nibabel.orientations.io_orientation``), lazily (dask flips and a transpose) and with
   the affine updated exactly as :func:`nibabel.as_closest_canonical` does. Oblique
   affines stay oblique: only the axis order and directions change. A card whose
   ``orientation`` is None keeps the axes as stored.
2. :func:`resample` moves the voxels to the target spacing along the image's own axes,
   linear for intensities, block by block with ``scipy.ndimage.affine_transform``. The
   grid keeps the field of view (:func:`spacing_grid`: the same physical box, voxel
   centres inset by half a voxel), or, for a card with ``resample_grid="first_voxel"``,
   starts at the first voxel's centre as MONAI's ``Spacing`` does (:func:`first_voxel_grid`).
3. ``restore(output, kind)`` resamples back (nearest for ``"labels"``, linear for
   ``"scores"``) to the reoriented grid, undoes the reorientation, and puts back the
   input's affine and header, so the saved file has exactly the input's shape, affine,
   sform/qform codes and units. Without resampling the round trip is a permutation: it
   loses nothing.
"""

from __future__ import annotations

import itertools
import operator
from collections.abc import Callable, Sequence
from typing import Any

import dask.array as da
import numpy as np
from dask.base import tokenize
from dask.highlevelgraph import HighLevelGraph
from nibabel import orientations
from scipy import ndimage

from seamline.errors import InputError
from seamline.image import Image
from seamline.tiling import chunks_overlapping, intersection

__all__ = ["reorient", "resample", "spacing_grid", "first_voxel_grid", "prepare_input", "GEOMETRY_KEYS"]

GEOMETRY_KEYS = ("anchor", "nifti_header", "sform_code", "qform_code", "units")
BLOCK_VOXELS = 96**3


def _apply_orientation(image: Image, ornt: np.ndarray) -> Image:
    """Flip then transpose the spatial axes as ``nibabel.orientations.apply_orientation``."""
    data = image.data
    for axis, flip in enumerate(ornt[:, 1]):
        if flip == -1:
            data = da.flip(data, axis + 1)
    order = np.argsort(ornt[:, 0])
    data = data.transpose((0, *(int(a) + 1 for a in order)))
    affine = image.affine @ orientations.inv_ornt_aff(ornt, image.spatial_shape)
    return image.replace(data=data, affine=affine)


def reorient(image: Image, *, axcodes: Sequence[str] = "RAS") -> Image:
    """Permute and flip the voxel axes so that they point as *axcodes*, lazily.

    Parameters
    ----------
    image : Image
        A volume ``(C, i, j, k)`` whose affine maps to RAS world coordinates.
    axcodes : sequence of str
        The wanted axis directions, ``"RAS"`` by default (nibabel's canonical).

    Returns
    -------
    Image
        The same voxels on the reoriented grid; ``affine`` as
        :func:`nibabel.as_closest_canonical` computes it.
    """
    start = orientations.io_orientation(image.affine)
    ornt = orientations.ornt_transform(start, orientations.axcodes2ornt(tuple(axcodes)))
    if np.array_equal(ornt, orientations.axcodes2ornt("RAS")):  # identity transform
        return image
    return _apply_orientation(image, ornt)


def spacing_grid(image: Image, spacing: Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    """The grid with voxel size *spacing* that covers the image's field of view.

    Parameters
    ----------
    image : Image
        The image whose grid is resampled.
    spacing : sequence of float
        Voxel size per spatial axis, in world units (mm).

    Returns
    -------
    shape : tuple of int
        ``round(shape * image.spacing / spacing)``, at least 1.
    affine : numpy.ndarray
        The same axis directions and physical box; voxel centres inset by half a voxel.
    """
    zoom = np.asarray(spacing, dtype=float) / np.asarray(image.spacing)
    shape = tuple(int(max(1, round(n / z))) for n, z in zip(image.spatial_shape, zoom, strict=True))
    n = image.ndim
    step = np.eye(n + 1)
    step[:n, :n] = np.diag(zoom)
    step[:n, n] = (zoom - 1) / 2
    return shape, image.affine @ step


def first_voxel_grid(image: Image, spacing: Sequence[float]) -> tuple[tuple[int, ...], np.ndarray]:
    """The grid with voxel size *spacing* that MONAI's ``Spacing`` makes (``diagonal=False``, ``scale_extent=False``).

    The axes keep their directions (shear is dropped), the first voxel's centre stays
    where it is, and each axis has ``round((n - 1) * spacing_in / spacing + 1)`` voxels
    (``monai.data.utils.compute_shape_offset``). As in MONAI, an axis whose spacing is
    within 1e-3 of the target keeps its own, and a grid that differs from the image's own
    by less than 1e-3 (affine and shape) is the image's own.

    Parameters
    ----------
    image : Image
        The image whose grid is resampled.
    spacing : sequence of float
        Voxel size per spatial axis, in world units (mm).

    Returns
    -------
    shape : tuple of int
    affine : numpy.ndarray
    """
    n = image.ndim
    source = np.asarray(image.affine, dtype=float)
    linear = source[:n, :n]
    upper = np.linalg.cholesky(linear.T @ linear).T
    # Like MONAI, an axis whose spacing is within AFFINE_TOL (1e-3) of the target keeps its own.
    current = np.linalg.norm(linear, axis=0)
    wanted = np.asarray(spacing, float)
    wanted = np.where(np.abs(current - wanted) <= 1e-3, current, wanted)
    affine = np.eye(n + 1)
    affine[:n, :n] = linear @ np.linalg.inv(upper) @ np.diag(np.sign(np.diag(upper)) * wanted)
    corners = np.array(list(itertools.product(*((0.0, s - 1.0) for s in image.spatial_shape)))).T
    corners = np.vstack([corners, np.ones(corners.shape[1])])
    mapped = np.linalg.solve(affine, source) @ corners
    shape = np.round(np.ptp(mapped[:n], axis=1) + 1.0).astype(int)
    world = source @ corners
    lowest = [i for i in range(corners.shape[1]) if np.allclose(np.min(mapped[:n] - mapped[:n, i : i + 1], 1), 0.0)]
    if lowest:
        affine[:n, n] = world[:n, lowest[0]]
    else:  # no corner is first along every axis: centre the grid on the image, as MONAI does
        in_shape = np.asarray(image.spatial_shape, float)
        centre = source[:n, :n] @ (in_shape / 2.0) + source[:n, n]
        affine[:n, n] = centre - affine[:n, :n] @ (shape / 2.0)
    grid = tuple(int(max(1, s)) for s in shape)
    # MONAI leaves an image alone when the new grid is within AFFINE_TOL (1e-3) of its own.
    same_size = grid == tuple(image.spatial_shape)
    if same_size and (
        np.allclose(source, affine, atol=1e-3) or np.allclose(np.linalg.solve(source, affine), np.eye(n + 1), atol=1e-3)
    ):
        return grid, source
    return grid, affine


def _resample_block(pieces: list, matrix: np.ndarray, offset: np.ndarray, shape: tuple, order: int) -> np.ndarray:
    """Interpolate one output block from the input region it needs (a nested list of pieces)."""
    region = da.core.concatenate3(pieces)
    dtype = region.dtype if order == 0 else np.result_type(region.dtype, np.float32)
    out = np.empty((region.shape[0], *shape), dtype=dtype)
    for c in range(region.shape[0]):
        ndimage.affine_transform(
            region[c].astype(dtype, copy=False), matrix, offset, shape, out[c], order=order, mode="nearest"
        )
    return out


def _region(source: da.Array, low: np.ndarray, high: np.ndarray) -> list:
    """Tasks for the pieces of *source*'s chunks that make up voxels ``low:high``, nested like the chunks."""
    pieces = chunks_overlapping(source.chunks[1:], low.tolist(), high.tolist())
    nested = np.empty(len(pieces), dtype=object)
    for at, (index, start, size) in enumerate(pieces):
        inside, _ = intersection(start, size, low.tolist(), (high - low).tolist())
        nested[at] = (operator.getitem, (source.name, 0, *index), (slice(None), *inside))
    counts = tuple(last - first + 1 for first, last in zip(pieces[0][0], pieces[-1][0], strict=True))
    return [nested.reshape(counts).tolist()]


def resample(image: Image, shape: Sequence[int], affine: np.ndarray, *, order: int = 1) -> Image:
    """Resample *image* onto the grid ``(shape, affine)``, block by block, lazily.

    Each output block is one task that takes only the input chunks its voxels map into
    (plus one voxel), and interpolates them with :func:`scipy.ndimage.affine_transform`
    (its faster zoom path when the grids share axes); voxels outside the input take the
    nearest edge value. Every input chunk is read once per computation.

    Parameters
    ----------
    image : Image
        The image to resample.
    shape : sequence of int
        The target grid's spatial shape.
    affine : numpy.ndarray
        The target grid's affine (same world space as ``image.affine``).
    order : int
        0 for nearest (labels), 1 for linear (intensities, scores).

    Returns
    -------
    Image
        Shaped ``(C, *shape)`` with *affine*; the input's dtype for ``order=0``, floating
        point otherwise.
    """
    shape = tuple(int(s) for s in shape)
    mapping = np.linalg.inv(image.affine) @ np.asarray(affine, dtype=float)
    n = image.ndim
    matrix, shift = mapping[:n, :n], mapping[:n, n]
    zoom = np.diagonal(matrix)
    kernel = zoom if np.array_equal(matrix, np.diag(zoom)) else matrix
    source = image.data.rechunk({0: -1})
    dtype = source.dtype if order == 0 else np.result_type(source.dtype, np.float32)
    limit = max(1, BLOCK_VOXELS // image.channels) * 4
    chunks = da.core.normalize_chunks("auto", shape, limit=limit, dtype=np.float32)
    bounds = [np.cumsum((0, *c)) for c in chunks]
    extent = np.asarray(image.spatial_shape)
    name = "resample-" + tokenize(source, matrix, shift, shape, order)
    tasks: dict[Any, Any] = {}
    for index in np.ndindex(*(len(c) for c in chunks)):
        start = np.array([bounds[a][i] for a, i in enumerate(index)])
        size = tuple(int(chunks[a][i]) for a, i in enumerate(index))
        corners = np.array([start + np.array(c) * (np.array(size) - 1) for c in itertools.product((0, 1), repeat=n)])
        mapped = corners @ matrix.T + shift
        low = np.clip(np.floor(mapped.min(0)).astype(int) - 1, 0, extent - 1)
        high = np.clip(np.ceil(mapped.max(0)).astype(int) + 2, low + 1, extent)
        offset = matrix @ start + shift - low
        region = _region(source, low, high)
        tasks[(name, 0, *index)] = (_resample_block, region, kernel, offset, size, order)
    graph = HighLevelGraph.from_collections(name, tasks, dependencies=[source])
    data = da.Array(graph, name, chunks=((image.channels,), *chunks), dtype=dtype)
    return image.replace(data=data, affine=np.asarray(affine, dtype=float))


def _check_rank(image: Image, card: Any) -> None:
    """A 3D model needs a volume: not a 2D image, nor a volume one slice thick."""
    if getattr(card, "spatial_dims", None) != 3:
        return
    if image.ndim != 3:
        what = f"a {image.ndim}D image (shape {image.shape})"
    elif 1 in image.spatial_shape:
        what = f"a volume one slice thick (shape {image.shape})"
    else:
        return
    raise InputError(f"{what} cannot go through a 3D model; it needs a volume", image.meta.get("path"))


def _target_spacing(image: Image, target: Sequence[float] | None) -> tuple[float, ...] | None:
    """The card's spacing per axis; two values (a slice model's) set the axial plane only; 0 keeps an axis."""
    if target is None:
        return None
    target = tuple(float(t) for t in target)
    if len(target) == 2:
        target = (*target, image.spacing[2])
    if len(target) != 3:
        raise InputError(f"target spacing {list(target)} has {len(target)} values; a volume needs 3 (or 2 in-plane)")
    return tuple(t if t > 0 else own for t, own in zip(target, image.spacing, strict=True))


def prepare_input(
    image: Image, card: Any, *, kind: str = "image"
) -> tuple[Image, Callable[[Image, str], Image]] | None:
    """Bring a volume onto the model's grid: RAS axes and the card's target spacing.

    Parameters
    ----------
    image : Image
        A volume with ``meta["anchor"] == "center"`` (NIfTI); other images are left alone.
    card : object
        A model card; ``target_spacing`` (sequence of float or None; two values resample
        the axial plane only, for slice models; 0 keeps an axis's spacing),
        ``spatial_dims`` (2, 3 or None), ``orientation`` (axis codes, ``"RAS"`` when
        absent; None keeps the stored axes) and ``resample_grid`` (``"field_of_view"``
        when absent, or ``"first_voxel"``) are read from it.
    kind : {"image", "labels"}
        Intensities are resampled linearly, labels by nearest neighbour.

    Returns
    -------
    tuple of (Image, callable) or None
        The volume on the model grid and ``restore(output, kind)``, which maps an output
        on that grid back onto the input's grid (``kind`` is ``"labels"``, nearest, or
        ``"scores"``, linear). None for images that are not volumes in RAS world space.

    Raises
    ------
    InputError
        If a 3D model is given a 2D image (or a volume one slice thick), or the target
        spacing has neither 2 nor 3 values.
    """
    _check_rank(image, card)
    if image.ndim != 3 or image.meta.get("anchor") != "center":
        return None
    codes = getattr(card, "orientation", "RAS")
    canonical = image if codes is None else reorient(image, axcodes=codes)
    model_grid = canonical
    target = _target_spacing(canonical, getattr(card, "target_spacing", None))
    if target is not None and not np.allclose(canonical.spacing, target, rtol=1e-6, atol=0):
        place = first_voxel_grid if getattr(card, "resample_grid", "field_of_view") == "first_voxel" else spacing_grid
        shape, affine = place(canonical, target)
        model_grid = resample(canonical, shape, affine, order=0 if kind == "labels" else 1)
    start = orientations.io_orientation(image.affine)
    back_ornt = None if codes is None else orientations.ornt_transform(orientations.axcodes2ornt(codes), start)

    def restore(output: Image, kind: str = "labels") -> Image:
        if output.spatial_shape != model_grid.spatial_shape:
            raise InputError(f"the output grid {output.spatial_shape} is not the model grid {model_grid.spatial_shape}")
        if model_grid is not canonical:
            order = 0 if kind == "labels" else 1
            output = resample(
                output.replace(affine=model_grid.affine), canonical.spatial_shape, canonical.affine, order=order
            )
        restored = output.replace(affine=canonical.affine)
        if back_ornt is not None:
            restored = _apply_orientation(restored, back_ornt)
        meta = {**restored.meta, **{k: image.meta[k] for k in GEOMETRY_KEYS if k in image.meta}}
        return restored.replace(affine=image.affine, meta=meta)

    return model_grid, restore
