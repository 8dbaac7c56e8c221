"""Pictures: overlays of labels on scenes, legends, outlines, strided reads, and errors."""

from __future__ import annotations

import importlib

import dask.array as da
import matplotlib
import numpy as np
import pytest
from matplotlib.collections import LineCollection

from seamline import Image, InputError
from seamline.show import show, write_preview

matplotlib.use("Agg")


def _scene_and_labels():
    scene = Image.from_array(np.random.default_rng(0).integers(0, 255, (3, 40, 60)).astype("uint8"))
    labels = np.zeros((1, 40, 60), "uint8")
    labels[0, 10:20, 10:30] = 1
    labels[0, 30:35, 40:50] = 2
    names = {0: "background", 1: "glacier", 2: "lake"}
    return scene, Image.from_array(labels, meta={"colors": {1: (0, 0, 255)}, "class_names": names})


def test_overlay_draws_label_colours_over_the_scene():
    scene, labels = _scene_and_labels()
    ax = show(scene, labels, alpha=0.6)
    overlay = ax.get_images()[1]
    np.testing.assert_array_equal(overlay.get_array()[15, 15], [0, 0, 1, 1])
    assert overlay.get_array()[0, 0, 3] == 0  # background stays clear
    assert overlay.get_alpha() == 0.6


def test_legend_names_the_classes_shown_in_their_colours():
    scene, labels = _scene_and_labels()
    ax = show(scene, labels, truth=labels.data[0] == 1, truth_label="surveyed")
    entries = {
        t.get_text(): h for t, h in zip(ax.get_legend().get_texts(), ax.get_legend().legend_handles, strict=True)
    }
    assert list(entries) == ["glacier", "lake", "surveyed"]
    np.testing.assert_allclose(entries["glacier"].get_facecolor()[:3], [0, 0, 1])
    np.testing.assert_allclose(entries["lake"].get_facecolor()[:3], np.array([60, 180, 75]) / 255)  # class_color(2)


def test_numbered_instances_get_no_legend():
    scene = np.zeros((1, 30, 30))
    instances = np.arange(900).reshape(30, 30) % 13
    assert show(scene, instances).get_legend() is None


def test_label_image_outlines_follow_the_region_edges():
    scene, labels = _scene_and_labels()
    ax = show(scene, truth=labels)
    lines = [path.vertices for c in ax.collections for path in c.get_paths()]
    assert len(lines) == 2  # one closed contour per class
    box = lines[0] if lines[0][:, 1].min() < 20 else lines[1]
    # a contour at 0.5 passes half way between the pixel centres inside and outside: the pixel edges
    assert box[:, 0].min() == pytest.approx(10.0, abs=0.5) and box[:, 0].max() == pytest.approx(30.0, abs=0.5)
    assert box[:, 1].min() == pytest.approx(10.0, abs=0.5) and box[:, 1].max() == pytest.approx(20.0, abs=0.5)


def test_geometry_outlines_are_drawn_where_they_lie():
    shapely = pytest.importorskip("shapely")
    scene, _ = _scene_and_labels()
    # an identity-affine image is drawn in pixel (col, row) coordinates; its world is (row, col)
    ax = show(scene, truth=[shapely.box(5, 10, 15, 30), shapely.LineString([(0, 0), (4, 8)]), shapely.Point(1, 1)])
    (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    ring, line = collection.get_segments()
    np.testing.assert_allclose(ring.min(axis=0), [10, 5])
    np.testing.assert_allclose(ring.max(axis=0), [30, 15])
    np.testing.assert_allclose(line, [[0, 0], [8, 4]])


def test_large_scenes_are_strided_before_reading():
    scene = Image.from_array(da.zeros((1, 8000, 6000), chunks=(1, 1000, 1000), dtype="uint8"))
    ax = show(scene, max_size=500)
    assert ax.get_images()[0].get_array().shape[:2] == (500, 375)


def test_nodata_is_transparent_and_out_of_the_stretch():
    pixels = np.full((1, 10, 10), 50.0)
    pixels[0, :5] = 100.0
    pixels[0, 0, 0] = -9999
    ax = show(Image.from_array(pixels, meta={"nodata": -9999}))
    drawn = ax.get_images()[0].get_array()
    assert drawn[0, 0, 3] == 0
    assert drawn[1, 0, 0] == 1.0 and drawn[9, 0, 0] == 0.0  # 50..100 spans black to white


def test_errors_name_the_problem():
    scene, labels = _scene_and_labels()
    with pytest.raises(InputError, match="do not match"):
        show(scene, np.zeros((1, 40, 61)))
    shifted = Image.from_array(labels.data, affine=[[1, 0, 0.5], [0, 1, 0], [0, 0, 1]])
    with pytest.raises(InputError, match="not on the image's grid"):
        show(scene, shifted)
    with pytest.raises(InputError, match="2 channels"):
        show(scene, np.zeros((2, 40, 60), "uint8"))
    with pytest.raises(InputError, match="low < high"):
        show(scene, window=(5, 5))
    with pytest.raises(InputError, match="percentile spec"):
        show(scene, window={"kind": "zscore"})


def test_write_preview_writes_a_png_of_a_map_and_of_a_volume(tmp_path):
    scene, labels = _scene_and_labels()
    write_preview(labels, tmp_path / "map.png", image=scene)
    volume = Image.from_array(np.arange(4 * 5 * 6, dtype="float32").reshape(1, 4, 5, 6))
    write_preview(Image.from_array(np.ones((1, 4, 5, 6), "uint8")), tmp_path / "volume.png", image=volume)
    for name in ("map.png", "volume.png"):
        assert (tmp_path / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_preview_shows_the_input_through_the_models_window(tmp_path, monkeypatch):
    module = importlib.import_module("seamline.show")  # the attribute seamline.show is the function
    seen = {}
    monkeypatch.setattr(module, "show", lambda image, labels, **options: seen.update(options))
    window = {"kind": "window", "low": -160, "high": 240}
    volume = Image.from_array(np.zeros((1, 4, 4, 4)))
    module.write_preview(
        Image.from_array(np.zeros((1, 4, 4, 4), "uint8"), meta={"normalization": window}),
        tmp_path / "a.png",
        image=volume,
    )
    assert seen["window"] == window
    zscore = {"kind": "zscore", "mean": [0], "std": [1]}
    module.write_preview(
        Image.from_array(np.zeros((1, 4, 4, 4), "uint8"), meta={"normalization": zscore}),
        tmp_path / "b.png",
        image=volume,
    )
    assert seen["window"] is None


def test_public_names_stay_functions_after_their_modules_are_imported() -> None:
    import seamline
    import seamline.show
    import seamline.vectorize

    assert callable(seamline.show) and callable(seamline.vectorize)


def test_reference_labels_from_a_file_on_the_grid(tmp_path):
    import seamline

    scene, labels = _scene_and_labels()
    path = seamline.save(labels, tmp_path / "survey.zarr")
    ax = show(scene, truth=path)
    assert len([p for c in ax.collections for p in c.get_paths()]) == 2
    with pytest.raises(InputError, match="do not match"):
        show(Image.from_array(np.zeros((1, 10, 10))), truth=path)
