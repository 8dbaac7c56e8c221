"""Chunked metrics equal MONAI's whole-image metric functions."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
import torch
from monai.metrics import (
    compute_confusion_matrix_metric,
    compute_hausdorff_distance,
    compute_iou,
    compute_surface_dice,
    get_confusion_matrix,
)
from monai.metrics.meandice import compute_dice
from monai.metrics.panoptic_quality import compute_panoptic_quality

from seamline import Image, InputError
from seamline.instances import instance_metrics
from seamline.metrics import confusion_matrix, evaluate
from tests.conftest import data_file

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")  # MONAI deprecations


def blobs(shape: tuple[int, ...], classes: int, seed: int) -> np.ndarray:
    """Smooth random label maps: classes in blobs, like real segmentations."""
    rng = np.random.default_rng(seed)
    noise = ndi.gaussian_filter(rng.normal(size=(classes, *shape)), sigma=2, axes=range(1, len(shape) + 1))
    return np.argmax(noise, axis=0).astype(np.uint8)


def one_hot(labels: np.ndarray, classes: int) -> torch.Tensor:
    return torch.from_numpy(np.eye(classes, dtype=np.float32)[labels]).movedim(-1, 0)[None]


@pytest.fixture(scope="module", params=[2, 3], ids=["2d", "3d"])
def pair(request):
    shape = (48, 40) if request.param == 2 else (20, 24, 18)
    classes = 3
    return blobs(shape, classes, 1), blobs(shape, classes, 2), classes


def chunked(array: np.ndarray, size: int = 7) -> da.Array:
    return da.from_array(array, chunks=size)


def test_overlap_scores_equal_monai(pair):
    pred, true, classes = pair
    report = evaluate(chunked(pred), chunked(true), num_classes=classes, boundary_tolerance=None)
    y_pred, y = one_hot(pred, classes), one_hot(true, classes)
    np.testing.assert_allclose(report.per_class["iou"], compute_iou(y_pred, y, ignore_empty=False)[0], rtol=1e-6)
    np.testing.assert_allclose(report.per_class["dice"], compute_dice(y_pred, y, ignore_empty=False)[0], rtol=1e-6)
    monai_confusion = get_confusion_matrix(y_pred, y)
    for ours, theirs in (("precision", "precision"), ("recall", "sensitivity"), ("f1", "f1 score")):
        expected = compute_confusion_matrix_metric(theirs, monai_confusion)[0]
        np.testing.assert_allclose(report.per_class[ours], expected, rtol=1e-6)
    assert report.pixel_accuracy == pytest.approx(np.mean(pred == true))
    assert report.mean_iou == pytest.approx(float(compute_iou(y_pred, y).mean()))
    assert report.mean_accuracy == pytest.approx(np.mean([np.mean(pred[true == c] == c) for c in range(classes)]))


def test_hd95_and_surface_dice_equal_monai(pair):
    pred, true, classes = pair
    spacing = (0.8, 1.5, 2.5)[: pred.ndim]
    tolerance = 1.75  # not a distance the grid can produce: no float ties at the tolerance
    report = evaluate(chunked(pred, 5), chunked(true, 6), spacing=spacing, tolerance=tolerance)
    y_pred, y = one_hot(pred, classes), one_hot(true, classes)
    hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=list(spacing))
    nsd = compute_surface_dice(y_pred, y, [tolerance] * classes, include_background=True, spacing=list(spacing))
    np.testing.assert_allclose(report.per_class["hd95"], hd95[0], rtol=1e-5)
    np.testing.assert_allclose(report.per_class["surface_dice"], nsd[0], rtol=1e-5)


def test_spacing_from_an_oblique_affine_equals_axis_spacing_after_rotation():
    pred, true = blobs((30, 30), 2, 3), blobs((30, 30), 2, 4)
    angle = 0.3
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    affine = np.eye(3)
    affine[:2, :2] = rotation @ np.diag([2.0, 0.5])
    image = Image.from_array(pred[None], affine=affine)
    rotated = evaluate(image, Image.from_array(true[None], affine=affine), spacing=True)
    straight = evaluate(pred, true, spacing=(2.0, 0.5))
    np.testing.assert_allclose(rotated.per_class["hd95"], straight.per_class["hd95"], rtol=1e-9)


def boundary_f1_oracle(pred: np.ndarray, true: np.ndarray, cls: int, tolerance: float) -> float:
    """Whole-array boundary F1: MONAI-style edges, scipy's exact distance transform."""
    edges = [(m := labels == cls) ^ ndi.binary_erosion(m) for labels in (pred, true)]
    precision = np.mean(ndi.distance_transform_edt(~edges[1])[edges[0]] <= tolerance)
    recall = np.mean(ndi.distance_transform_edt(~edges[0])[edges[1]] <= tolerance)
    return 2 * precision * recall / (precision + recall)


def test_boundary_f1_tolerates_small_shifts():
    true = np.zeros((40, 40), dtype=np.uint8)
    true[10:30, 10:30] = 1
    shifted = np.roll(true, 1, axis=1)
    assert evaluate(shifted, true, boundary_tolerance=1).per_class.loc[1, "boundary_f1"] == 1.0
    assert evaluate(shifted, true, boundary_tolerance=0).per_class.loc[1, "boundary_f1"] < 0.9


@pytest.mark.parametrize(("shape", "tolerance"), [((50, 45), 2.0), ((50, 45), 3.5), ((16, 18, 14), 1.5)])
def test_boundary_f1_equals_whole_image_oracle_on_any_chunking(shape, tolerance):
    pred, true = blobs(shape, 3, 5), blobs(shape, 3, 6)
    expected = [boundary_f1_oracle(pred, true, cls, tolerance) for cls in range(3)]
    for size in (3, 8):
        report = evaluate(chunked(pred, size), chunked(true, size + 2), boundary_tolerance=tolerance)
        np.testing.assert_allclose(report.per_class["boundary_f1"], expected)


def test_confusion_matrix_sums_chunks_and_skips_ignored():
    pred = np.array([[0, 1, 2], [2, 2, 1]])
    true = np.array([[0, 1, 255], [2, 1, 1]])
    expected = np.array([[1, 0, 0], [0, 2, 1], [0, 0, 1]])
    np.testing.assert_array_equal(confusion_matrix(chunked(pred, 1), chunked(true, 2), ignore_index=255), expected)
    report = evaluate(pred, true, num_classes=3, ignore_index=255, class_names={0: "bg", 1: "ice", 2: "debris"})
    assert list(report.per_class["name"]) == ["bg", "ice", "debris"]
    assert report.pixel_accuracy == pytest.approx(4 / 5)


def test_class_absent_from_both_is_nan_and_skipped_in_means():
    report = evaluate(np.zeros((4, 4), dtype=int), np.zeros((4, 4), dtype=int), num_classes=2)
    assert np.isnan(report.per_class.loc[1, "iou"])
    assert report.mean_iou == 1.0


def test_report_serializes_and_prints():
    report = evaluate(blobs((20, 20), 2, 7), blobs((20, 20), 2, 8), spacing=(1.0, 1.0), class_names=["bg", "fg"])
    data = json.loads(json.dumps(report.to_dict()))
    assert data["summary"]["mean_iou"] == pytest.approx(report.mean_iou)
    assert [row["name"] for row in data["per_class"]] == ["bg", "fg"]
    text = str(report)
    assert "mean_iou" in text and "hd95" in text and "fg" in text


@pytest.mark.parametrize(
    ("pred", "true", "kwargs", "match"),
    [
        (np.zeros((3, 3), int), np.zeros((3, 4), int), {}, "differs"),
        (np.full((3, 3), 3), np.zeros((3, 3), int), {"num_classes": 3}, "outside"),
        (np.full((3, 3), -1), np.zeros((3, 3), int), {}, "negative"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), {"spacing": (1.0,)}, "spacing"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), {"class_names": ["a", "b"]}, "names"),
        (np.zeros((3, 3), int), np.zeros((3, 3), int), {"boundary_tolerance": -1}, "tolerances"),
        (np.zeros((3, 3)), np.zeros((3, 3), int), {}, "integer labels"),
    ],
)
def test_bad_input(pred, true, kwargs, match):
    with pytest.raises(InputError, match=match):
        evaluate(pred, true, **kwargs)


def test_different_affines_are_an_input_error():
    labels = np.zeros((1, 4, 4), dtype=np.uint8)
    with pytest.raises(InputError, match="different grids"):
        evaluate(Image.from_array(labels), Image.from_array(labels, affine=np.diag([2.0, 2.0, 1.0])))


def random_instances(shape: tuple[int, ...], seed: int) -> np.ndarray:
    """Touching and separate objects: connected components of a blob map, renumbered."""
    labels = blobs(shape, 4, seed)
    instances, _ = ndi.label(labels == 1)
    return instances


@pytest.mark.parametrize("shape", [(40, 36), (14, 16, 12)])
def test_panoptic_quality_equals_monai(shape):
    true = random_instances(shape, 11)
    pred = np.roll(true, 1, axis=0)  # shifted objects: IoU varies around 0.5
    pred[random_instances(shape, 12) == 3] = 999  # a false positive or a broken object
    ours = instance_metrics(da.from_array(pred, chunks=5), da.from_array(true, chunks=7))
    tp, fp, fn, iou_sum = compute_panoptic_quality(
        torch.from_numpy(pred), torch.from_numpy(true), output_confusion_matrix=True
    ).tolist()
    assert (ours["tp"], ours["fp"], ours["fn"]) == (tp, fp, fn)
    assert ours["sq"] == pytest.approx(iou_sum / tp, rel=1e-5)
    pq = compute_panoptic_quality(torch.from_numpy(pred), torch.from_numpy(true), smooth_numerator=0.0)
    assert ours["pq"] == pytest.approx(float(pq), rel=1e-5)
    assert ours["f1"] == pytest.approx(2 * tp / (2 * tp + fp + fn))


def test_instances_from_components_of_masks():
    true = np.zeros((12, 12), dtype=np.uint8)
    true[1:4, 1:4] = 1
    true[6:10, 6:10] = 1
    pred = true.copy()
    pred[6:10, 6:8] = 0  # half of the second object: IoU 0.5 is not a match
    result = instance_metrics(da.from_array(pred, chunks=5), true, components=True)
    assert (result["tp"], result["fp"], result["fn"]) == (1, 1, 1)
    assert result["pq"] == pytest.approx(1.0 * 0.5)


@pytest.mark.slow
def test_organ_volume_against_monai():
    """Real data: the five largest organs against themselves grown sideways, 3 mm voxels."""
    nibabel = pytest.importorskip("nibabel")
    image = nibabel.load(data_file("totalsegmentator_ct_mr", "example_seg.nii.gz"))
    organs = np.asarray(image.dataobj)
    largest = np.argsort(np.bincount(organs.ravel())[1:])[::-1][:5] + 1
    true = np.select([organs == organ for organ in largest], np.arange(1, 6)).astype(np.uint8)
    pred = np.where(true > 0, true, ndi.grey_dilation(true, size=(3, 3, 1)))
    spacing = [float(z) for z in image.header.get_zooms()]
    report = evaluate(da.from_array(pred, chunks=(64, 50, 16)), true, num_classes=6, spacing=spacing, tolerance=3)
    y_pred, y = one_hot(pred, 6), one_hot(true, 6)
    np.testing.assert_allclose(report.per_class["dice"], compute_dice(y_pred, y)[0], rtol=1e-5)
    hd95 = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=spacing)
    np.testing.assert_allclose(report.per_class["hd95"], hd95[0], rtol=1e-5)
    nsd = compute_surface_dice(y_pred, y, [3.0] * 6, include_background=True, spacing=spacing)
    np.testing.assert_allclose(report.per_class["surface_dice"], nsd[0], rtol=1e-5)
