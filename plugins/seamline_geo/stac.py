"""STAC items as one Image: their assets as bands on one grid, items of one date mosaicked.

:func:`open_stac` takes pystac Items, ItemCollections, their JSON (dicts, files or URLs),
or a list of any of these. Each asset becomes a band (a multi-band asset, several), named
by its key; the names of its ``eo:bands`` entry (``name``, ``common_name``) become aliases
in ``meta["band_aliases"]``, so a model that names ``B04`` finds an asset keyed ``red``.

The grid is ``like``'s, or ``crs`` (by default the first asset's) at ``resolution`` (by
default the finest of the chosen assets in that CRS) over ``bbox`` (longitude and latitude;
by default the items' footprints), with pixel edges on whole multiples of the resolution,
as odc-stac snaps them. Every asset is read onto that grid chunk by chunk (a file on the
grid as it is, one on another grid warped, see :mod:`seamline_geo.warp`).

Items are grouped by solar day (the UTC time shifted by the footprint's longitude, as
odc-stac's ``groupby="solar_day"``). One day's items are mosaicked band by band: the first
item, in the order given, with a valid pixel there wins (odc-stac's default fuser with
``preserve_original_order=True``). Items of several days are an error unless ``date=``
picks one. The ``raster:bands`` extension's ``scale``, ``offset`` and ``nodata`` are
applied (values become float32, NaN where there is no data).
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import pystac
import rasterio
from rasterio.warp import transform_bounds

from seamline.errors import InputError
from seamline.fingerprints import Fingerprint
from seamline.image import Image
from seamline.stack import grid, stack

from .formats import RASTER_SUFFIXES
from .grid import to_pyproj
from .reader import open_raster, open_scaled

__all__ = ["open_stac", "read_items", "solar_day"]

RASTER_MEDIA = ("image/tiff", "image/jp2", "application/x-geotiff", "image/vnd.stac.geotiff")


def read_items(source: Any) -> list[pystac.Item]:
    """STAC items from pystac objects, their JSON (dicts, files, URLs), or a list of those.

    Parameters
    ----------
    source : pystac.Item, pystac.ItemCollection, dict, str, os.PathLike or a sequence of them

    Returns
    -------
    list of pystac.Item
        In the order given.

    Raises
    ------
    InputError
        If something is neither an item nor an item collection.
    """
    if isinstance(source, pystac.Item):
        return [source]
    if isinstance(source, pystac.ItemCollection):
        return list(source)
    if isinstance(source, (str, os.PathLike)):
        href = os.fspath(source)
        try:
            data = pystac.StacIO.default().read_json(href)
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"cannot be read as STAC JSON ({exc})", href) from exc
        items = read_items(data)
        for item in items:
            if item.get_self_href() is None:
                item.set_self_href(os.path.abspath(href) if os.path.exists(href) else href)
        return items
    if isinstance(source, Mapping):
        kind = source.get("type")
        if kind == "Feature":
            return [pystac.Item.from_dict(dict(source))]
        if kind == "FeatureCollection":
            return list(pystac.ItemCollection.from_dict(dict(source)))
        raise InputError(f"not a STAC item or item collection (type {kind!r})")
    if isinstance(source, Sequence):
        return [item for part in source for item in read_items(part)]
    raise InputError(f"not STAC items: {type(source).__name__}")


def solar_day(item: pystac.Item) -> dt.date:
    """The local solar date of an item: its time shifted by its footprint's longitude / 15 hours."""
    when = item.datetime or dt.datetime.fromisoformat(str(item.properties["start_datetime"]).replace("Z", "+00:00"))
    if item.bbox is not None:
        longitude = (item.bbox[0] + item.bbox[2]) / 2
    elif item.geometry is not None:
        longitude = float(np.mean(np.asarray(_coordinates(item.geometry))[:, 0]))
    else:
        longitude = 0.0
    return (when + dt.timedelta(hours=longitude / 15)).date()


def _coordinates(geometry: Mapping[str, Any]) -> list[list[float]]:
    points: list[list[float]] = []

    def walk(value: Any) -> None:
        if isinstance(value, (list, tuple)) and value and isinstance(value[0], (int, float)):
            points.append([float(value[0]), float(value[1])])
        elif isinstance(value, (list, tuple)):
            for part in value:
                walk(part)

    walk(geometry.get("coordinates", []))
    return points


def _is_raster(asset: pystac.Asset) -> bool:
    roles = asset.roles or ["data"]
    if "data" not in roles:
        return False
    media = (asset.media_type or "").split(";")[0].strip()
    return media in RASTER_MEDIA or asset.href.lower().split("?")[0].endswith(RASTER_SUFFIXES)


def _raster_bands(asset: pystac.Asset) -> list[dict[str, Any]]:
    return list(asset.extra_fields.get("raster:bands") or [])


def _eo_names(asset: pystac.Asset) -> list[list[str]]:
    """Per band of the asset, the names its eo:bands entry gives it."""
    bands = asset.extra_fields.get("eo:bands") or []
    return [[str(b[k]) for k in ("name", "common_name") if b.get(k)] for b in bands]


def _chosen(items: list[pystac.Item], assets: Sequence[str] | None) -> list[str]:
    """The asset keys to load: those asked for (by key or eo:bands name), or every raster data asset."""
    available: dict[str, pystac.Asset] = {}
    for item in items:
        for key, asset in item.assets.items():
            available.setdefault(key, asset)
    if assets is None:
        keys = [key for key, asset in available.items() if _is_raster(asset)]
        if not keys:
            raise InputError(f"the items have no raster data assets (assets: {sorted(available)})")
        return keys
    keys = []
    for wanted in assets:
        if wanted in available:
            keys.append(wanted)
            continue
        named = [k for k, a in available.items() if any(wanted in names for names in _eo_names(a))]
        if len(named) != 1:
            raise InputError(f"the items have no asset {wanted!r}; their assets are {sorted(available)}")
        keys.append(named[0])
    return keys


def _asset_grid(item: pystac.Item, asset: pystac.Asset) -> tuple[Any, Any, tuple[int, int]]:
    """An asset's CRS, transform and shape: from the projection extension, else from the file."""
    fields = {**item.properties, **asset.extra_fields}
    code = fields.get("proj:code") or (f"EPSG:{fields['proj:epsg']}" if fields.get("proj:epsg") else None)
    crs = code or fields.get("proj:wkt2") or fields.get("proj:projjson")
    if crs is not None and fields.get("proj:transform") and fields.get("proj:shape"):
        from affine import Affine

        shape = fields["proj:shape"]
        return to_pyproj(crs), Affine(*fields["proj:transform"][:6]), (int(shape[0]), int(shape[1]))
    with rasterio.open(asset.get_absolute_href()) as ds:
        return to_pyproj(ds.crs), ds.transform, (ds.height, ds.width)


def _snapped(bounds: Sequence[float], resolution: tuple[float, float]) -> tuple[float, float, float, float]:
    """Bounds grown outward to whole multiples of the resolution (odc-geo's edge anchor)."""
    rx, ry = resolution
    left, bottom, right, top = bounds
    return (
        float(np.floor(left / rx) * rx),
        float(np.floor(bottom / ry) * ry),
        float(np.ceil(right / rx) * rx),
        float(np.ceil(top / ry) * ry),
    )


def _grid(items: list[pystac.Item], keys: list[str], crs: Any, resolution: Any, bbox: Any, chunks: Any) -> Image:
    grids = [_asset_grid(item, item.assets[key]) for item in items for key in keys if key in item.assets]
    target = to_pyproj(crs if crs is not None else grids[0][0])
    if target is None:
        raise InputError("the assets have no CRS: give crs=, or like=")
    if resolution is None:
        native = [(abs(t.a), abs(t.e)) for c, t, _ in grids if c == target and t.b == 0 and t.d == 0]
        if not native:
            raise InputError(f"no asset is in {target.name}: give resolution= in its units")
        resolution = min(native)
    pair = [resolution, resolution] if isinstance(resolution, (int, float)) else list(resolution)
    sizes = (float(pair[0]), float(pair[1]))
    if bbox is not None:
        bounds = transform_bounds("EPSG:4326", target.to_wkt(), *bbox, densify_pts=21)
    else:
        boxes = []
        for c, t, (height, width) in grids:
            xs, ys = (t.c, t.c + width * t.a), (t.f, t.f + height * t.e)
            box = (min(xs), min(ys), max(xs), max(ys))
            boxes.append(box if c == target else transform_bounds(c.to_wkt(), target.to_wkt(), *box, densify_pts=21))
        lows, highs = np.min(np.array(boxes)[:, :2], axis=0), np.max(np.array(boxes)[:, 2:], axis=0)
        bounds = (lows[0], lows[1], highs[0], highs[1])
    return grid(crs=target, resolution=sizes, bounds=_snapped(bounds, sizes), chunks=chunks or 1024)


def remembered(image: Image, href: str) -> Image:
    """*image* with the fingerprint of its local file in ``meta["sources"]``, which ``seamline.save`` protects."""
    if not os.path.exists(href):
        return image
    return image.replace(meta={**image.meta, "sources": (*image.meta.get("sources", ()), Fingerprint.of(href))})


def _open_asset(item: pystac.Item, key: str, like: Image, resampling: str) -> Image:
    asset = item.assets[key]
    href = asset.get_absolute_href() or asset.href
    stated = _raster_bands(asset)
    if any("scale" in b or "offset" in b or "nodata" in b for b in stated):
        scale = [b.get("scale", 1.0) for b in stated]
        offset = [b.get("offset", 0.0) for b in stated]
        nodatas = {b.get("nodata") for b in stated}
        nodata = nodatas.pop() if len(nodatas) == 1 else None
        image = open_scaled(href, scale=scale, offset=offset, nodata=nodata, like=like, resampling=resampling)
    else:
        image = open_raster(href, like=like, resampling=resampling)
    return remembered(image, href)


def _mosaic(images: list[Image]) -> Image:
    """The first valid pixel of each band, in the order of *images* (all on one grid)."""
    first = images[0]
    if len(images) == 1:
        return first
    data, valid = first.data, first.valid_mask()
    for image in images[1:]:
        if valid is None:
            break
        data = da.where(valid[None], data, image.data.astype(data.dtype))
        more = image.valid_mask()
        valid = None if more is None else valid | more
    meta = {k: v for k, v in first.meta.items() if k not in ("mask", "path")}
    meta["sources"] = tuple(dict.fromkeys(f for image in images for f in image.meta.get("sources", ())))
    if valid is not None:
        if meta.get("nodata") is None:
            meta["mask"] = valid[None]
        else:
            data = da.where(valid[None], data, np.array(meta["nodata"], dtype=data.dtype))
    return first.replace(data=data, meta=meta)


def open_stac(
    source: Any,
    chunks: Any = None,
    *,
    assets: Sequence[str] | None = None,
    like: Image | None = None,
    crs: Any = None,
    resolution: float | Sequence[float] | None = None,
    bbox: Sequence[float] | None = None,
    date: str | dt.date | None = None,
    resampling: str = "nearest",
) -> Image:
    """Open STAC items as one Image: chosen assets as bands, on one grid, one date's items mosaicked.

    Parameters
    ----------
    source : pystac.Item, pystac.ItemCollection, dict, str, os.PathLike or a list of them
        Items, item collections, or JSON files or URLs of them.
    chunks : int or (int, int), optional
        Spatial chunks (by default *like*'s, else 1024).
    assets : sequence of str, optional
        Asset keys (or ``eo:bands`` names) to load, in band order; every raster data
        asset by default.
    like : Image, optional
        A 2D Image whose grid the result takes (then *crs*, *resolution* and *bbox* are unused).
    crs : optional
        The output CRS (by default the first asset's).
    resolution : float or (float, float), optional
        Pixel size in CRS units (by default the finest native one among the assets in *crs*).
    bbox : (float, float, float, float), optional
        ``(west, south, east, north)`` in degrees (by default the assets' footprints).
    date : str or datetime.date, optional
        The solar day to load when the items span several.
    resampling : {"nearest", "bilinear", "cubic", "average", "mode"}
        How assets on another grid are warped onto the output's.

    Returns
    -------
    Image
        Bands named by asset key (``key.band<n>`` for multi-band assets), with
        ``meta["band_aliases"]``, ``meta["date"]`` (ISO) and ``meta["items"]`` (the ids).

    Raises
    ------
    InputError
        If the items cannot be read, an asset is missing, the items span several days and
        no *date* is given, or a grid cannot be made.
    """
    items = read_items(source)
    if not items:
        raise InputError("no STAC items given")
    days: dict[dt.date, list[pystac.Item]] = {}
    for item in items:
        days.setdefault(solar_day(item), []).append(item)
    if date is not None:
        day = date if isinstance(date, dt.date) else dt.date.fromisoformat(str(date))
        if day not in days:
            raise InputError(f"no item on {day}; the items are of {', '.join(map(str, sorted(days)))}")
    elif len(days) > 1:
        raise InputError(f"the items span {len(days)} days ({', '.join(map(str, sorted(days)))}): pick one with date=")
    else:
        day = next(iter(days))
    group = days[day]
    keys = _chosen(group, assets)
    target = like if like is not None else _grid(group, keys, crs, resolution, bbox, chunks)
    bands, names, aliases = [], [], {}
    for key in keys:
        holders = [item for item in group if key in item.assets]
        if not holders:
            raise InputError(f"no item of {day} has the asset {key!r}")
        mosaic = _mosaic([_open_asset(item, key, target, resampling) for item in holders])
        eo = _eo_names(holders[0].assets[key])
        for index in range(mosaic.channels):
            name = key if mosaic.channels == 1 else f"{key}.band{index + 1}"
            names.append(name)
            if index < len(eo) and eo[index]:
                aliases[name] = eo[index]
        bands.append(mosaic)
    image = stack(bands, names=names, chunks=chunks)
    source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    meta = {**image.meta, "band_aliases": aliases, "date": day.isoformat(), "items": [i.id for i in group]}
    if source_name is not None:
        meta["source"] = source_name
    return image.replace(meta=meta)
