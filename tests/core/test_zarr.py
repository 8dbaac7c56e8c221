"""Zarr stores: images round-trip with their affine, CRS and meta, written chunk by chunk."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import zarr

import seamline
from seamline.errors import OutputExistsError
from seamline.zarr_store import can_open, can_save, open_zarr, save_zarr

pyproj = pytest.importorskip("pyproj")


@pytest.fixture
def image():
    data = da.from_array(np.arange(2 * 50 * 30, dtype=np.float32).reshape(2, 50, 30), chunks=(2, 16, 16))
    meta = {
        "nodata": float("nan"),
        "class_names": {0: "background", 1: "glacier"},
        "colors": {1: (0, 128, 255)},
        "band_names": ["red", "nir"],
        "anchor": "corner",
        "mask": da.ones((1, 50, 30), bool),  # not JSON: left out
    }
    affine = [[0.0, -30.0, 3_100_000.0], [30.0, 0.0, 400_000.0], [0.0, 0.0, 1.0]]
    return seamline.Image(data, affine, pyproj.CRS.from_epsg(32645), meta)


@pytest.mark.parametrize("zarr_format", [3, 2])
def test_round_trip(tmp_path, image, zarr_format):
    path = tmp_path / "scene.zarr"
    save_zarr(image, path, zarr_format=zarr_format)
    back = open_zarr(path)
    np.testing.assert_array_equal(back.data.compute(), image.data.compute())
    np.testing.assert_array_equal(back.affine, image.affine)
    assert back.crs == image.crs
    assert back.meta["class_names"] == {0: "background", 1: "glacier"}
    assert back.meta["colors"] == {1: (0, 128, 255)}
    assert back.meta["band_names"] == ["red", "nir"] and back.meta["anchor"] == "corner"
    assert np.isnan(back.meta["nodata"]) and "mask" not in back.meta
    assert back.data.chunks == image.data.chunks


def test_one_dask_chunk_per_zarr_chunk(tmp_path, image):
    save_zarr(image, tmp_path / "a.zarr")
    assert zarr.open_array(tmp_path / "a.zarr").chunks == (2, 16, 16)
    irregular = image.replace(data=image.data.rechunk((2, (10, 30, 10), 30)))
    save_zarr(irregular, tmp_path / "b.zarr")
    np.testing.assert_array_equal(open_zarr(tmp_path / "b.zarr").data.compute(), image.data.compute())


def test_open_and_save_go_through_the_plugin(tmp_path, image, fresh_plugins):
    path = tmp_path / "out.zarr"
    seamline.save(image, path)
    assert can_open(str(path)) and can_save(str(path)) and not can_save("out.tif")
    assert seamline.open(path).shape == image.shape
    with pytest.raises(OutputExistsError):
        seamline.save(image, path)
    seamline.save(image[:, :10, :10], path, overwrite=True)
    assert seamline.open(path).shape == (2, 10, 10)


def test_a_failed_write_leaves_nothing(tmp_path, image):
    def broken(block):
        raise RuntimeError("disk full")

    bad = image.replace(data=image.data.map_blocks(broken, dtype=np.float32))
    with pytest.raises(RuntimeError):
        save_zarr(bad, tmp_path / "bad.zarr")
    assert list(tmp_path.iterdir()) == []


def test_no_crs_and_plain_arrays(tmp_path):
    path = tmp_path / "volume.zarr"
    save_zarr(seamline.Image(np.zeros((1, 4, 5, 6), np.uint8)), path)
    back = open_zarr(path)
    assert back.crs is None and back.meta == {} and back.dtype == np.uint8
    np.testing.assert_array_equal(back.affine, np.eye(4))


def test_a_crs_given_as_text_is_kept(tmp_path):
    save_zarr(seamline.Image(np.zeros((1, 4, 5), np.uint8), crs="EPSG:32645"), tmp_path / "a.zarr")
    assert open_zarr(tmp_path / "a.zarr").crs.to_epsg() == 32645
