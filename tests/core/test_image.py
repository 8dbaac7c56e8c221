"""Image: building from arrays, windows that keep the affine exact."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from seamline import Image, InputError
from seamline.image import window_affine

RASTER_AFFINE = np.array([[0.0, 30.0, 478000.0], [-30.0, 0.0, 3108140.0], [0.0, 0.0, 1.0]])


def test_from_numpy_dask_and_xarray():
    array = np.random.default_rng(0).random((3, 20, 30)).astype("float32")
    for source in (array, da.from_array(array, chunks=(3, 7, 11))):
        image = Image.from_array(source, RASTER_AFFINE, crs="EPSG:32645", meta={"nodata": 0})
        assert isinstance(image.data, da.Array)
        assert image.shape == (3, 20, 30) and image.spatial_shape == (20, 30)
        assert image.ndim == 2 and image.channels == 3
        assert image.spacing == (30.0, 30.0)
        np.testing.assert_array_equal(image.data.compute(), array)

    xr = pytest.importorskip("xarray")
    grid = xr.DataArray(
        array,
        dims=("band", "y", "x"),
        coords={"y": 3108125.0 - 30.0 * np.arange(20), "x": 478015.0 + 30.0 * np.arange(30)},
    )
    image = Image.from_array(grid)
    # (y, x) centre coordinates give a raster: world (x, y), index (0, 0) at the first pixel's corner
    np.testing.assert_allclose(image.affine, [[0, 30, 478000], [-30, 0, 3108140], [0, 0, 1]])
    assert image.meta["anchor"] == "corner"
    coords = {"i": 1.0 + np.arange(3), "j": 2.0 * np.arange(20), "k": 5.0 + 3.0 * np.arange(30)}
    image = Image.from_array(xr.DataArray(array[None], dims=("c", "i", "j", "k"), coords=coords))
    # other dimensions give a volume indexed at voxel centres, world axis i along spatial axis i
    np.testing.assert_allclose(image.affine, [[1, 0, 0, 1], [0, 2, 0, 0], [0, 0, 3, 5], [0, 0, 0, 1]])
    assert image.meta["anchor"] == "center"


def test_window_keeps_the_affine_exact():
    image = Image.from_array(np.zeros((2, 100, 80)), RASTER_AFFINE, crs="EPSG:32645")
    window = image[:, 10:50:2, 5:]
    assert window.shape == (2, 20, 75)
    np.testing.assert_array_equal(window.affine, [[0, 30, 478150], [-60, 0, 3107840], [0, 0, 1]])
    assert window.crs == image.crs
    assert image.window(slice(10, 50, 2), slice(5, None)).affine.tolist() == window.affine.tolist()
    assert image[1].shape == (1, 100, 80)
    assert image[..., 3:4].shape == (2, 100, 1)


def test_window_slices_the_validity_mask_with_the_data():
    valid = np.random.default_rng(0).random((1, 30, 40)) > 0.5
    image = Image.from_array(np.zeros((3, 30, 40)), meta={"mask": valid, "band_names": ["r", "g", "b"]})
    window = image[1:, 5:25:2, 7:]
    np.testing.assert_array_equal(window.meta["mask"], valid[:, 5:25:2, 7:])
    assert window.meta["band_names"] == ["g", "b"]


@given(
    shape=st.tuples(st.integers(2, 12), st.integers(2, 12), st.integers(2, 12)),
    data=st.data(),
)
def test_window_affine_maps_window_voxels_onto_the_same_world_points(shape, data):
    affine = np.array([[0.0, 0.0, -3.0, 90.0], [0.0, 2.5, 0.1, -120.0], [1.5, 0.0, 0.0, -40.0], [0.0, 0.0, 0.0, 1.0]])
    image = Image.from_array(np.zeros((1, *shape)), affine)
    slices = []
    for size in shape:
        start = data.draw(st.integers(0, size - 1))
        stop = data.draw(st.integers(start + 1, size))
        step = data.draw(st.integers(1, 3))
        slices.append(slice(start, stop, step))
    window = image.window(*slices)
    index = np.array([s.start + s.step * 1 for s in slices] + [1])
    np.testing.assert_allclose(window.affine @ [1, 1, 1, 1], affine @ index)
    np.testing.assert_allclose(
        window_affine(affine, [s.start for s in slices]) @ [0, 0, 0, 1],
        affine @ index * 0 + affine @ np.array([s.start for s in slices] + [1]),
    )


@pytest.mark.parametrize(
    ("array", "affine", "message"),
    [
        (np.zeros((4, 4)), None, "shape \\(C, \\*spatial\\)"),
        (np.zeros((1, 2, 2, 2, 2)), None, "2 or 3 spatial axes"),
        (np.zeros((1, 0, 4)), None, "zero-sized axis"),
        (np.zeros((1, 4, 4)), np.eye(4), "affine must be 3x3"),
    ],
)
def test_bad_arrays_are_input_errors(array, affine, message):
    with pytest.raises(InputError, match=message):
        Image.from_array(array, affine)


def test_spatial_axes_take_slices_only():
    image = Image.from_array(np.zeros((1, 4, 4)))
    with pytest.raises(InputError, match="channel 1 is out of range for an Image with 1 channels"):
        image[1]
    with pytest.raises(InputError, match="take slices"):
        image[:, 1]
    with pytest.raises(InputError, match="positive step"):
        image[:, ::-1]


def test_same_crs_whatever_the_form():
    from seamline.image import same_crs

    wkt = 'GEOGCRS["WGS 84",DATUM["World Geodetic System 1984"]]'
    assert same_crs(None, None) and same_crs(wkt, wkt)
    assert not same_crs(None, wkt) and not same_crs(wkt, wkt.replace("84", "72"))
    pyproj = pytest.importorskip("pyproj")
    assert same_crs(pyproj.CRS(32645), "EPSG:32645") and same_crs("EPSG:32645", pyproj.CRS(32645))
    assert same_crs(pyproj.CRS(32645), pyproj.CRS(32645).to_wkt())
    assert not same_crs(pyproj.CRS(32645), pyproj.CRS(32644))


def test_check_same_grid_names_what_differs():
    from seamline.image import check_same_grid

    a = Image.from_array(np.zeros((1, 4, 5)), np.diag([30.0, -30.0, 1.0]), "EPSG:32645", {"path": "a.tif"})
    check_same_grid(a, a.replace(meta={}))
    with pytest.raises(InputError, match=r"^b\.tif: image and labels are in different CRSs"):
        check_same_grid(a, a.replace(crs=None, meta={"path": "b.tif"}))
    shifted = a.replace(affine=window_affine(a.affine, [0, 1]))
    with pytest.raises(InputError, match=r"lie on different grids \(origin \[0\.0, 0\.0\] vs \[0\.0, -30\.0\]"):
        check_same_grid(a, shifted)
    check_same_grid(a, a.replace(affine=a.affine + 1e-5))  # a thousandth of a pixel is the same grid
    with pytest.raises(InputError, match=r"image shape \(4, 5\) differs from labels shape \(5, 4\)"):
        check_same_grid(a, np.zeros((5, 4)))
