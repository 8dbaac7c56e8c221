"""``seamline predict`` from a DICOM series to a DICOM SEG or NIfTI, and what it must never write.

A model that thresholds intensity makes the expected labels exactly ``volume >
threshold``. The real CT, written as a DICOM series with distinctive patient
identifiers, goes through the command line to a SEG (with statistics and a preview) and
to NIfTI; the SEG reloads through highdicom onto the source frames, the NIfTI has
dicom2nifti's geometry. No output but the SEG (which must copy the patient, as DICOM
requires) and no line of output or log carries the patient's name, ID or birth date, not
even when the values are malformed (pydicom's warnings and highdicom's errors quote them).
"""

from __future__ import annotations

import logging
import shutil
import warnings

import nibabel as nib
import numpy as np
import pydicom
import pytest
from click.testing import CliRunner

import seamline
from tests.conftest import data_file
from tests.medical.dicom_helpers import write_series
from tests.medical.test_dicom_seg import seg_frames_by_source
from tests.medical.test_predict import THRESHOLD, ThresholdPlugin, build_threshold

PATIENT = {"PatientName": "Zyxwv^Quorralind", "PatientID": "PID-9F3K2Q7", "PatientBirthDate": "19020317"}
SECRETS = ("Zyxwv", "Quorralind", "PID-9F3K2Q7", "19020317")


@pytest.fixture
def bundle(tmp_path, fresh_plugins):
    from seamline.bundle import ModelCard, save_model

    fresh_plugins.register_plugin(ThresholdPlugin(), name="threshold")
    card = ModelCard(
        architecture="test.Threshold",
        in_channels=1,
        classes=["background", {"id": 1, "name": "liver", "color": [220, 120, 60]}],
        spatial_dims=3,
        tile_size=[48, 40, 16],
        overlap=0.25,
    )
    return save_model(build_threshold(1, 2), tmp_path / "threshold", card)


@pytest.fixture
def ct_series(tmp_path):
    """The real CT as an axial DICOM series with distinctive identifiers, and its voxels."""
    ct = nib.load(data_file("totalsegmentator_ct_mr", "example_ct_sm.nii.gz"))
    volume = np.asanyarray(ct.dataobj)
    write_series(volume, ct.affine, tmp_path / "ct", rescale=(1.0, -2048.0), stored=np.uint16, patient=PATIENT)
    return tmp_path / "ct", volume


def run(*args):
    from seamline.cli import get_cli

    return CliRunner().invoke(get_cli(), [str(a) for a in args])


def test_predict_series_to_seg_with_statistics(tmp_path, bundle, ct_series):
    folder, volume = ct_series
    out, stats = tmp_path / "out", tmp_path / "out" / "organs.csv"
    out.mkdir()
    result = run("predict", folder, out / "organs.dcm", "--model", bundle, "--no-progress", "--stats", stats)
    assert result.exit_code == 0, result.output
    expected = (volume > THRESHOLD).astype(np.uint8)
    np.testing.assert_array_equal(seg_frames_by_source(out / "organs.dcm", folder), expected)
    names = {int(s.SegmentNumber): s.SegmentLabel for s in pydicom.dcmread(out / "organs.dcm").SegmentSequence}
    assert names == {1: "liver"}
    table = np.genfromtxt(stats, delimiter=",", names=True, dtype=None, encoding=None)
    liver = table[table["id"] == 1]
    assert liver["voxels"][0] == expected.sum() and liver["name"][0] == "liver"
    assert liver["mean_intensity"][0] == pytest.approx(volume[expected == 1].mean(), rel=1e-6)


def test_predict_series_to_nifti_has_dicom2nifti_geometry(tmp_path, bundle, ct_series):
    dicom2nifti = pytest.importorskip("dicom2nifti")
    folder, _ = ct_series
    out = tmp_path / "organs.nii.gz"
    result = run("predict", folder, out, "--model", bundle, "--no-progress")
    assert result.exit_code == 0, result.output
    converted = dicom2nifti.convert_dicom.dicom_series_to_nifti(str(folder), None, reorient_nifti=False)["NII"]
    ours, theirs = nib.as_closest_canonical(nib.load(out)), nib.as_closest_canonical(converted)
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    expected = (np.asanyarray(theirs.dataobj) > THRESHOLD).astype(np.uint8)
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), expected)
    assert seamline.open(out).meta["class_names"] == {0: "background", 1: "liver"}


def test_no_patient_identifier_in_outputs_logs_or_errors(tmp_path, bundle, ct_series, caplog):
    caplog.set_level(logging.DEBUG)
    folder, volume = ct_series
    out = tmp_path / "out"
    out.mkdir()
    other = tmp_path / "two" / "second"
    write_series(volume[:, :, :4], np.eye(4), other, patient=PATIENT, series_number=9)
    shutil.copytree(folder, tmp_path / "two" / "first")
    malformed = {**PATIENT, "PatientBirthDate": "19020317x", "PatientAge": "Quorralind"}  # not DA, not AS
    with warnings.catch_warnings():  # pydicom warns while the test writes them; seamline must not
        warnings.simplefilter("ignore")
        write_series(volume[:, :, :4], np.eye(4), tmp_path / "odd", patient=malformed)
    caplog.clear()
    results = [
        run("predict", folder, out / "organs.dcm", "--model", bundle, "--no-progress",
            "--stats", out / "organs.csv", "--preview", out / "organs.png"),
        run("predict", folder, out / "organs.nii.gz", "--model", bundle, "--no-progress",
            "--stats", out / "organs.json", "--preview", out / "nifti.png"),
        run("stats", out / "organs.dcm", "--image", folder, "--out", out / "again.csv"),
        run("dicom-info", folder),
        run("dicom-info", folder, "--json"),
        run("predict", tmp_path / "two", out / "never.dcm", "--model", bundle),  # several series: an error
        run("predict", folder, out / "probabilities.dcm", "--model", bundle, "--probabilities", "--no-progress"),
        run("dicom-info", tmp_path / "odd"),
        run("predict", tmp_path / "odd", out / "odd.dcm", "--model", bundle, "--no-progress", "--tile-size", 4),
    ]  # fmt: skip
    assert [r.exit_code for r in results] == [0, 0, 0, 0, 0, 2, 2, 0, 2], [r.output for r in results]
    assert "highdicom cannot make a SEG" in results[8].output  # its birth date is no date
    assert "holds 2 image series" in results[5].output and "labels" in results[6].output
    written = sorted(p for p in out.iterdir() if p.is_file())
    assert {p.name for p in written} >= {"organs.dcm", "organs.csv", "organs.png", "organs.nii.gz", "again.csv"}
    texts = {str(p): p.read_bytes().decode("latin-1") for p in written if p.name != "organs.dcm"}
    texts.update({f"output {i}": r.output for i, r in enumerate(results)})
    texts["log"] = caplog.text
    for where, text in texts.items():
        assert not [s for s in SECRETS if s in text], where
    seg = pydicom.dcmread(out / "organs.dcm")  # the SEG copies the patient, as DICOM requires
    assert seg.PatientID == PATIENT["PatientID"] and str(seg.PatientName) == PATIENT["PatientName"]
