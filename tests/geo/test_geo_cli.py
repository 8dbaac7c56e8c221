"""``seamline vectorize LABELS OUT``: every vector format, atomic, and one-line errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
from affine import Affine
from click.testing import CliRunner

import seamline
from seamline.cli import get_cli
from seamline_geo.grid import affine_from_transform


@pytest.fixture
def labels_tif(tmp_path):
    labels = np.zeros((1, 64, 48), np.uint8)
    labels[0, 5:20, 5:30] = 1
    labels[0, 10:15, 10:15] = 2
    labels[0, 40:60, 2:40] = 1
    meta = {"class_names": {1: "field", 2: "barn"}}
    image = seamline.Image(
        labels, affine_from_transform(Affine(30, 0, 500000, 0, -30, 4000000)), pyproj.CRS(32616), meta
    )
    seamline.save(image, tmp_path / "labels.tif")
    return tmp_path / "labels.tif"


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".fgb", ".geojson"])
def test_vectorize_writes_each_format(tmp_path, labels_tif, suffix):
    out = tmp_path / f"fields{suffix}"
    result = CliRunner().invoke(get_cli(), ["vectorize", str(labels_tif), str(out), "--instances"])
    assert result.exit_code == 0, result.output
    frame = gpd.read_parquet(out) if suffix == ".parquet" else gpd.read_file(out)
    assert sorted(frame.class_name) == ["barn", "field", "field"]
    assert frame.crs == pyproj.CRS(32616)
    assert sorted(frame.area) == [25 * 900.0, (15 * 25 - 25) * 900.0, 20 * 38 * 900.0]
    assert sorted(frame.instance_id) == [1, 2, 3]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["labels.tif", out.name])


def test_existing_output_and_bad_input_are_one_line_errors(tmp_path, labels_tif):
    out = tmp_path / "fields.gpkg"
    runner = CliRunner()
    assert runner.invoke(get_cli(), ["vectorize", str(labels_tif), str(out)]).exit_code == 0
    again = runner.invoke(get_cli(), ["vectorize", str(labels_tif), str(out)])
    assert again.exit_code == 2 and "exists already" in again.output
    assert runner.invoke(get_cli(), ["vectorize", str(labels_tif), str(out), "--overwrite"]).exit_code == 0
    broken = tmp_path / "broken.tif"
    broken.write_bytes(b"II*\x00" + b"\x00" * 100)
    result = runner.invoke(get_cli(), ["vectorize", str(broken), str(tmp_path / "x.gpkg")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {broken}:") and result.output.count("\n") == 1
    wrong = runner.invoke(get_cli(), ["vectorize", str(labels_tif), str(tmp_path / "x.csv")])
    assert wrong.exit_code == 2 and "vector format" in wrong.output
