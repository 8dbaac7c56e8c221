"""The geometry round trip: RAS and target spacing in, the input's own grid back out."""

from __future__ import annotations

import itertools
from types import SimpleNamespace

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from nibabel import orientations

import seamline
from seamline import Image, InputError
from seamline_medical.geometry import prepare_input, reorient, resample
from seamline_medical.nifti import save_nifti
from tests.conftest import data_file

VOLUMES = {
    "ct_ras": ("totalsegmentator_ct_mr", "example_ct_sm.nii.gz"),
    "mr_lps": ("totalsegmentator_ct_mr", "example_mr_sm.nii.gz"),
}


def _rotation(angles) -> np.ndarray:
    a, b, c = angles
    rx = np.array([[1, 0, 0], [0, np.cos(a), -np.sin(a)], [0, np.sin(a), np.cos(a)]])
    ry = np.array([[np.cos(b), 0, np.sin(b)], [0, 1, 0], [-np.sin(b), 0, np.cos(b)]])
    rz = np.array([[np.cos(c), -np.sin(c), 0], [np.sin(c), np.cos(c), 0], [0, 0, 1]])
    return rx @ ry @ rz


def _affine(rotation, spacing, permutation, signs, origin=(5.0, -7.0, 11.0)) -> np.ndarray:
    affine = np.eye(4)
    axes = np.eye(3)[:, list(permutation)] * np.asarray(signs)
    affine[:3, :3] = rotation @ axes @ np.diag(spacing)
    affine[:3, 3] = origin
    return affine


@settings(max_examples=25, deadline=None)
@given(
    angles=st.tuples(*[st.floats(-0.6, 0.6)] * 3),
    spacing=st.tuples(*[st.floats(0.5, 4.0)] * 3),
    permutation=st.permutations([0, 1, 2]),
    signs=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
)
def test_reorient_matches_nibabel_and_restore_undoes_it(angles, spacing, permutation, signs):
    affine = _affine(_rotation(angles), spacing, permutation, signs)
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    expected = nib.as_closest_canonical(nib.Nifti1Image(array, affine))
    image = Image(array[None], affine, meta={"anchor": "center"})
    got = reorient(image)
    np.testing.assert_array_equal(got.data.compute()[0], expected.get_fdata(dtype=np.float32))
    np.testing.assert_allclose(got.affine, expected.affine, atol=1e-9)
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=None, spatial_dims=3))
    back = restore(model_input, "scores")
    np.testing.assert_array_equal(back.data.compute(), image.data.compute())
    np.testing.assert_array_equal(back.affine, affine)


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_model_sees_ras_and_restore_is_exact(name):
    path = data_file(*VOLUMES[name])
    image = seamline.open(path)
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=None, spatial_dims=3))
    assert nib.aff2axcodes(model_input.affine) == ("R", "A", "S")
    canonical = nib.as_closest_canonical(nib.load(path))
    np.testing.assert_array_equal(model_input.data.compute()[0], np.asanyarray(canonical.dataobj))
    threshold = model_input.replace(data=(model_input.data > 100).astype(np.uint8))
    back = restore(threshold, "labels")
    assert back.spatial_shape == image.spatial_shape
    np.testing.assert_array_equal(back.affine, image.affine)
    np.testing.assert_array_equal(back.data.compute(), (image.data > 100).compute())


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_saved_prediction_has_the_input_header(tmp_path, name):
    path = data_file(*VOLUMES[name])
    image = seamline.open(path)
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=(4.5, 4.0, 6.0), spatial_dims=3))
    assert model_input.spacing == pytest.approx((4.5, 4.0, 6.0))
    labels = model_input.replace(data=(model_input.data > 100).astype(np.uint8), meta={"class_names": {1: "bright"}})
    out = save_nifti(restore(labels, "labels"), tmp_path / "labels.nii.gz")
    ref, got = nib.load(path), nib.load(out)
    assert got.shape == ref.shape and got.get_data_dtype() == np.uint8
    np.testing.assert_array_equal(got.affine, ref.affine)
    for field in ("sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(got.header[field], ref.header[field])
    agreement = np.mean(np.asanyarray(got.dataobj) == (np.asanyarray(ref.dataobj) > 100))
    assert agreement > 0.9


def _ramp(shape, affine):
    """A linear function of world position, sampled on a grid: linear interpolation keeps it."""
    index = np.stack(np.meshgrid(*[np.arange(n) for n in shape], indexing="ij"), axis=-1)
    world = index @ affine[:3, :3].T + affine[:3, 3]
    return (world @ np.array([0.3, -0.2, 0.5]) + 4.0).astype(np.float64)


def test_anisotropic_oblique_linear_round_trip():
    affine = _affine(_rotation((0.2, -0.1, 0.35)), (0.7, 1.1, 3.0), (1, 0, 2), (-1.0, 1.0, -1.0))
    shape = (21, 17, 9)
    image = Image(_ramp(shape, affine)[None], affine, meta={"anchor": "center"})
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=(1.5, 1.5, 1.5), spatial_dims=3))
    assert model_input.spacing == pytest.approx((1.5, 1.5, 1.5))
    # the model grid covers the input's field of view and sees the same linear function
    np.testing.assert_allclose(
        model_input.data.compute()[0][2:-2, 2:-2, 2:-2],
        _ramp(model_input.spatial_shape, model_input.affine)[2:-2, 2:-2, 2:-2],
        atol=1e-4,
    )
    back = restore(model_input, "scores")
    assert back.spatial_shape == shape
    np.testing.assert_array_equal(back.affine, affine)
    interior = (slice(3, -3), slice(3, -3), slice(2, -2))
    np.testing.assert_allclose(back.data.compute()[0][interior], image.data.compute()[0][interior], atol=1e-4)


def test_labels_restore_nearest_keeps_label_values():
    affine = np.diag([-1.0, -1.0, 3.0, 1.0])
    labels = np.zeros((1, 20, 20, 8), np.uint8)
    labels[0, 4:12, 5:15, 2:6] = 3
    labels[0, 13:18, 2:9, 1:7] = 7
    image = Image(labels, affine, meta={"anchor": "center"})
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=(1.0, 1.0, 1.0), spatial_dims=3))
    assert model_input.spatial_shape == (20, 20, 24)
    back = restore(model_input.replace(data=model_input.data.round().astype(np.uint8)), "labels")
    values = back.data.compute()
    assert back.dtype == np.uint8 and set(np.unique(values)) <= {0, 3, 7}
    assert np.mean(values == labels) > 0.97


def test_resample_matches_scipy_zoom_grid():
    from scipy import ndimage

    array = np.random.default_rng(3).random((1, 30, 26, 22)).astype(np.float32)
    image = Image.from_array(array, np.eye(4), chunks=(1, 7, 9, 11))
    target = np.eye(4)
    target[:3, :3] = np.diag([1.5, 0.5, 2.0])
    got = resample(image, (19, 49, 10), target, order=1).data.compute()[0]
    expected = ndimage.affine_transform(
        array[0], np.diag([1.5, 0.5, 2.0]), order=1, output_shape=(19, 49, 10), mode="nearest"
    )
    np.testing.assert_allclose(got, expected, atol=1e-6)


def test_2d_image_for_3d_model_is_an_input_error():
    flat = Image(np.zeros((1, 32, 32), np.float32))
    with pytest.raises(InputError, match="2D image"):
        prepare_input(flat, SimpleNamespace(spatial_dims=3, target_spacing=None))
    one_slice = Image(np.zeros((1, 32, 32, 1), np.float32), meta={"anchor": "center", "path": "slice.nii.gz"})
    with pytest.raises(InputError, match="one slice thick") as info:
        prepare_input(one_slice, SimpleNamespace(spatial_dims=3, target_spacing=None))
    assert info.value.path == "slice.nii.gz"


def test_rasters_are_left_alone():
    raster = Image(np.zeros((3, 16, 16), np.float32), meta={"anchor": "corner"})
    assert prepare_input(raster, SimpleNamespace(spatial_dims=2, target_spacing=None)) is None


def test_orientation_of_restored_output_is_the_inputs():
    affine = _affine(np.eye(3), (2.0, 2.0, 2.0), (2, 0, 1), (-1.0, 1.0, -1.0))
    image = Image(np.random.default_rng(0).random((1, 6, 7, 8)), affine, meta={"anchor": "center"})
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=None))
    assert orientations.aff2axcodes(model_input.affine) == ("R", "A", "S")
    back = restore(model_input, "scores")
    np.testing.assert_array_equal(back.data.compute(), image.data.compute())


def test_slice_model_spacing_resamples_the_axial_plane_only():
    image = Image(np.zeros((1, 20, 16, 7), np.float32), np.diag([1.0, 1.0, 5.0, 1.0]), meta={"anchor": "center"})
    model_input, _ = prepare_input(image, SimpleNamespace(target_spacing=[2.0, 2.0], spatial_dims=2))
    assert model_input.spatial_shape == (10, 8, 7) and model_input.spacing == (2.0, 2.0, 5.0)
    with pytest.raises(InputError, match="target spacing"):
        prepare_input(image, SimpleNamespace(target_spacing=[1.0], spatial_dims=3))


def test_resample_blocks_shrink_with_the_channels():
    from seamline_medical.geometry import BLOCK_VOXELS

    scores = Image(da.zeros((105, 200, 200, 100), np.float32, chunks=(105, 100, 100, 50)))
    out = resample(scores, (150, 150, 80), np.diag([1.3, 1.3, 1.2, 1.0]))
    biggest = max(int(np.prod(block)) for block in itertools.product(*out.data.chunks))
    assert biggest <= BLOCK_VOXELS
