"""Chunked connected components equal scipy.ndimage.label, up to renumbering."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from monai.transforms import KeepLargestConnectedComponent
from skimage.morphology import remove_small_objects

from seamline import Image, InputError
from seamline.labels import _faces, label, structure
from seamline.postprocess import fill_holes, keep_largest_component, remove_small
from tests.conftest import data_file

CONNECTIVITIES = {2: (4, 8), 3: (6, 18, 26)}


def assert_same_components(labels: np.ndarray, reference: np.ndarray) -> None:
    """Both label the same voxels and their numbers correspond one to one."""
    np.testing.assert_array_equal(labels > 0, reference > 0)
    pairs = np.unique(np.stack([labels[labels > 0], reference[reference > 0]]), axis=1)
    assert len(np.unique(pairs[0])) == pairs.shape[1] == len(np.unique(pairs[1]))


def assert_consecutive(labels: np.ndarray, count: int) -> None:
    np.testing.assert_array_equal(np.unique(labels[labels > 0]), np.arange(1, count + 1))


def class_oracle(values: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Label each class on its own with scipy and combine: the by_value reference."""
    out = np.zeros(values.shape, dtype=np.int64)
    for value in np.unique(values[values != 0]):
        labels, _ = ndi.label(values == value, structure=footprint)
        out[labels > 0] = labels[labels > 0] + out.max()
    return out


@st.composite
def chunked_images(draw, classes: int = 1, size: int = 30, min_chunk: int = 1):
    ndim = draw(st.sampled_from([2, 3]))
    shape = tuple(draw(st.lists(st.integers(1, size // 2 if ndim == 3 else size), min_size=ndim, max_size=ndim)))
    chunks = tuple(draw(st.integers(min(n, min_chunk), n)) for n in shape)
    connectivity = draw(st.sampled_from(CONNECTIVITIES[ndim]))
    seed = draw(st.integers(0, 2**32 - 1))
    density = draw(st.floats(0.1, 0.9))
    rng = np.random.default_rng(seed)
    values = np.where(rng.random(shape) < density, rng.integers(1, classes + 1, shape), 0)
    return values, chunks, connectivity


@settings(max_examples=40, deadline=None)
@given(chunked_images())
def test_label_equals_scipy_on_any_chunking(case):
    mask, chunks, connectivity = case
    labels, count = label(da.from_array(mask, chunks=chunks), connectivity=connectivity)
    reference, reference_count = ndi.label(mask, structure=structure(mask.ndim, connectivity))
    result = labels.compute()
    assert count == reference_count
    assert labels.chunks == da.from_array(mask, chunks=chunks).chunks
    assert_same_components(result, reference)
    assert_consecutive(result, count)


@settings(max_examples=40, deadline=None)
@given(chunked_images(classes=3))
def test_label_by_value_equals_per_class_oracle(case):
    values, chunks, connectivity = case
    labels, count = label(da.from_array(values, chunks=chunks), connectivity=connectivity, by_value=True)
    reference = class_oracle(values, structure(values.ndim, connectivity))
    result = labels.compute()
    assert count == reference.max()
    assert_same_components(result, reference)
    assert_consecutive(result, count)


def test_component_spanning_many_chunks():
    spiral = np.zeros((40, 40), dtype=bool)
    spiral[::4, :] = True
    spiral[:, 0] = True
    spiral[:, -1] = True
    labels, count = label(da.from_array(spiral, chunks=3))
    assert count == 1
    np.testing.assert_array_equal(labels.compute(), spiral.astype(np.int32))


@pytest.mark.parametrize(
    ("ndim", "connectivity", "expected"), [(2, 4, 2), (2, 8, 1), (3, 6, 2), (3, 18, 2), (3, 26, 1)]
)
def test_voxels_touching_only_at_a_chunk_corner(ndim, connectivity, expected):
    mask = np.zeros((4,) * ndim, dtype=np.uint8)
    mask[(1,) * ndim] = 1
    mask[(2,) * ndim] = 1
    labels, count = label(da.from_array(mask, chunks=2), connectivity=connectivity)
    assert count == expected
    assert_same_components(labels.compute(), ndi.label(mask, structure(ndim, connectivity))[0])


def test_touching_classes_are_two_components_by_value():
    values = np.array([[1, 1, 2, 2], [1, 1, 2, 2]])
    assert label(da.from_array(values, chunks=(1, 2)), by_value=True)[1] == 2
    assert label(da.from_array(values, chunks=(1, 2)))[1] == 1


def test_a_chunk_summary_keeps_only_its_faces():
    chunk = np.random.default_rng(0).integers(0, 3, (20, 30)).astype(np.uint8)
    count, faces = _faces(chunk, structure(2), by_value=True)
    assert len(faces) == 4 and count > 0
    assert not any(np.shares_memory(values, chunk) for _, values in faces)  # not views holding the whole chunk
    assert sum(values.nbytes for _, values in faces) == 2 * (20 + 30)


def test_image_in_image_out():
    affine = np.array([[0.0, 30.0, 500.0], [-30.0, 0.0, 900.0], [0.0, 0.0, 1.0]])
    mask = np.eye(6, dtype=np.uint8)[None]
    image = Image.from_array(mask, affine=affine, crs="EPSG:32645", meta={"anchor": "corner"}, chunks=(1, 4, 4))
    labels, count = label(image, connectivity=8)
    assert isinstance(labels, Image)
    assert count == 1
    assert labels.dtype == np.int32
    assert labels.data.chunks == image.data.chunks
    np.testing.assert_array_equal(labels.affine, affine)
    assert labels.crs == image.crs and labels.meta == image.meta


def test_numpy_input_and_empty_mask():
    labels, count = label(np.zeros((5, 7), dtype=bool))
    assert count == 0
    assert isinstance(labels, da.Array)
    assert not labels.compute().any()


@pytest.mark.parametrize("connectivity", [0, 5, 6, 26])
def test_impossible_connectivity_in_2d(connectivity):
    with pytest.raises(InputError, match="connectivity"):
        label(np.ones((3, 3)), connectivity=connectivity)


def test_more_than_one_channel_is_an_input_error():
    with pytest.raises(InputError, match="one channel"):
        label(Image.from_array(np.ones((2, 3, 3))))


def holes_oracle(labels: np.ndarray, footprint: np.ndarray) -> np.ndarray:
    """Whole-array reference: a background region touching one label only, not the border."""
    out = labels.copy()
    regions, count = ndi.label(labels == 0, structure=footprint)
    border = np.unique(np.concatenate([np.take(regions, [0, -1], axis=a).ravel() for a in range(labels.ndim)]))
    for region in range(1, count + 1):
        inside = regions == region
        around = np.unique(labels[ndi.binary_dilation(inside, footprint) & ~inside])
        if region not in border and len(around) == 1:
            out[inside] = around[0]
    return out


@settings(max_examples=25, deadline=None)
@given(chunked_images(classes=1, size=16, min_chunk=2))
def test_fill_holes_of_a_mask_equals_binary_fill_holes(case):
    mask, chunks, connectivity = case
    footprint = structure(mask.ndim, connectivity)
    filled = fill_holes(da.from_array(mask, chunks=chunks), connectivity=connectivity).compute()
    np.testing.assert_array_equal(filled, ndi.binary_fill_holes(mask, footprint).astype(mask.dtype))


@settings(max_examples=25, deadline=None)
@given(chunked_images(classes=3, size=16, min_chunk=2))
def test_fill_holes_of_classes_fills_regions_enclosed_by_one_label(case):
    values, chunks, connectivity = case
    filled = fill_holes(da.from_array(values, chunks=chunks), connectivity=connectivity).compute()
    np.testing.assert_array_equal(filled, holes_oracle(values, structure(values.ndim, connectivity)))


@settings(max_examples=25, deadline=None)
@given(chunked_images(classes=3, size=16, min_chunk=2), st.integers(1, 6))
def test_remove_small_and_keep_largest_equal_per_class_references(case, min_size):
    values, chunks, connectivity = case
    footprint = structure(values.ndim, connectivity)
    rank = CONNECTIVITIES[values.ndim].index(connectivity) + 1
    chunked = da.from_array(values, chunks=chunks)
    small = np.zeros_like(values)
    for value in range(1, 4):
        small[remove_small_objects(values == value, max_size=min_size - 1, connectivity=rank)] = value
    np.testing.assert_array_equal(remove_small(chunked, min_size=min_size, connectivity=connectivity).compute(), small)
    sizes = [np.sort(np.bincount(ndi.label(values == v, footprint)[0].ravel())[1:]) for v in range(1, 4)]
    assume(all(len(s) < 2 or s[-1] > s[-2] for s in sizes))  # which of equal largest stays is arbitrary
    largest = KeepLargestConnectedComponent(independent=True, connectivity=rank)(torch.from_numpy(values[None]))[0]
    np.testing.assert_array_equal(keep_largest_component(chunked, connectivity=connectivity).compute(), largest.numpy())


def test_keep_largest_breaks_ties_the_same_way_on_any_chunking():
    values = np.zeros((8, 8), np.uint8)
    values[0, 6] = values[3, 0] = values[7, 7] = 1
    expected = np.zeros_like(values)
    expected[0, 6] = 1  # equal sizes: the component whose box starts first (row, then column) stays
    for chunks in ((8, 8), (4, 4), (3, 5), (1, 1)):
        kept = keep_largest_component(da.from_array(values, chunks=chunks)).compute()
        np.testing.assert_array_equal(kept, expected)


def test_post_processing_keeps_the_image():
    image = Image.from_array(np.array([[[1, 1, 0, 1]]]), affine=np.diag([2.0, 3.0, 1.0]), meta={"anchor": "corner"})
    for result in (keep_largest_component(image), remove_small(image, min_size=2), fill_holes(image)):
        assert isinstance(result, Image)
        np.testing.assert_array_equal(result.affine, image.affine)
    np.testing.assert_array_equal(keep_largest_component(image).data.compute(), [[[1, 1, 0, 0]]])
    with pytest.raises(InputError, match="min_size"):
        remove_small(image, min_size=-1)


def test_organ_label_volume_matches_scipy():
    """Real data: the TotalSegmentator example label volume, chunked unevenly."""
    nibabel = pytest.importorskip("nibabel")
    organs = np.asarray(nibabel.load(data_file("totalsegmentator_ct_mr", "example_seg.nii.gz")).dataobj)
    chunked = da.from_array(organs, chunks=(50, 37, 11))
    labels, count = label(chunked, connectivity=26, by_value=True)
    reference = class_oracle(organs, structure(3, 26))
    assert count == reference.max()
    assert_same_components(labels.compute(), reference)
    body, body_count = label(chunked > 0, connectivity=6)
    assert body_count == ndi.label(organs > 0)[1]
    assert_same_components(body.compute(), ndi.label(organs > 0)[0])
