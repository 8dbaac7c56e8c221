"""Intensity normalization: one small spec, applied lazily, band by band.

A model learns on normalized intensities, so a bundle records *how* to normalize (its
``normalization`` spec) and :func:`normalize` applies that spec to any image, lazily, as a
dask expression. A spec is a dict with a ``kind``:

``{"kind": "none"}``
    Leave the values as they are (converted to float32).
``{"kind": "scale", "factor": 1/255, "offset": 0}``
    ``x * factor + offset``; factor and offset are numbers or one per band.
``{"kind": "zscore", "mean": [...], "std": [...]}``
    ``(x - mean) / std`` per band. Without ``mean``/``std`` they are computed over the
    image (valid pixels only) with dask reductions; :func:`fit_normalization` does that
    once and returns the spec with the numbers in it, which is what a trainer stores.
    With ``"nonzero": true`` only non-zero values are counted and normalized (zeros
    stay 0), as MONAI's ``NormalizeIntensity(nonzero=True)`` does for skull-stripped MR.
``{"kind": "window", "low": -160, "high": 240}``
    Clip to ``[low, high]`` and scale to ``[0, 1]``: CT windowing.
``{"kind": "percentile", "low": 0.5, "high": 99.5}``
    Clip each band to its own percentiles, computed over the image through a dask
    histogram (never the whole image in memory), then scale to ``[0, 1]``: MR scaling.
    Percentiles 0 and 100 are the exact minimum and maximum.

``window`` and ``percentile`` take ``"to": [a, b]`` to scale to ``[a, b]`` instead of
``[0, 1]`` (MONAI's ``b_min``/``b_max``, ``minv``/``maxv``).

Nodata pixels (:meth:`Image.valid_mask`: ``meta["nodata"]`` in every band, or
``meta["mask"]``) stay nodata: statistics ignore them, and they keep the nodata value in
every band of the result (NaN when only a mask marked them; the mask itself is folded into
the values and dropped), while a valid pixel that would land exactly on the nodata value
is nudged off it by one float step.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import dask.array as da
import numpy as np

from .errors import InputError
from .image import Image

__all__ = ["normalize", "fit_normalization", "percentile_bounds", "KINDS"]

KINDS = ("none", "scale", "zscore", "window", "percentile")
_HISTOGRAM_BINS = 4096


def _per_band(value: Any, bands: int, name: str) -> np.ndarray:
    array = np.asarray(value, dtype=np.float64).reshape(-1)
    if array.size == 1:
        array = np.repeat(array, bands)
    if array.size != bands:
        raise InputError(f"normalization {name!r} has {array.size} values for an image with {bands} bands")
    return array


def _expand(values: np.ndarray, ndim: int) -> np.ndarray:
    return values.reshape((-1,) + (1,) * ndim).astype(np.float32)


def _band_moments(data: da.Array, mask: da.Array | None, *, nonzero: bool = False) -> tuple[np.ndarray, np.ndarray]:
    axes = tuple(range(1, data.ndim))
    x = data.astype(np.float64)
    if mask is None and not nonzero:
        mean, var = da.compute(x.mean(axis=axes), x.var(axis=axes))
        return np.asarray(mean), np.sqrt(np.asarray(var))
    counted = da.ones_like(x, dtype=bool) if mask is None else da.broadcast_to(mask[None], x.shape)
    if nonzero:
        counted = counted & (data != 0)
    w = counted.astype(np.float64)
    x = da.where(counted, x, 0.0)  # NaN nodata times a weight of 0 is still NaN
    count, total, squares = da.compute(w.sum(axis=axes), (x * w).sum(axis=axes), (x * x * w).sum(axis=axes))
    if not nonzero and np.any(count == 0):
        raise InputError("cannot compute normalization statistics: every pixel is nodata")
    # a band without a non-zero value is left as it is (mean 0, std 1), as MONAI leaves it
    safe = np.maximum(count, 1)
    mean = np.where(count > 0, total / safe, 0.0)
    var = np.where(count > 0, np.maximum(squares / safe - mean * mean, 0.0), 1.0)
    return mean, np.sqrt(var)


def percentile_bounds(image: Image, low: float, high: float) -> np.ndarray:
    """Per-band *low* and *high* percentiles of the valid pixels, through a dask histogram.

    Each band is reduced to its minimum and maximum, then to a 4096-bin histogram
    between them (two passes over the data, chunk by chunk, all bands at once); the percentiles are read
    off the cumulative histogram, interpolating inside a bin, so they are exact to
    within one bin width.

    Parameters
    ----------
    image : Image
        The image.
    low, high : float
        Percentiles, in [0, 100].

    Returns
    -------
    numpy.ndarray
        Shape ``(bands, 2)``.
    """
    data, mask = image.data, image.valid_mask()
    bands = data.shape[0]
    stacked = data if mask is None else da.where(mask[None], data, np.nan)
    axes = tuple(range(1, data.ndim))
    lows, highs = da.compute(da.nanmin(stacked, axis=axes), da.nanmax(stacked, axis=axes))
    result = np.stack([lows, highs], axis=1).astype(np.float64)
    spread = [band for band in range(bands) if highs[band] > lows[band]]
    weights = None if mask is None else mask.astype(np.float64).rechunk(data.chunks[1:])
    histograms = da.compute(
        *(
            da.histogram(
                data[band].astype(np.float64), bins=_HISTOGRAM_BINS, range=tuple(result[band]), weights=weights
            )
            for band in spread
        )
    )
    for band, (counts, edges) in zip(spread, histograms, strict=True):
        cumulative = np.cumsum(counts).astype(np.float64)
        cumulative /= cumulative[-1]
        # linear interpolation inside the bin where the cumulative share crosses q
        result[band] = np.interp(np.array([low, high]) / 100.0, np.concatenate([[0.0], cumulative]), edges)
    return result


def fit_normalization(image: Image, spec: Mapping[str, Any] | None) -> dict[str, Any]:
    """Return *spec* with the statistics it needs computed from *image*.

    ``zscore`` without ``mean``/``std`` gets them (per band, valid pixels only). Other
    kinds are returned unchanged: percentiles are meant per image and are computed by
    :func:`normalize` on each image it sees.

    Parameters
    ----------
    image : Image
        The image to take statistics from (a training region, say).
    spec : mapping
        A normalization spec (see the module docstring).

    Returns
    -------
    dict
        A spec that :func:`normalize` applies without looking at the data first.

    Raises
    ------
    InputError
        If the spec is not understood.
    """
    spec = _checked(spec)
    if spec["kind"] == "zscore" and ("mean" not in spec or "std" not in spec):
        mean, std = _band_moments(image.data, image.valid_mask(), nonzero=bool(spec.get("nonzero", False)))
        spec = {**spec, "mean": [float(v) for v in mean], "std": [float(v) for v in std]}
    return spec


def _checked(spec: Mapping[str, Any] | None) -> dict[str, Any]:
    spec = dict(spec or {"kind": "none"})
    kind = spec.get("kind")
    if kind not in KINDS:
        raise InputError(f"unknown normalization kind {kind!r}; one of {', '.join(KINDS)}")
    required = {"window": ("low", "high")}.get(kind, ())
    missing = [key for key in required if key not in spec]
    if missing:
        raise InputError(f"normalization {kind!r} needs {', '.join(missing)}")
    low, high = (np.asarray(spec.get(key, default), dtype=float) for key, default in (("low", 0.5), ("high", 99.5)))
    if kind in ("window", "percentile") and np.any(high <= low):
        raise InputError(f"normalization {kind!r} needs low < high, got {spec.get('low')} and {spec.get('high')}")
    if "to" in spec and (kind not in ("window", "percentile") or np.shape(spec["to"]) != (2,)):
        raise InputError(f"normalization 'to' takes two numbers, for 'window' or 'percentile'; got {spec}")
    return spec


def normalize(image: Image, spec: Mapping[str, Any] | None) -> Image:
    """Normalize *image* lazily according to *spec*.

    Parameters
    ----------
    image : Image
        The image, any dtype.
    spec : mapping or None
        A normalization spec (see the module docstring); None means ``{"kind": "none"}``.

    Returns
    -------
    Image
        A float32 image with the same affine, CRS and meta; nodata pixels keep the
        nodata value (NaN where only ``meta["mask"]`` marked them).

    Raises
    ------
    InputError
        If the spec is not understood or does not fit the number of bands.

    Examples
    --------
    CT windowing: the abdomen window (-160..240 HU) maps fat, soft tissue and bone to
    0, about 0.5 and 1.

    >>> ct = Image.from_array(np.array([[[-1000.0, 40.0, 1000.0]]]))
    >>> normalize(ct, {"kind": "window", "low": -160, "high": 240}).data.compute().tolist()
    [[[0.0, 0.5, 1.0]]]
    """
    spec = fit_normalization(image, spec)
    kind, bands, ndim = spec["kind"], image.channels, image.ndim
    data = image.data.astype(np.float32)
    mask = image.valid_mask()
    if kind == "scale":
        factor = _per_band(spec.get("factor", 1.0), bands, "factor")
        offset = _per_band(spec.get("offset", 0.0), bands, "offset")
        data = data * _expand(factor, ndim) + _expand(offset, ndim)
    elif kind == "zscore":
        mean = _per_band(spec["mean"], bands, "mean")
        std = _per_band(spec["std"], bands, "std")
        scaled = (data - _expand(mean, ndim)) / _expand(np.where(std > 0, std, 1.0), ndim)
        data = da.where(data != 0, scaled, data) if spec.get("nonzero") else scaled
    elif kind in ("window", "percentile"):
        if kind == "window":
            low = _per_band(spec["low"], bands, "low")
            high = _per_band(spec["high"], bands, "high")
        else:
            bounds = percentile_bounds(image, float(spec.get("low", 0.5)), float(spec.get("high", 99.5)))
            low, high = bounds[:, 0], bounds[:, 1]
        span = np.where(high > low, high - low, 1.0)
        data = (da.clip(data, _expand(low, ndim), _expand(high, ndim)) - _expand(low, ndim)) / _expand(span, ndim)
        if "to" in spec:
            start, stop = (float(v) for v in spec["to"])
            data = data * np.float32(stop - start) + np.float32(start)
    meta = {k: v for k, v in image.meta.items() if k != "mask"}
    if mask is not None:
        nodata = np.float32(np.nan if meta.get("nodata") is None else meta["nodata"])
        if not np.isnan(nodata):
            data = da.where(data == nodata, np.nextafter(nodata, np.float32(np.inf)), data)
        data = da.where(mask[None], data, nodata)
        meta["nodata"] = float(nodata) if np.isnan(nodata) else meta["nodata"]
    return image.replace(data=data.astype(np.float32), meta=meta)
