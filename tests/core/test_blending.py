"""Weight windows equal MONAI's importance maps; blending adds in a fixed order, so ones blend to exactly one."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data.utils import compute_importance_map

from seamline.blending import BLENDS, add_parts, add_tiles, weight_sum, weight_window, window_tensor
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


def runs_of(grid, length):
    """The grid's tiles in runs of *length* along the last axis, each summed into one part (its box)."""
    runs = []
    for lead in itertools.product(*(range(n) for n in grid.counts[:-1])):
        for first in range(0, grid.counts[-1], length):
            starts = [grid.start((*lead, k)) for k in range(first, min(first + length, grid.counts[-1]))]
            hi = tuple(s + t for s, t in zip(starts[-1], grid.tile_size, strict=True))
            runs.append(((starts[0], tuple(h - low for h, low in zip(hi, starts[0], strict=True))), starts))
    return runs


def blend(grid, runs, outputs, window, lo, shape):
    """Blend tile outputs (by start) over a region, through the runs' parts, as the engine does."""
    pieces = []
    for (box_lo, box_shape), starts in runs:
        part = torch.zeros((next(iter(outputs.values())).shape[0], *box_shape))
        add_tiles([(box_lo, part)], starts, window, torch.stack([outputs[s] for s in starts]))
        pieces.append((box_lo, part.numpy()))
    return add_parts(pieces, lo, shape) / weight_sum(runs, grid.tile_size, "gaussian", lo, shape)


@settings(max_examples=40, deadline=None)
@given(grids(), st.data())
def test_weight_sum_is_the_sum_of_windows_and_any_region_is_an_exact_cut_of_the_whole(case, data):
    grid, blend_name = case
    window = weight_window(grid.tile_size, blend_name)
    whole = np.zeros(grid.padded_shape, np.float64)
    for index in grid:
        whole[grid.slices(index)] += window
    runs = runs_of(grid, data.draw(st.integers(1, 4)))
    total = weight_sum(runs, grid.tile_size, blend_name, (0,) * len(grid.shape), grid.padded_shape)
    np.testing.assert_allclose(total, whole, rtol=1e-6)
    assert total.min() > 0
    lo = tuple(data.draw(st.integers(0, p - 1)) for p in grid.padded_shape)
    shape = tuple(data.draw(st.integers(1, p - low)) for p, low in zip(grid.padded_shape, lo, strict=True))
    region = tuple(slice(low, low + n) for low, n in zip(lo, shape, strict=True))
    np.testing.assert_array_equal(weight_sum(runs, grid.tile_size, blend_name, lo, shape), total[region])


@settings(max_examples=30, deadline=None)
@given(grids(), st.integers(1, 4))
def test_blending_ones_gives_exactly_one(case, length):
    grid, blend_name = case
    window = window_tensor(grid.tile_size, blend_name)
    runs = runs_of(grid, length)
    ones = {grid.start(i): torch.ones((2, *grid.tile_size)) for i in grid}
    pieces = []
    for (box_lo, box_shape), starts in runs:
        part = torch.zeros((2, *box_shape))
        add_tiles([(box_lo, part)], starts, window, torch.stack([ones[s] for s in starts]))
        pieces.append((box_lo, part.numpy()))
    lo, shape = (0,) * len(grid.shape), grid.padded_shape
    out = add_parts(pieces, lo, shape) / weight_sum(runs, grid.tile_size, blend_name, lo, shape)
    np.testing.assert_array_equal(out, 1.0)


def test_runs_of_any_length_blend_to_the_weighted_average():
    grid = tile_grid((30, 41), (12, 16), 0.25)
    window = window_tensor(grid.tile_size, "gaussian")
    rng = np.random.default_rng(0)
    outputs = {grid.start(i): torch.from_numpy(rng.random((3, *grid.tile_size), dtype=np.float32)) for i in grid}
    numerator = np.zeros((3, *grid.padded_shape))
    denominator = np.zeros(grid.padded_shape)
    for index in grid:
        numerator[(slice(None), *grid.slices(index))] += outputs[grid.start(index)].numpy() * window.numpy()
        denominator[grid.slices(index)] += window.numpy()
    expected = (numerator / denominator)[:, 3:23, 5:35]
    for length in (1, 2, 5):
        np.testing.assert_allclose(
            blend(grid, runs_of(grid, length), outputs, window, (3, 5), (20, 30)), expected, rtol=1e-6
        )


def test_unknown_blend_is_an_input_error():
    with pytest.raises(InputError, match="blend"):
        weight_window((8, 8), "triangle")
