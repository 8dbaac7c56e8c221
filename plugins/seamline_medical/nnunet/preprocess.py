"""nnU-Net's preprocessing of one volume, lazily: axes, crop, normalization, resampling.

:func:`to_network_grid` does what nnunetv2's ``DefaultPreprocessor.run_case_npy`` does to
an image read by SimpleITKIO or NibabelIO, with the same numbers:

1. **axes**: the readers return the voxel axes reversed (``(k, j, i)`` for a NIfTI file's
   ``(i, j, k)``; NibabelIOWithReorient first reorients the volume to RAS), with the
   spacing reversed alike; then ``transpose_forward`` permutes them. The spacing is the
   reader's: NibabelIO's is the header's pixdim; SimpleITKIO's is ITK's, the pixdim in
   the file's spatial unit scaled to millimetres (``xyzt_units`` micrometres or metres);
   after reorienting (NibabelIOWithReorient, or ``reorient``), nibabel's ``as_reoriented``
   has rewritten the pixdim as the new affine's column lengths in float32, unless the
   volume was RAS already. An image whose affine is no longer its header's (it was
   resampled, say) has the affine's column lengths;
2. **crop** to the box of voxels that are non-zero in some channel;
3. **normalize** each channel by its scheme, in float32: ``CTNormalization`` clips to the
   dataset's foreground percentiles 0.5 and 99.5 and subtracts and divides by its
   foreground mean and standard deviation; ``ZScoreNormalization`` does the same with the
   crop's own mean and deviation (over the non-zero mask with its holes filled, and only
   there, when ``use_mask_for_norm``); ``RescaleTo01Normalization`` maps the crop's range
   to [0, 1]; ``RGBTo01Normalization`` divides by 255; ``NoNormalization`` keeps values;
4. **resample** to the configuration's spacing (:mod:`.resample`).

The box and the statistics are streaming reductions computed here, once, before the
graph; everything else stays lazy. :class:`Grid` records what the way back needs.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from typing import Any

import dask
import dask.array as da
import numpy as np

from seamline.errors import ModelError
from seamline.image import Image
from seamline.postprocess import fill_holes

from ..geometry import reorient
from .resample import new_shape, resample_to_shape

__all__ = ["Grid", "to_network_grid"]

_EPS = 1e-8
#: ITK's scale from a NIfTI file's spatial unit to millimetres (it takes any other unit for mm).
_ITK_UNITS = {"meter": 1000.0, "micron": 0.001}


@dataclasses.dataclass(frozen=True)
class Grid:
    """Where the network grid lies: what restoring an output onto the input needs.

    Attributes
    ----------
    source : Image
        The input as nnU-Net reads it (reoriented to RAS for NibabelIOWithReorient).
    reoriented : bool
        Whether *source* was reoriented.
    axes : tuple of int
        For each nnU-Net axis (after ``transpose_forward``), the source's spatial axis.
    box : tuple of (int, int)
        The crop, per nnU-Net axis.
    spacing : tuple of float
        The source's spacing along the nnU-Net axes.
    network_spacing : tuple of float
        The network grid's spacing (the configuration's).
    """

    source: Image
    reoriented: bool
    axes: tuple[int, ...]
    box: tuple[tuple[int, int], ...]
    spacing: tuple[float, ...]
    network_spacing: tuple[float, ...]

    @property
    def crop_shape(self) -> tuple[int, ...]:
        """The cropped volume's shape, along the nnU-Net axes."""
        return tuple(hi - lo for lo, hi in self.box)

    @property
    def full_shape(self) -> tuple[int, ...]:
        """The uncropped volume's shape, along the nnU-Net axes."""
        return tuple(self.source.spatial_shape[a] for a in self.axes)


def _zooms(image: Image, source: Image, reader: str) -> tuple[float, ...]:
    """The voxel size nnU-Net's reader reports for *image*, along *source*'s axes (see the module's docstring)."""
    header = image.meta.get("nifti_header")
    if header is None or len(header.get_zooms()) < 3 or not np.allclose(header.get_best_affine(), image.affine):
        return source.spacing  # no header, or not this image's: the image's own voxel size
    stored = np.asarray(source.spacing if source is not image else header.get_zooms()[:3], np.float32)
    zooms = stored.astype(np.float64)  # the header's float32 numbers; ITK scales them in double
    if reader == "SimpleITKIO":
        zooms = np.abs(zooms) * _ITK_UNITS.get(header.get_xyzt_units()[0], 1.0)
    return tuple(float(z) for z in zooms)


def _nonzero_box(data: da.Array) -> tuple[tuple[int, int], ...]:
    """The box of voxels non-zero in some channel (the whole volume when there is none)."""
    nonzero = (data != 0).any(axis=0)
    axes = range(nonzero.ndim)
    found = dask.compute(*[nonzero.any(axis=tuple(b for b in axes if b != a)) for a in axes])
    box = []
    for hits in found:
        where = np.flatnonzero(hits)
        box.append((int(where[0]), int(where[-1]) + 1) if where.size else (0, len(hits)))
    return tuple(box)


def _statistics(crop: da.Array, steps: Sequence[Mapping[str, Any]], mask: da.Array | None) -> list[dict[str, float]]:
    """Per channel, the numbers its scheme takes from the crop itself, in one pass."""
    wanted: dict[tuple[int, str], Any] = {}
    for channel, step in enumerate(steps):
        x = crop[channel].astype(np.float64)
        if step["scheme"] == "ZScoreNormalization":
            wanted[channel, "sum"], wanted[channel, "squares"] = x.sum(), (x * x).sum()
            counted = mask if step["use_mask"] and mask is not None else None
            wanted[channel, "count"] = counted.sum() if counted is not None else x.size
        elif step["scheme"] == "RescaleTo01Normalization":
            wanted[channel, "min"], wanted[channel, "max"] = x.min(), x.max()
    values = dict(zip(wanted, dask.compute(*wanted.values()), strict=True))
    stats: list[dict[str, float]] = [{} for _ in steps]
    for (channel, name), value in values.items():
        stats[channel][name] = float(value)
    for entry in stats:
        if "sum" in entry:
            mean = entry["sum"] / entry["count"]
            entry["mean"], entry["std"] = mean, float(np.sqrt(max(entry["squares"] / entry["count"] - mean**2, 0.0)))
    return stats


def _divisor(spread: float | np.floating) -> np.float32:
    """What nnU-Net divides by: the spread, or its epsilon when the spread is smaller."""
    return np.float32(spread if spread > _EPS else _EPS)


def _normalize(crop: da.Array, steps: Sequence[Mapping[str, Any]]) -> da.Array:
    """Each channel by its scheme, in float32 as nnU-Net computes it."""
    needs_mask = any(s["scheme"] == "ZScoreNormalization" and s["use_mask"] for s in steps)
    mask = fill_holes((crop != 0).any(axis=0).astype(np.uint8)).astype(bool) if needs_mask else None
    stats = _statistics(crop, steps, mask)
    channels = []
    for channel, (step, stat) in enumerate(zip(steps, stats, strict=True)):
        x, scheme = crop[channel].astype(np.float32), step["scheme"]
        if scheme == "CTNormalization":
            x = da.clip(x, np.float32(step["percentile_00_5"]), np.float32(step["percentile_99_5"]))
            x = (x - np.float32(step["mean"])) / _divisor(step["std"])
        elif scheme == "ZScoreNormalization":
            scaled = (x - np.float32(stat["mean"])) / _divisor(np.float32(stat["std"]))
            x = da.where(mask, scaled, x) if step["use_mask"] and mask is not None else scaled
        elif scheme == "RescaleTo01Normalization":
            low = np.float32(stat["min"])
            x = (x - low) / _divisor(np.float32(stat["max"]) - low)
        elif scheme == "RGBTo01Normalization":
            x = x / np.float32(255.0)
        elif scheme != "NoNormalization":
            raise ModelError(f"normalization scheme {scheme!r} is not one nnU-Net's pipeline runs")
        channels.append(x)
    return da.stack(channels)


def _network_affine(grid: Grid, shape: Sequence[int]) -> np.ndarray:
    """The affine of the network grid: resize's cell-centred mapping into the crop, then the source's axes."""
    mapping = np.eye(4)
    mapping[:, :3] = 0
    for d, (axis, (low, high), size) in enumerate(zip(grid.axes, grid.box, shape, strict=True)):
        scale = (high - low) / size
        mapping[axis, d] = scale
        mapping[axis, 3] = low + 0.5 * scale - 0.5
    return np.asarray(grid.source.affine) @ mapping


def to_network_grid(image: Image, pipeline: Mapping[str, Any]) -> tuple[Image, Grid]:
    """Bring a volume onto the network's grid as nnU-Net's preprocessing does.

    Parameters
    ----------
    image : Image
        ``(C, i, j, k)`` as read (float32, the model's channels), NIfTI voxel axes.
    pipeline : mapping
        The card's ``pipeline`` (see :mod:`.plans`).

    Returns
    -------
    prepared : Image
        ``(C, *network_shape)``, normalized and resampled, lazy; its affine places the
        network grid's voxels in the input's world space.
    grid : Grid
        What :mod:`.pipeline` needs to bring outputs back.
    """
    source = reorient(image, axcodes="RAS") if pipeline["reorient"] else image
    zooms = _zooms(image, source, pipeline.get("reader", "SimpleITKIO"))
    axes = tuple(2 - t for t in pipeline["transpose_forward"])
    spacing = tuple(zooms[a] for a in axes)
    data = source.data.transpose((0, *(a + 1 for a in axes)))
    box = _nonzero_box(data)
    window = (slice(None), *(slice(lo, hi) for lo, hi in box))
    crop = data[window]
    target = tuple(pipeline["spacing"])
    grid = Grid(source, source is not image, axes, box, spacing, target)
    normalized = _normalize(crop, pipeline["normalization"])
    resampling = pipeline["resampling"]["data"]
    if resampling is not None:
        shape = new_shape(crop.shape[1:], spacing, target)
        normalized = resample_to_shape(normalized, shape, spacing, target, **resampling)
    prepared = Image(normalized, _network_affine(grid, normalized.shape[1:]), None, {"anchor": "center"})
    return prepared, grid
