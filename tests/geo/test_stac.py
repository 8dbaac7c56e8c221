"""STAC items as one Image, against odc-stac's load, on a local catalogue of COGs at mixed resolutions and CRSs.

The catalogue is written here with pystac from a crop of the Everest scene: two items on one
date that overlap (the second one's pixels are the first's plus one, so the winner of each
overlapping pixel shows), each with a red asset at 30 m and a NIR asset at 60 m in UTM 45N
(scaled by ``raster:bands``) and a green asset in WGS 84; and a third item on another date.
"""

from __future__ import annotations

import datetime as dt
import json

import numpy as np
import pyproj
import pystac
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.enums import Resampling
from rasterio.warp import calculate_default_transform, reproject

import seamline
from seamline.bundle import ModelCard, build_module, save_model
from seamline.cli import get_cli
from seamline.errors import InputError
from seamline.stack import grid
from seamline_geo.grid import affine_from_transform
from seamline_geo.stac import open_stac, read_items, solar_day
from tests.conftest import data_file
from tests.geo.test_warp import whole_warp

odc_stac = pytest.importorskip("odc.stac")
GeoBox = pytest.importorskip("odc.geo.geobox").GeoBox

UTM = pyproj.CRS(32645)
SCALE, OFFSET = 1e-4, -0.1
DAY = dt.datetime(2000, 10, 30, 4, 30, tzinfo=dt.timezone.utc)


def cog(path, data, transform, crs, nodata=0):
    image = seamline.Image(data, affine_from_transform(transform), pyproj.CRS(crs), {"nodata": nodata})
    seamline.save(image, path, blocksize=64)
    return path


def warped(data, transform, dst_transform, dst_crs, shape, resampling=Resampling.nearest):
    out = np.zeros(shape, data.dtype)
    reproject(data, out, src_transform=transform, src_crs=UTM, dst_transform=dst_transform, dst_crs=dst_crs,
              resampling=resampling, src_nodata=0, dst_nodata=0)  # fmt: skip
    return out


def asset(path, **fields):
    return pystac.Asset(path.name, media_type=pystac.MediaType.COG, roles=["data"], extra_fields=fields)


def item(folder, name, rows, cols, shift, when=DAY):
    """An item whose assets hold the scene's pixels + *shift* (+ 1 so that 0 stays nodata) over a window."""
    window = rasterio.windows.Window.from_slices(rows, cols)
    with rasterio.open(data_file("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif")) as ds:
        rgb, transform = ds.read(window=window).astype(np.uint16) + 1 + shift, ds.window_transform(window)
    with rasterio.open(data_file("geoutils_everest_glaciers", "LE71400412000304SGS00_B4.tif")) as ds:
        nir = ds.read(window=window).astype(np.uint16) + 1 + shift
    height, width = rgb.shape[1:]
    half = (1, height // 2, width // 2)
    coarse = warped(nir, transform, transform @ Affine.scale(2), UTM, half, Resampling.average) * 10
    bounds = rasterio.transform.array_bounds(height, width, transform)
    geo, w, h = calculate_default_transform(UTM, "EPSG:4326", width, height, *bounds)
    files = {
        "red": cog(folder / f"{name}_red.tif", rgb[:1], transform, UTM),
        "nir": cog(folder / f"{name}_nir.tif", coarse, transform @ Affine.scale(2), UTM),
        "green": cog(folder / f"{name}_green.tif", warped(rgb[1:2], transform, geo, "EPSG:4326", (1, h, w)), geo, 4326),
    }
    west, south, east, north = rasterio.warp.transform_bounds(UTM, "EPSG:4326", *bounds)
    ring = [[west, south], [east, south], [east, north], [west, north], [west, south]]
    geometry = {"type": "Polygon", "coordinates": [ring]}
    stac_item = pystac.Item(name, geometry, [west, south, east, north], when, properties={})
    nodata = {"raster:bands": [{"nodata": 0}]}  # odc-stac takes nodata from here only, seamline also from the file
    stac_item.add_asset("red", asset(files["red"], **nodata, **{"eo:bands": [{"name": "B3", "common_name": "red"}]}))
    nir_fields = {
        "raster:bands": [{"scale": SCALE, "offset": OFFSET, "nodata": 0}],
        "eo:bands": [{"name": "B4", "common_name": "nir"}],
    }
    stac_item.add_asset("nir", asset(files["nir"], **nir_fields))
    stac_item.add_asset("green", asset(files["green"], **nodata))
    stac_item.add_asset(
        "thumbnail", pystac.Asset(files["red"].name, media_type=pystac.MediaType.PNG, roles=["thumbnail"])
    )
    stac_item.set_self_href(str(folder / f"{name}.json"))
    stac_item.make_asset_hrefs_relative()
    stac_item.save_object(include_self_link=False)
    return folder / f"{name}.json"


@pytest.fixture(scope="module")
def catalogue(tmp_path_factory):
    folder = tmp_path_factory.mktemp("stac")
    west = item(folder, "west", slice(100, 300), slice(300, 500), 0)
    east = item(folder, "east", slice(140, 340), slice(420, 620), 1, DAY + dt.timedelta(minutes=1))
    later = item(folder, "later", slice(100, 300), slice(300, 500), 2, DAY + dt.timedelta(days=16))
    collection = folder / "same_day.json"
    items = [pystac.Item.from_file(str(west)), pystac.Item.from_file(str(east))]
    collection.write_text(json.dumps(pystac.ItemCollection(items).to_dict()))
    return {"west": west, "east": east, "later": later, "collection": collection}


def odc_load(items, like, bands, resampling="nearest"):
    height, width = like.spatial_shape
    t = like.affine
    geobox = GeoBox((height, width), Affine(t[0, 1], t[0, 0], t[0, 2], t[1, 1], t[1, 0], t[1, 2]), like.crs)
    return odc_stac.load(items, bands=bands, geobox=geobox, groupby="solar_day", preserve_original_order=True,
                         resampling=resampling, chunks={})  # fmt: skip


def test_two_items_of_one_date_mosaic_like_odc_stac(catalogue):
    image = seamline.open_stac(catalogue["collection"], assets=["red", "nir", "green"], resolution=30)
    assert image.meta["band_names"] == ["red", "nir", "green"]
    assert image.crs == UTM and image.spacing == (30.0, 30.0) and image.meta["date"] == "2000-10-30"
    assert image.meta["items"] == ["west", "east"]
    assert image.meta["band_aliases"] == {"red": ["B3", "red"], "nir": ["B4", "nir"]}
    # the grid: the assets' union, edges on multiples of 30 m (odc-geo's anchor)
    assert image.affine[0, 2] % 30 == 0 and image.affine[1, 2] % 30 == 0
    items = read_items(catalogue["collection"])
    reference = odc_load(items, image, ["red", "nir", "green"])
    got = image.data.compute()
    # red and NIR lie in the grid's CRS: the same pixels as odc-stac, the west item winning the overlap
    np.testing.assert_array_equal(got[0], np.nan_to_num(reference.red.values[0]))
    nir = reference.nir.values[0].astype(np.float64)
    expected = np.where(nir == 0, np.nan, nir * SCALE + OFFSET).astype(np.float32)
    np.testing.assert_array_equal(got[1], expected)
    # green comes from WGS 84 files: odc-stac approximates that warp to 0.125 pixel, seamline does not
    agree = (got[2] == np.nan_to_num(reference.green.values[0])).mean()
    assert agree > 0.99, agree


def test_the_overlap_goes_to_the_first_item(catalogue):
    first = seamline.open_stac([catalogue["west"], catalogue["east"]], assets=["red"])
    swapped = seamline.open_stac([catalogue["east"], catalogue["west"]], assets=["red"], like=first)
    west = seamline.open_stac(catalogue["west"], assets=["red"], like=first).data.compute()[0]
    east = seamline.open_stac(catalogue["east"], assets=["red"], like=first).data.compute()[0]
    both = (west > 0) & (east > 0)
    assert both.sum() > 1000 and np.all(east[both] == west[both] + 1)
    a, b = first.data.compute()[0], swapped.data.compute()[0]
    np.testing.assert_array_equal(a[both], west[both])
    np.testing.assert_array_equal(b[both], east[both])
    only = (west > 0) ^ (east > 0)
    np.testing.assert_array_equal(a[only], np.maximum(west, east)[only])
    np.testing.assert_array_equal(a == 0, (west == 0) & (east == 0))


def test_an_asset_in_another_crs_is_warped_exactly(catalogue):
    image = seamline.open_stac(catalogue["west"], assets=["green"], crs="EPSG:32645", resolution=30, chunks=64)
    path = str(catalogue["west"]).replace(".json", "_green.tif")
    expected, _ = whole_warp(path, image, "nearest")
    np.testing.assert_array_equal(image.data.compute(), expected)


def test_grid_options(catalogue):
    by_default = seamline.open_stac(catalogue["west"])
    assert by_default.meta["band_names"] == ["red", "nir", "green"]  # raster data assets, not the thumbnail
    assert by_default.crs == UTM and by_default.spacing == (30.0, 30.0)
    coarse = seamline.open_stac(catalogue["west"], assets=["nir"], resolution=60, bbox=(86.82, 27.95, 86.86, 27.99))
    assert coarse.spacing == (60.0, 60.0)
    corners = coarse.affine @ np.array([[0, coarse.spatial_shape[0]], [0, coarse.spatial_shape[1]], [1, 1]])
    west, south, east, north = rasterio.warp.transform_bounds(
        UTM, "EPSG:4326", corners[0].min(), corners[1].min(), corners[0].max(), corners[1].max()
    )
    assert west <= 86.82 and south <= 27.95 and east >= 86.86 and north >= 27.99
    geographic = seamline.open_stac(catalogue["west"], assets=["green"], crs="EPSG:4326")
    assert geographic.crs == pyproj.CRS(4326) and geographic.spacing[0] < 0.001
    with pytest.raises(InputError, match="give resolution="):
        seamline.open_stac(catalogue["west"], assets=["red"], crs="EPSG:32644")
    like = grid(crs=UTM, resolution=90, bounds=(487000, 3090000, 499000, 3100000), chunks=50)
    assert seamline.open_stac(catalogue["west"], like=like).data.chunks[1:] == like.data.chunks[1:]


def test_dates_and_names(catalogue):
    items = [pystac.Item.from_file(str(catalogue[k])) for k in ("west", "later")]
    assert [solar_day(i).isoformat() for i in items] == ["2000-10-30", "2000-11-15"]
    with pytest.raises(InputError, match="span 2 days"):
        seamline.open_stac(items)
    later = seamline.open_stac(items, date="2000-11-15", assets=["red"])
    assert later.meta["items"] == ["later"]
    by_name = seamline.open_stac(items[:1], assets=["B4"])  # an eo:bands name picks its asset
    assert by_name.meta["band_names"] == ["nir"]
    with pytest.raises(InputError, match="no asset 'swir'"):
        seamline.open_stac(items[:1], assets=["swir"])
    with pytest.raises(InputError, match="no item on 2001-01-01"):
        seamline.open_stac(items, date="2001-01-01")
    # a JSON file of an item opens as an image like any other input
    assert seamline.open(catalogue["west"]).meta["band_names"] == ["red", "nir", "green"]
    assert open_stac(items[0].to_dict(), assets=["red"]).channels == 1


def test_predict_on_a_stac_item(catalogue, tmp_path):
    card = ModelCard(architecture="core.UNet", in_channels=3, classes=["background", "bright"],
                     kwargs={"widths": [4, 8], "spatial_dims": 2}, bands=["B3", "nir", "green"],
                     normalization={"kind": "zscore"}, tile_size=64)  # fmt: skip
    save_model(build_module(card), tmp_path / "bundle", card)
    out = tmp_path / "labels.tif"
    args = ["predict", str(catalogue["west"]), str(out), "--model", str(tmp_path / "bundle"), "--no-progress"]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    model = seamline.load_model(tmp_path / "bundle")
    image = seamline.open_stac(catalogue["west"])
    image = image.replace(meta={**image.meta, "band_names": ["B3", "nir", "green"]})
    expected = model.predict(image, output="labels", progress=False).data.compute()
    np.testing.assert_array_equal(seamline.open(out).data.compute(), expected)
