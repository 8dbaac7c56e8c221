"""Pictures: overlays of labels on scenes and volume slices, computed lazily."""

from __future__ import annotations

import dask.array as da
import matplotlib
import numpy as np
import pytest

from seamline import Image, InputError
from seamline.show import show, write_preview

matplotlib.use("Agg")


def test_overlay_draws_label_colours_over_the_scene():
    scene = Image.from_array(np.random.default_rng(0).integers(0, 255, (3, 40, 60)).astype("uint8"))
    labels = np.zeros((1, 40, 60), "uint8")
    labels[0, 10:20, 10:30] = 1
    ax = show(scene, Image.from_array(labels, meta={"colors": {1: (0, 0, 255)}}))
    overlay = ax.get_images()[1].get_array()
    np.testing.assert_array_equal(overlay[15, 15], [0, 0, 1, 1])
    assert overlay[0, 0, 3] == 0  # background stays clear


def test_large_scenes_are_strided_before_reading():
    scene = Image.from_array(da.zeros((1, 8000, 6000), chunks=(1, 1000, 1000), dtype="uint8"))
    ax = show(scene, max_size=500)
    assert ax.get_images()[0].get_array().shape == (500, 375)


def test_volume_slice_and_errors(tmp_path):
    volume = Image.from_array(np.arange(4 * 5 * 6, dtype="float32").reshape(1, 4, 5, 6))
    ax = show(volume, axis=0, index=2)
    np.testing.assert_array_equal(ax.get_images()[0].get_array().shape, (5, 6))
    assert "slice 2" in ax.get_title()
    with pytest.raises(InputError, match="slice 9 is outside axis 0"):
        show(volume, axis=0, index=9)
    with pytest.raises(InputError, match="do not match"):
        show(volume, np.zeros((1, 4, 5, 7)))

    write_preview(Image.from_array(np.ones((1, 4, 5, 6), "uint8")), tmp_path / "p.png", image=volume)
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_public_names_stay_functions_after_their_modules_are_imported() -> None:
    import seamline
    import seamline.show
    import seamline.vectorize

    assert callable(seamline.show) and callable(seamline.vectorize)
