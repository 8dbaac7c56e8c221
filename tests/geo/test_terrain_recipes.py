"""Glacier recipes with terrain bands: their normalization fits a stack of reflectance, elevation and slope."""

from __future__ import annotations

import dask.array as da
import numpy as np

import seamline
from seamline.normalize import normalize
from seamline.plugins import registry
from tests.conftest import data_file

DEM = ("geoutils_exploradores_dem", "AST_L1A_00303182012144228_Z.tif")


def test_sentinel2_terrain_normalization_on_a_stack(fresh_plugins):
    recipe = registry("recipes")["glaciers-sentinel2-terrain"].config
    dem = seamline.open(data_file(*DEM), chunks=128)
    slope = seamline.terrain(dem, "slope")
    reflectance = da.full((6, *dem.spatial_shape), 0.2, chunks=(6, 128, 128))  # as the sentinel2 reader gives it
    stack = dem.replace(
        data=da.concatenate([reflectance, da.where(dem.valid_mask(), dem.data, np.nan), slope.data]),
        meta={
            "nodata": np.nan,
            "band_names": registry("recipes")["glaciers-sentinel2-terrain"].config["card"]["bands"],
        },
    )
    out = normalize(stack, recipe["normalization"]).data.compute()
    inputs = stack.data.compute()
    np.testing.assert_allclose(out[:6], 0.2, rtol=1e-6)
    np.testing.assert_allclose(out[6], inputs[6] / 1000, rtol=1e-6)
    np.testing.assert_allclose(out[7], inputs[7] / 90, rtol=1e-6)
    assert np.nanmax(out[6:]) < 5
