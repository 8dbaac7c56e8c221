"""NIfTI reading and writing: lazy, exact against nibabel, header kept, labels with a table."""

from __future__ import annotations

import json
import pickle

import dask.array as da
import nibabel as nib
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seamline
from seamline import Image, InputError, OutputExistsError
from seamline_medical.nifti import VoxelFile, open_nifti, save_nifti, sidecar_path
from tests.conftest import data_file

MR = ("totalsegmentator_ct_mr", "example_mr_sm.nii.gz")
SEG = ("totalsegmentator_ct_mr", "example_seg.nii.gz")


def _oblique_affine() -> np.ndarray:
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([-0.8, 1.2, 2.5])
    affine[:3, 3] = [12.5, -40.0, 7.0]
    return affine


def _write(path, array, affine, *, cls=nib.Nifti1Image, **header_fields):
    img = cls(array, affine)
    for key, value in header_fields.items():
        img.header[key] = value
    nib.save(img, path)
    return path


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("cls", [nib.Nifti1Image, nib.Nifti2Image])
def test_reads_like_nibabel_lazily(tmp_path, suffix, cls):
    array = np.random.default_rng(0).integers(-500, 500, (9, 7, 5), dtype=np.int16)
    path = _write(tmp_path / f"v{suffix}", array, _oblique_affine(), cls=cls)
    image = open_nifti(path)
    assert isinstance(image.data, da.Array)
    assert image.shape == (1, 9, 7, 5)
    np.testing.assert_array_equal(image.data.compute()[0], array)
    np.testing.assert_array_equal(image.affine, nib.load(path).affine)
    assert image.meta["anchor"] == "center" and image.crs is None
    assert type(image.meta["nifti_header"]) is type(nib.load(path).header)


def test_uncompressed_nii_is_memory_mapped(tmp_path):
    array = np.arange(4 * 5 * 6, dtype=np.float32).reshape(4, 5, 6)
    path = _write(tmp_path / "v.nii", array, np.eye(4))
    image = open_nifti(path)
    sources = [v for v in image.data.__dask_graph__().values() if isinstance(v, VoxelFile)]
    assert sources, "the .nii voxels should come from a memory-mapped VoxelFile"
    assert len(pickle.dumps(sources[0])) < 1000  # a path, not the voxels


def test_scaled_voxels_are_read_scaled(tmp_path):
    array = np.arange(60, dtype=np.int16).reshape(3, 4, 5)
    for suffix in (".nii", ".nii.gz"):
        img = nib.Nifti1Image(array, np.eye(4))
        img.header.set_slope_inter(0.5, -3.0)
        nib.save(img, tmp_path / f"s{suffix}")
        image = open_nifti(tmp_path / f"s{suffix}")
        expected = np.asanyarray(nib.load(tmp_path / f"s{suffix}").dataobj)
        np.testing.assert_array_equal(image.data.compute()[0], expected)
        assert image.dtype == expected.dtype


def test_4d_fourth_axis_becomes_channels(tmp_path):
    array = np.random.default_rng(1).random((6, 5, 4, 3)).astype(np.float32)
    image = open_nifti(_write(tmp_path / "v.nii.gz", array, np.diag([2.0, 2.0, 3.0, 1.0])))
    assert image.shape == (3, 6, 5, 4)
    np.testing.assert_array_equal(image.data.compute(), np.moveaxis(array, -1, 0))
    assert image.spacing == (2.0, 2.0, 3.0)


def test_real_mr_keeps_header_and_geometry():
    path = data_file(*MR)
    image = seamline.open(path)
    ref = nib.load(path)
    assert image.meta["sform_code"] == 2 and image.meta["qform_code"] == 0
    assert nib.aff2axcodes(image.affine) == ("L", "P", "S")
    np.testing.assert_array_equal(image.data.compute()[0], np.asanyarray(ref.dataobj))


def test_zero_sized_dimension_is_an_input_error(tmp_path):
    header = nib.Nifti1Header()
    header.set_data_shape((4, 0, 3))
    header.set_data_dtype(np.uint8)
    path = tmp_path / "empty.nii"
    with open(path, "wb") as f:
        header["vox_offset"] = 352
        header.write_to(f)
    with pytest.raises(InputError, match="zero-sized") as info:
        seamline.open(path)
    assert info.value.path == str(path)


def test_singular_affine_is_an_input_error(tmp_path):
    singular = np.eye(4)
    singular[2, 2] = 0.0
    header = nib.Nifti1Header()
    header.set_sform(singular, code=2)
    nib.save(nib.Nifti1Image(np.zeros((3, 3, 3), np.uint8), None, header), tmp_path / "flat.nii.gz")
    with pytest.raises(InputError, match="cannot be inverted") as info:
        seamline.open(tmp_path / "flat.nii.gz")
    assert info.value.path.endswith("flat.nii.gz")


def test_broken_file_is_an_input_error(tmp_path):
    (tmp_path / "bad.nii.gz").write_bytes(b"not a nifti file at all")
    with pytest.raises(InputError):
        seamline.open(tmp_path / "bad.nii.gz")


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_round_trip_keeps_geometry_exactly(tmp_path, suffix):
    source = data_file(*MR)
    image = seamline.open(source, chunks=(1, 117, 91, 7))
    out = seamline.save(image, tmp_path / f"out{suffix}")
    ref, got = nib.load(source), nib.load(out)
    assert got.shape == ref.shape and got.get_data_dtype() == ref.get_data_dtype()
    np.testing.assert_array_equal(got.affine, ref.affine)
    for field in ("sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "quatern_b", "qoffset_x", "pixdim"):
        np.testing.assert_array_equal(got.header[field], ref.header[field])
    assert got.header.get_xyzt_units() == ref.header.get_xyzt_units()
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), np.asanyarray(ref.dataobj))


def test_window_gets_its_own_affine_and_keeps_codes(tmp_path):
    image = open_nifti(_write(tmp_path / "v.nii.gz", np.ones((8, 8, 8), np.float32), _oblique_affine()))
    window = image.window(slice(2, 6), slice(1, 8, 2), slice(None))
    got = nib.load(save_nifti(window, tmp_path / "w.nii.gz"))
    np.testing.assert_allclose(got.affine, window.affine, atol=1e-5)
    assert got.shape == (4, 4, 8)
    assert got.header["sform_code"] == image.meta["sform_code"]
    assert got.header["qform_code"] == image.meta["qform_code"]


def test_labels_get_uint8_intent_and_label_table(tmp_path):
    labels = np.zeros((1, 5, 6, 7), np.int64)
    labels[0, 1:3, 2:4, 3:5] = 2
    names = {0: "background", 1: "liver", 2: "spleen"}
    image = Image(labels, np.diag([1.5, 1.5, 3.0, 1.0]), meta={"class_names": names, "colors": {2: (255, 0, 0)}})
    out = save_nifti(image, tmp_path / "labels.nii.gz")
    got = nib.load(out)
    assert got.get_data_dtype() == np.uint8
    assert got.header.get_intent()[0] == "label"
    table = json.loads(sidecar_path(out).read_text())
    assert table["2"] == {"name": "spleen", "color": [255, 0, 0]}
    back = seamline.open(out).meta
    assert back["class_names"] == names and back["colors"][2] == (255, 0, 0)
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), labels[0])


def test_many_labels_are_uint16(tmp_path):
    labels = np.arange(2 * 3 * 300, dtype=np.int32).reshape(1, 2, 3, 300) % 1000
    image = Image(labels, meta={"class_names": {0: "background"}})
    got = nib.load(save_nifti(image, tmp_path / "many.nii"))
    assert got.get_data_dtype() == np.uint16
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), labels[0])


def test_existing_output_needs_overwrite(tmp_path):
    image = Image(np.zeros((1, 2, 2, 2), np.float32))
    save_nifti(image, tmp_path / "x.nii")
    with pytest.raises(OutputExistsError):
        save_nifti(image, tmp_path / "x.nii")
    save_nifti(image, tmp_path / "x.nii", overwrite=True)


@settings(max_examples=15, deadline=None)
@given(
    shape=st.tuples(*[st.integers(1, 9)] * 3),
    channels=st.integers(1, 3),
    depth=st.integers(1, 9),
    gz=st.booleans(),
)
def test_any_chunking_round_trips(tmp_path_factory, shape, channels, depth, gz):
    array = np.random.default_rng(sum(shape)).random((channels, *shape)).astype(np.float32)
    image = Image.from_array(array, np.diag([1.0, 2.0, 3.0, 1.0]), chunks=(1, shape[0], shape[1], depth))
    path = tmp_path_factory.mktemp("rt") / ("v.nii.gz" if gz else "v.nii")
    back = seamline.open(save_nifti(image, path))
    np.testing.assert_array_equal(back.data.compute(), array)


def test_sheared_affine_goes_to_the_sform_only(tmp_path):
    sheared = np.array([[1.0, 0.4, 0, 3], [0, 1.0, 0, 4], [0, 0, 2.0, 5], [0, 0, 0, 1]])
    image = Image(np.ones((1, 3, 4, 5), np.float32), sheared, meta={"sform_code": 1, "qform_code": 1})
    got = nib.load(save_nifti(image, tmp_path / "sheared.nii"))
    np.testing.assert_allclose(got.affine, sheared, atol=1e-6)
    assert got.header["sform_code"] == 1 and got.header["qform_code"] == 0


@pytest.mark.slow
def test_writes_on_a_distributed_cluster(tmp_path):
    distributed = pytest.importorskip("distributed")
    array = np.random.default_rng(2).random((1, 12, 10, 9)).astype(np.float32)
    image = Image.from_array(array, chunks=(1, 12, 10, 3))
    with distributed.Client(processes=True, n_workers=2, threads_per_worker=1, dashboard_address=None):
        for name in ("d.nii", "d.nii.gz"):
            back = open_nifti(save_nifti(image, tmp_path / name))
            np.testing.assert_array_equal(back.data.compute(), array)


def _scanner_and_aligned(path, shape=(10, 9, 8)):
    """A file whose qform (scanner, code 1) and sform (aligned, code 2) differ by a shift."""
    qform = np.diag([-2.0, 1.5, 3.0, 1.0])
    qform[:3, 3] = [-50.0, -60.0, -70.0]
    sform = qform.copy()
    sform[:3, 3] += [5.0, 7.0, 9.0]
    img = nib.Nifti1Image(np.arange(np.prod(shape), dtype=np.int16).reshape(shape), None)
    img.set_qform(qform, code=1)
    img.set_sform(sform, code=2)
    nib.save(img, path)
    return qform, sform


def test_window_moves_qform_and_sform_each_on_its_own(tmp_path):
    qform, sform = _scanner_and_aligned(tmp_path / "qs.nii")
    window = open_nifti(tmp_path / "qs.nii").window(slice(2, 8), slice(1, 9, 2), slice(None))
    got = nib.load(save_nifti(window, tmp_path / "w.nii")).header
    step = np.eye(4)
    step[:3, :3] = np.diag([1.0, 2.0, 1.0])
    step[:3, 3] = [2.0, 1.0, 0.0]  # window voxel -> source voxel
    np.testing.assert_allclose(got.get_qform(), qform @ step, atol=1e-5)
    np.testing.assert_allclose(got.get_sform(), sform @ step, atol=1e-5)
    assert (got["qform_code"], got["sform_code"]) == (1, 2)


def test_reoriented_qform_still_points_at_the_same_voxels(tmp_path):
    from seamline_medical.geometry import reorient

    qform, _ = _scanner_and_aligned(tmp_path / "qs.nii")
    image = open_nifti(tmp_path / "qs.nii")
    canonical = reorient(image, axcodes="RAS")
    got = nib.load(save_nifti(canonical, tmp_path / "ras.nii"))
    source = nib.load(tmp_path / "qs.nii")
    array, canonical_array = np.asanyarray(source.dataobj), np.asanyarray(got.dataobj)
    # every voxel of the saved file sits, by its qform, where the same value sat by the source's
    for index in [(0, 0, 0), (3, 4, 5), (9, 8, 7)]:
        world = got.header.get_qform() @ (*index, 1)
        back = np.rint(np.linalg.inv(qform) @ world)[:3].astype(int)
        assert canonical_array[index] == array[tuple(back)]


def test_qform_only_source_keeps_its_code(tmp_path):
    img = nib.Nifti1Image(np.zeros((6, 6, 6), np.float32), None)
    img.set_qform(np.diag([2.0, 2.0, 2.0, 1.0]), code=1)
    img.set_sform(None, code=0)
    nib.save(img, tmp_path / "q.nii")
    window = open_nifti(tmp_path / "q.nii").window(slice(1, 5), slice(None), slice(None))
    got = nib.load(save_nifti(window, tmp_path / "w.nii"))
    assert (got.header["sform_code"], got.header["qform_code"]) == (0, 1)
    np.testing.assert_allclose(got.affine, window.affine)
    sheared = window.affine.copy()
    sheared[0, 1] = 0.7
    got = nib.load(save_nifti(window.replace(affine=sheared), tmp_path / "s.nii"))
    assert (got.header["sform_code"], got.header["qform_code"]) == (1, 0)
    np.testing.assert_allclose(got.affine, sheared, atol=1e-6)
    np.testing.assert_allclose(got.header.get_zooms(), np.linalg.norm(sheared[:3, :3], axis=0), rtol=1e-6)


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
def test_truncated_file_is_an_input_error(tmp_path, suffix):
    full = _write(tmp_path / f"full{suffix}", np.ones((40, 40, 40), np.int16), np.eye(4))
    path = tmp_path / f"cut{suffix}"
    content = full.read_bytes()
    path.write_bytes(content[: len(content) // 2])
    with pytest.raises(InputError, match="truncated") as info:
        seamline.open(path).data.compute()
    assert info.value.path == str(path)


def test_truncated_file_through_the_cli_exits_2(tmp_path):
    from click.testing import CliRunner

    from seamline.cli import get_cli

    full = _write(tmp_path / "full.nii.gz", np.ones((40, 40, 40), np.uint8), np.eye(4))
    path = tmp_path / "cut.nii.gz"
    path.write_bytes(full.read_bytes()[:300])
    result = CliRunner().invoke(get_cli(), ["stats", str(path)])
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {path}: is truncated or corrupt")


def test_compressed_voxels_pickle_as_a_path(tmp_path):
    from seamline_medical.nifti_read import CompressedVoxels

    array = np.random.default_rng(3).integers(0, 9, (6, 5, 12), dtype=np.uint8)
    image = open_nifti(_write(tmp_path / "v.nii.gz", array, np.eye(4)), chunks=(1, 6, 5, 5))
    sources = [v for v in image.data.__dask_graph__().values() if isinstance(v, CompressedVoxels)]
    np.testing.assert_array_equal(image.data.compute()[0], array)  # loads the proxy
    copy = pickle.loads(pickle.dumps(sources[0]))
    assert len(pickle.dumps(sources[0])) < 1000
    np.testing.assert_array_equal(copy[:, :, 4:9], array[:, :, 4:9])


def test_2d_nifti_opens_as_one_slice(tmp_path):
    array = np.arange(30, dtype=np.float32).reshape(5, 6)
    path = _write(tmp_path / "flat.nii", array, np.diag([0.5, 0.7, 1.0, 1.0]))
    image = seamline.open(path)
    assert image.shape == (1, 5, 6, 1)
    np.testing.assert_array_equal(image.data.compute()[0, :, :, 0], array)
    np.testing.assert_array_equal(image.affine, nib.load(path).affine)


def test_unknown_options_are_input_errors(tmp_path):
    path = _write(tmp_path / "v.nii", np.zeros((2, 2, 2), np.float32), np.eye(4))
    with pytest.raises(InputError, match="the nifti reader takes no option 'bands'") as info:
        seamline.open(path, bands=[1])
    assert info.value.path == str(path)
    with pytest.raises(InputError, match="the nifti writer takes no option 'cog'"):
        seamline.save(seamline.open(path), tmp_path / "o.nii.gz", cog=True)
    assert not (tmp_path / "o.nii.gz").exists()


def test_negative_label_ids_are_an_input_error(tmp_path):
    labels = Image(np.array([-1, 0, 1, 2], np.int16).reshape(1, 1, 2, 2), meta={"class_names": {1: "a", 2: "b"}})
    with pytest.raises(InputError, match="negative"):
        save_nifti(labels, tmp_path / "neg.nii")
    assert not (tmp_path / "neg.nii").exists()


@pytest.mark.parametrize(("dtype", "stored"), [(bool, np.uint8), (np.float16, np.float32)])
def test_dtypes_nifti_lacks_are_widened(tmp_path, dtype, stored):
    array = (np.arange(24).reshape(1, 2, 3, 4) % 3).astype(dtype)
    got = nib.load(save_nifti(Image(array), tmp_path / "v.nii.gz"))
    assert got.get_data_dtype() == stored
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), array[0].astype(stored))


def test_labels_do_not_inherit_intensity_display_fields(tmp_path):
    ct = nib.Nifti1Image(np.arange(64, dtype=np.int16).reshape(4, 4, 4), np.eye(4))
    ct.header["cal_min"], ct.header["cal_max"], ct.header["descrip"] = -1000, 1000, b"CT abdomen"
    ct.header.set_intent("estimate", name="HU")
    nib.save(ct, tmp_path / "ct.nii")
    image = open_nifti(tmp_path / "ct.nii")
    labels = image.replace(data=(image.data > 30).astype(np.uint8), meta={**image.meta, "class_names": {1: "x"}})
    header = nib.load(save_nifti(labels, tmp_path / "labels.nii")).header
    assert header.get_intent() == ("label", (), "")
    assert (header["cal_min"], header["cal_max"], header["descrip"].item()) == (0, 0, b"")


def test_label_sidecar_is_replaced_with_the_volume_only(tmp_path):
    labels = Image(np.ones((1, 2, 2, 2), np.uint8), meta={"class_names": {1: "liver"}})
    path = tmp_path / "organs.nii.gz"
    sidecar_path(path).write_text("someone else's")
    with pytest.raises(OutputExistsError):
        save_nifti(labels, path)
    assert not path.exists() and sidecar_path(path).read_text() == "someone else's"
    save_nifti(labels, path, overwrite=True)
    assert json.loads(sidecar_path(path).read_text()) == {"1": {"name": "liver"}}
    save_nifti(Image(np.ones((1, 2, 2, 2), np.float32)), path, overwrite=True)
    assert not sidecar_path(path).exists()


def test_gzip_stream_names_the_volume_and_no_time(tmp_path):
    image = Image(np.ones((1, 2, 2, 2), np.float32))
    (tmp_path / "a").mkdir()
    first = save_nifti(image, tmp_path / "a" / "out.nii.gz")
    second = save_nifti(image, tmp_path / "out.nii.gz")
    content = open(first, "rb").read()
    assert content[4:8] == b"\0\0\0\0"  # mtime
    assert content[10:18] == b"out.nii\0"  # FNAME: the volume's name, not the temporary one
    assert content == open(second, "rb").read()
