"""Vector labels rasterized lazily onto a raster's grid, against whole-image rasterio.features.rasterize."""

from __future__ import annotations

import logging

import dask
import geopandas as gpd
import numpy as np
import pyproj
import pytest
import rasterio.features
import shapely

import seamline
from seamline_geo.grid import transform_from_affine
from tests.conftest import data_file

EVEREST = "geoutils_everest_glaciers"
PIVOTS = "solaris_spacenet_pivots"


def whole_image(frame: gpd.GeoDataFrame, image: seamline.Image, values=None) -> np.ndarray:
    shapes = frame.geometry if values is None else zip(frame.geometry, values, strict=True)
    return rasterio.features.rasterize(
        shapes, out_shape=image.spatial_shape, transform=transform_from_affine(image.affine), dtype=np.uint8
    )


def test_outlines_in_another_crs_are_reprojected_with_a_log_line(caplog):
    scene = seamline.open(data_file(EVEREST, "LE71400412000304SGS00_RGB.tif"), chunks=(200, 256))
    outlines = data_file(EVEREST, "15_rgi60_glacier_outlines.gpkg")
    with caplog.at_level(logging.INFO, logger="seamline"):
        labels = seamline.open(outlines, like=scene)
    assert "reprojecting labels from WGS 84 to WGS 84 / UTM zone 45N" in caplog.text
    assert labels.data.chunks[1:] == scene.data.chunks[1:]
    assert labels.crs == scene.crs and np.array_equal(labels.affine, scene.affine)
    expected = whole_image(gpd.read_file(outlines).to_crs(scene.crs), scene)
    np.testing.assert_array_equal(labels.data.compute()[0], expected)
    assert 0.5 < expected.mean() < 0.6  # about 54% glacier, as SOURCE.md says


def test_any_window_gets_its_own_labels():
    scene = seamline.open(data_file(EVEREST, "LE71400412000304SGS00_B4.tif"))
    outlines = data_file(EVEREST, "15_rgi60_glacier_outlines.gpkg")
    full = seamline.open(outlines, like=scene).data.compute()
    window = scene.window(slice(123, 411), slice(50, 777))
    np.testing.assert_array_equal(seamline.open(outlines, like=window).data.compute(), full[:, 123:411, 50:777])


def test_a_wrong_crs_in_the_file_is_overridden_and_attributes_choose_classes():
    scene = seamline.open(data_file(PIVOTS, "sample_geotiff_custom_proj.tif"))
    pivots = data_file(PIVOTS, "geotiff_custom_proj_labels.geojson")
    with pytest.raises(seamline.InputError, match="no label polygon overlaps the raster"):
        seamline.open(pivots, like=scene)
    frame = gpd.read_file(pivots).set_crs(scene.crs, allow_override=True)
    labels = seamline.open(pivots, like=scene, crs=scene.crs)
    np.testing.assert_array_equal(labels.data.compute()[0], whole_image(frame, scene))
    by_id = seamline.open(pivots, like=scene, crs=scene.crs, attribute="id")
    assert set(np.unique(by_id.data.compute())) == {0, *frame["id"].astype(int)}


def test_text_classes_are_numbered_and_named(tmp_path):
    scene = seamline.Image(np.zeros((1, 10, 10)), np.array([[0, 1.0, 0], [-1.0, 0, 10], [0, 0, 1]]), "EPSG:3857")
    frame = gpd.GeoDataFrame(
        {"kind": ["road", "field"]},
        geometry=[shapely.box(0, 0, 4, 4), shapely.box(5, 5, 9, 9)],
        crs="EPSG:3857",
    )
    frame.to_file(tmp_path / "kinds.fgb")
    labels = seamline.open(tmp_path / "kinds.fgb", like=scene, attribute="kind")
    assert labels.meta["class_names"] == {0: "background", 1: "field", 2: "road"}
    assert set(np.unique(labels.data.compute())) == {0, 1, 2}
    fixed = seamline.open(tmp_path / "kinds.fgb", like=scene, attribute="kind", classes=["road", "field"])
    assert fixed.meta["class_names"] == {0: "background", 1: "road", 2: "field"}
    with pytest.raises(seamline.InputError, match="missing from classes"):
        seamline.open(tmp_path / "kinds.fgb", like=scene, attribute="kind", classes=["road"])
    with pytest.raises(seamline.InputError, match="has no attribute 'class'"):
        seamline.open(tmp_path / "kinds.fgb", like=scene, attribute="class")
    with pytest.raises(seamline.InputError, match="like="):
        seamline.open(tmp_path / "kinds.fgb")


def test_opens_burning_different_things_never_share_dask_keys(tmp_path):
    grid = np.array([[0, 30.0, 500000], [-30.0, 0, 4000000], [0, 0, 1]])
    scene = seamline.Image(np.zeros((1, 64, 64), np.uint8), grid, pyproj.CRS(32645))
    square = shapely.box(500300, 4000000 - 900, 500900, 4000000)
    gpd.GeoDataFrame(geometry=[square], crs=32645).to_file(tmp_path / "square.gpkg")
    # The same coordinates in a CRS 300 m east of UTM 45N: reprojected, the square moves 10 pixels west.
    shifted = "+proj=tmerc +lon_0=87 +k=0.9996 +x_0=500300 +datum=WGS84 +units=m"
    opens = {
        "file crs": seamline.open(tmp_path / "square.gpkg", like=scene),
        "crs=": seamline.open(tmp_path / "square.gpkg", like=scene, crs=shifted),
        "like.crs": seamline.open(tmp_path / "square.gpkg", like=scene.replace(crs=pyproj.CRS(shifted))),
        "all_touched": seamline.open(tmp_path / "square.gpkg", like=scene, all_touched=True),
    }
    together = dict(zip(opens, dask.compute(*(labels.data for labels in opens.values())), strict=True))
    for name, labels in opens.items():
        np.testing.assert_array_equal(together[name], labels.data.compute(), err_msg=name)
    assert len({labels.data.name for labels in opens.values()}) == len(opens)
    assert not np.array_equal(together["file crs"], together["crs="])
    assert not np.array_equal(together["file crs"], together["like.crs"])
    frame = gpd.read_file(tmp_path / "square.gpkg").set_crs(shifted, allow_override=True).to_crs(32645)
    np.testing.assert_array_equal(together["crs="][0], whole_image(frame, scene))


def test_an_option_the_vector_reader_does_not_take_is_an_input_error(tmp_path):
    scene = seamline.Image(np.zeros((1, 10, 10)), np.array([[0, 1.0, 0], [-1.0, 0, 10], [0, 0, 1]]), "EPSG:3857")
    gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 4, 4)], crs="EPSG:3857").to_file(tmp_path / "a.geojson")
    with pytest.raises(seamline.InputError, match=r"a\.geojson: the vector-labels reader takes no option 'bands'"):
        seamline.open(tmp_path / "a.geojson", like=scene, bands=[1])
