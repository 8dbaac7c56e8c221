"""pydicom's own test files, a second corpus: every file holding an image opens or is refused clearly.

Each file of ``pydicom.data.get_testdata_files()`` (the ones shipped with pydicom,
available offline) that holds pixel data either opens through ``seamline.open`` (and
then has SimpleITK's voxels and in-plane geometry, where SimpleITK reads it) or raises
an :class:`~seamline.errors.InputError` with a one-line message, never another exception.
"""

from __future__ import annotations

import os

import numpy as np
import pydicom
import pytest

import seamline
from tests.medical.dicom_helpers import LPS_TO_RAS

PIXELS = ("PixelData", "FloatPixelData", "DoubleFloatPixelData")


def image_files() -> list[str]:
    from pydicom.data import get_testdata_files

    found = []
    for path in sorted(get_testdata_files()):
        try:
            ds = pydicom.dcmread(path, force=True, stop_before_pixels=False)
        except Exception:
            continue
        if any(key in ds for key in PIXELS):
            found.append(path)
    return found


def simpleitk(path: str):
    """SimpleITK's single-file reading, (i, j, k) and RAS affine, or None where it cannot."""
    sitk = pytest.importorskip("SimpleITK")
    try:
        image = sitk.ReadImage(path)
    except RuntimeError:
        return None
    array = sitk.GetArrayFromImage(image)
    array = array.transpose(2, 1, 0) if array.ndim == 3 else array.T[..., None]
    affine = np.eye(4)
    affine[:3, :3] = np.reshape(image.GetDirection(), (3, 3)) @ np.diag(image.GetSpacing())
    affine[:3, 3] = image.GetOrigin()
    return array, LPS_TO_RAS @ affine


@pytest.mark.slow
@pytest.mark.filterwarnings("ignore::UserWarning")  # pydicom warns about the odd files it is made of
def test_every_image_in_pydicoms_test_files_opens_or_is_refused_in_one_line():
    files = image_files()
    if not files:
        pytest.skip("pydicom's test files are not installed")
    opened, refused = [], []
    for path in files:
        try:
            image = seamline.open(path)
            array = image.data.compute()
        except seamline.InputError as exc:
            assert "\n" not in str(exc) and str(exc).startswith(f"{path}: "), str(exc)
            refused.append(os.path.basename(path))
            continue
        opened.append(os.path.basename(path))
        reference = simpleitk(path)
        if reference is None:
            continue
        expected, affine = reference
        if image.meta.get("class_names"):  # a SEG, read as labels: SimpleITK reads its bits as 0/255
            expected = (expected > 0).astype(np.uint8)
        np.testing.assert_array_equal(array[0], expected, err_msg=path)
        np.testing.assert_allclose(image.affine[:3, [0, 1, 3]], affine[:3, [0, 1, 3]], atol=1e-4, err_msg=path)
    assert {"CT_small.dcm", "MR_small_jp2klossless.dcm", "MR_small_RLE.dcm", "liver_1frame.dcm"} <= set(opened)
    assert {"rtdose.dcm", "examples_palette.dcm", "MR_truncated.dcm"} <= set(refused)
