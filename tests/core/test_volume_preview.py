"""Volume previews: radiological convention checked on the rendered pixels, in any storage order.

World space is RAS (nibabel's convention, checked against nibabel in
tests/medical/test_volume_preview_nifti.py): +x toward the patient's Right, +y Anterior,
+z Superior. So a marker on the patient's LEFT has a SMALL x.
"""

from __future__ import annotations

import matplotlib
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from scipy import ndimage

from seamline import Image, InputError
from seamline.show import show
from seamline.volume_preview import crossing_point, plane_view, voxel_axes

matplotlib.use("Agg")

SHAPE = (20, 24, 16)  # voxels along x, y, z of the RAS-stored volume
SPACING = (1.0, 1.5, 2.5)
CENTRE = (10, 12, 8)
LEFT, ANTERIOR, SUPERIOR = 1, 2, 3
COLORS = {LEFT: (255, 0, 0), ANTERIOR: (0, 255, 0), SUPERIOR: (0, 0, 255)}


def _ras_volume() -> tuple[np.ndarray, np.ndarray]:
    """Labels with a marker on the patient's left, one anterior and one superior of the centre, stored RAS."""
    labels = np.zeros(SHAPE, np.uint8)
    x, y, z = CENTRE
    labels[1:4, y - 1 : y + 2, z - 1 : z + 2] = LEFT  # x small: the patient's left
    labels[x - 1 : x + 2, 20:23, z - 1 : z + 2] = ANTERIOR  # y large: anterior
    labels[x - 1 : x + 2, y - 1 : y + 2, 13:15] = SUPERIOR  # z large: superior
    affine = np.diag([*SPACING, 1.0])
    affine[:3, 3] = [-10.0, 20.0, -30.0]
    return labels, affine


def _stored(order: tuple[int, ...], flips: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray, tuple[int, ...]]:
    """The same anatomy stored with voxel axes permuted by *order* and flipped: data, affine, centre voxel."""
    labels, affine = _ras_volume()
    index = np.eye(4)  # stored voxel index -> RAS-stored voxel index
    stored = labels.transpose(order)
    centre = [CENTRE[a] for a in order]
    for axis, (source, flip) in enumerate(zip(order, flips, strict=True)):
        column = np.zeros(4)
        if flip:
            stored = np.flip(stored, axis)
            column[source], index[source, 3] = -1, SHAPE[source] - 1
            centre[axis] = SHAPE[source] - 1 - centre[axis]
        else:
            column[source] = 1
        index[:, axis] = column
    return np.ascontiguousarray(stored), affine @ index, tuple(centre)


def _render(labels: np.ndarray, affine: np.ndarray, point: tuple[int, ...]) -> tuple[np.ndarray, list]:
    image = Image.from_array(np.zeros((1, *labels.shape)), affine)
    figure = Figure(dpi=50)
    axes = show(
        image,
        Image.from_array(labels[None], affine, meta={"colors": COLORS}),
        point=point,
        alpha=1.0,
        window=(0, 1),
        ax=figure,
    )
    canvas = FigureCanvasAgg(figure)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy(), axes


def _where(pixels: np.ndarray, ax, color) -> tuple[float, float]:
    """The marker's centroid in *ax* as fractions: (0, 0) top left, (1, 1) bottom right."""
    box = ax.get_window_extent()
    top = pixels.shape[0] - box.y1
    window = pixels[int(top) : int(top + box.height), int(box.x0) : int(box.x1)]
    rows, cols = np.nonzero(np.all(window == color, axis=-1))
    assert rows.size, f"marker {color} not drawn in {ax.get_title()}"
    return cols.mean() / window.shape[1], rows.mean() / window.shape[0]


def test_marker_on_the_patients_left_is_on_the_screens_right():
    labels, affine = _ras_volume()
    pixels, (axial, coronal, sagittal) = _render(labels, affine, CENTRE)
    for ax in (axial, coronal):
        across, _ = _where(pixels, ax, COLORS[LEFT])
        assert across > 0.75, ax.get_title()
    across, down = _where(pixels, axial, COLORS[ANTERIOR])
    assert down < 0.25 and abs(across - 0.5) < 0.1  # anterior up in the axial view
    across, down = _where(pixels, sagittal, COLORS[ANTERIOR])
    assert across < 0.25 and abs(down - 0.5) < 0.15  # anterior on the left of the sagittal view
    for ax in (coronal, sagittal):
        _, down = _where(pixels, ax, COLORS[SUPERIOR])
        assert down < 0.25, ax.get_title()


@pytest.mark.parametrize(
    ("order", "flips"),
    [((0, 1, 2), (True, True, False)), ((2, 0, 1), (False, True, False)), ((1, 2, 0), (True, False, True))],
    ids=["LPS", "SLA-like permutation", "flipped permutation"],
)
def test_any_storage_order_displays_the_same(order, flips):
    labels, affine = _ras_volume()
    reference, _ = _render(labels, affine, CENTRE)
    stored, stored_affine, centre = _stored(order, flips)
    np.testing.assert_allclose(stored_affine @ [*centre, 1], affine @ [*CENTRE, 1])  # the same world point
    pixels, _ = _render(stored, stored_affine, centre)
    np.testing.assert_array_equal(pixels, reference)


def test_slices_keep_their_true_proportions():
    labels, affine = _ras_volume()
    image = Image.from_array(labels[None], affine)
    for plane, (rows_mm, cols_mm) in {"axial": (24 * 1.5, 20), "coronal": (16 * 2.5, 20), "sagittal": (40, 36)}.items():
        ax = show(image, plane=plane, point=CENTRE, ax=Figure().add_subplot())
        left, right, bottom, top = ax.get_images()[0].get_extent()
        assert (abs(bottom - top), abs(right - left)) == pytest.approx((rows_mm, cols_mm))
        assert ax.get_aspect() == 1.0  # a millimetre is as long across as down


def test_slices_cross_at_the_labels_centre_of_mass():
    labels = np.zeros((1, 30, 40, 50), np.uint8)
    labels[0, 20:24, 5:9, 30:40] = 1
    image = Image.from_array(labels)
    centre = tuple(round(c) for c in ndimage.center_of_mass(labels[0]))
    assert crossing_point(image, image) == centre
    assert crossing_point(image, None) == (15, 20, 25)
    with pytest.raises(InputError, match="not a voxel"):
        crossing_point(image, image, (30, 0, 0))


def test_plane_view_reads_one_strided_slice():
    volume = Image.from_array(np.arange(64 * 64 * 8, dtype=float).reshape(1, 64, 64, 8), np.diag([-1.0, 1, 1, 1]))
    pixels, (height, width) = plane_view(volume, "axial", (0, 0, 3), max_size=16)
    assert pixels.shape == (1, 16, 16) and (height, width) == (4.0, 4.0)
    # x runs against the index (-1 spacing): no flip of columns; y runs with it: rows flipped
    np.testing.assert_array_equal(pixels[0], volume.data[0, ::4, ::4, 3].compute().T[::-1])
    with pytest.raises(InputError, match="plane must be one of"):
        plane_view(volume, "transverse", (0, 0, 0))


def test_voxel_axes_of_oblique_affines_pick_the_closest_world_axis():
    angle = np.deg2rad(20)
    rotation = np.array([[np.cos(angle), -np.sin(angle), 0], [np.sin(angle), np.cos(angle), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag([2.0, -3.0, 1.0])
    assert voxel_axes(affine) == ([0, 1, 2], [1, -1, 1])


def test_reference_labels_are_outlined_in_every_slice(tmp_path):
    import seamline

    labels, affine = _ras_volume()
    image = Image.from_array(labels[None], affine)
    path = seamline.save(image, tmp_path / "reference.zarr")  # a file of reference labels, opened by its reader
    for truth in (image, path):
        axes = show(image, truth=truth, point=CENTRE, ax=Figure())
        assert all(ax.collections for ax in axes)
        assert [t.get_text() for t in axes[-1].get_legend().get_texts()] == ["reference"]
    with pytest.raises(InputError, match="label image on its grid"):
        show(image, truth=[object()], ax=Figure())
