"""Real rasters through xarray: seamline and rioxarray.open_rasterio agree on every coordinate."""

from __future__ import annotations

import numpy as np
import pytest

import seamline
from seamline import Image
from tests.conftest import data_file

rioxarray = pytest.importorskip("rioxarray")
pytest.importorskip("odc.geo.xr")

RASTERS = [
    ("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif"),
    ("geoutils_exploradores_dem", "AST_L1A_00303182012144228_Z.tif"),  # southern UTM, nodata
    ("solaris_spacenet_pivots", "sample_geotiff.tif"),
    ("solaris_spacenet_pivots", "sample_geotiff_custom_proj.tif"),  # a CRS without an EPSG code
]


@pytest.mark.parametrize("parts", RASTERS, ids=lambda parts: parts[1])
def test_to_xarray_matches_rioxarray(parts):
    path = data_file(*parts)
    ours, theirs = seamline.open(path).to_xarray(), rioxarray.open_rasterio(path)
    assert ours.dims == theirs.dims and ours.shape == theirs.shape
    for name in ("band", "x", "y"):
        np.testing.assert_array_equal(ours[name].values, theirs[name].values)
    assert ours.rio.transform() == theirs.rio.transform()
    assert ours.rio.crs == theirs.rio.crs
    assert ours.rio.nodata == theirs.rio.nodata
    assert ours.odc.geobox == theirs.odc.geobox


@pytest.mark.parametrize("parts", RASTERS, ids=lambda parts: parts[1])
def test_from_array_of_open_rasterio_is_seamline_open(parts):
    path = data_file(*parts)
    image, from_rio = seamline.open(path), Image.from_array(rioxarray.open_rasterio(path, chunks={"y": 200, "x": 200}))
    np.testing.assert_array_equal(from_rio.affine, image.affine)
    assert from_rio.crs == image.crs and from_rio.meta.get("nodata") == image.meta.get("nodata")
    window = (slice(50, 250, 3), slice(7, None, 2))
    np.testing.assert_array_equal(
        Image.from_array(rioxarray.open_rasterio(path).isel(y=window[0], x=window[1])).affine,
        image.window(*window).affine,
    )
    np.testing.assert_array_equal(from_rio.data[:, :40, :40].compute(), image.data[:, :40, :40].compute())
