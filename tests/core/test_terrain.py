"""Terrain derivatives: chunked equals a whole-array Horn (scipy), planes come out exact on any grid."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pytest
import scipy.ndimage as ndi
from hypothesis import given, settings
from hypothesis import strategies as st

import seamline
from seamline import Image, InputError

PRODUCTS = ["slope", "aspect", "hillshade"]
# Horn's derivative along the columns, as a correlation kernel; its transpose is the row derivative
HORN = np.array([[-1.0, 0.0, 1.0], [-2.0, 0.0, 2.0], [-1.0, 0.0, 1.0]]) / 8


def whole_array_horn(z: np.ndarray, pixel_width: float, pixel_height: float) -> np.ndarray:
    """Slope, aspect and hillshade of a north-up grid with scipy, independently of the chunked code.

    Nodata (NaN) spreads to the 3 x 3 window around it and the one-pixel edge is nodata, as gdaldem.
    """
    holes = np.isnan(z)
    filled = np.where(holes, 0.0, z)
    dx = ndi.correlate(filled, HORN, mode="nearest") / pixel_width
    dy = ndi.correlate(filled, HORN.T, mode="nearest") / pixel_height
    invalid = ndi.binary_dilation(holes, np.ones((3, 3), bool))
    invalid[[0, -1], :] = invalid[:, [0, -1]] = True
    slope = np.degrees(np.arctan(np.hypot(dx, dy)))
    aspect = np.degrees(np.arctan2(-dx, -dy)) % 360
    aspect[(dx == 0) & (dy == 0)] = np.nan
    sun, up = math.radians(315), math.radians(45)
    facing = math.sin(up) - math.cos(up) * (dx * math.sin(sun) + dy * math.cos(sun))
    hillshade = 1 + np.maximum(254 * facing / np.sqrt(1 + dx**2 + dy**2), 0)
    out = np.stack([slope, aspect, hillshade])
    out[:, invalid] = np.nan
    return out


def angle_difference(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    d = np.abs(a - b) % 360
    return np.minimum(d, 360 - d)


@st.composite
def chunked_dems(draw):
    shape = tuple(draw(st.integers(3, 40)) for _ in range(2))
    chunks = []
    for n in shape:
        cuts = sorted(draw(st.sets(st.integers(1, n - 1), max_size=4)))
        chunks.append(tuple(np.diff([0, *cuts, n]).tolist()))
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    z = np.cumsum(np.cumsum(rng.normal(0, 5, shape), axis=0), axis=1) + 1000
    z[rng.random(shape) < draw(st.sampled_from([0.0, 0.02, 0.1]))] = -9999
    width = draw(st.floats(0.5, 100))
    height = -width * draw(st.sampled_from([1.0, 1.0, 0.5, 2.0])) * draw(st.sampled_from([1, -1]))
    affine = np.array([[0.0, width, 5e5], [height, 0.0, 4e6], [0, 0, 1]])
    return z, tuple(chunks), affine


@settings(max_examples=60, deadline=None)
@given(chunked_dems())
def test_chunked_terrain_equals_whole_array_horn(case):
    z, chunks, affine = case
    dem = Image(da.from_array(z[None], chunks=((1,), *chunks)), affine, None, {"nodata": -9999.0})
    result = seamline.terrain(dem, PRODUCTS)
    assert result.data.chunks[1:] == chunks
    out = result.data.compute()
    reference = whole_array_horn(np.where(z == -9999, np.nan, z), affine[0, 1], affine[1, 0])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(reference))
    valid = ~np.isnan(reference)
    np.testing.assert_allclose(out[0][valid[0]], reference[0][valid[0]], atol=1e-5, rtol=0)
    assert angle_difference(out[1][valid[1]], reference[1][valid[1]]).max(initial=0) < 1e-4
    np.testing.assert_allclose(out[2][valid[2]], reference[2][valid[2]], atol=1e-4, rtol=0)
    # and bit for bit the same as one chunk
    whole = seamline.terrain(dem.replace(data=dem.data.rechunk(-1)), PRODUCTS).data.compute()
    np.testing.assert_array_equal(out, whole)


@st.composite
def planes_on_grids(draw):
    """A tilted plane sampled on a grid of any orientation: rotated, flipped, sheared, rectangular."""
    angle = draw(st.floats(-math.pi, math.pi))
    sizes = np.diag([draw(st.floats(1, 50)), draw(st.floats(1, 50))])
    flip = np.diag([1.0, draw(st.sampled_from([1.0, -1.0]))])
    shear = np.array([[1.0, draw(st.floats(-0.5, 0.5))], [0.0, 1.0]])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    linear = rotation @ shear @ flip @ sizes
    affine = np.eye(3)
    affine[:2, :2], affine[:2, 2] = linear, [3e5, 5e6]
    gradient = np.array([draw(st.floats(-2, 2)), draw(st.floats(-2, 2))])
    return affine, gradient


@settings(max_examples=60, deadline=None)
@given(planes_on_grids())
def test_a_plane_has_its_slope_and_aspect_on_any_grid(case):
    affine, (a, b) = case
    rows, cols = np.mgrid[0:9, 0:11]
    x = affine[0, 0] * rows + affine[0, 1] * cols + affine[0, 2]
    y = affine[1, 0] * rows + affine[1, 1] * cols + affine[1, 2]
    z = a * (x - affine[0, 2]) + b * (y - affine[1, 2]) + 500
    out = seamline.terrain(Image(z[None], affine), PRODUCTS).data.compute()[:, 1:-1, 1:-1]
    np.testing.assert_allclose(out[0], math.degrees(math.atan(math.hypot(a, b))), atol=1e-4)
    if math.hypot(a, b) > 1e-3:
        assert angle_difference(out[1], math.degrees(math.atan2(-a, -b))).max() < 1e-2
    normal = np.array([-a, -b, 1]) / math.sqrt(1 + a * a + b * b)
    sun = np.array([math.sin(math.radians(315)), math.cos(math.radians(315)), 1]) * math.sqrt(0.5)
    np.testing.assert_allclose(out[2], 1 + max(254 * normal @ sun, 0), atol=1e-3)


def test_a_hole_makes_its_window_nodata():
    z = np.arange(49.0).reshape(7, 7) ** 1.5
    z[3, 3] = -1
    dem = Image(z[None], np.array([[0, 10.0, 0], [-10.0, 0, 0], [0, 0, 1]]), None, {"nodata": -1})
    slope = seamline.terrain(dem, "slope").data.compute()[0]
    expected = np.zeros((7, 7), bool)
    expected[2:5, 2:5] = expected[[0, -1], :] = expected[:, [0, -1]] = True
    np.testing.assert_array_equal(np.isnan(slope), expected)


def test_flat_ground_has_no_aspect():
    dem = Image(np.full((1, 5, 5), 100.0), np.array([[0, 30.0, 0], [-30.0, 0, 0], [0, 0, 1]]))
    out = seamline.terrain(dem, ["slope", "aspect"]).data.compute()[:, 1:-1, 1:-1]
    assert (out[0] == 0).all() and np.isnan(out[1]).all()


def test_the_result_is_an_image_on_the_dem_grid():
    crs = "EPSG:32718"
    affine = np.array([[0, 30.0, 627175], [-30.0, 0, 4852085], [0, 0, 1]])
    dem = Image(da.ones((1, 20, 30), chunks=(1, 8, 8)), affine, crs, {"nodata": -9999.0})
    result = seamline.terrain(dem, ["hillshade", "slope"])
    assert result.meta["band_names"] == ["hillshade", "slope"]
    assert math.isnan(result.meta["nodata"]) and result.dtype == np.float32
    assert result.crs == crs and np.array_equal(result.affine, affine) and result.data.chunks[1:] == dem.data.chunks[1:]


def test_degrees_need_a_scale():
    pyproj = pytest.importorskip("pyproj")
    affine = np.array([[0, 0.001, -73.0], [-0.001, 0, -46.0], [0, 0, 1]])
    dem = Image(np.random.default_rng(0).random((1, 6, 6)) * 100, affine, pyproj.CRS.from_epsg(4326))
    with pytest.raises(InputError, match="geographic"):
        seamline.terrain(dem)
    scaled = seamline.terrain(dem, "slope", scale=111120).data.compute()
    metres = dem.replace(affine=np.diag([111120, 111120, 1]) @ affine, crs=None)
    np.testing.assert_allclose(scaled, seamline.terrain(metres, "slope").data.compute(), rtol=1e-6)


@pytest.mark.parametrize(
    ("products", "message"), [(["slope", "curvature"], "unknown terrain product"), ([], "unknown terrain product")]
)
def test_unknown_products_are_refused(products, message):
    with pytest.raises(InputError, match=message):
        seamline.terrain(Image(np.ones((1, 4, 4))), products)


def test_a_dem_has_one_band():
    with pytest.raises(InputError, match="one band"):
        seamline.terrain(Image(np.ones((2, 4, 4))))
