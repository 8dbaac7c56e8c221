"""Weight windows equal MONAI's importance maps; weight sums are positive and local."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data.utils import compute_importance_map

from seamline.blending import BLENDS, accumulate, blend_region, weight_sum, weight_window
from seamline.errors import InputError
from seamline.tiling import tile_grid

TILES = st.lists(st.integers(1, 40), min_size=2, max_size=3).map(tuple)


@pytest.mark.parametrize("tile", [(16, 16), (7, 12), (1, 5), (96, 96, 96), (9, 16, 5)])
@pytest.mark.parametrize("blend", ["gaussian", "constant"])
def test_window_equals_monai_importance_map(tile, blend):
    expected = compute_importance_map(tile, mode=blend, sigma_scale=0.125).numpy()
    window = weight_window(tile, blend)
    assert window.dtype == np.float32 and window.shape == tile
    np.testing.assert_allclose(window, expected, rtol=1e-6, atol=0)


@pytest.mark.peer
@pytest.mark.parametrize("tile", [(32, 64, 64), (128, 128, 128), (1, 160, 192), (28, 256, 224), (7, 9, 11), (5, 6)])
def test_nnunet_window_is_nnunets_importance_map(tile):
    sliding = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    import torch

    expected = sliding.compute_gaussian(tile, 1 / 8, 10, device=torch.device("cpu")).float().numpy()
    np.testing.assert_array_equal(weight_window(tile, "nnunet"), expected)


@settings(max_examples=30, deadline=None)
@given(TILES, st.sampled_from([b for b in BLENDS if b != "nnunet"]))
def test_windows_are_positive_symmetric_and_peak_in_the_middle(tile, blend):
    window = weight_window(tile, blend)
    assert window.min() >= 1e-3 - 1e-9
    for axis in range(window.ndim):
        np.testing.assert_allclose(window, np.flip(window, axis), rtol=1e-6)
    centre = tuple((t - 1) // 2 for t in tile)
    assert window[centre] == window.max()


def test_cosine_window_is_a_raised_cosine():
    window = weight_window((8,), "cosine")
    np.testing.assert_allclose(window, np.sin(np.pi * (np.arange(8) + 0.5) / 8), rtol=1e-6)


@st.composite
def grids(draw):
    ndim = draw(st.integers(2, 3))
    shape = tuple(draw(st.lists(st.integers(1, 30), min_size=ndim, max_size=ndim)))
    tile = tuple(draw(st.lists(st.integers(2, 12), min_size=ndim, max_size=ndim)))
    return tile_grid(shape, tile, draw(st.sampled_from([0.0, 0.25, 0.5, 0.75]))), draw(st.sampled_from(BLENDS))


@settings(max_examples=40, deadline=None)
@given(grids(), st.data())
def test_weight_sum_is_positive_and_any_region_is_a_cut_of_the_whole(case, data):
    grid, blend = case
    window = weight_window(grid.tile_size, blend)
    starts = [grid.start(i) for i in grid]
    whole = np.zeros(grid.padded_shape, np.float32)
    for index in grid:
        whole[grid.slices(index)] += window
    total = weight_sum(starts, window, (0,) * len(grid.shape), grid.padded_shape)
    np.testing.assert_allclose(total, whole, rtol=1e-6)
    assert total.min() > 0
    lo = tuple(data.draw(st.integers(0, p - 1)) for p in grid.padded_shape)
    shape = tuple(data.draw(st.integers(1, p - low)) for p, low in zip(grid.padded_shape, lo, strict=True))
    region = tuple(slice(low, low + n) for low, n in zip(lo, shape, strict=True))
    np.testing.assert_allclose(weight_sum(starts, window, lo, shape), whole[region], rtol=1e-6)


def test_blending_a_constant_gives_the_constant():
    grid = tile_grid((30, 41), (12, 16), 0.5)
    window = weight_window(grid.tile_size, "gaussian")
    starts = [grid.start(i) for i in grid]
    tiles = [(start, np.full((2, *grid.tile_size), 3.0, np.float32) * window) for start in starts]
    out = blend_region(tiles, starts, window, (3, 5), (20, 30))
    assert out.shape == (2, 20, 30)
    np.testing.assert_allclose(out, 3.0, rtol=1e-6)


def test_sums_over_runs_of_tiles_blend_like_the_tiles():
    grid = tile_grid((30, 41), (12, 16), 0.25)
    window = weight_window(grid.tile_size, "cosine")
    rng = np.random.default_rng(0)
    starts = [grid.start(i) for i in grid]
    tiles = [(start, rng.random((3, *grid.tile_size), dtype=np.float32) * window) for start in starts]
    rows = [
        ((row, 0), accumulate([tile for tile in tiles if tile[0][0] == row], (row, 0), (12, 41)))
        for row in grid.starts[0]
    ]
    np.testing.assert_allclose(
        blend_region(rows, starts, window, (0, 0), (30, 41)),
        blend_region(tiles, starts, window, (0, 0), (30, 41)),
        rtol=1e-6,
    )


def test_unknown_blend_is_an_input_error():
    with pytest.raises(InputError, match="blend"):
        weight_window((8, 8), "triangle")
