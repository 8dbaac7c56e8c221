"""Tile placement: the same windows as MONAI's (or nnU-Net's) sliding window, covering every voxel."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.data.utils import dense_patch_slices
from monai.inferers.utils import _get_scan_interval

from seamline.errors import InputError
from seamline.tiling import chunks_overlapping, intersection, tile_grid

OVERLAPS = st.sampled_from([0.0, 0.25, 0.5, 0.75, 0.1, 0.9])


def monai_slices(shape, tile, overlap):
    """MONAI's windows, in its padded coordinates (as sliding_window_inference computes them)."""
    padded = tuple(max(s, t) for s, t in zip(shape, tile, strict=True))
    interval = _get_scan_interval(padded, tile, len(shape), (overlap,) * len(shape))
    return dense_patch_slices(padded, tile, interval)


@st.composite
def grids(draw, max_ndim=3):
    ndim = draw(st.integers(2, max_ndim))
    shape = tuple(draw(st.lists(st.integers(1, 30), min_size=ndim, max_size=ndim)))
    tile = tuple(draw(st.lists(st.integers(2, 16), min_size=ndim, max_size=ndim)))
    return shape, tile, draw(OVERLAPS)


@settings(max_examples=40, deadline=None)
@given(grids())
def test_windows_are_monais(case):
    shape, tile, overlap = case
    grid = tile_grid(shape, tile, overlap)
    assert [grid.slices(i) for i in grid] == monai_slices(shape, tile, overlap)


@settings(max_examples=40, deadline=None)
@given(grids(), st.sampled_from(["monai", "nnunet"]))
def test_tiles_cover_every_voxel_and_end_flush(case, placement):
    shape, tile, overlap = case
    grid = tile_grid(shape, tile, overlap, placement=placement)
    covered = np.zeros(grid.padded_shape, dtype=int)
    for index in grid:
        covered[grid.slices(index)] += 1
    assert covered.min() >= 1
    for starts, t, p in zip(grid.starts, grid.tile_size, grid.padded_shape, strict=True):
        assert starts[0] == 0 and starts[-1] + t == p
        assert all(a < b for a, b in itertools.pairwise(starts)) or placement == "nnunet"


@pytest.mark.peer
@settings(max_examples=60, deadline=None)
@given(grids())
def test_nnunet_placement_is_nnunets(case):
    sliding = pytest.importorskip("nnunetv2.inference.sliding_window_prediction")
    shape, tile, overlap = case
    grid = tile_grid(shape, tile, overlap, placement="nnunet")
    steps = sliding.compute_steps_for_sliding_window(grid.padded_shape, tile, 1 - overlap)
    assert [list(s) for s in grid.starts] == steps
    assert grid.padding == tile_grid(shape, tile, overlap).padding  # nnU-Net pads as MONAI does


def test_padding_is_monais_symmetric_padding():
    grid = tile_grid((5, 40, 9), (16, 16, 10), 0.25)
    assert grid.padded_shape == (16, 40, 10)
    assert grid.padding == (5, 0, 0)  # MONAI pads (16 - 5) // 2 = 5 before, 6 after
    assert grid.counts == (1, 3, 1)


def test_scan_interval_and_count():
    grid = tile_grid((100, 64), (40, 64), overlap=0.5)
    assert grid.starts == ((0, 20, 40, 60), (0,))
    assert len(grid) == 4


def test_overlapping_tiles_in_c_order():
    grid = tile_grid((100, 100), 40, overlap=0.5)
    found = grid.overlapping((35, 0), (45, 10))
    assert found == [(0, 0), (1, 0), (2, 0)]
    assert found == sorted(found)


def test_intersection():
    inside, region = intersection((10, 10), (8, 8), (14, 0), (10, 12))
    assert inside == (slice(4, 8), slice(0, 2))
    assert region == (slice(0, 4), slice(10, 12))
    inside, _ = intersection((0,), (4,), (10,), (2,))
    assert inside[0].stop - inside[0].start == 0


@pytest.mark.parametrize(
    ("tile", "overlap"),
    [(0, 0.25), (16, 1.0), (16, -0.1), ((16, 16, 16), 0.25), (16, (0.1, 0.2, 0.3))],
)
def test_bad_options_are_input_errors(tile, overlap):
    with pytest.raises(InputError):
        tile_grid((32, 32), tile, overlap)
    with pytest.raises(InputError, match="placement"):
        tile_grid((32, 32), 16, 0.25, placement="random")


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_chunks_overlapping_cover_a_window_exactly_once(data):
    ndim = data.draw(st.integers(1, 3))
    chunks = [data.draw(st.lists(st.integers(1, 7), min_size=1, max_size=5)) for _ in range(ndim)]
    shape = [sum(c) for c in chunks]
    lo = [data.draw(st.integers(0, n - 1)) for n in shape]
    hi = [data.draw(st.integers(low + 1, n)) for low, n in zip(lo, shape, strict=True)]
    window = [h - low for low, h in zip(lo, hi, strict=True)]
    array = np.arange(np.prod(shape)).reshape(shape)
    blocks = da.from_array(array, chunks=tuple(tuple(c) for c in chunks))
    covered = np.full(window, -1)
    for index, start, size in chunks_overlapping(blocks.chunks, lo, hi):
        inside, region = intersection(start, size, lo, window)
        assert (covered[region] == -1).all()
        covered[region] = blocks.blocks[index].compute()[inside]
    np.testing.assert_array_equal(covered, array[tuple(slice(a, b) for a, b in zip(lo, hi, strict=True))])
