"""Glacier recipes with terrain bands: complete train configs whose normalization fits a terrain stack."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest

import seamline
from seamline.normalize import normalize
from seamline.plugins import registry
from seamline.training.config import load_config
from tests.conftest import data_file

DEM = ("geoutils_exploradores_dem", "AST_L1A_00303182012144228_Z.tif")


@pytest.mark.parametrize("name", ["glacier-dem", "glacier-sentinel2-terrain"])
def test_terrain_recipes_complete_into_train_configs(fresh_plugins, tmp_path, name):
    recipe = registry("recipes")[name]
    assert recipe.config["data"]["bands"][-2:] == ["elevation", "slope"]
    data = {"image": str(data_file(*DEM)), "labels": str(data_file(DEM[0], "17_rgi60_glacier_outlines.gpkg"))}
    config = load_config({**recipe.config, "data": {**recipe.config["data"], **data}, "out": str(tmp_path)})
    assert config.data.bands == recipe.config["data"]["bands"]


def test_sentinel2_terrain_normalization_on_a_stack(fresh_plugins):
    dem = seamline.open(data_file(*DEM), chunks=128)
    slope = seamline.terrain(dem, "slope")
    reflectance = da.full((5, *dem.spatial_shape), 2000.0, chunks=(5, 128, 128))
    stack = dem.replace(
        data=da.concatenate([reflectance, da.where(dem.valid_mask(), dem.data, np.nan), slope.data]),
        meta={"nodata": np.nan, "band_names": registry("recipes")["glacier-sentinel2-terrain"].config["data"]["bands"]},
    )
    spec = registry("recipes")["glacier-sentinel2-terrain"].config["normalization"]
    out = normalize(stack, spec).data.compute()
    inputs = stack.data.compute()
    np.testing.assert_allclose(out[:5], 0.1, rtol=1e-6)
    np.testing.assert_allclose(out[5], inputs[5] / 1000, rtol=1e-6)
    np.testing.assert_allclose(out[6], inputs[6] / 90, rtol=1e-6)
    assert np.nanmax(out[5:]) < 5
