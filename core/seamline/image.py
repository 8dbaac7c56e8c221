"""Image: a lazy array and where it sits in the world.

An :class:`Image` is the one thing every part of seamline passes around. It has four
parts:

``data``
    a dask array shaped ``(C, *spatial)``: ``(C, H, W)`` for a raster, ``(C, D, H, W)``
    (or, for NIfTI, ``(C, I, J, K)`` in the file's own axis order) for a volume. Channels
    (bands, MR sequences, class scores) always come first.
``affine``
    an ``(N+1) x (N+1)`` matrix that maps a voxel index, in the order of the spatial axes,
    to world coordinates: ``world = affine @ [i, j, ..., 1]``. For a raster the world
    coordinates are ``(x, y)`` in the CRS, for a volume ``(x, y, z)`` in RAS millimetres.
    Where inside its voxel an integer index lies is the format's own convention and is
    recorded in ``meta["anchor"]``: ``"corner"`` for rasters (GDAL's PixelIsArea, the
    upper-left corner) and ``"center"`` for NIfTI. Windows and strides are the same matrix
    product in both conventions, so the core never has to convert.
``crs``
    a coordinate reference system (a ``pyproj.CRS`` for maps) or ``None`` (medical world
    space, RAS millimetres). The core only carries it.
``meta``
    everything else a plugin wants back when it writes: ``nodata``, ``band_names``,
    ``class_names``, ``colors``, the source header, ... A validity ``mask`` (boolean,
    shaped ``(1, *spatial)``, true where there is data) follows the image when it is sliced.
    ``sources`` holds the fingerprints of the files it was read from
    (:mod:`seamline.fingerprints`), so that saving it never writes over them.

Everything the core does keeps ``affine`` and ``crs`` exact: slicing a window composes
the affine with an integer translation (and scale, for strides) and nothing else.
"""

from __future__ import annotations

import dataclasses
import numbers
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np

from .errors import InputError

__all__ = ["Image", "window_affine", "same_crs", "crs_name", "check_same_grid"]


def window_affine(affine: np.ndarray, start: Sequence[float], step: Sequence[int] | None = None) -> np.ndarray:
    """Return the affine of a window that starts at voxel *start* and takes every *step*-th voxel.

    Parameters
    ----------
    affine : numpy.ndarray
        The ``(N+1) x (N+1)`` affine of the full image.
    start : sequence of float
        The window's first voxel index, one per spatial axis (a half moves to a voxel's
        centre or corner).
    step : sequence of int, optional
        The stride per spatial axis (1 by default).

    Returns
    -------
    numpy.ndarray
        ``affine @ [[diag(step), start], [0, 1]]``.
    """
    n = len(start)
    shift = np.eye(n + 1)
    shift[:n, n] = start
    if step is not None:
        shift[np.arange(n), np.arange(n)] = step
    return np.asarray(affine, dtype=float) @ shift


def _wkt(crs: Any) -> str:
    return crs.to_wkt() if hasattr(crs, "to_wkt") else str(crs)


def same_crs(first: Any, second: Any) -> bool:
    """Whether two CRSs are the same, whatever form each is given in.

    Objects that compare themselves (``pyproj.CRS`` also against a WKT or EPSG string)
    decide; otherwise their WKT texts (``to_wkt()``, else the text given) are compared.
    None (no CRS) equals only None.

    Parameters
    ----------
    first, second : object
        A ``pyproj.CRS``, a WKT or ``"EPSG:<code>"`` string, or None.

    Returns
    -------
    bool
    """
    if first is None or second is None:
        return first is None and second is None
    try:
        if first == second:
            return True
    except Exception:  # a CRS object that cannot parse the other one
        pass
    return _wkt(first) == _wkt(second)


def crs_name(crs: Any) -> str:
    """A short name of a CRS for messages: ``"EPSG:32645"``, its name, or ``"no CRS"``.

    Parameters
    ----------
    crs : object or None

    Returns
    -------
    str
    """
    if crs is None:
        return "no CRS"
    if hasattr(crs, "to_epsg") and crs.to_epsg() is not None:
        return f"EPSG:{crs.to_epsg()}"
    name = getattr(crs, "name", None) or _wkt(crs)
    return name if len(name) <= 60 else name[:57] + "..."


def check_same_grid(first: Any, second: Any, names: tuple[str, str] = ("image", "labels")) -> None:
    """Check that two Images lie on one grid: same spatial shape, affine and CRS.

    Wherever two inputs meet (a prediction and its truth, labels and their intensities,
    an image and its training labels), a difference in any of the three would silently
    pair pixels that are not at one place; it is an error instead. Arrays that are not
    Images only have their spatial shapes compared.

    Parameters
    ----------
    first, second : Image or array-like
        For arrays, shaped like the spatial axes.
    names : (str, str)
        What the two are called in the message.

    Raises
    ------
    InputError
        Naming the second's file (``meta["path"]``) when it has one, and saying what
        differs.
    """
    images = isinstance(first, Image) and isinstance(second, Image)
    shapes = [x.spatial_shape if isinstance(x, Image) else tuple(np.shape(x)) for x in (first, second)]
    path = second.meta.get("path") if isinstance(second, Image) else None
    a, b = names
    if shapes[0] != shapes[1]:
        raise InputError(f"{a} shape {shapes[0]} differs from {b} shape {shapes[1]}", path)
    if not images:
        return
    if not same_crs(first.crs, second.crs):
        raise InputError(
            f"{a} and {b} are in different CRSs ({crs_name(first.crs)} vs {crs_name(second.crs)}); "
            "reproject one onto the other's grid first",
            path,
        )
    n = first.ndim
    tolerance = 1e-3 * min(first.spacing)  # a thousandth of a pixel: float32 headers round
    anchors = first.meta.get("anchor"), second.meta.get("anchor")
    if not np.allclose(first.affine, second.affine, rtol=0, atol=tolerance) or (
        None not in anchors and len(set(anchors)) > 1
    ):
        origins = [float(v) for v in first.affine[:n, n]], [float(v) for v in second.affine[:n, n]]
        raise InputError(
            f"{a} and {b} lie on different grids (origin {origins[0]} vs {origins[1]}, "
            f"spacing {list(first.spacing)} vs {list(second.spacing)})",
            path,
        )


@dataclasses.dataclass(frozen=True, eq=False, init=False)
class Image:
    """A lazy array of shape ``(C, *spatial)`` with its affine, CRS and metadata.

    Parameters
    ----------
    data : dask.array.Array or array-like
        The pixels or voxels, channels first.
    affine : array-like, optional
        ``(N+1) x (N+1)`` voxel-index-to-world matrix; the identity when omitted.
    crs : object, optional
        The coordinate reference system, or None.
    meta : mapping, optional
        Metadata (``nodata``, ``band_names``, ``class_names``, ``anchor``, ...).

    Raises
    ------
    InputError
        If the array does not have two or three spatial axes, has a zero-sized axis, or
        has an affine that does not match its spatial rank.

    Examples
    --------
    A 3-band raster of 10 m pixels whose upper-left corner is at (500000, 4000000): its
    affine maps ``(row, col)`` to ``(x, y)``. A window keeps every pixel where it was.

    >>> import numpy as np
    >>> scene = Image.from_array(np.zeros((3, 100, 200)), [[0, 10, 500000], [-10, 0, 4000000], [0, 0, 1]])
    >>> scene
    Image(shape=(3, 100, 200), dtype=float64, spacing=(10.0, 10.0), crs=None)
    >>> window = scene.window(slice(20, 40), slice(50, 150, 2))
    >>> window.shape, (window.affine @ [0, 0, 1]).tolist()
    ((3, 20, 50), [500500.0, 3999800.0, 1.0])
    """

    data: da.Array
    affine: np.ndarray
    crs: Any
    meta: dict[str, Any]

    def __init__(self, data: Any, affine: Any = None, crs: Any = None, meta: Mapping[str, Any] | None = None) -> None:
        data = data if isinstance(data, da.Array) else da.asarray(data)
        if data.ndim not in (3, 4):
            raise InputError(f"an Image needs shape (C, *spatial) with 2 or 3 spatial axes, got shape {data.shape}")
        if 0 in data.shape:
            raise InputError(f"an Image cannot have a zero-sized axis, got shape {data.shape}")
        n = data.ndim - 1
        matrix = np.eye(n + 1) if affine is None else np.array(affine, dtype=float)
        if matrix.shape != (n + 1, n + 1):
            raise InputError(f"affine must be {n + 1}x{n + 1} for {n} spatial axes, got {matrix.shape}")
        object.__setattr__(self, "data", data)
        object.__setattr__(self, "affine", matrix)
        object.__setattr__(self, "crs", crs)
        object.__setattr__(self, "meta", dict(meta or {}))

    @classmethod
    def from_array(
        cls,
        array: Any,
        affine: Any = None,
        crs: Any = None,
        meta: Mapping[str, Any] | None = None,
        *,
        chunks: Any = "auto",
    ) -> Image:
        """Build an Image from a NumPy, dask or xarray array.

        Parameters
        ----------
        array : numpy.ndarray, dask.array.Array or xarray.DataArray
            Shaped ``(C, *spatial)``. A DataArray gives its grid when *affine* and *crs*
            are not passed (:func:`seamline.dataarray.grid_of`): dimensions ``(band, y,
            x)`` make a raster, placed by rioxarray's ``.rio.transform()`` and
            ``.rio.crs`` (its ``spatial_ref`` coordinate), odc-geo's ``.odc.geobox`` or
            pixel-centre coordinates; other dimensions make a volume, placed by the
            ``affine`` coordinate :meth:`to_xarray` writes or voxel-centre coordinates.
            ``_FillValue`` becomes ``meta["nodata"]``, ``long_name`` the band names, a
            ``valid`` coordinate ``meta["mask"]``, and its ``attrs`` go to
            ``meta["xarray_attrs"]``.
        affine, crs, meta
            As for :class:`Image`.
        chunks
            Dask chunks for a NumPy array (``"auto"`` by default).

        Returns
        -------
        Image
        """
        meta = dict(meta or {})
        if hasattr(array, "dims") and hasattr(array, "coords"):  # xarray.DataArray
            from .dataarray import grid_of

            found_affine, found_crs, found_meta = grid_of(array)
            if affine is None:
                affine = found_affine
            else:
                found_meta.pop("anchor", None)
            crs = found_crs if crs is None else crs
            for key, value in found_meta.items():
                meta.setdefault(key, value)
            if array.attrs:
                meta.setdefault("xarray_attrs", dict(array.attrs))
            array = array.data
        if not isinstance(array, da.Array):
            array = da.from_array(np.asarray(array), chunks=chunks)
        return cls(array, affine, crs, meta)

    def to_xarray(self, *, name: str | None = None) -> Any:
        """Return this image as a lazy ``xarray.DataArray`` that rioxarray and odc-geo understand.

        A raster is ``(band, y, x)``: bands numbered from 1, ``x``/``y`` at pixel centres
        (as ``rioxarray.open_rasterio`` computes them), and a ``spatial_ref`` coordinate
        with the CRS and the exact GeoTransform, so ``da.rio.crs``,
        ``da.rio.transform()`` and ``da.odc.geobox`` work. A rotated raster has no
        ``x``/``y`` coordinates (they cannot say where it is) and carries its transform
        only. A volume is ``(channel, i, j, k)`` with voxel-centre coordinates where its
        axes are axis-aligned, and its affine in an ``affine`` coordinate. Nodata is
        ``_FillValue``, band names ``long_name``, a validity mask a ``valid``
        coordinate. :meth:`from_array` reads it back onto the same grid, bit for bit.

        Parameters
        ----------
        name : str, optional
            The DataArray's name.

        Returns
        -------
        xarray.DataArray
            Backed by this image's dask array (nothing is computed).
        """
        from .dataarray import to_xarray

        return to_xarray(self, name=name)

    @property
    def ndim(self) -> int:
        """Number of spatial axes (2 or 3)."""
        return self.data.ndim - 1

    @property
    def channels(self) -> int:
        """Number of channels (bands)."""
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the data, channels first."""
        return tuple(int(s) for s in self.data.shape)

    @property
    def spatial_shape(self) -> tuple[int, ...]:
        """Shape of the spatial axes."""
        return self.shape[1:]

    @property
    def dtype(self) -> np.dtype:
        """The data type of the voxels."""
        return self.data.dtype

    @property
    def spacing(self) -> tuple[float, ...]:
        """Voxel size along each spatial axis, in world units (column norms of the affine)."""
        n = self.ndim
        return tuple(float(v) for v in np.linalg.norm(self.affine[:n, :n], axis=0))

    def valid_mask(self) -> da.Array | None:
        """Where the image has data: a lazy boolean array shaped like the spatial axes.

        A pixel is nodata where every band equals ``meta["nodata"]`` (NaN matches NaN),
        as in rasterio's ``dataset_mask``: one band alone at that value is still data. It
        is also nodata where ``meta["mask"]`` is False.

        Returns
        -------
        dask.array.Array or None
            True where the pixel is valid; None when the image marks no nodata.
        """
        nodata, mask = self.meta.get("nodata"), self.meta.get("mask")
        valid = None
        if nodata is not None:
            missing = da.isnan(self.data) if np.isnan(nodata) else self.data == nodata
            valid = ~missing.all(axis=0)
        if mask is not None:
            mask = da.asarray(mask).astype(bool).reshape(self.spatial_shape)
            valid = mask if valid is None else valid & mask
        return valid

    def replace(self, **changes: Any) -> Image:
        """Return a copy with some of ``data``, ``affine``, ``crs`` and ``meta`` replaced.

        Parameters
        ----------
        **changes
            New values, by field name.

        Returns
        -------
        Image
        """
        return dataclasses.replace(self, **changes)

    def window(self, *slices: slice) -> Image:
        """Return the window given by one slice per spatial axis, all channels kept.

        Parameters
        ----------
        *slices : slice
            One per spatial axis, with positive steps.

        Returns
        -------
        Image
            Its affine places every voxel at the world point it had in this image.
        """
        return self[(slice(None), *slices)]

    def __getitem__(self, key: Any) -> Image:
        """Slice channels and a window; the affine follows the window exactly.

        The key indexes ``(C, *spatial)`` like NumPy. An integer picks one channel (the
        channel axis is kept); spatial axes take slices with positive steps.
        """
        if not isinstance(key, tuple):
            key = (key,)
        if any(k is Ellipsis for k in key):
            at = key.index(Ellipsis)
            key = key[:at] + (slice(None),) * (self.data.ndim - len(key) + 1) + key[at + 1 :]
        key = key + (slice(None),) * (self.data.ndim - len(key))
        if len(key) != self.data.ndim:
            raise InputError(f"too many indices for an Image of shape {self.shape}")
        channel, *spatial = key
        if isinstance(channel, numbers.Integral):
            if not -self.channels <= int(channel) < self.channels:
                raise InputError(f"channel {channel} is out of range for an Image with {self.channels} channels")
            channel = slice(int(channel), int(channel) + 1 if channel != -1 else None)
        starts, steps, norm = [], [], []
        for axis, s in enumerate(spatial):
            if not isinstance(s, slice):
                raise InputError("spatial axes of an Image take slices, not single indices")
            start, stop, step = s.indices(self.spatial_shape[axis])
            if step < 1:
                raise InputError("spatial slices need a positive step")
            starts.append(start)
            steps.append(step)
            norm.append(slice(start, stop, step))
        meta = dict(self.meta)
        if "band_names" in meta and meta["band_names"] is not None:
            meta["band_names"] = list(np.asarray(list(meta["band_names"]), dtype=object)[channel])
        if meta.get("mask") is not None:
            meta["mask"] = meta["mask"][(slice(None), *norm)]
        return Image(
            self.data[(channel, *norm)],
            window_affine(self.affine, starts, steps),
            self.crs,
            meta,
        )

    def __repr__(self) -> str:
        crs = getattr(self.crs, "name", self.crs)
        return f"Image(shape={self.shape}, dtype={self.dtype}, spacing={self.spacing}, crs={crs!r})"
