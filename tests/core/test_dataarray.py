"""Images to xarray and back: the grid exactly, in rioxarray's and odc-geo's terms."""

from __future__ import annotations

import math
import subprocess
import sys

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline import Image

pyproj = pytest.importorskip("pyproj")
xr = pytest.importorskip("xarray")
rioxarray = pytest.importorskip("rioxarray")
odc_xr = pytest.importorskip("odc.geo.xr")
affine_lib = pytest.importorskip("affine")

CRSS = [None, pyproj.CRS.from_epsg(32718), pyproj.CRS.from_epsg(4326)]
NORTH_UP = np.array([[0.0, 10.0, 500.0], [-10.0, 0.0, 900.0], [0, 0, 1]])


def rasterio_transform(affine: np.ndarray):
    """The ``affine.Affine`` of a raster's (row, col) affine, written out independently of seamline."""
    return affine_lib.Affine(affine[0, 1], affine[0, 0], affine[0, 2], affine[1, 1], affine[1, 0], affine[1, 2])


coordinate = st.floats(-1e7, 1e7, allow_nan=False)
size = st.floats(1e-4, 1e4).flatmap(lambda s: st.sampled_from([s, -s]))


@st.composite
def raster_affines(draw):
    """North-up (negative y step), south-up, or rotated and sheared: any non-singular raster affine."""
    width, height = draw(st.floats(1e-4, 1e4)), draw(size)
    kind = draw(st.sampled_from(["north-up", "north-up", "rotated"]))
    affine = np.array([[0.0, width, draw(coordinate)], [-abs(height), 0.0, draw(coordinate)], [0, 0, 1]])
    if kind == "rotated":
        affine[0, 0], affine[1, 1] = draw(size), draw(size)
        if abs(np.linalg.det(affine[:2, :2])) < 1e-12:
            affine[1, 1] += 1.0
    return affine


@settings(max_examples=40, deadline=None)
@given(raster_affines(), st.sampled_from(CRSS), st.integers(1, 3), st.integers(2, 9), st.integers(2, 9))
def test_a_raster_round_trip_keeps_the_grid_exactly(affine, crs, bands, rows, cols):
    image = Image(da.zeros((bands, rows, cols), chunks=(1, 4, 4)), affine, crs, {"nodata": 0, "anchor": "corner"})
    array = image.to_xarray()
    back = Image.from_array(array)
    np.testing.assert_array_equal(back.affine, image.affine)
    assert back.crs == crs and back.meta["nodata"] == 0 and back.meta["anchor"] == "corner"
    assert back.data is array.data  # still lazy, the same dask array
    transform = rasterio_transform(affine)
    assert array.rio.transform() == pytest.approx(transform, rel=1e-12, abs=1e-9 * max(1.0, abs(affine).max()))
    if crs is not None:
        assert pyproj.CRS.from_wkt(array.rio.crs.to_wkt()) == crs
        assert array.odc.geobox.affine == pytest.approx(transform, rel=1e-12, abs=1e-9 * max(1.0, abs(affine).max()))
    if affine[0, 0] == 0 and affine[1, 1] == 0:  # pixel centres, as rioxarray computes them
        centre = transform @ transform.translation(0.5, 0.5)
        np.testing.assert_array_equal(array.x, (centre @ (np.arange(cols), np.zeros(cols)))[0])
        np.testing.assert_array_equal(array.y, (centre @ (np.zeros(rows), np.arange(rows)))[1])
    else:
        assert "x" not in array.coords and "y" not in array.coords


@settings(max_examples=40, deadline=None)
@given(raster_affines(), st.integers(0, 5), st.integers(1, 3), st.integers(0, 5), st.integers(1, 3))
def test_a_sliced_dataarray_keeps_the_window_exactly(affine, row, row_step, col, col_step):
    if affine[0, 0] != 0:  # rotated: the carried transform cannot follow an isel, as in rioxarray
        return
    image = Image(da.zeros((1, 12, 14), chunks=6), affine, CRSS[1])
    window = image.to_xarray().isel(y=slice(row, None, row_step), x=slice(col, 13, col_step))
    expected = image.window(slice(row, None, row_step), slice(col, 13, col_step)).affine
    np.testing.assert_array_equal(Image.from_array(window).affine, expected)


def test_a_validity_mask_follows_the_pixels():
    valid = np.random.default_rng(0).random((1, 9, 11)) > 0.3
    image = Image(da.zeros((2, 9, 11), chunks=4), NORTH_UP, None, {"mask": da.from_array(valid, chunks=4)})
    window = image.to_xarray().isel(y=slice(2, 8), x=slice(1, None, 3))
    np.testing.assert_array_equal(Image.from_array(window).valid_mask().compute(), valid[0, 2:8, 1::3])


def test_coordinates_that_are_no_window_speak_for_themselves():
    affine = np.array([[0.0, 10.0, 500.0], [-10.0, 0.0, 900.0], [0, 0, 1]])
    array = Image(da.zeros((1, 8, 8)), affine, CRSS[1]).to_xarray()
    coarse = array.coarsen(x=2, y=2).mean()  # 20 m pixels; spatial_ref (and its GeoTransform) kept
    assert "GeoTransform" in coarse.spatial_ref.attrs
    np.testing.assert_allclose(Image.from_array(coarse).affine, [[0, 20, 500], [-20, 0, 900], [0, 0, 1]])


@st.composite
def volume_affines(draw):
    spacing = np.diag([draw(size), draw(size), draw(size), 1.0])
    if draw(st.booleans()):  # oblique: a rotation about z
        angle = draw(st.floats(-math.pi, math.pi))
        rotation = np.eye(4)
        rotation[:2, :2] = [[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]]
        spacing = rotation @ spacing
    spacing[:3, 3] = [draw(coordinate), draw(coordinate), draw(coordinate)]
    return spacing


@settings(max_examples=30, deadline=None)
@given(volume_affines(), st.sampled_from(["center", "corner"]))
def test_a_volume_round_trip_keeps_the_grid_exactly(affine, anchor):
    image = Image(da.zeros((2, 3, 4, 5)), affine, None, {"anchor": anchor})
    array = image.to_xarray()
    assert array.dims == ("channel", "i", "j", "k")
    back = Image.from_array(array)
    np.testing.assert_array_equal(back.affine, affine)
    assert back.meta["anchor"] == anchor and back.crs is None
    if "i" in array.coords:  # axis-aligned: coordinates are voxel centres
        offset = 0.5 if anchor == "corner" else 0.0
        for axis, dim in enumerate(("i", "j", "k")):
            index = np.zeros((4, image.spatial_shape[axis]))
            index[axis] = np.arange(image.spatial_shape[axis]) + offset
            index[3] = 1
            np.testing.assert_allclose(array[dim], (affine @ index)[axis], rtol=1e-12, atol=1e-6)
        # and without the carried affine, the coordinates alone give the same grid (centre anchored)
        alone = Image.from_array(array.drop_vars("affine"))
        first = [float(array[dim][0]) for dim in ("i", "j", "k")]
        np.testing.assert_array_equal(alone.affine[:3, 3], first)
        assert alone.meta["anchor"] == "center"
    else:
        assert not {"i", "j", "k"} & set(array.coords)


def test_odc_geobox_rotated_and_axis_aligned():
    from odc.geo.geobox import GeoBox

    for transform in (affine_lib.Affine(10, 2, 100, 1, -10, 200), affine_lib.Affine(10, 0, 100, 0, -10, 200)):
        array = odc_xr.xr_zeros(GeoBox((4, 5), transform, "epsg:32618"), dtype="float32")
        image = Image.from_array(array.expand_dims("band"))
        assert rasterio_transform(image.affine) == transform  # odc writes pixel indices as x/y when rotated
        assert image.crs == pyproj.CRS.from_epsg(32618)
        assert image.to_xarray().odc.geobox.affine == transform


def test_core_imports_no_rioxarray_odc_or_pyproj():
    code = (
        "import sys, numpy as np, seamline; "
        "a = seamline.Image(np.zeros((1, 3, 3))).to_xarray(); seamline.Image.from_array(a); "
        "print(sorted(m for m in ('rioxarray', 'odc.geo', 'pyproj') if m in sys.modules))"
    )
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout == "[]\n"
