"""Organ statistics and ``seamline stats``: volumes in mL, named, on one grid."""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner
from scipy import ndimage

import seamline
from seamline import Image, InputError
from seamline.cli import get_cli
from seamline_medical.stats import load_names, organ_statistics, write_statistics
from tests.conftest import data_file

FOLDER = "totalsegmentator_ct_mr"


def test_stats_command_on_totalsegmentator(tmp_path):
    seg, names = data_file(FOLDER, "example_seg.nii.gz"), data_file(FOLDER, "label_names.json")
    out = tmp_path / "stats.csv"
    result = CliRunner().invoke(get_cli(), ["stats", str(seg), "--names", str(names), "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out)
    ref = nib.load(seg)
    voxels = np.bincount(np.asanyarray(ref.dataobj).ravel())
    voxel_ml = abs(np.linalg.det(ref.affine[:3, :3])) / 1000
    present = np.flatnonzero(voxels)[1:]
    np.testing.assert_array_equal(table["id"], present)
    np.testing.assert_array_equal(table["voxels"], voxels[present])
    np.testing.assert_allclose(table["volume_ml"], voxels[present] * voxel_ml)
    total = json.loads(names.read_text())["total"]
    assert list(table["name"]) == [total[str(i)] for i in present]
    assert table.set_index("name").loc["liver", "volume_ml"] == pytest.approx(voxels[5] * 0.027)


def test_stats_command_prints_a_table_with_intensity():
    seg, ct = data_file(FOLDER, "example_seg.nii.gz"), data_file(FOLDER, "example_ct_sm.nii.gz")
    result = CliRunner().invoke(get_cli(), ["stats", str(seg), "--image", str(ct)])
    assert result.exit_code == 0, result.output
    header = result.output.splitlines()[0].split()
    assert header[:4] == ["id", "name", "voxels", "volume_ml"] and "mean_intensity" in header


def test_stats_of_another_grid_is_an_input_error():
    seg, ct = data_file(FOLDER, "example_seg.nii.gz"), data_file(FOLDER, "example_ct.nii.gz")
    result = CliRunner().invoke(get_cli(), ["stats", str(seg), "--image", str(ct)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {ct}: labels shape (122, 101, 30) differs from image shape")


def test_statistics_against_scipy():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 4, (12, 10, 8)).astype(np.uint8)
    intensity = rng.normal(size=labels.shape)
    affine = np.array([[0, -2.0, 0, 10], [1.5, 0, 0, -3], [0, 0, 2.5, 7], [0, 0, 0, 1]])
    label_image = Image.from_array(labels[None], affine, chunks=(1, 5, 4, 3))
    table = organ_statistics(label_image, Image.from_array(intensity[None], affine), names={1: "a", 2: "b"})
    ids = np.array([1, 2, 3])
    np.testing.assert_array_equal(table["id"], ids)
    assert list(table["name"]) == ["a", "b", "label 3"]
    np.testing.assert_allclose(table["volume_ml"], ndimage.sum(labels > 0, labels, ids) * 7.5 / 1000)
    np.testing.assert_allclose(table["mean_intensity"], ndimage.mean(intensity, labels, ids))
    centroids = np.array(ndimage.center_of_mass(labels > 0, labels, ids))
    world = centroids @ affine[:3, :3].T + affine[:3, 3]
    np.testing.assert_allclose(table[["centroid_x_mm", "centroid_y_mm", "centroid_z_mm"]], world)
    boxes = ndimage.find_objects(labels)
    for row, box in zip(table.itertuples(), boxes, strict=True):
        assert (row.bbox_start_0, row.bbox_stop_0) == (box[0].start, box[0].stop)


def test_load_names_flat_nested_and_ambiguous(tmp_path):
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps({"1": "liver", "2": "spleen"}))
    assert load_names(flat) == {1: "liver", 2: "spleen"}
    nested = tmp_path / "nested.json"
    nested.write_text(json.dumps({"_note": "x", "ct": {"1": "liver", "7": "aorta"}, "mr": {"1": "liver"}}))
    assert load_names(nested, key="mr") == {1: "liver"}
    assert load_names(nested, ids=[0, 7]) == {1: "liver", 7: "aorta"}
    with pytest.raises(InputError, match="choose one"):
        load_names(nested, ids=[1])
    with pytest.raises(InputError, match="no table 'pet'"):
        load_names(nested, key="pet")


def test_statistics_json_and_bad_suffix(tmp_path):
    table = organ_statistics(Image(np.ones((1, 2, 2, 2), np.uint8)))
    out = write_statistics(table, tmp_path / "s.json")
    assert json.loads(open(out).read())[0]["voxels"] == 8
    with pytest.raises(InputError):
        write_statistics(table, tmp_path / "s.txt")


def test_float_labels_are_an_input_error():
    with pytest.raises(InputError, match="integers"):
        organ_statistics(Image(np.ones((1, 2, 2, 2), np.float32)))


def test_labels_written_by_seamline_name_their_rows(tmp_path):
    labels = Image(np.ones((1, 3, 3, 3), np.uint8), meta={"class_names": {0: "background", 1: "heart"}})
    path = seamline.save(labels, tmp_path / "heart.nii.gz")
    assert list(organ_statistics(seamline.open(path))["name"]) == ["heart"]


def _volume(array, **meta):
    return Image(array[None], np.diag([2.0, 2.0, 2.0, 1.0]), meta={"anchor": "center", **meta})


def test_stats_command_checks_the_out_suffix_before_reading(tmp_path):
    seg = data_file(FOLDER, "example_seg.nii.gz")
    result = CliRunner().invoke(get_cli(), ["stats", str(seg), "--out", str(tmp_path / "stats.txt")])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {tmp_path / 'stats.txt'}: statistics are written as .csv or .json")
    assert not list(tmp_path.iterdir())


def test_intensity_volumes_are_not_measured_as_labels(tmp_path):
    ct = np.arange(-500, 1500, dtype=np.int16).reshape(10, 10, 20)
    path = seamline.save(Image(ct[None], np.eye(4)), tmp_path / "ct.nii.gz")
    result = CliRunner().invoke(get_cli(), ["stats", path])
    assert result.exit_code == 2 and "negative values" in result.output
    with pytest.raises(InputError, match="1999 distinct values"):
        organ_statistics(_volume(ct + 500))
    assert len(organ_statistics(_volume(ct + 500, class_names={1: "a"}))) == 1999
    marked = seamline.save(Image(ct[None] + 500, np.eye(4)), tmp_path / "labels.nii.gz", labels=True)
    assert len(organ_statistics(seamline.open(marked))) == 1999


def test_stats_need_a_volume_in_millimetres(tmp_path):
    from seamline_medical.stats import check_stats_output

    raster = Image(np.ones((1, 4, 4), np.uint8), meta={"anchor": "corner", "path": "scene.tif"})
    with pytest.raises(InputError, match="not a volume in world millimetres") as info:
        check_stats_output(tmp_path / "s.csv", raster)
    assert info.value.path == "scene.tif"
    with pytest.raises(InputError, match=r"\.csv or \.json"):
        check_stats_output(tmp_path / "s.xlsx", _volume(np.ones((2, 2, 2), np.uint8)))
    check_stats_output(tmp_path / "s.json", _volume(np.ones((2, 2, 2), np.uint8)))
