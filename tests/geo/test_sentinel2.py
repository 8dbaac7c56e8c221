"""Sentinel-2 L2A band sets: SAFE folders (JPEG 2000), folders of band files and STAC items.

The band files are made here from a crop of the Everest Landsat scene, in Sentinel-2's
layout and numbers: digital numbers ``1000 + 40 * value`` (so that, with the -1000 offset of
processing baseline 04.00, reflectance is ``0.004 * value``), four bands on a 10 m grid, two
on a 20 m grid over the same tile, and a scene classification (SCL) at 20 m with every class.
The expected reflectance is computed here with NumPy, by the formula, from those numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pyproj
import pystac
import pytest
import rasterio
import rasterio.shutil
from affine import Affine

import seamline
from seamline.errors import InputError
from seamline_geo.sentinel2 import CLOUD_CLASSES, open_sentinel2, read_metadata
from tests.conftest import data_file

TILE = "T45RVL"
STAMP = "20001030T043000"
ORIGIN = Affine.translation(490000, 3100000)
SIZE = 60  # 20 m pixels a side: a 1200 m tile


def metadata(offsets=True):
    values = "".join(f'<BOA_ADD_OFFSET band_id="{i}">-1000</BOA_ADD_OFFSET>' for i in range(13)) if offsets else ""
    names = ["B1", "B2", "B3", "B4", "B5", "B6", "B7", "B8", "B8A", "B9", "B10", "B11", "B12"]
    spectral = "".join(f'<Spectral_Information bandId="{i}" physicalBand="{n}"/>' for i, n in enumerate(names))
    return (
        '<?xml version="1.0" encoding="UTF-8"?><n1:Level-2A_User_Product xmlns:n1="https://psd-14.sentinel2.eo.esa.int">'
        "<n1:General_Info><Product_Image_Characteristics><QUANTIFICATION_VALUES_LIST>"
        '<BOA_QUANTIFICATION_VALUE unit="none">10000</BOA_QUANTIFICATION_VALUE></QUANTIFICATION_VALUES_LIST>'
        f"<BOA_ADD_OFFSET_VALUES_LIST>{values}</BOA_ADD_OFFSET_VALUES_LIST>"
        f"<Spectral_Information_List>{spectral}</Spectral_Information_List>"
        "</Product_Image_Characteristics></n1:General_Info></n1:Level-2A_User_Product>"
    )


def write(path, data, resolution, driver="GTiff"):
    """A band file on the tile's grid at *resolution* (JPEG 2000 losslessly, as the SAFE has them)."""
    profile = {"height": data.shape[0], "width": data.shape[1], "count": 1, "dtype": data.dtype.name,
               "crs": "EPSG:32645", "transform": ORIGIN @ Affine.scale(resolution, -resolution)}  # fmt: skip
    if driver == "GTiff":
        with rasterio.open(path, "w", driver="GTiff", **profile) as ds:
            ds.write(data, 1)
        return path
    with rasterio.MemoryFile() as memory:
        with memory.open(driver="GTiff", **profile) as ds:
            ds.write(data, 1)
        with memory.open() as ds:
            rasterio.shutil.copy(ds, path, driver="JP2OpenJPEG", REVERSIBLE="YES", QUALITY="100")
    return path


@pytest.fixture(scope="module")
def numbers():
    """Digital numbers per band (10 m bands at 10 m, 20 m bands and SCL at 20 m), as the files hold them."""
    with rasterio.open(data_file("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif")) as ds:
        rgb = ds.read(window=rasterio.windows.Window(300, 200, 2 * SIZE, 2 * SIZE)).astype(np.uint16)
    with rasterio.open(data_file("geoutils_everest_glaciers", "LE71400412000304SGS00_B4.tif")) as ds:
        nir = ds.read(1, window=rasterio.windows.Window(300, 200, 2 * SIZE, 2 * SIZE)).astype(np.uint16)
    dn = {"B02": rgb[2], "B03": rgb[1], "B04": rgb[0], "B08": nir}
    dn = {band: 1000 + 40 * value for band, value in dn.items()}
    dn["B02"][:3, :7] = 0  # no data
    coarse = {"B11": (rgb[0] + nir)[::2, ::2], "B12": (rgb[1] + rgb[2])[::2, ::2] // 2}
    dn.update({band: (1000 + 20 * value).astype(np.uint16) for band, value in coarse.items()})
    scl = np.full((SIZE, SIZE), 4, np.uint8)
    for number in range(12):  # a stripe of each class
        scl[number * 5 : number * 5 + 3, 10:30] = number
    dn["SCL"] = scl
    return dn


def safe(folder, numbers, driver="JP2OpenJPEG", offsets=True):
    root = folder / f"S2A_MSIL2A_{STAMP}_N0400_R019_{TILE}_{STAMP}.SAFE"
    suffix = ".jp2" if driver == "JP2OpenJPEG" else ".tif"
    for resolution in (10, 20):
        (root / "GRANULE" / f"L2A_{TILE}_A000000_{STAMP}" / "IMG_DATA" / f"R{resolution}m").mkdir(parents=True)
    for band, data in numbers.items():
        resolution = 10 if data.shape[0] == 2 * SIZE else 20
        name = f"{TILE}_{STAMP}_{band}_{resolution}m{suffix}"
        write(root / "GRANULE" / f"L2A_{TILE}_A000000_{STAMP}" / "IMG_DATA" / f"R{resolution}m" / name, data,
              resolution, driver)  # fmt: skip
    (root / "MTD_MSIL2A.xml").write_text(metadata(offsets))
    return root


def expected(numbers, bands=("B02", "B03", "B04", "B08", "B11", "B12"), offset=-1000.0):
    """Reflectance on the 10 m grid by the formula: 20 m bands and SCL repeated 2 x 2 (nearest neighbour)."""
    fine = {b: np.kron(v, np.ones((2, 2), v.dtype)) if v.shape[0] == SIZE else v for b, v in numbers.items()}
    out = np.stack([np.where(fine[b] == 0, np.nan, (fine[b] + offset) / 10000) for b in bands]).astype(np.float32)
    out[:, np.isin(fine["SCL"], CLOUD_CLASSES)] = np.nan
    return out


def test_a_safe_folder_of_jpeg2000_files(tmp_path, numbers):
    with rasterio.Env() as env:
        if "JP2OpenJPEG" not in env.drivers():
            pytest.skip("GDAL has no JP2OpenJPEG driver")
    folder = safe(tmp_path, numbers)
    image = seamline.open(folder, chunks=48)
    assert image.meta["band_names"] == ["B02", "B03", "B04", "B08", "B11", "B12"]
    assert image.crs == pyproj.CRS(32645) and image.spacing == (10.0, 10.0) and image.dtype == np.float32
    got = image.data.compute()
    np.testing.assert_array_equal(got, expected(numbers))
    assert np.isnan(got).any(axis=0).mean() > 0.1
    valid = image.valid_mask().compute()
    np.testing.assert_array_equal(valid, ~np.isnan(got).any(axis=0))
    assert image.meta["band_aliases"]["B08"] == ["nir"]


def test_twenty_metres_averages_the_ten_metre_bands(tmp_path, numbers):
    folder = safe(tmp_path, numbers, driver="GTiff")
    image = open_sentinel2(folder, resolution=20, resampling="average", bands=["B04", "B11"])
    assert image.spacing == (20.0, 20.0) and image.spatial_shape == (SIZE, SIZE)
    got = image.data.compute()
    red = np.where(numbers["B04"] == 0, np.nan, (numbers["B04"] - 1000.0) / 10000)
    mean = red.reshape(SIZE, 2, SIZE, 2).mean(axis=(1, 3))
    cloudy = np.isin(numbers["SCL"], CLOUD_CLASSES)
    np.testing.assert_allclose(got[0][~cloudy], mean[~cloudy], rtol=1e-6)
    np.testing.assert_array_equal(got[1][~cloudy], ((numbers["B11"][~cloudy] - 1000.0) / 10000).astype(np.float32))
    assert np.isnan(got[:, cloudy]).all()


def test_a_folder_of_band_files_and_the_offset_it_needs(tmp_path, numbers):
    for band, data in numbers.items():
        write(tmp_path / f"{TILE}_{STAMP}_{band}.tif", data, 10 if data.shape[0] == 2 * SIZE else 20)
    with pytest.raises(InputError, match="boa_offset="):
        open_sentinel2(tmp_path)
    image = open_sentinel2(tmp_path, boa_offset=-1000)
    np.testing.assert_array_equal(image.data.compute(), expected(numbers))
    before = open_sentinel2(tmp_path, boa_offset=0, cloud_classes=None, bands=["B03"])
    green = np.where(numbers["B03"] == 0, np.nan, numbers["B03"] / 10000).astype(np.float32)
    np.testing.assert_array_equal(before.data.compute()[0], green)


def test_metadata_before_baseline_four_has_no_offset(tmp_path, numbers):
    folder = safe(tmp_path, numbers, driver="GTiff", offsets=False)
    offsets, quantification = read_metadata(folder / "MTD_MSIL2A.xml")
    assert quantification == 10000 and set(offsets.values()) == {0.0}
    np.testing.assert_array_equal(open_sentinel2(folder).data.compute(), expected(numbers, offset=0.0))
    assert read_metadata(safe(tmp_path / "new", numbers, "GTiff") / "MTD_MSIL2A.xml")[0]["B8A"] == -1000


def test_a_stac_item_of_band_cogs(tmp_path, numbers):
    """Earth Search's shape: assets keyed by common name, raster:bands scale and offset, eo:bands names."""
    item = pystac.Item("S2A_45RVL_20001030_0_L2A", None, None, np.datetime64("2000-10-30T04:30").item(), {})
    item.geometry, item.bbox = None, None
    common = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "B11": "swir16", "B12": "swir22"}
    for band, data in numbers.items():
        path = write(tmp_path / f"{band}.tif", data, 10 if data.shape[0] == 2 * SIZE else 20)
        fields = {} if band == "SCL" else {
            "raster:bands": [{"nodata": 0, "scale": 0.0001, "offset": -0.1}],
            "eo:bands": [{"name": band, "common_name": common[band]}],
        }  # fmt: skip
        item.add_asset(common.get(band, "scl"), pystac.Asset(path.name, roles=["data"], extra_fields=fields))
    item.set_self_href(str(tmp_path / "item.json"))
    item.make_asset_hrefs_relative()
    (tmp_path / "item.json").write_text(json.dumps(item.to_dict()))
    image = seamline.open(tmp_path / "item.json", reader="sentinel2")
    np.testing.assert_allclose(image.data.compute(), expected(numbers), rtol=1e-6, equal_nan=True)
    with pytest.raises(InputError, match="no asset for band B05"):
        open_sentinel2(tmp_path / "item.json", bands=["B05"])


def test_a_model_card_names_bands_as_the_reader_does(tmp_path, numbers):
    from seamline_geo.recipes import RECIPES

    recipe = next(r for r in RECIPES if r.name == "glaciers-sentinel2-l2a")
    image = seamline.open(safe(tmp_path, numbers, driver="GTiff"))
    assert set(recipe.config["card"]["bands"]) <= set(image.meta["band_names"])
    assert recipe.config["normalization"] == {"kind": "none"}  # the reader gives reflectance already
