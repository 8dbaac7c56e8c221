"""Writing labels from DICOM: a DICOM SEG that highdicom reloads voxel-exact, and NIfTI as dicom2nifti.

The SEG is checked with highdicom alone: its frames are looked up by source instance, in
the order of the source files' positions along the slice normal (computed here, from the
files), and must equal the label volume. NIfTI written from a DICOM series must have the
voxels and world geometry dicom2nifti gives the same series.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pydicom
import pytest

import seamline
from seamline_medical.geometry import reorient
from tests.conftest import data_file
from tests.medical.dicom_helpers import acquisitions, write_series

hd = pytest.importorskip("highdicom")

SHAPE = (20, 16, 8)
AFFINE = np.array([[-0.7, 0, 0, 40.0], [0, 0.7, 0, -30.0], [0, 0, 3.0, -20.0], [0, 0, 0, 1]])
NAMES = {0: "background", 1: "liver", 2: "kidney_left", 3: "mystery"}
COLORS = {1: (220, 120, 60), 2: (60, 200, 120)}


def labels_of(volume: np.ndarray) -> np.ndarray:
    """Three classes from intensity; class 3 never occurs (an empty segment)."""
    return np.select([volume > 600, volume < -500], [1, 2], 0).astype(np.uint8)


@pytest.fixture
def series(tmp_path):
    """A small oblique, left-handed series (slices stored against the normal) and its labelled image."""
    volume = np.random.default_rng(3).integers(-1000, 1500, SHAPE).astype(np.int16)
    data, affine, _ = acquisitions(volume, AFFINE)["coronal"]
    folder = tmp_path / "series"
    write_series(data, affine, folder)
    image = seamline.open(folder)
    return folder, image, labelled(image, colors=COLORS)


def labelled(image, colors=None):
    """The labels of *image* (``labels_of``), named, keeping its meta (the source series)."""
    meta = {**image.meta, "class_names": NAMES, **({"colors": colors} if colors else {})}
    return image.replace(data=image.data.map_blocks(labels_of, dtype=np.uint8), meta=meta)


def seg_frames_by_source(path, folder) -> np.ndarray:
    """The SEG's labels per source file, files in order along the normal, as (i, j, k)."""
    segmentation = hd.seg.segread(path)
    sources = [pydicom.dcmread(f, stop_before_pixels=True) for f in folder.iterdir()]
    normal = np.cross(*np.reshape(np.asarray(sources[0].ImageOrientationPatient, float), (2, 3)))
    sources.sort(key=lambda ds: float(np.dot(np.asarray(ds.ImagePositionPatient, float), normal)))
    frames = segmentation.get_pixels_by_source_instance([ds.SOPInstanceUID for ds in sources], combine_segments=True)
    return frames.transpose(2, 1, 0)


def test_seg_reloads_voxel_exact_through_highdicom(tmp_path, series):
    folder, _, labels = series
    path = seamline.save(labels, tmp_path / "organs.dcm")  # the source comes from the labels' meta
    expected = labels.data[0].compute()
    np.testing.assert_array_equal(seg_frames_by_source(path, folder), expected)
    seg = pydicom.dcmread(path)
    source = pydicom.dcmread(next(folder.iterdir()))
    assert seg.Modality == "SEG" and seg.SeriesNumber == 1001
    assert seg.ReferencedSeriesSequence[0].SeriesInstanceUID == source.SeriesInstanceUID
    assert seg.FrameOfReferenceUID == source.FrameOfReferenceUID and seg.PatientID == source.PatientID
    segments = {int(s.SegmentNumber): s for s in seg.SegmentSequence}
    assert {n: s.SegmentLabel for n, s in segments.items()} == {1: "liver", 2: "kidney_left", 3: "mystery"}
    liver, kidney, mystery = segments[1], segments[2], segments[3]
    assert liver.SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"  # SNOMED CT liver
    assert liver.SegmentedPropertyCategoryCodeSequence[0].CodeValue == "91723000"  # anatomical structure
    assert kidney.SegmentedPropertyTypeCodeSequence[0].CodeValue == "64033007"  # kidney
    assert kidney.SegmentedPropertyTypeModifierCodeSequence[0].CodeValue == "7771000"  # left
    assert mystery.SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Tissue"  # not in the table
    for number, rgb in COLORS.items():
        lab = hd.color.CIELabColor.from_dicom_value(segments[number].RecommendedDisplayCIELabValue)
        np.testing.assert_allclose(lab.to_rgb(), rgb, atol=1)


def test_seg_reads_back_as_the_labels(tmp_path, series):
    _, image, labels = series
    path = seamline.save(labels, tmp_path / "organs.dcm")
    expected = labels.data.compute()
    on_series = seamline.open(path, like=image)
    np.testing.assert_array_equal(on_series.data.compute(), expected)
    np.testing.assert_array_equal(on_series.affine, image.affine)
    assert on_series.meta["class_names"] == NAMES and on_series.meta["colors"] == COLORS
    own = seamline.open(path)  # its own grid: the labelled slices, same voxel centres
    from seamline_medical.grids import place

    placed = place(own.data.compute()[0], own.affine, image.affine, image.spatial_shape)
    np.testing.assert_array_equal(placed, expected[0])
    from click.testing import CliRunner

    from seamline.cli import get_cli

    nifti = seamline.save(labels, tmp_path / "organs.nii.gz")  # evaluate reads the SEG on this file's grid
    args = ["evaluate", nifti, path, "--classes", "4", "--json", tmp_path / "report.json"]
    result = CliRunner().invoke(get_cli(), [str(a) for a in args])
    assert result.exit_code == 0, result.output
    report = json.loads((tmp_path / "report.json").read_text())
    assert report["summary"]["pixel_accuracy"] == 1.0, report
    reoriented_like = reorient(image, axcodes="RAS")  # not the source series: placed by shared voxels
    np.testing.assert_array_equal(
        seamline.open(path, like=reoriented_like.replace(meta={})).data.compute(), reorient(labels).data.compute()
    )


def test_reference_option_places_labels_in_any_axis_order(tmp_path, series):
    folder, image, labels = series
    stored = reorient(labels, axcodes="LPI").replace(meta={"class_names": NAMES})  # another axis order, no DICOM meta
    with pytest.raises(seamline.InputError, match="pass reference=<the DICOM series>"):
        seamline.save(stored, tmp_path / "nowhere.dcm")
    path = seamline.save(stored, tmp_path / "organs.dcm", reference=folder)
    np.testing.assert_array_equal(seg_frames_by_source(path, folder), labels.data[0].compute())
    path = seamline.save(stored, tmp_path / "again.dcm", reference=image)
    np.testing.assert_array_equal(seg_frames_by_source(path, folder), labels.data[0].compute())


def test_labels_off_the_grid_or_not_labels_are_refused(tmp_path, series):
    _, image, labels = series
    affine = labels.affine.copy()
    affine[0, 3] += 0.35  # half a voxel off
    shifted = labels.replace(affine=affine)
    with pytest.raises(seamline.InputError, match="not on the grid of the reference"):
        seamline.save(shifted, tmp_path / "a.dcm")
    with pytest.raises(seamline.InputError, match="integer labels"):
        seamline.save(image.replace(data=image.data.astype(np.float32)), tmp_path / "b.dcm")
    with pytest.raises(seamline.InputError, match="an intensity image, not labels"):
        seamline.save(image.replace(data=(image.data + 1000).astype(np.uint16)), tmp_path / "d.dcm")
    with pytest.raises(seamline.InputError, match="no class but background"):
        empty = labels.replace(data=labels.data * 0, meta={**labels.meta, "class_names": None})
        seamline.save(empty, tmp_path / "c.dcm")
    assert not any(tmp_path.glob("*.dcm"))


def test_a_source_without_optional_attributes_gets_a_seg(tmp_path, series):
    folder, _, _ = series
    for file in folder.iterdir():  # attributes DICOM lets a CT leave out, but highdicom copies
        ds = pydicom.dcmread(file)
        for keyword in ("SliceThickness", "PatientSex", "StudyID", "AccessionNumber", "ReferringPhysicianName"):
            if keyword in ds:
                delattr(ds, keyword)
        ds.save_as(file)
    labels = labelled(seamline.open(folder))
    path = seamline.save(labels, tmp_path / "organs.dcm")
    np.testing.assert_array_equal(seg_frames_by_source(path, folder), labels.data[0].compute())


def test_a_resampled_series_has_no_frames_to_reference(tmp_path):
    positions = [(0.0, 0.5 * m, 2.0 * m) for m in range(5)]
    affine = np.diag([-1.0, -1.0, 2.0, 1.0])
    write_series(np.zeros((8, 6, 5), np.int16), affine, tmp_path / "tilt", positions=np.array(positions))
    image = seamline.open(tmp_path / "tilt", resample=True)
    labels = image.replace(data=(image.data > -1).astype(np.uint8))
    with pytest.raises(seamline.InputError, match="resampled onto a regular grid"):
        seamline.save(labels, tmp_path / "seg.dcm")


def test_seg_of_a_multiframe_source_references_its_frames(tmp_path, series):
    folder, _, _ = series
    multiframe = tmp_path / "multiframe.dcm"
    datasets = [pydicom.dcmread(f) for f in sorted(folder.iterdir())]
    hd.legacy.LegacyConvertedEnhancedCTImage(datasets, hd.UID(), 9, hd.UID(), 1).save_as(multiframe)
    image = seamline.open(multiframe)
    labels = labelled(image)
    path = seamline.save(labels, tmp_path / "organs.dcm")
    segmentation = hd.seg.segread(path)
    uid = pydicom.dcmread(multiframe, stop_before_pixels=True).SOPInstanceUID
    numbers = [f.index + 1 for f in image.meta["dicom"].frames]  # frame numbers in slice order
    frames = segmentation.get_pixels_by_source_frame(uid, numbers, combine_segments=True)
    np.testing.assert_array_equal(frames.transpose(2, 1, 0), labels.data[0].compute())


@pytest.mark.slow
def test_totalsegmentator_organs_get_their_names_and_codes(tmp_path):
    ct = nib.load(data_file("totalsegmentator_ct_mr", "example_ct_sm.nii.gz"))
    names = json.loads(data_file("totalsegmentator_ct_mr", "label_names.json").read_text())["total"]
    write_series(np.asanyarray(ct.dataobj), ct.affine, tmp_path / "ct", rescale=(1.0, -2048.0), stored=np.uint16)
    organs = seamline.open(data_file("totalsegmentator_ct_mr", "example_seg.nii.gz"))  # on the CT's grid
    organs = organs.replace(meta={**organs.meta, "class_names": {int(k): v for k, v in names.items()}})
    path = seamline.save(organs, tmp_path / "organs.dcm", reference=tmp_path / "ct")
    np.testing.assert_array_equal(seg_frames_by_source(path, tmp_path / "ct"), organs.data[0].compute())
    segments = {int(s.SegmentNumber): s for s in pydicom.dcmread(path).SegmentSequence}
    assert len(segments) == max(int(k) for k in names)  # one per class, present or not
    assert segments[5].SegmentLabel == "liver"
    assert segments[5].SegmentedPropertyTypeCodeSequence[0].CodeValue == "10200004"
    assert segments[1].SegmentedPropertyTypeCodeSequence[0].CodeMeaning == "Spleen"
    assert segments[2].SegmentedPropertyTypeModifierCodeSequence[0].CodeMeaning == "Right"


@pytest.mark.parametrize("acquisition", ["oblique", "coronal"])
def test_nifti_from_dicom_has_dicom2nifti_geometry(tmp_path, acquisition):
    dicom2nifti = pytest.importorskip("dicom2nifti")
    volume = np.random.default_rng(5).integers(-1000, 1500, SHAPE).astype(np.int16)
    data, affine, _ = acquisitions(volume, AFFINE)[acquisition]
    write_series(data, affine, tmp_path / "series")
    image = seamline.open(tmp_path / "series")
    saved = nib.load(seamline.save(image, tmp_path / "volume.nii.gz"))
    converted = dicom2nifti.convert_dicom.dicom_series_to_nifti(str(tmp_path / "series"), None, reorient_nifti=False)
    ours = nib.as_closest_canonical(saved)
    theirs = nib.as_closest_canonical(converted["NII"])
    np.testing.assert_array_equal(np.asanyarray(ours.dataobj), np.asanyarray(theirs.dataobj))
    np.testing.assert_allclose(ours.affine, theirs.affine, atol=1e-4)
    assert int(saved.header["sform_code"]) == int(saved.header["qform_code"]) == 1  # scanner coordinates
    np.testing.assert_allclose(saved.header.get_qform(), saved.affine, atol=1e-4)
