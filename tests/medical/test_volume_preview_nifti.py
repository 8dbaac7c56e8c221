"""Volume previews of NIfTI files, against nibabel's orientation: any storage order looks the same."""

from __future__ import annotations

import matplotlib
import nibabel as nib
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

import seamline
from seamline.volume_preview import voxel_axes
from seamline_medical.presets import ct_window
from tests.conftest import data_file

matplotlib.use("Agg")


def test_ras_means_x_toward_the_patients_right():
    # the convention the volume preview is written for, as nibabel states it
    assert nib.aff2axcodes(np.eye(4)) == ("R", "A", "S")
    assert nib.aff2axcodes(np.diag([-1, -1, 1, 1])) == ("L", "P", "S")


@settings(max_examples=60, deadline=None)
@given(
    order=st.permutations([0, 1, 2]),
    signs=st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3),
    spacing=st.tuples(*[st.floats(0.3, 5.0)] * 3),
    angles=st.tuples(*[st.floats(-20.0, 20.0)] * 3),
)
def test_voxel_axes_agree_with_nibabel(order, signs, spacing, angles):
    linear = np.eye(3)[:, list(order)] * np.array(signs) * np.array(spacing)
    for axis, angle in enumerate(np.deg2rad(angles)):  # up to 20 degrees about each axis
        c, s = np.cos(angle), np.sin(angle)
        rotation = np.eye(3)
        (i, j) = [a for a in range(3) if a != axis]
        rotation[[i, i, j, j], [i, j, i, j]] = [c, -s, s, c]
        linear = rotation @ linear
    affine = np.eye(4)
    affine[:3, :3] = linear
    world, sign = voxel_axes(affine)
    reference = nib.orientations.io_orientation(affine)  # per voxel axis: (world axis, direction)
    assert world == [int(w) for w in reference[:, 0]]
    assert sign == [int(d) for d in reference[:, 1]]


def _pixels(volume, labels) -> np.ndarray:
    figure = Figure(dpi=40)
    seamline.show(volume, labels, window=ct_window("soft-tissue"), ax=figure)
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba()).copy()


def test_an_lps_mr_displays_as_its_ras_copy(tmp_path):
    image_path = data_file("totalsegmentator_ct_mr", "example_mr_sm.nii.gz")
    labels_path = data_file("totalsegmentator_ct_mr", "example_seg_mr.nii.gz")
    assert nib.aff2axcodes(nib.load(image_path).affine) == ("L", "P", "S")
    copies = []
    for path in (image_path, labels_path):
        canonical = nib.as_closest_canonical(nib.load(path))  # nibabel's reorientation to RAS
        copy = tmp_path / path.name
        nib.save(canonical, copy)
        copies.append(copy)
    assert nib.aff2axcodes(nib.load(copies[0]).affine) == ("R", "A", "S")
    stored = _pixels(seamline.open(image_path), seamline.open(labels_path))
    ras = _pixels(seamline.open(copies[0]), seamline.open(copies[1]))
    np.testing.assert_array_equal(stored, ras)
