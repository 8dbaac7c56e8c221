"""Opening DICOM: folders with several series, DICOMDIRs, compressed files, what is refused.

Small synthetic series (written with pydicom) exercise the reader's choices; every
refusal is one line naming the path, with exit status 2 from the command line.
"""

from __future__ import annotations

import pickle

import nibabel as nib
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner
from pydicom.encaps import encapsulate
from pydicom.uid import MPEG4HP41, HTJ2KLossless, RLELossless

import seamline
from seamline_medical import dicom_read
from tests.medical.dicom_helpers import write_series
from tests.medical.test_predict import THRESHOLD, ThresholdPlugin, build_threshold

SHAPE = (16, 12, 6)
AFFINE = np.array([[-0.8, 0, 0, 40.0], [0, -0.8, 0, 30.0], [0, 0, 2.5, -20.0], [0, 0, 0, 1]])


def volume(seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(-1000, 1500, SHAPE).astype(np.int16)


def run(*args: str):
    from seamline.cli import get_cli

    return CliRunner().invoke(get_cli(), [str(a) for a in args])


@pytest.fixture
def bundle(tmp_path, fresh_plugins):
    from seamline.bundle import ModelCard, save_model

    fresh_plugins.register_plugin(ThresholdPlugin(), name="threshold")
    card = ModelCard(architecture="test.Threshold", in_channels=1, classes=["background", "bright"], spatial_dims=3)
    return save_model(build_threshold(1, 2), tmp_path / "threshold", card)


@pytest.fixture
def two_series(tmp_path):
    folder = tmp_path / "study"
    write_series(volume(0), AFFINE, folder / "ct", modality="CT", series_number=3, description="abdomen")
    write_series(volume(1), AFFINE, folder / "mr", modality="MR", series_number=7, description="t1 axial")
    return folder


def expect_refusal(result, path, text):
    """Exit status 2 and one line: ``error: <path>: ...text...``."""
    assert result.exit_code == 2, result.output
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"error: {path}: "), result.output
    assert text in lines[0], lines[0]


def test_a_folder_with_one_series_opens_lazily(tmp_path, monkeypatch):
    write_series(volume(), AFFINE, tmp_path / "ct", rescale=(1.0, -1024.0), stored=np.uint16, bits_stored=12)
    decoded = []
    decode = dicom_read._decode
    monkeypatch.setattr(dicom_read, "_decode", lambda *a: decoded.append(a[0]) or decode(*a))
    image = seamline.open(tmp_path / "ct", chunks=(1, -1, -1, 2))
    assert len(decoded) == 1  # the first frame, for its pixel type; nothing else until computed
    assert image.dtype == np.int16 and image.data.numblocks == (1, 1, 1, 3)
    np.testing.assert_array_equal(image.data[..., 2:4].compute()[0], volume()[:, :, 2:4])
    assert len(decoded) == 3
    np.testing.assert_allclose(image.affine, AFFINE, atol=1e-9)
    clone = pickle.loads(pickle.dumps(image.data))  # sources pickle as file names (dask.distributed)
    np.testing.assert_array_equal(clone.compute()[0], volume())


def test_several_series_need_a_choice(two_series):
    with pytest.raises(seamline.InputError) as caught:
        seamline.open(two_series)
    message = str(caught.value)
    assert "holds 2 image series" in message and "\n" not in message
    assert "#3 'abdomen' CT 16x12x6" in message and "#7 't1 axial' MR 16x12x6" in message
    mr = seamline.open(two_series, series=7)
    assert mr.meta["dicom"].modality == "MR"
    np.testing.assert_array_equal(mr.data.compute()[0], volume(1))
    by_uid = seamline.open(two_series, series=mr.meta["dicom"].uid)
    np.testing.assert_array_equal(by_uid.data.compute()[0], volume(1))
    with pytest.raises(seamline.InputError, match="no series match series=5"):
        seamline.open(two_series, series=5)


def test_several_series_from_the_command_line(two_series, bundle, tmp_path):
    result = run("predict", two_series, tmp_path / "out.nii.gz", "--model", bundle, "--no-progress")
    expect_refusal(result, two_series, "holds 2 image series; choose one")
    assert not (tmp_path / "out.nii.gz").exists()
    args = ("predict", two_series, tmp_path / "out.nii.gz", "--model", bundle, "--no-progress", "--tile-size", 8)
    result = run(*args, "--input-option", "series=7")
    assert result.exit_code == 0, result.output
    np.testing.assert_array_equal(np.asanyarray(nib.load(tmp_path / "out.nii.gz").dataobj), volume(1) > THRESHOLD)
    result = run(*args, "--input-option", "series", "--overwrite")
    assert result.exit_code == 2 and result.output.startswith("error: a reader option is KEY=VALUE, got 'series'")
    listing = run("dicom-info", two_series)
    assert listing.exit_code == 0
    lines = listing.output.strip().splitlines()
    assert len(lines) == 3 and "CT" in lines[1] and "16x12x6" in lines[1] and "'t1 axial'" in lines[2]


def test_dicomdir_names_the_files(tmp_path):
    from pydicom.fileset import FileSet

    files = write_series(volume(), AFFINE, tmp_path / "plain")
    fileset = FileSet()
    for file in files:
        fileset.add(pydicom.dcmread(file))
    fileset.write(tmp_path / "media")
    for path in (tmp_path / "media", tmp_path / "media" / "DICOMDIR"):
        image = seamline.open(path)
        np.testing.assert_array_equal(image.data.compute()[0], volume())


def test_objects_that_are_not_images_are_listed_not_read(tmp_path, bundle):
    from pydicom.data import get_testdata_file

    folder = tmp_path / "mixed"
    write_series(volume(), AFFINE, folder / "ct")
    for name in ("rtstruct.dcm", "test-SR.dcm"):
        pydicom.dcmread(get_testdata_file(name), force=True).save_as(folder / name, enforce_file_format=True)
    image = seamline.open(folder)  # the one image series; the others are not candidates
    np.testing.assert_array_equal(image.data.compute()[0], volume())
    only = tmp_path / "only"
    only.mkdir()
    (only / "rtstruct.dcm").write_bytes((folder / "rtstruct.dcm").read_bytes())
    result = run("predict", only, tmp_path / "out.nii.gz", "--model", bundle, "--no-progress")
    expect_refusal(result, only, "holds no images, only RT Structure Set Storage")
    result = run("predict", folder / "test-SR.dcm", tmp_path / "out.nii.gz", "--model", bundle, "--no-progress")
    expect_refusal(result, folder / "test-SR.dcm", "holds no images, only Comprehensive SR Storage")


def test_compressed_series_reads_like_the_uncompressed_one(tmp_path):
    write_series(volume(), AFFINE, tmp_path / "rle", transfer_syntax=RLELossless)
    assert pydicom.dcmread(next((tmp_path / "rle").iterdir())).file_meta.TransferSyntaxUID == RLELossless
    np.testing.assert_array_equal(seamline.open(tmp_path / "rle").data.compute()[0], volume())


@pytest.mark.parametrize(
    ("syntax", "text"),
    [(HTJ2KLossless, "no decoder for it is installed"), (MPEG4HP41, "which pydicom cannot decode")],
)
def test_compressed_without_a_decoder_names_the_syntax(tmp_path, bundle, syntax, text):
    files = write_series(volume(), AFFINE, tmp_path / "series")
    for file in files:
        ds = pydicom.dcmread(file)
        ds.file_meta.TransferSyntaxUID = syntax
        ds.PixelData = encapsulate([b"\x00" * 64])
        ds["PixelData"].VR = "OB"
        ds.save_as(file, enforce_file_format=True)
    if syntax == HTJ2KLossless and pydicom.pixels.get_decoder(syntax).is_available:
        pytest.skip("an HTJ2K decoder is installed here")
    result = run("predict", tmp_path / "series", tmp_path / "out.nii.gz", "--model", bundle, "--no-progress")
    expect_refusal(result, tmp_path / "series", f"compressed as {syntax.name} ({syntax})")
    assert text in result.output


def test_localizers_are_left_out_and_mixed_sizes_refused(tmp_path):
    write_series(volume(), AFFINE, tmp_path / "ct", series_number=2)
    scout = write_series(np.zeros((20, 12, 1), np.int16), AFFINE, tmp_path / "scout", series_number=2)[0]
    ds, series_uid = pydicom.dcmread(scout), pydicom.dcmread(next((tmp_path / "ct").iterdir())).SeriesInstanceUID
    ds.SeriesInstanceUID, ds.ImageType = series_uid, ["ORIGINAL", "PRIMARY", "LOCALIZER"]
    ds.save_as(tmp_path / "ct" / "scout.dcm")
    image = seamline.open(tmp_path / "ct")
    assert image.spatial_shape == SHAPE
    ds.ImageType = ["ORIGINAL", "PRIMARY", "AXIAL"]
    ds.save_as(tmp_path / "ct" / "scout.dcm")
    with pytest.raises(seamline.InputError, match="mixes 2 image sizes"):
        seamline.open(tmp_path / "ct")


def test_identifiers_are_kept_but_never_shown(tmp_path):
    patient = {"PatientName": "Zyx^Quorra", "PatientID": "PID-77Q", "PatientBirthDate": "19011231"}
    write_series(volume(), AFFINE, tmp_path / "ct", patient=patient)
    image = seamline.open(tmp_path / "ct")
    series = image.meta["dicom"]
    assert series.identifiers["PatientID"] == "PID-77Q" and series.identifiers["PatientName"] == "Zyx^Quorra"
    shown = repr(series) + str(series) + series.summary() + repr(image) + repr(image.meta)
    assert not any(value in shown for value in patient.values())


def test_a_single_file_opens_as_one_slice(tmp_path):
    files = write_series(volume(), AFFINE, tmp_path / "ct")
    image = seamline.open(files[2])
    assert image.spatial_shape == (16, 12, 1)
    np.testing.assert_array_equal(image.data.compute()[0, :, :, 0], volume()[:, :, 2])
    np.testing.assert_allclose(image.affine @ [0, 0, 0, 1], AFFINE @ [0, 0, 2, 1], atol=1e-9)
