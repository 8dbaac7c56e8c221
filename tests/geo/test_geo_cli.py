"""``seamline vectorize LABELS OUT``: every vector format, atomic, and one-line errors."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pyproj
import pytest
import shapely
from affine import Affine
from click.testing import CliRunner

import seamline
from seamline.cli import get_cli
from seamline_geo.demo import BUNDLE, SCENE
from seamline_geo.grid import affine_from_transform
from seamline_geo.polygons import write_polygons
from tests.geo.test_raster_io import corrupt_tiles


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


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".fgb", ".geojson", ".json"])
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


def one_line_error(result, path, problem):
    assert result.exit_code == 2, result.output
    assert result.output.startswith(f"error: {path}: {problem}") and result.output.count("\n") == 1, result.output


@pytest.mark.parametrize("suffix", [".shp", ".kml", ".gml", ".csv"])
def test_multi_file_and_unknown_vector_formats_are_refused_leaving_nothing(tmp_path, labels_tif, suffix):
    out = tmp_path / f"fields{suffix}"
    result = CliRunner().invoke(get_cli(), ["vectorize", str(labels_tif), str(out)])
    one_line_error(result, out, "unsupported vector format for polygons")
    assert ".gpkg, .fgb, .geojson, .json, .parquet" in result.output
    frame = gpd.GeoDataFrame(geometry=[shapely.box(0, 0, 1, 1)], crs=32616)
    with pytest.raises(seamline.InputError, match="unsupported vector format"):
        write_polygons(frame, out)
    assert [p.name for p in tmp_path.iterdir()] == ["labels.tif"]


def test_vectorize_options_and_inputs_are_one_line_errors_naming_the_file(tmp_path, labels_tif):
    out = tmp_path / "x.gpkg"

    def vectorize(labels, *options):
        return CliRunner().invoke(get_cli(), ["vectorize", str(labels), str(out), *options])

    for option in ("--simplify", "--min-area"):
        result = vectorize(labels_tif, option, "-1")
        assert result.exit_code == 2 and "-1" in result.output and "Traceback" not in result.output
    labels = seamline.open(labels_tif)
    scores = tmp_path / "scores.tif"
    seamline.save(labels.replace(data=labels.data.astype("float32")), scores)
    one_line_error(vectorize(scores), scores, "vectorize takes a 2D integer label raster")
    tiles = corrupt_tiles(tmp_path / "tiles.tif")
    one_line_error(vectorize(tiles), tiles, "is corrupt or unreadable")
    one_line_error(vectorize(labels_tif, "--band", "2"), labels_tif, "has no band 2")
    assert not out.exists()


def test_vectorize_picks_a_band_whatever_the_reader(tmp_path, labels_tif):
    two = tmp_path / "two.tif"
    labels = seamline.open(labels_tif)
    seamline.save(labels.replace(data=labels.data[[0, 0]] * [[[0]], [[1]]]), two)
    result = CliRunner().invoke(get_cli(), ["vectorize", str(two), str(tmp_path / "b2.gpkg"), "--band", "2"])
    assert result.exit_code == 0, result.output
    assert sorted(gpd.read_file(tmp_path / "b2.gpkg").class_id) == [1, 1, 2]
    nibabel = pytest.importorskip("nibabel")
    volume = tmp_path / "volume.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.ones((8, 8, 4), np.uint8), np.eye(4)), volume)
    result = CliRunner().invoke(get_cli(), ["vectorize", str(volume), str(tmp_path / "v.gpkg")])
    one_line_error(result, volume, "vectorize takes a 2D integer label raster")


@pytest.mark.parametrize("polygons", ["p.xyz", "p.shp"])
def test_predict_refuses_a_bad_polygons_path_before_any_work(tmp_path, polygons):
    out, path = tmp_path / "out.tif", tmp_path / polygons
    args = ["predict", str(SCENE), str(out), "-m", str(BUNDLE), "--polygons", str(path), "--no-progress"]
    one_line_error(CliRunner().invoke(get_cli(), args), path, "unsupported vector format for polygons")
    assert list(tmp_path.iterdir()) == []


def test_predict_refuses_polygons_of_a_volume_before_any_work(tmp_path):
    nibabel = pytest.importorskip("nibabel")
    volume = tmp_path / "volume.nii.gz"
    nibabel.save(nibabel.Nifti1Image(np.zeros((8, 8, 4), np.float32), np.eye(4)), volume)
    out, path = tmp_path / "out.nii.gz", tmp_path / "p.gpkg"
    args = ["predict", str(volume), str(out), "-m", str(BUNDLE), "--polygons", str(path), "--no-progress"]
    one_line_error(CliRunner().invoke(get_cli(), args), path, "polygons need a 2D image")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["volume.nii.gz"]


def test_a_shipped_model_by_name_and_bands_mapped_by_position(tmp_path):
    scene = seamline.open(SCENE)
    sensor = scene.replace(meta={**scene.meta, "band_names": ["B3", "B2", "B1", "B4"]})
    seamline.save(sensor, tmp_path / "landsat.tif")
    args = ["predict", str(tmp_path / "landsat.tif"), "--model", "glaciers-landsat", "--tile-size", "128"]
    named = CliRunner().invoke(get_cli(), [*args[:2], str(tmp_path / "a.tif"), *args[2:], "--no-progress"])
    assert named.exit_code == 2
    assert "model expects 4 bands ['red', 'green', 'blue', 'nir']" in named.output and "B3" in named.output
    mapped = CliRunner().invoke(
        get_cli(), [*args[:2], str(tmp_path / "b.tif"), *args[2:], "--bands", "1,2,3,4", "--no-progress"]
    )
    assert mapped.exit_code == 0, mapped.output
    expected = seamline.predict(scene, seamline.load_model(BUNDLE), tile_size=128, output="labels", progress=False)
    np.testing.assert_array_equal(seamline.open(tmp_path / "b.tif").data.compute(), expected.data.compute())
