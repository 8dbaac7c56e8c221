"""The core's side of stacks: grids compared, bands named, band lists read, card bands matched; no plugin geometry."""

from __future__ import annotations

import numpy as np
import pytest

import seamline
from seamline import hookimpl
from seamline.errors import InputError
from seamline.inputs import match_bands, read_band_list
from seamline.plugins import Reader
from seamline.stack import band_names, grid, same_grid

AFFINE = np.array([[0.0, 10.0, 500000.0], [-10.0, 0.0, 4000000.0], [0.0, 0.0, 1.0]])


def image(values, **meta):
    return seamline.Image(np.asarray(values), AFFINE, "EPSG:32633", meta)


def test_images_on_one_grid_stack_as_they_are():
    a = image(np.ones((2, 8, 6), np.uint8), band_names=["red", "nir"], nodata=0)
    a_data = np.ones((2, 8, 6), np.uint8)
    a_data[:, 0, 0] = 0
    a = image(a_data, band_names=["red", "nir"], nodata=0)
    b_data = np.full((1, 8, 6), 2.5, np.float32)
    b_data[0, 7, 5] = np.nan
    b = image(b_data, band_names=["slope"], nodata=float("nan"))
    stacked = seamline.stack([a, b], chunks=4)
    assert stacked.meta["band_names"] == ["red", "nir", "slope"] and stacked.dtype == np.float32
    np.testing.assert_array_equal(stacked.data.compute(), np.concatenate([a_data, b_data]).astype(np.float32))
    assert stacked.data.chunks[1:] == ((4, 4), (4, 2))
    valid = np.ones((8, 6), bool)
    valid[0, 0] = valid[7, 5] = False
    np.testing.assert_array_equal(stacked.valid_mask().compute(), valid)
    assert stacked.meta["nodata"] is None  # 0 and NaN: no common value, the mask says it
    np.testing.assert_array_equal(stacked.affine, AFFINE)


def test_an_image_on_another_grid_needs_a_plugin_that_warps(monkeypatch, fresh_plugins):
    monkeypatch.setenv("SEAMLINE_PLUGINS", "core")
    a = image(np.ones((1, 8, 6), np.uint8), band_names=["a"])
    moved = AFFINE.copy()
    moved[0, 2] += 5
    shifted = seamline.Image(np.ones((1, 8, 6), np.uint8), moved, "EPSG:32633")
    with pytest.raises(InputError, match="no plugin can warp it"):
        seamline.stack([a, shifted], names=["a", "b"])

    class Warper:
        @hookimpl
        def seamline_warp(self, image, like, resampling):
            return like.replace(data=image.data * 0 + 7, meta={"resampling": resampling})

    fresh_plugins.register_plugin(Warper(), name="test-warper")
    stacked = seamline.stack([a, shifted], names=["a", "b"], resampling="cubic")
    assert stacked.data.compute()[1].max() == 7


def test_same_grid_is_exact_to_a_millionth_of_a_pixel():
    like = image(np.zeros((1, 8, 6)))
    nudged, moved = AFFINE + 1e-6, AFFINE.copy()
    moved[0, 2] += 0.01
    assert same_grid(nudged, "EPSG:32633", (8, 6), like)
    assert not same_grid(moved, "EPSG:32633", (8, 6), like)
    assert not same_grid(AFFINE, "EPSG:32633", (8, 7), like)
    assert not same_grid(AFFINE, None, (8, 6), like)


def test_a_grid_from_crs_resolution_and_bounds():
    g = grid(crs="EPSG:32633", resolution=(10, 20), bounds=(500000, 3999000, 500500, 4000000), chunks=16)
    assert g.spatial_shape == (50, 50) and g.data.chunks[1:] == ((16, 16, 16, 2), (16, 16, 16, 2))
    np.testing.assert_array_equal(g.affine, [[0, 10, 500000], [-20, 0, 4000000], [0, 0, 1]])
    with pytest.raises(InputError, match="positive resolution"):
        grid(crs="EPSG:32633", resolution=0, bounds=(0, 0, 1, 1))
    with pytest.raises(InputError, match="hold no pixel"):
        grid(crs="EPSG:32633", resolution=10, bounds=(0, 0, 1, 1))


def test_band_names_follow_files():
    one = image(np.zeros((1, 2, 2)), band_names=["band1"])
    three = image(np.zeros((3, 2, 2)), band_names=["band1", "swir", "band3"])
    assert band_names(one, "/data/T33_B04_10m.tif") == ["T33_B04_10m"]
    assert band_names(image(np.zeros((1, 2, 2))), "/data/T33_B04_10m.tif") == ["T33_B04_10m"]
    assert band_names(three, "x/scene.tif") == ["scene.band1", "swir", "scene.band3"]
    assert band_names(three) == ["band1", "swir", "band3"]


def test_band_lists(tmp_path):
    (tmp_path / "sub").mkdir()
    text = tmp_path / "sub" / "bands.txt"
    text.write_text("# name path band\nred rgb.tif 1\n\nnir nir.tif   # single band\nswir s.tif swir16\n")
    assert read_band_list(text) == [
        ("red", str(tmp_path / "sub" / "rgb.tif"), 1),
        ("nir", str(tmp_path / "sub" / "nir.tif"), None),
        ("swir", str(tmp_path / "sub" / "s.tif"), "swir16"),
    ]
    listing = tmp_path / "bands.yaml"
    listing.write_text("red: {path: rgb.tif, band: 1}\nnir: nir.tif\n")
    assert read_band_list(listing) == [("red", str(tmp_path / "rgb.tif"), 1), ("nir", str(tmp_path / "nir.tif"), None)]
    for content, problem in (
        ("red rgb.tif 1 extra\n", "expected 'name path"),
        ("- a\n- b\n", "a mapping"),
        ("red: {file: x}\n", "expected a path"),
        ("", "names no band"),
    ):
        bad = tmp_path / ("bad.txt" if "extra" in content else "bad.yaml")
        bad.write_text(content)
        with pytest.raises(InputError, match=problem):
            read_band_list(bad)


def test_card_bands_match_names_aliases_and_file_names():
    named = image(np.zeros((3, 2, 2)), band_names=["T33_B02_10m", "red", "nir"], band_aliases={"nir": ["B08"]},
                  band_files={0: "T33_B02_10m.tif"})  # fmt: skip
    matched = match_bands(named, ["B08", "RED", "B02"])
    assert matched.meta["band_names"] == ["B02", "RED", "B08"]
    unnamed = image(np.zeros((3, 2, 2)), band_files={0: "x_B04.tif", 1: "x_B03.tif", 2: "x_B02.tif"})
    assert match_bands(unnamed, ["B02", "B03", "B04"]).meta["band_names"] == ["B04", "B03", "B02"]
    in_order = image(np.zeros((3, 2, 2)), band_files={0: "a.tif", 1: "b.tif", 2: "c.tif"})
    assert match_bands(in_order, ["B02", "B03", "B04"]).meta.get("band_names") is None  # the model's order
    # what is found is named, what is not is left for the bundle to report
    partial = match_bands(image(np.zeros((2, 2, 2)), band_files={0: "x_B04.tif", 1: "y.tif"}), ["B02", "B04"])
    assert partial.meta["band_names"] == ["B04", "y"]
    twice = image(np.zeros((2, 2, 2)), band_files={0: "a_B04.tif", 1: "b_B04.tif"})
    with pytest.raises(InputError, match="matches several"):
        match_bands(twice, ["B04"])
    # a name that is only a description, not a file's, is not searched for words
    described = image(np.zeros((1, 2, 2)), band_names=["red edge"])
    assert match_bands(described, ["red"]).meta["band_names"] == ["red edge"]


def test_open_with_a_named_reader_and_open_stac_dispatch(monkeypatch, fresh_plugins):
    monkeypatch.setenv("SEAMLINE_PLUGINS", "core")
    calls = []

    class Items:
        @hookimpl
        def seamline_readers(self, register):
            def open_items(source, chunks=None, *, assets=None):
                calls.append((source, assets))
                return image(np.zeros((1, 2, 2)))

            register(Reader(name="stac", can_open=lambda path: False, open=open_items))

    fresh_plugins.register_plugin(Items(), name="test-stac")
    item = {"type": "Feature"}
    seamline.open_stac(item, assets=["red"])
    seamline.open(item, reader="stac")
    assert calls == [(item, ["red"]), (item, None)]
    with pytest.raises(InputError, match="takes no option 'bbox'"):
        seamline.open_stac(item, bbox=(0, 0, 1, 1))
    with pytest.raises(InputError, match="no reader named 'nope'"):
        seamline.open(item, reader="nope")
