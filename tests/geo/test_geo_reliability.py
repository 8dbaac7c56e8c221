"""Never a wrong answer with exit 0, never a lost input, nothing lost on the way through a GeoTIFF.

The references: rasterio reads back the masks seamline wrote; the grids are built here
with known CRSs; the model that changes its input file is a plain torch module.
"""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio
import torch
from affine import Affine
from click.testing import CliRunner

import seamline
from seamline import InputError
from seamline.cli import get_cli
from seamline.metrics import evaluate
from seamline_geo.demo import BUNDLE, SCENE
from seamline_geo.grid import affine_from_transform

TRANSFORM = Affine(30, 0, 500000, 0, -30, 4000000)


def _labels(path, crs=32645, transform=TRANSFORM, bands=1, dtype=np.uint8):
    rng = np.random.default_rng(0)
    data = rng.integers(0, 3, (bands, 40, 50)).astype(dtype)
    seamline.save(seamline.Image(data, affine_from_transform(transform), pyproj.CRS(crs)), path)
    return path


def test_evaluate_refuses_labels_in_another_crs(tmp_path):
    pred = _labels(tmp_path / "pred.tif", crs=32645)
    truth = _labels(tmp_path / "truth.tif", crs=32644)  # the same pixels, one UTM zone west
    result = CliRunner().invoke(get_cli(), ["evaluate", str(pred), str(truth)])
    assert result.exit_code == 2
    assert result.output == (
        f"error: {truth}: prediction and truth are in different CRSs (EPSG:32645 vs EPSG:32644); "
        "reproject one onto the other's grid first\n"
    )
    with pytest.raises(InputError, match="different CRSs"):
        evaluate(seamline.open(pred), seamline.open(truth))
    assert evaluate(seamline.open(pred), seamline.open(_labels(tmp_path / "same.tif"))).summary["mean_iou"] == 1.0


def test_evaluate_refuses_a_shifted_grid(tmp_path):
    pred = _labels(tmp_path / "pred.tif")
    truth = _labels(tmp_path / "truth.tif", transform=TRANSFORM * Affine.translation(1, 0))
    result = CliRunner().invoke(get_cli(), ["evaluate", str(pred), str(truth)])
    assert (
        result.exit_code == 2 and "lie on different grids (origin [500000.0, 4000000.0] vs [500030.0" in result.output
    )


def test_vectorize_refuses_several_bands_and_non_labels(tmp_path):
    four = _labels(tmp_path / "four.tif", bands=4)
    result = CliRunner().invoke(get_cli(), ["vectorize", str(four), str(tmp_path / "p.gpkg")])
    assert result.exit_code == 2
    assert result.output == f"error: {four}: has 4 bands; vectorize one band of labels (choose it with --band)\n"
    assert (
        CliRunner().invoke(get_cli(), ["vectorize", str(four), str(tmp_path / "p.gpkg"), "--band", "2"]).exit_code == 0
    )
    scores = _labels(tmp_path / "scores.tif", dtype=np.float32)
    result = CliRunner().invoke(get_cli(), ["vectorize", str(scores), str(tmp_path / "q.gpkg")])
    assert result.exit_code == 2 and "vectorize takes a 2D integer label raster, got float32" in result.output
    assert not (tmp_path / "q.gpkg").exists()


def test_predict_refuses_to_write_over_its_input(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_bytes(SCENE.read_bytes())
    (tmp_path / "link.tif").symlink_to(scene)
    for out in (scene, tmp_path / "link.tif"):
        args = ["predict", str(scene), str(out), "-m", str(BUNDLE), "--overwrite", "--no-progress"]
        result = CliRunner().invoke(get_cli(), args)
        assert result.exit_code == 2 and "is an input of this job" in result.output
        assert scene.read_bytes() == SCENE.read_bytes()
    labels = seamline.open(scene)
    with pytest.raises(InputError, match="is an input of this job"):
        seamline.save(labels, tmp_path / "link.tif", overwrite=True)


class _Rewrites(torch.nn.Module):
    """A model that, on its first call, rewrites the file being predicted (another process would)."""

    def __init__(self, path, data):
        super().__init__()
        self.path, self.data, self.calls = path, data, 0

    def forward(self, x):
        self.calls += 1
        if self.calls == 1:
            with rasterio.open(self.path, "r+") as dataset:
                dataset.write(self.data)
        return torch.cat([x[:, :1], -x[:, :1]], dim=1)


def test_an_input_changed_during_a_prediction_writes_nothing(tmp_path):
    scene = tmp_path / "scene.tif"
    data = np.random.default_rng(0).random((1, 300, 300)).astype(np.float32)
    seamline.save(seamline.Image(data, affine_from_transform(TRANSFORM), pyproj.CRS(32645)), scene, cog=False)
    image = seamline.open(scene)
    labels = seamline.predict(image, _Rewrites(scene, data[:, ::-1].copy()), tile_size=64, output="labels")
    with pytest.raises(InputError, match=r"scene\.tif: changed while this job read it"):
        seamline.save(labels, tmp_path / "labels.tif")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


@pytest.mark.parametrize("cog", [True, False])
def test_an_internal_mask_round_trips(tmp_path, cog):
    data = np.arange(2 * 70 * 90, dtype=np.uint16).reshape(2, 70, 90)
    valid = np.ones((70, 90), bool)
    valid[10:30, 20:75] = False
    source = tmp_path / "source.tif"
    profile = {"driver": "GTiff", "width": 90, "height": 70, "count": 2, "dtype": "uint16", "crs": "EPSG:32645"}
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(source, "w", transform=TRANSFORM, **profile) as dst:
        dst.write(data)
        dst.write_mask(valid)
    copy = tmp_path / "copy.tif"
    seamline.save(seamline.open(source, chunks=32), copy, cog=cog, blocksize=16)
    with rasterio.open(source) as a, rasterio.open(copy) as b:
        assert b.mask_flag_enums == a.mask_flag_enums
        np.testing.assert_array_equal(b.dataset_mask(), a.dataset_mask())
        np.testing.assert_array_equal(b.read(), a.read())
    assert sorted(p.name for p in tmp_path.iterdir()) == ["copy.tif", "source.tif"]
