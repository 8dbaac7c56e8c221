"""Acceptance on the real rasters: the grid survives prediction, polygons survive rasterizing."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage
import torch
from click.testing import CliRunner
from rio_cogeo.cogeo import cog_validate

import seamline
from seamline.bundle import ModelCard, build_module, save_model
from seamline.cli import get_cli
from tests.conftest import data_file

SCENES = [
    ("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif"),
    ("solaris_spacenet_pivots", "sample_geotiff.tif"),
    ("solaris_spacenet_pivots", "sample_geotiff_custom_proj.tif"),
]


def classes_by_brightness(image: seamline.Image) -> seamline.Image:
    """A 4-class label raster from the smoothed first band (many components, holes, corners)."""
    band = scipy.ndimage.uniform_filter(image.data[0].compute().astype(np.float32), 5)
    labels = np.digitize(band, np.percentile(band, [40, 60, 80])).astype(np.uint8)
    data = da.from_array(labels[None], chunks=(1, *image.data.chunks[1:]))
    return image.replace(data=data, meta={"anchor": "corner", "nodata": None})


@pytest.mark.parametrize("folder,name", SCENES)
def test_rasterizing_the_polygons_gives_back_the_labels(tmp_path, folder, name):
    scene = seamline.open(data_file(folder, name), chunks=(192, 160))
    labels = classes_by_brightness(scene)
    frame = seamline.vectorize(labels)
    assert frame.crs == scene.crs
    frame.to_file(tmp_path / "polygons.gpkg")
    back = seamline.open(tmp_path / "polygons.gpkg", like=labels, attribute="class_id")
    np.testing.assert_array_equal(back.data.compute(), labels.data.compute())


class Brightness(torch.nn.Module):
    """A small model: class 1 where the mean of the bands is above a threshold."""

    def __init__(self, threshold: float) -> None:
        super().__init__()
        self.threshold = threshold

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        score = x.mean(dim=1, keepdim=True) - self.threshold
        return torch.cat([-score, score], dim=1)


@pytest.mark.parametrize("folder,name", SCENES)
def test_predicting_keeps_crs_transform_and_shape(tmp_path, folder, name):
    scene = seamline.open(data_file(folder, name))
    threshold = float(np.median(scene.data.compute()))
    labels = seamline.predict(scene, Brightness(threshold), tile_size=256, output="labels", progress=False)
    seamline.save(labels, tmp_path / "labels.tif")
    assert cog_validate(str(tmp_path / "labels.tif"))[0]
    saved = seamline.open(tmp_path / "labels.tif")
    assert saved.spatial_shape == scene.spatial_shape
    assert np.array_equal(saved.affine, scene.affine) and saved.crs == scene.crs


@pytest.fixture
def bundle(tmp_path):
    card = ModelCard(
        "smp.Unet",
        1,
        ["background", "building"],
        kwargs={"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [16, 8, 4]},
        normalization={"kind": "scale", "factor": 1 / 6615},
        tile_size=256,
    )
    torch.manual_seed(0)
    return save_model(build_module(card), tmp_path / "model", card)


@pytest.mark.slow
def test_predict_command_writes_a_cog_and_polygons(tmp_path, bundle):
    scene = data_file("solaris_spacenet_pivots", "sample_geotiff.tif")
    out, polygons = tmp_path / "labels.tif", tmp_path / "buildings.gpkg"
    args = ["predict", str(scene), str(out), "--model", str(bundle), "--polygons", str(polygons), "--no-progress"]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    assert cog_validate(str(out))[0]
    labels, image = seamline.open(out), seamline.open(scene)
    assert labels.spatial_shape == image.spatial_shape
    assert np.array_equal(labels.affine, image.affine) and labels.crs == image.crs
    back = seamline.open(polygons, like=labels, attribute="class_id").data.compute()
    predicted = labels.data.compute()
    np.testing.assert_array_equal(back, np.where(predicted == labels.meta.get("nodata"), 0, predicted))
    again = CliRunner().invoke(get_cli(), args)
    assert again.exit_code == 2 and "exists" in again.output


def test_a_model_for_other_band_counts_names_both_numbers(bundle):
    scene = data_file("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif")
    result = CliRunner().invoke(get_cli(), ["predict", str(scene), "x.tif", "--model", str(bundle), "--no-progress"])
    assert result.exit_code == 2
    assert "1 bands" in result.output and "has 3" in result.output
