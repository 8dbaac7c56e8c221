"""Chunked per-label measurements equal scipy.ndimage's whole-array ones."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline import Image, InputError
from seamline.measure import measure


@st.composite
def labelled_volumes(draw):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, 12), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    labels = rng.integers(0, draw(st.integers(1, 8)), shape)
    return labels, rng.normal(size=shape), chunks


@settings(max_examples=25, deadline=None)
@given(labelled_volumes())
def test_measure_equals_scipy(case):
    labels, intensity, chunks = case
    table = measure(da.from_array(labels, chunks=chunks), da.from_array(intensity, chunks=chunks[::-1]))
    ids = np.unique(labels[labels > 0])
    np.testing.assert_array_equal(table.index, ids)
    if ids.size == 0:
        return
    np.testing.assert_array_equal(table["voxels"], ndi.sum_labels(np.ones_like(labels), labels, ids))
    centroids = np.array(ndi.center_of_mass(np.ones_like(labels), labels, ids))
    for axis in range(labels.ndim):
        np.testing.assert_allclose(table[f"centroid_{axis}"], centroids[:, axis])
        boxes = [ndi.find_objects(labels)[i - 1][axis] for i in ids]
        np.testing.assert_array_equal(table[f"bbox_start_{axis}"], [b.start for b in boxes])
        np.testing.assert_array_equal(table[f"bbox_stop_{axis}"], [b.stop for b in boxes])
    np.testing.assert_allclose(table["intensity_mean"], ndi.mean(intensity, labels, ids))
    np.testing.assert_allclose(table["intensity_min"], ndi.minimum(intensity, labels, ids))
    np.testing.assert_allclose(table["intensity_max"], ndi.maximum(intensity, labels, ids))


@pytest.mark.parametrize(("anchor", "shift"), [("center", 0.0), ("corner", 0.5)])
def test_world_centroid_goes_through_the_affine(anchor, shift):
    labels = np.zeros((1, 4, 6, 8), dtype=np.uint8)
    labels[0, 1:3, 2:4, 4:8] = 5
    affine = np.diag([2.0, 0.5, 3.0, 1.0])
    affine[:3, 3] = [-10, 20, 5]
    table = measure(Image.from_array(labels, affine=affine, meta={"anchor": anchor}, chunks=(1, 3, 3, 3)))
    index_centroid = np.array([1.5, 2.5, 5.5])
    np.testing.assert_allclose(table.loc[5, ["centroid_0", "centroid_1", "centroid_2"]], index_centroid)
    expected = affine[:3, :3] @ (index_centroid + shift) + affine[:3, 3]
    np.testing.assert_allclose(table.loc[5, ["centroid_x", "centroid_y", "centroid_z"]], expected)


def test_grids_must_match():
    with pytest.raises(InputError, match="differs"):
        measure(np.ones((3, 3), dtype=int), np.ones((3, 4)))
