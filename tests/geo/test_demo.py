"""``seamline demo``: the whole job on the sample shipped in the package, offline."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from rasterio import features

from seamline.cli import get_cli
from seamline_geo.demo import BUNDLE, OUTLINES, SCENE


def test_demo_maps_glaciers_end_to_end(tmp_path):
    out = tmp_path / "demo"
    result = CliRunner().invoke(get_cli(), ["demo", "--out", str(out), "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "IoU against the RGI 6.0 outlines" in result.output
    iou = float(result.output.split("IoU against the RGI 6.0 outlines:")[1].split()[0])
    assert iou > 0.6  # a brightness threshold tuned on the training half scores about 0.64 on the east half
    assert sorted(p.name for p in out.iterdir()) == ["glaciers.gpkg", "glaciers.png", "glaciers.tif"]

    with rasterio.open(SCENE) as scene, rasterio.open(out / "glaciers.tif") as labels:
        assert labels.crs == scene.crs and labels.transform == scene.transform
        assert labels.shape == scene.shape
        predicted = labels.read(1)
    polygons = gpd.read_file(out / "glaciers.gpkg")
    assert polygons.crs == labels.crs
    burned = features.rasterize(
        zip(polygons.geometry, polygons.class_id, strict=True), out_shape=predicted.shape, transform=labels.transform
    )
    np.testing.assert_array_equal(burned, predicted)


def test_demo_bundle_is_safetensors_and_json_only():
    assert sorted(p.name for p in BUNDLE.iterdir()) == ["seamline.json", "weights.safetensors"]


def test_evaluate_takes_polygons_as_ground_truth(tmp_path):
    out = tmp_path / "demo"
    demo = CliRunner().invoke(get_cli(), ["demo", "--out", str(out), "--no-progress"])
    demo_iou = float(demo.output.split("outlines:")[1].split()[0])
    result = CliRunner().invoke(get_cli(), ["evaluate", str(out / "glaciers.tif"), str(OUTLINES), "--classes", "2"])
    assert result.exit_code == 0, result.output
    table_iou = float(next(line for line in result.output.splitlines() if line.strip().startswith("1")).split()[1])
    assert table_iou == pytest.approx(demo_iou, abs=1e-3)
