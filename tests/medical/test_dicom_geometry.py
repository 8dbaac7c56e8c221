"""DICOM geometry against SimpleITK, dicom2nifti and highdicom, on real CT and MR volumes.

The shared CT (RAS) and MR (LPS) volumes are written as DICOM series in six
acquisitions of the same anatomy: axial, sagittal, coronal, oblique, feet first, and
with the slices stored against the normal and the files numbered backwards. Each series
must read as SimpleITK's ``ImageSeriesReader`` reads it (same voxel array, affine within
1e-4 mm), as dicom2nifti converts it (after both are brought to the closest RAS axis
order) and as the volume it was written from. Irregular stacks (gantry tilt, a missing
slice, two images at one position) are refused, or resampled on request: then a linear
function of position survives exactly.
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pydicom
import pytest

import seamline
from tests.conftest import data_file
from tests.medical.dicom_helpers import LPS_TO_RAS, acquisitions, write_series

VOLUMES = {
    # name: file, stored type, BitsStored, rescale (slope, intercept): stored values exact integers
    "ct": ("example_ct_sm.nii.gz", np.uint16, 12, (1.0, -2048.0)),
    "mr": ("example_mr_sm.nii.gz", np.int16, 16, (0.5, 10.0)),
}
ACQUISITIONS = ("axial", "sagittal", "coronal", "oblique", "feet_first", "reversed")
FAST = {"ct-oblique", "ct-reversed", "mr-coronal", "mr-feet_first"}  # the rest run with the slow tests
CASES = [
    pytest.param(case, marks=() if case in FAST else pytest.mark.slow)
    for case in (f"{v}-{a}" for v in VOLUMES for a in ACQUISITIONS)
]


@pytest.fixture(scope="module")
def series(tmp_path_factory):
    """``series(case)`` -> (folder, volume, affine): each volume in each acquisition, written once."""
    written = {}
    root = tmp_path_factory.mktemp("series")

    def get(case):
        if case not in written:
            name, acquisition = case.split("-")
            file, stored, bits, rescale = VOLUMES[name]
            img = nib.load(data_file("totalsegmentator_ct_mr", file))
            data, affine, reverse = acquisitions(np.asanyarray(img.dataobj), img.affine)[acquisition]
            write_series(
                data, affine, root / case, rescale=rescale, stored=stored, bits_stored=bits, reverse_files=reverse,
                modality=name.upper(),
            )  # fmt: skip
            written[case] = (root / case, data, affine)
        return written[case]

    return get


def canonical(array: np.ndarray, affine: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The array and affine in the closest RAS axis order (nibabel's as_closest_canonical)."""
    image = nib.as_closest_canonical(nib.Nifti1Image(np.asarray(array), affine))
    return np.asanyarray(image.dataobj), image.affine


def simpleitk_series(folder) -> tuple[np.ndarray, np.ndarray]:
    """SimpleITK's reading of the one series in *folder*: array (i, j, k) and RAS affine."""
    sitk = pytest.importorskip("SimpleITK")
    reader = sitk.ImageSeriesReader()
    (uid,) = reader.GetGDCMSeriesIDs(str(folder))
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), uid))
    image = reader.Execute()
    affine = np.eye(4)
    affine[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return sitk.GetArrayFromImage(image).transpose(2, 1, 0), LPS_TO_RAS @ affine


def read(folder) -> tuple[np.ndarray, np.ndarray, seamline.Image]:
    image = seamline.open(folder)
    return image.data[0].compute(), image.affine, image


@pytest.mark.parametrize("case", CASES)
def test_series_reads_as_simpleitk_and_dicom2nifti_read_it(series, case):
    dicom2nifti = pytest.importorskip("dicom2nifti")
    folder, volume, written_affine = series(case)
    array, affine, image = read(folder)
    assert image.meta["anchor"] == "center" and image.meta["dicom"].modality == case[:2].upper()
    # SimpleITK: the same axis order (column, row, slice along the normal), so no reordering at all
    expected, expected_affine = simpleitk_series(folder)
    assert array.shape == expected.shape
    np.testing.assert_array_equal(array, expected.astype(np.float64))
    np.testing.assert_allclose(affine, expected_affine, atol=1e-4)
    # dicom2nifti sorts slices by its own rule: compare in the closest RAS axis order
    ours, ours_affine = canonical(array, affine)
    converted = dicom2nifti.convert_dicom.dicom_series_to_nifti(str(folder), None, reorient_nifti=False)["NII"]
    theirs, theirs_affine = canonical(np.asanyarray(converted.dataobj), converted.affine)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours_affine, theirs_affine, atol=1e-4)
    # and the volume the series was written from
    source, source_affine = canonical(volume, written_affine)
    np.testing.assert_array_equal(ours, source)
    np.testing.assert_allclose(ours_affine, source_affine, atol=1e-4)


def test_voxel_types_are_simpleitks_for_integer_rescales(series):
    folder = series("ct-oblique")[0]
    assert read(folder)[0].dtype == simpleitk_series(folder)[0].dtype == np.int16  # 12 bits, intercept -2048
    assert read(series("mr-coronal")[0])[0].dtype == np.float32  # slope 0.5 (SimpleITK: float64, same values)


@pytest.mark.parametrize("case", ["ct-oblique", pytest.param("mr-sagittal", marks=pytest.mark.slow)])
def test_enhanced_multiframe_file_reads_as_its_series(tmp_path, series, case):
    hd = pytest.importorskip("highdicom")
    folder, _, _ = series(case)
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    legacy = hd.legacy
    convert = legacy.LegacyConvertedEnhancedCTImage if case.startswith("ct") else legacy.LegacyConvertedEnhancedMRImage
    path = tmp_path / "multiframe.dcm"
    convert(datasets, hd.UID(), 7, hd.UID(), 1).save_as(path)
    array, affine, image = read(path)
    expected, expected_affine, _ = read(folder)
    np.testing.assert_array_equal(array, expected)
    np.testing.assert_allclose(affine, expected_affine, atol=1e-4)
    volume = hd.imread(path).get_volume()  # highdicom's own geometry: axes (slice, row, column), LPS
    to_ours = np.array([[0, 0, 1, 0], [0, 1, 0, 0], [1, 0, 0, 0], [0, 0, 0, 1]], dtype=float)
    theirs, theirs_affine = canonical(volume.array.transpose(2, 1, 0), LPS_TO_RAS @ volume.affine @ to_ours)
    ours, ours_affine = canonical(array, affine)
    np.testing.assert_array_equal(ours, theirs)
    np.testing.assert_allclose(ours_affine, theirs_affine, atol=1e-4)
    assert {f.index for f in image.meta["dicom"].frames} == set(range(len(datasets)))


# Irregular stacks: a linear function of position, g . x (LPS mm), stored exactly.
GRADIENT = np.array([4.0, 2.0, 3.0])
SIZE = (12, 10)  # columns, rows; 1 mm pixels, axial


def write_stack(folder, positions):
    """Axial slices at *positions* (LPS), each holding g . x at its pixel centres."""
    i, j = np.meshgrid(np.arange(SIZE[0]), np.arange(SIZE[1]), indexing="ij")
    slices = [GRADIENT[0] * (p[0] + i) + GRADIENT[1] * (p[1] + j) + GRADIENT[2] * p[2] for p in positions]
    volume = np.stack(slices, axis=-1)
    affine = LPS_TO_RAS.copy()  # axial, 1 mm: RAS columns -x, -y, the slice axis +z
    affine[2, 2] = 2.0
    write_series(volume, affine, folder, positions=np.asarray(positions, dtype=float), rescale=(1.0, 0.0))


def inside_every_bracket(image, positions) -> np.ndarray:
    """Voxels of the resampled grid whose value comes from inside both slices around them."""
    lps = LPS_TO_RAS @ image.affine
    index = np.stack(np.meshgrid(*[np.arange(n) for n in image.spatial_shape], indexing="ij"), axis=-1)
    world = index @ lps[:3, :3].T + lps[:3, 3]
    z = np.asarray(positions)[:, 2]
    upper = np.clip(np.searchsorted(z, world[..., 2] - 1e-9), 1, len(z) - 1)
    inside = np.ones(image.spatial_shape, bool)
    for bracket in (upper - 1, upper):
        offset = world[..., :2] - np.asarray(positions)[bracket][..., :2]
        inside &= np.all((offset >= -1e-6) & (offset <= np.array(SIZE) - 1 + 1e-6), axis=-1)
    return inside


@pytest.mark.parametrize(
    ("name", "positions", "message"),
    [
        ("tilted", [(0.0, 0.5 * m, 2.0 * m) for m in range(8)], "gantry tilt"),
        ("uneven", [(0.0, 0.0, z) for z in (0.0, 2.0, 4.0, 8.0, 10.0, 12.0)], "unevenly spaced"),
        ("both", [(0.25 * m, 0.0, z) for m, z in enumerate((0, 2, 6, 8, 10))], "unevenly spaced slices, shifted"),
    ],
)  # fmt: skip
def test_irregular_stacks_are_refused_or_resampled_exactly(tmp_path, name, positions, message):
    write_stack(tmp_path / name, positions)
    with pytest.raises(seamline.InputError, match=f"{message}.*resample=True"):
        seamline.open(tmp_path / name)
    image = seamline.open(tmp_path / name, resample=True)
    assert image.dtype == np.float32 and image.meta["dicom"].resampled
    lps = LPS_TO_RAS @ image.affine
    np.testing.assert_allclose(lps[:3, :3], np.diag([1.0, 1.0, 2.0]), atol=1e-9)  # orthogonal, the median gap
    z = np.asarray(positions)[:, 2]
    assert image.spatial_shape[2] == round((z[-1] - z[0]) / 2) + 1
    index = np.stack(np.meshgrid(*[np.arange(n) for n in image.spatial_shape], indexing="ij"), axis=-1)
    expected = (index @ lps[:3, :3].T + lps[:3, 3]) @ GRADIENT
    got = image.data[0].compute()
    inside = inside_every_bracket(image, positions)
    assert inside.mean() > 0.5
    np.testing.assert_allclose(got[inside], expected[inside], atol=1e-3)


def test_two_images_at_one_position_are_refused(tmp_path):
    write_stack(tmp_path / "dup", [(0.0, 0.0, 0.0), (0.0, 0.0, 2.0), (0.0, 0.0, 2.0)])
    with pytest.raises(seamline.InputError, match="3 images at 2 positions"):
        seamline.open(tmp_path / "dup", resample=True)


def test_a_regular_stack_is_not_resampled(tmp_path):
    write_stack(tmp_path / "regular", [(0.0, 0.0, 2.0 * m) for m in range(4)])
    plain, asked = seamline.open(tmp_path / "regular"), seamline.open(tmp_path / "regular", resample=True)
    assert not asked.meta["dicom"].resampled and asked.dtype == plain.dtype == np.int16
    np.testing.assert_array_equal(asked.data.compute(), plain.data.compute())
