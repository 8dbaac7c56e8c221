"""The glacier and crop-field recipes, end to end on real scenes: a few epochs, then a map."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest

import seamline
from seamline.cli import main
from tests.conftest import data_file

pytestmark = pytest.mark.slow


@pytest.fixture
def everest_west(tmp_path):
    """The west half of the Everest scene, RGB + NIR stacked in the recipe's band order."""
    folder = "geoutils_everest_glaciers"
    rgb = seamline.open(data_file(folder, "LE71400412000304SGS00_RGB.tif"))
    nir = seamline.open(data_file(folder, "LE71400412000304SGS00_B4.tif"))
    scene = rgb.replace(data=da.concatenate([rgb.data, nir.data]), meta={**rgb.meta, "band_names": None})
    west = scene.window(slice(None), slice(0, scene.spatial_shape[1] // 2))
    path = seamline.save(west, tmp_path / "everest_west.tif")
    return path, data_file(folder, "15_rgi60_glacier_outlines.gpkg")


def test_glaciers_landsat_recipe_trains_from_the_command_line_alone(everest_west, tmp_path, capsys):
    image, outlines = everest_west
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--recipe", "glaciers-landsat", "--image", image, "--labels", str(outlines),
              "--out", str(out), "--epochs", "2", "--no-progress"])  # fmt: skip
    assert exit_info.value.code == 0, capsys.readouterr().err
    card = json.loads((out / "model" / "seamline.json").read_text())
    assert card["bands"] == ["red", "green", "blue", "nir"]
    assert card["architecture"] == "core.UNet" and card["kwargs"]["widths"] == [16, 32, 64, 128]
    assert card["normalization"]["kind"] == "zscore" and len(card["normalization"]["mean"]) == 4
    assert card["training"]["recipe"] == "glaciers-landsat"
    labels = seamline.predict(seamline.open(image), seamline.load_model(out / "model"), output="labels", progress=False)
    values = np.unique(labels.data.compute())
    assert set(values.tolist()) <= {0, 1}


def test_crop_fields_recipe_trains_on_the_pivot_scene(tmp_path):
    folder = "solaris_spacenet_pivots"
    scene = data_file(folder, "sample_geotiff_custom_proj.tif")
    fields = data_file(folder, "geotiff_custom_proj_labels.geojson")
    # The GeoJSON claims EPSG:4326 but holds the raster's Albers metres (see SOURCE.md).
    wkt = seamline.open(scene).crs.to_wkt()
    result = seamline.train(
        None,
        recipe="crop-fields",
        data={"image": str(scene), "labels": str(fields), "label_crs": wkt},
        patches={"per_epoch": 16},
        training={"epochs": 2, "batch_size": 4, "progress": False},
        out=tmp_path / "run",
    )
    card = result.bundle.card
    assert card.architecture == "smp.Unet" and card.class_names == {0: "background", 1: "field"}
    assert card.normalization["kind"] == "percentile"
    assert len(result.history) == 2 and "val_mean_iou" in result.history[-1]
