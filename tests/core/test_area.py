"""Class areas over time: chunked equals whole-array counts, pixel areas equal pyproj's geodesic ones."""

from __future__ import annotations

import math

import dask.array as da
import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import seamline
from seamline import Image, InputError
from seamline.area import date_of, pixel_areas

pyproj = pytest.importorskip("pyproj")

UTM = pyproj.CRS.from_epsg(32645)
NORTH_UP = np.array([[0.0, 30.0, 470000.0], [-30.0, 0.0, 3110000.0], [0, 0, 1]])


def label_map(labels: np.ndarray, chunks=8, crs=UTM, affine=NORTH_UP, **meta) -> Image:
    return Image(da.from_array(labels[None], chunks=(1, chunks, chunks)), affine, crs, meta)


@settings(max_examples=15, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(6, 23), st.integers(6, 31), st.integers(0, 3))
def test_chunked_areas_equal_whole_array_counts(seed, chunk_rows, chunk_cols, nodata_share):
    rng = np.random.default_rng(seed)
    before, after = rng.integers(0, 4, (2, 23, 31)).astype(np.uint8)
    before[rng.random(before.shape) < nodata_share / 10] = 255
    maps = {}
    for day, labels in (("2001-02-03", before), ("2002-02-03", after)):
        image = Image(da.from_array(labels[None], chunks=(1, chunk_rows, chunk_cols)), NORTH_UP, UTM, {"nodata": 255})
        maps[day] = image
    table = seamline.areas(maps)
    for day, labels in (("2001-02-03", before), ("2002-02-03", after)):
        counts = np.bincount(labels[labels != 255].ravel(), minlength=4)
        rows = table[table["date"] == pd.Timestamp(day)]
        assert rows["class_id"].tolist() == [1, 2, 3]
        np.testing.assert_allclose(rows["area_km2"], counts[1:4] * 900 / 1e6, rtol=1e-12)
    first, second = (table[table["date"] == pd.Timestamp(d)]["area_km2"].to_numpy() for d in maps)
    np.testing.assert_allclose(table["change_km2"].iloc[3:], second - first, rtol=1e-12)
    assert table["change_km2"].iloc[:3].isna().all()


def geodesic_area(west: float, south: float, east: float, north: float, ellps: str = "WGS84") -> float:
    """pyproj's area of a lon/lat box whose north and south edges follow their parallels (densified)."""
    lons = np.r_[np.linspace(west, east, 200), np.linspace(east, west, 200)]
    lats = np.r_[np.full(200, south), np.full(200, north)]
    return abs(pyproj.Geod(ellps=ellps).polygon_area_perimeter(lons, lats)[0])


@settings(max_examples=40, deadline=None)
@given(st.floats(-90, 87), st.floats(-180, 179), st.floats(1e-3, 1.0), st.floats(1e-3, 1.0))
def test_pixel_areas_in_degrees_equal_pyproj_geod(south, west, width, height):
    north = south + 3 * height
    affine = np.array([[0.0, width, west], [-height, 0.0, north], [0, 0, 1]])
    rows = pixel_areas(Image(np.zeros((1, 3, 2), np.uint8), affine, pyproj.CRS.from_epsg(4326)))
    for row, area in enumerate(rows):
        top = north - row * height
        assert area == pytest.approx(geodesic_area(west, top - height, west + width, top), rel=1e-6)


def test_the_whole_globe_is_the_ellipsoid_area():
    affine = np.array([[0.0, 1.0, -180.0], [-1.0, 0.0, 90.0], [0, 0, 1]])
    rows = pixel_areas(Image(np.zeros((1, 180, 360), np.uint8), affine, pyproj.CRS.from_epsg(4326)))
    a, b = 6378137.0, pyproj.CRS.from_epsg(4326).ellipsoid.semi_minor_metre
    e = math.sqrt(1 - (b / a) ** 2)
    surface = 2 * math.pi * a * a * (1 + (1 - e * e) / e * math.atanh(e))  # the ellipsoid's surface, closed form
    assert rows.sum() * 360 == pytest.approx(surface, rel=1e-12)


def test_projected_areas_in_feet():
    feet = pyproj.CRS.from_epsg(2227)  # California zone 3, US survey feet
    affine = np.array([[0.0, 10.0, 6e6], [-10.0, 0.0, 2e6], [0, 0, 1]])
    rows = pixel_areas(Image(np.zeros((1, 2, 2), np.uint8), affine, feet))
    np.testing.assert_allclose(rows, (10 * 1200 / 3937) ** 2, rtol=1e-12)


def test_a_projection_that_does_not_keep_areas_is_refused():
    mercator = np.array([[0.0, 30.0, 0.0], [-30.0, 0.0, 8e6], [0, 0, 1]])  # 58 degrees north
    with pytest.raises(InputError, match="Pseudo-Mercator, which draws areas up to 259% off"):
        pixel_areas(Image(np.zeros((1, 4, 4), np.uint8), mercator, pyproj.CRS.from_epsg(3857)))
    equal_area = mercator.copy()
    equal_area[1, 2] = 6e6
    rows = pixel_areas(Image(np.zeros((1, 4, 4), np.uint8), equal_area, pyproj.CRS.from_epsg(6933)))
    np.testing.assert_allclose(rows, 900.0)


def test_classes_absent_at_a_date_have_area_zero_and_names_come_from_the_map():
    glacier = np.zeros((10, 10), np.uint8)
    glacier[2:8, 2:8] = 1
    names = {0: "background", 1: "glacier", 2: "lake"}
    table = seamline.areas(
        {"2000-01-01": label_map(glacier, class_names=names), "2010-01-01": label_map(glacier * 2)}, classes=[1, 2]
    )
    assert table["class"].tolist() == ["glacier", "lake", "glacier", "lake"]
    np.testing.assert_allclose(table["area_km2"], [36 * 900 / 1e6, 0, 0, 36 * 900 / 1e6])
    np.testing.assert_allclose(table["change_km2"].iloc[2:], [-36 * 900 / 1e6, 36 * 900 / 1e6])


@pytest.mark.parametrize(
    ("meta", "expected"),
    [
        ({"path": "glaciers_2021-08-30.tif"}, "2021-08-30"),
        ({"path": "/data/LC08_L2SP_140041_20200115_20200127_02_T1_labels.tif"}, "2020-01-15"),  # the first date
        ({"path": "x.tif", "datetime": "2012:03:18 14:42:28"}, "2012-03-18 14:42:28"),  # TIFF's own format
        ({"path": "2001-01-01.tif", "datetime": "2012-03-18T14:42:28Z"}, "2012-03-18 14:42:28"),  # STAC, UTC
        ({"path": "stack.tif", "date": "2019-07-04"}, "2019-07-04"),  # a STAC item's date
        ({"path": "map_2005-06-07.tif", "created": "2024:01:01 00:00:00"}, "2005-06-07"),  # the name before it
        ({"path": "map.tif", "created": "2024:01:01 00:00:00"}, "2024-01-01"),
    ],
)
def test_dates_from_metadata_and_names(meta, expected):
    assert date_of(label_map(np.zeros((2, 2), np.uint8), **meta)) == pd.Timestamp(expected)


def test_a_missing_or_repeated_date_names_the_file():
    with pytest.raises(InputError, match=r"LE71400412000304SGS00\.tif: has no date"):
        date_of(label_map(np.zeros((2, 2), np.uint8), path="LE71400412000304SGS00.tif"))
    with pytest.raises(InputError, match="not a date"):
        date_of(label_map(np.zeros((2, 2), np.uint8), path="a.tif", datetime="yesterday"))
    same = [label_map(np.zeros((2, 2), np.uint8), path=f"{name}_2020-01-01.tif") for name in "ab"]
    with pytest.raises(InputError, match=r"b_2020-01-01\.tif: has the same date"):
        seamline.areas(same)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"data": da.zeros((1, 9, 10), np.uint8)}, r"a_2000-01-01.tif shape \(10, 10\) differs from .* \(9, 10\)"),
        ({"affine": NORTH_UP + np.array([[0, 0, 15.0], [0, 0, 0], [0, 0, 0]])}, "lie on different grids"),
        ({"crs": pyproj.CRS.from_epsg(32646)}, "are in different CRSs"),
    ],
)
def test_maps_on_different_grids_are_refused(change, message):
    first = label_map(np.zeros((10, 10), np.uint8), path="a_2000-01-01.tif")
    second = first.replace(meta={"path": "b_2001-01-01.tif"}, **change)
    with pytest.raises(InputError, match=rf"b_2001-01-01\.tif: .*{message}"):
        seamline.areas([first, second])


def test_what_cannot_be_measured_is_refused():
    with pytest.raises(InputError, match="not integer labels"):
        seamline.areas({"2000-01-01": label_map(np.zeros((4, 4), np.float32))})
    with pytest.raises(InputError, match="has no CRS"):
        seamline.areas({"2000-01-01": label_map(np.zeros((4, 4), np.uint8), crs=None)})
    rotated = np.array([[0.1, 0.1, 10.0], [-0.1, 0.1, 50.0], [0, 0, 1]])
    with pytest.raises(InputError, match="rotated grid"):
        seamline.areas({"2000-01-01": label_map(np.zeros((4, 4), np.uint8), crs=pyproj.CRS(4326), affine=rotated)})
