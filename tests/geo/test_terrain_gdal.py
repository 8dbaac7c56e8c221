"""Terrain on the real Exploradores DEM (nodata holes, UTM 18S) against GDAL's gdaldem.

gdaldem sums a float32 DEM's 3 x 3 window in float32 before it divides by the pixel size;
seamline sums in float64. On the float32 DEM the two differ by that rounding only (under
1e-3 degree of slope); on the same DEM rounded to int16, whose sums are exact in both,
slope and hillshade are identical and aspect differs by at most one float32 step.
"""

from __future__ import annotations

import numpy as np
import pytest
import rasterio

import seamline
from tests.conftest import data_file
from tests.geo.gdaldem import gdaldem

DEM = ("geoutils_exploradores_dem", "AST_L1A_00303182012144228_Z.tif")


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 360
    return np.minimum(d, 360 - d)


def compare(path, folder, chunks) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Each product, seamline's (NaN nodata) and gdaldem's (as float, NaN nodata), on the same pixels."""
    ours = seamline.terrain(seamline.open(path, chunks=chunks), ["slope", "aspect", "hillshade"]).data.compute()
    pairs = {}
    for band, product in enumerate(["slope", "aspect", "hillshade"]):
        reference, nodata = gdaldem(path, product, folder)
        reference = np.where(reference == nodata, np.nan, reference.astype(np.float64))
        np.testing.assert_array_equal(np.isnan(ours[band]), np.isnan(reference), err_msg=f"{product} nodata")
        valid = ~np.isnan(reference)
        pairs[product] = ours[band][valid], reference[valid]
    return pairs


@pytest.fixture(scope="module")
def dem_int16(tmp_path_factory):
    """The DEM rounded to whole metres as int16: sums without rounding, in GDAL and here."""
    path = tmp_path_factory.mktemp("dem") / "dem_int16.tif"
    with rasterio.open(data_file(*DEM)) as source:
        profile = {**source.profile, "dtype": "int16"}
        pixels = source.read(1)
    with rasterio.open(path, "w", **profile) as out:
        out.write(np.where(pixels == source.nodata, -9999, np.round(pixels)).astype(np.int16), 1)
    return path


def test_terrain_matches_gdaldem_on_the_exploradores_dem(tmp_path):
    path = data_file(*DEM)
    with rasterio.open(path) as source:
        assert source.nodata == -9999 and (source.read(1) == -9999).sum() > 1000  # holes to handle
    pairs = compare(path, tmp_path, chunks=(97, 130))  # chunk borders cross holes and steep slopes
    ours, reference = pairs["slope"]
    assert ours.size > 300_000
    np.testing.assert_allclose(ours, reference, atol=1e-3, rtol=0)
    ours, reference = pairs["aspect"]
    steep = pairs["slope"][1] > 1  # on gentler ground GDAL's float32 sums move aspect by up to a few tenths
    assert angle_difference(ours[steep], reference[steep]).max() < 0.05
    ours, reference = pairs["hillshade"]
    difference = np.abs(np.round(ours) - reference)  # gdaldem rounds to a byte, after an approximate 1/sqrt
    assert difference.max() <= 1 and (difference > 0).mean() < 1e-4


def test_terrain_equals_gdaldem_on_an_integer_dem(dem_int16, tmp_path):
    pairs = compare(dem_int16, tmp_path, chunks=(64, 77))
    np.testing.assert_array_equal(*pairs["slope"])
    assert angle_difference(*pairs["aspect"]).max() <= 3.1e-5  # one float32 step at 360 degrees
    np.testing.assert_array_equal(np.round(pairs["hillshade"][0]), pairs["hillshade"][1])
