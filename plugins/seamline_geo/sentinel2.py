"""Sentinel-2 Level-2A band sets as reflectance on one grid, clouds masked by the scene classification.

:func:`open_sentinel2` reads a band set such as B02, B03, B04 and B08 at 10 m with B11 and
B12 at 20 m from any of the three shapes Level-2A data comes in:

- a SAFE folder (``GRANULE/*/IMG_DATA/R10m/*_B02_10m.jp2``, ``R20m``, ``R60m``, and
  ``MTD_MSIL2A.xml``);
- a folder of per-band files (``*_B02*.tif``, ``*SCL*.tif``, ...), with or without the
  SAFE's metadata file;
- a STAC item whose assets are the bands (keyed ``B02`` or ``blue``, ``SCL`` or ``scl``;
  ``eo:bands`` names count too).

Each band is read from its finest file and brought onto the grid (the bands' own grid at
``resolution``, or ``like``'s) chunk by chunk (:mod:`seamline_geo.warp`). Digital numbers
become reflectance, ``(DN + BOA_ADD_OFFSET) / QUANTIFICATION_VALUE``, with the offset and
quantification from the SAFE's ``MTD_MSIL2A.xml``, from STAC's ``raster:bands`` (``scale``,
``offset``), or else from the processing baseline (an offset of -1000 from baseline 04.00,
January 2022, none before); when nothing states them, ``boa_offset=`` must. DN 0 is no
data. Pixels the scene classification (SCL, 20 m, read with nearest neighbour) puts in
:data:`CLOUD_CLASSES` are no data in every band: NaN.
"""

from __future__ import annotations

import os
import re
import xml.etree.ElementTree as ElementTree
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import dask.array as da
import numpy as np
import pystac
import rasterio

from seamline.errors import InputError
from seamline.image import Image
from seamline.stack import grid, stack

from .formats import RASTER_SUFFIXES
from .formats import SENTINEL2_METADATA as METADATA
from .reader import open_raster, open_scaled
from .stac import read_items, remembered

__all__ = ["open_sentinel2", "BANDS", "CLOUD_CLASSES", "DEFAULT_BANDS", "read_metadata"]

#: Level-2A bands, their index in the SAFE metadata's ``band_id`` and their common names.
BANDS: dict[str, tuple[int, str]] = {
    "B01": (0, "coastal"),
    "B02": (1, "blue"),
    "B03": (2, "green"),
    "B04": (3, "red"),
    "B05": (4, "rededge1"),
    "B06": (5, "rededge2"),
    "B07": (6, "rededge3"),
    "B08": (7, "nir"),
    "B8A": (8, "nir08"),
    "B09": (9, "nir09"),
    "B11": (11, "swir16"),
    "B12": (12, "swir22"),
}
DEFAULT_BANDS = ("B02", "B03", "B04", "B08", "B11", "B12")
#: Scene classes that are no data: 0 no data, 1 saturated or defective, 3 cloud shadows,
#: 8 cloud (medium probability), 9 cloud (high probability), 10 thin cirrus.
CLOUD_CLASSES = (0, 1, 3, 8, 9, 10)
QUANTIFICATION = 10000.0
BASELINE_OFFSET = -1000.0  # BOA_ADD_OFFSET from processing baseline 04.00 on


def read_metadata(path: str | os.PathLike) -> tuple[dict[str, float], float]:
    """The BOA_ADD_OFFSET of each band and the BOA quantification value from ``MTD_MSIL2A.xml``.

    Parameters
    ----------
    path : str or os.PathLike
        The metadata file.

    Returns
    -------
    (dict, float)
        Band name (``"B02"``) to its offset (0 when the file has none, before baseline
        04.00), and the quantification value.

    Raises
    ------
    InputError
        If the file is not valid XML.
    """
    try:
        root = ElementTree.parse(path).getroot()
    except (OSError, ElementTree.ParseError) as exc:
        raise InputError(f"not a readable Sentinel-2 metadata file ({exc})", path) from exc
    by_id = {index: name for name, (index, _) in BANDS.items()}
    for info in root.iter("Spectral_Information"):
        physical = info.get("physicalBand", "")
        match = re.fullmatch(r"B(\d+|8A)", physical)
        if match and info.get("bandId") is not None:
            number = match.group(1)
            by_id[int(info.get("bandId", -1))] = "B8A" if number == "8A" else f"B{int(number):02d}"
    offsets = {name: 0.0 for name in BANDS}
    for element in root.iter("BOA_ADD_OFFSET"):
        band = by_id.get(int(element.get("band_id", -1)))
        if band is not None and element.text:
            offsets[band] = float(element.text)
    quantification = QUANTIFICATION
    for element in root.iter("BOA_QUANTIFICATION_VALUE"):
        if element.text:
            quantification = float(element.text)
    return offsets, quantification


def _band_file(files: list[Path], band: str, resolution: int | None = None) -> Path | None:
    """The band's file at *resolution* (in its name, ``_B02_10m``), else its finest one."""
    pattern = re.compile(rf"(?<![0-9A-Z]){band}(?![0-9A-Z])")
    found = [f for f in files if pattern.search(f.stem.upper())]
    if not found:
        return None

    def metres(path: Path) -> int:
        match = re.search(r"_(\d+)M$", path.stem.upper()) or re.search(r"R(\d+)M", str(path.parent).upper())
        return int(match.group(1)) if match else 0

    exact = [f for f in found if metres(f) == resolution]
    return exact[0] if exact else min(found, key=metres)


def _files(folder: Path) -> list[Path]:
    images = sorted(folder.glob("GRANULE/*/IMG_DATA/R*m/*"))
    images = images or sorted(p for p in folder.iterdir() if p.is_file())
    return [p for p in images if p.suffix.lower() in RASTER_SUFFIXES]


def _from_folder(
    folder: Path, bands: Sequence[str], resolution: int, boa_offset: float | None
) -> tuple[dict[str, tuple[str, float, float]], str, str | None]:
    """Each band's file, scale and offset, the SCL file, and a file on the grid at *resolution*."""
    files = _files(folder)
    metadata = folder / METADATA
    if metadata.is_file():
        offsets, quantification = read_metadata(metadata)
    elif boa_offset is not None:
        offsets, quantification = dict.fromkeys(BANDS, float(boa_offset)), QUANTIFICATION
    else:
        raise InputError(
            f"has no {METADATA} to state the reflectance offset: pass boa_offset= "
            f"({BASELINE_OFFSET:g} for processing baseline 04.00 and later, 0 before)",
            folder,
        )
    sources = {}
    for band in bands:
        path = _band_file(files, band, resolution)
        if path is None:
            raise InputError(f"has no file for band {band}", folder)
        sources[band] = (os.fspath(path), 1 / quantification, offsets[band] / quantification)
    scl = _band_file(files, "SCL", 20)
    if scl is None:
        raise InputError("has no scene classification (SCL) file to mask clouds with", folder)
    on_grid = next((f for f in files if re.search(rf"_{resolution}M$", f.stem.upper())), None)
    return sources, os.fspath(scl), None if on_grid is None else os.fspath(on_grid)


def _asset(item: pystac.Item, band: str) -> pystac.Asset:
    common = BANDS.get(band, (0, band.lower()))[1]
    for key in (band, band.lower(), common):
        if key in item.assets:
            return item.assets[key]
    for asset in item.assets.values():
        names = {str(b.get(k)) for b in asset.extra_fields.get("eo:bands") or [] for k in ("name", "common_name")}
        if band in names:
            return asset
    raise InputError(f"the STAC item {item.id!r} has no asset for band {band}; its assets are {sorted(item.assets)}")


def _from_item(
    item: pystac.Item, bands: Sequence[str], boa_offset: float | None
) -> tuple[dict[str, tuple[str, float, float]], str, str | None]:
    baseline = item.properties.get("s2:processing_baseline")
    sources = {}
    for band in bands:
        asset = _asset(item, band)
        stated = (asset.extra_fields.get("raster:bands") or [{}])[0]
        if "scale" in stated or "offset" in stated:
            scale, offset = float(stated.get("scale", 1.0)), float(stated.get("offset", 0.0))
        else:
            if boa_offset is not None:
                shift = float(boa_offset)
            elif baseline is not None:
                shift = BASELINE_OFFSET if float(baseline) >= 4 else 0.0
            else:
                raise InputError(
                    f"the STAC item {item.id!r} states neither raster:bands scale and offset nor "
                    "s2:processing_baseline: pass boa_offset="
                )
            scale, offset = 1 / QUANTIFICATION, shift / QUANTIFICATION
        sources[band] = (asset.get_absolute_href() or asset.href, scale, offset)
    scl = _asset(item, "SCL")
    return sources, scl.get_absolute_href() or scl.href, None


def _grid_of(path: str, resolution: int, chunks: Any) -> Image:
    """A band file's grid at *resolution* (the same bounds; Sentinel-2 tiles divide by 10, 20 and 60 m)."""
    with rasterio.open(path) as ds:
        return grid(crs=ds.crs.to_wkt(), resolution=resolution, bounds=tuple(ds.bounds), chunks=chunks or 1024)


def open_sentinel2(
    source: Any,
    chunks: Any = None,
    *,
    bands: Sequence[str] = DEFAULT_BANDS,
    resolution: int = 10,
    like: Image | None = None,
    resampling: str = "nearest",
    cloud_classes: Sequence[int] | None = CLOUD_CLASSES,
    boa_offset: float | None = None,
) -> Image:
    """Open a Sentinel-2 Level-2A band set as reflectance on one grid, clouds masked.

    Parameters
    ----------
    source : str, os.PathLike, pystac.Item or dict
        A SAFE folder, a folder of per-band files, or a STAC item (or its JSON file).
    chunks : int or (int, int), optional
        Spatial chunks (by default *like*'s, else 1024).
    bands : sequence of str
        Band names (``"B02"``, ..., ``"B8A"``, ``"B12"``), in the order wanted.
    resolution : {10, 20, 60}
        The grid's pixel size in metres: the bands' own grid at that resolution.
    like : Image, optional
        A 2D Image whose grid the bands take instead.
    resampling : {"nearest", "bilinear", "cubic", "average", "mode"}
        How bands of another resolution are brought onto the grid (SCL: always nearest).
    cloud_classes : sequence of int or None
        SCL classes that become no data (:data:`CLOUD_CLASSES` by default); None keeps all.
    boa_offset : float, optional
        The BOA_ADD_OFFSET for data whose metadata does not state it (-1000 from processing
        baseline 04.00 on, 0 before).

    Returns
    -------
    Image
        float32 reflectance, one band per name, NaN where there is no data or a cloud;
        ``band_names`` as asked, ``band_aliases`` the common names (``blue``, ``nir``, ...).

    Raises
    ------
    InputError
        If a band or the SCL file is missing, or nothing states the reflectance offset.
    """
    bands = [b.upper() for b in bands]
    unknown = [b for b in bands if b not in BANDS]
    if unknown:
        raise InputError(f"unknown Sentinel-2 bands {unknown}; Level-2A has {', '.join(BANDS)}")
    folder = Path(source) if isinstance(source, (str, os.PathLike)) else None
    if folder is not None and folder.is_dir():
        sources, scl, on_grid = _from_folder(folder, bands, resolution, boa_offset)
    else:
        items = read_items(source)
        if len(items) != 1:
            raise InputError(f"a Sentinel-2 band set is one STAC item, got {len(items)}")
        sources, scl, on_grid = _from_item(items[0], bands, boa_offset)
    target = like if like is not None else _grid_of(on_grid or sources[bands[0]][0], resolution, chunks)
    images = [
        remembered(
            open_scaled(path, scale=scale, offset=offset, nodata=0, like=target, resampling=resampling, chunks=chunks),
            path,
        )
        for path, scale, offset in (sources[b] for b in bands)
    ]
    image = stack(images, names=bands, chunks=chunks)
    data, valid = image.data, image.meta.get("mask")
    if cloud_classes:
        classification = remembered(open_raster(scl, like=image, resampling="nearest"), scl)
        classes = classification.data
        clear = ~da.isin(classes, np.asarray(list(cloud_classes)))
        data = da.where(clear, data, np.float32(np.nan))
        valid = clear if valid is None else valid & clear
    aliases = {band: [BANDS[band][1]] for band in bands}
    source_name = os.fspath(source) if isinstance(source, (str, os.PathLike)) else None
    meta = {**image.meta, "nodata": float("nan"), "band_aliases": aliases, "source": source_name or "STAC item"}
    if cloud_classes:
        meta["sources"] = (*meta.get("sources", ()), *classification.meta.get("sources", ()))
    if valid is not None:
        meta["mask"] = valid
    return image.replace(data=data, meta=meta)
