"""``seamline demo``: the whole job on the sample shipped in the package, offline."""

from __future__ import annotations

import importlib

import geopandas as gpd
import matplotlib.pyplot as plt
import numpy as np
import pytest
import rasterio
from click.testing import CliRunner
from matplotlib.collections import LineCollection
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from rasterio import features

from seamline.cli import get_cli
from seamline_geo.demo import BUNDLE, OUTLINES, SCENE


def _keep_drawn(monkeypatch) -> dict:
    """Remember the axes seamline.show draws (the attribute seamline.show is the function, not the module)."""
    module = importlib.import_module("seamline.show")
    drawn, original = {}, module.show
    monkeypatch.setattr(module, "show", lambda *args, **options: drawn.setdefault("ax", original(*args, **options)))
    return drawn


def test_demo_maps_glaciers_end_to_end(tmp_path, monkeypatch):
    out = tmp_path / "demo"
    drawn = _keep_drawn(monkeypatch)
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

    # the map written: a legend beside the square map, glaciers, RGI outlines, a scale bar, UTM coordinates, the IoU
    height, width = plt.imread(out / "glaciers.png").shape[:2]
    assert width > 1.2 * height  # the legend sits right of the square map
    ax = drawn["ax"]
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["glacier", "RGI 6.0 outlines"]
    assert any(isinstance(a, AnchoredSizeBar) for a in ax.artists)
    assert "UTM zone 45N" in ax.get_xlabel() and ax.get_xticklabels()
    assert f"IoU {iou:.3f}" in ax.get_title()
    assert any(isinstance(c, LineCollection) and len(c.get_segments()) > 10 for c in ax.collections)


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
