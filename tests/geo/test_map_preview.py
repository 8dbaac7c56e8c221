"""Map previews against pyproj, geopandas and rasterio: coordinates, scale, outlines, overviews."""

from __future__ import annotations

import math

import geopandas as gpd
import matplotlib
import numpy as np
import pyproj
import pytest
import rasterio
from matplotlib.collections import LineCollection
from mpl_toolkits.axes_grid1.anchored_artists import AnchoredSizeBar
from rasterio.enums import Resampling
from rasterio.transform import from_origin

import seamline
from seamline.map_preview import decimated, metres_per_unit, scale_bar_length
from seamline.show import show
from seamline_geo.demo import OUTLINES, SCENE
from seamline_geo.overviews import file_window

matplotlib.use("Agg")


@pytest.mark.parametrize(("lon", "lat"), [(87.0, 28.0), (89.5, 28.0), (84.5, 10.0)])
def test_ground_metres_of_utm_follow_the_projections_scale(lon, lat):
    crs = pyproj.CRS.from_epsg(32645)
    x, y = pyproj.Transformer.from_crs(4326, crs, always_xy=True).transform(lon, lat)
    factors = pyproj.Proj(crs).get_factors(lon, lat)  # PROJ's scale of the (ellipsoidal) transverse Mercator
    assert metres_per_unit(crs, x, y, 10.0) == pytest.approx(1 / factors.parallel_scale, rel=1e-6)


def _parallel_radius(lat: float) -> float:
    """The radius of the parallel at *lat* on the WGS 84 ellipsoid: metres of it per radian of longitude."""
    ellipsoid = pyproj.CRS.from_epsg(4326).ellipsoid
    a, f = ellipsoid.semi_major_metre, 1 / ellipsoid.inverse_flattening
    e2, phi = f * (2 - f), math.radians(lat)
    return a * math.cos(phi) / math.sqrt(1 - e2 * math.sin(phi) ** 2)


@pytest.mark.parametrize("lat", [60.0, -45.0, 0.0])
def test_ground_metres_of_web_mercator_shrink_with_latitude(lat):
    crs = pyproj.CRS.from_epsg(3857)  # x = a * longitude, whatever the latitude
    x, y = pyproj.Transformer.from_crs(4326, crs, always_xy=True).transform(10.0, lat)
    expected = _parallel_radius(lat) / crs.ellipsoid.semi_major_metre
    assert metres_per_unit(crs, x, y, 10.0) == pytest.approx(expected, rel=1e-6)


def test_ground_metres_of_a_degree_of_longitude():
    parallel = math.pi / 180 * _parallel_radius(45.0)  # the arc of one degree along the parallel
    assert metres_per_unit(pyproj.CRS.from_epsg(4326), 5.0, 45.0, 0.01) == pytest.approx(parallel, rel=1e-7)


def test_the_demo_map_is_placed_scaled_and_labelled():
    scene = seamline.open(SCENE)
    ax = show(scene)
    with rasterio.open(SCENE) as dataset:
        bounds = dataset.bounds
    assert ax.get_xlim() == pytest.approx((bounds.left, bounds.right))
    assert ax.get_ylim() == pytest.approx((bounds.bottom, bounds.top))
    assert "UTM zone 45N" in ax.get_xlabel() and "(m" in ax.get_ylabel()
    (bar,) = [a for a in ax.artists if isinstance(a, AnchoredSizeBar)]
    label = bar.txt_label.get_text()
    length = bar.size_bar.get_children()[0].get_width()  # in map units (UTM metres)
    centre = ((bounds.left + bounds.right) / 2, (bounds.bottom + bounds.top) / 2)
    ground = length * metres_per_unit(scene.crs, *centre, bounds.right - bounds.left)
    assert scale_bar_length(ground * 1.000001) == (pytest.approx(ground, rel=1e-6), label)
    assert label == "2 km"  # a quarter of the 11.5 km wide crop, rounded down


def test_longitude_and_latitude_ticks():
    scene = seamline.open(SCENE)
    ax = show(scene, lonlat=True)
    with rasterio.open(SCENE) as dataset:
        bounds = dataset.bounds
    to_lonlat = pyproj.Transformer.from_crs(scene.crs, 4326, always_xy=True)
    x = ax.get_xticks()[2]
    lon, _ = to_lonlat.transform(x, bounds.bottom)
    assert ax.xaxis.get_major_formatter()(x, 0) == f"{lon:.2f}°E"
    y = ax.get_yticks()[2]
    _, lat = to_lonlat.transform(bounds.left, y)
    assert ax.yaxis.get_major_formatter()(y, 0) == f"{lat:.2f}°N"


def test_outlines_from_a_geodataframe_are_reprojected_onto_the_map():
    scene = seamline.open(SCENE)
    outlines = gpd.read_file(OUTLINES).to_crs(4326)  # longitude and latitude
    ax = show(scene, truth=outlines, truth_label="RGI 6.0")
    (collection,) = [c for c in ax.collections if isinstance(c, LineCollection)]
    expected = outlines.to_crs(scene.crs).boundary.explode(index_parts=False)  # geopandas' reprojection
    drawn = collection.get_segments()
    assert len(drawn) == len(expected)
    np.testing.assert_allclose(drawn[0], np.asarray(expected.iloc[0].coords)[:, :2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["RGI 6.0"]


def test_outlines_from_a_vector_file_are_rasterized_on_the_pictures_grid():
    scene = seamline.open(SCENE)
    ax = show(scene, truth=OUTLINES, max_size=128)
    contours = [c for c in ax.collections if not isinstance(c, LineCollection) or c.get_paths()]
    vertices = np.concatenate([p.vertices for c in contours for p in c.get_paths()])
    with rasterio.open(SCENE) as dataset:
        bounds = dataset.bounds
    assert len(vertices) > 100
    assert bounds.left <= vertices[:, 0].min() and vertices[:, 0].max() <= bounds.right
    assert bounds.bottom <= vertices[:, 1].min() and vertices[:, 1].max() <= bounds.top


@pytest.fixture
def raster_with_overviews(tmp_path):
    """A 1024 x 1024 checkerboard of 0 and 200 with averaged overviews (every overview pixel is 100)."""
    path = tmp_path / "checkers.tif"
    rows, cols = np.indices((1024, 1024))
    board = (((rows + cols) % 2) * 200).astype(np.uint8)
    profile = {"driver": "GTiff", "height": 1024, "width": 1024, "count": 1, "dtype": "uint8", "crs": "EPSG:32645"}
    profile.update(transform=from_origin(500000, 3100000, 10, 10), tiled=True, blockxsize=256, blockysize=256)
    with rasterio.open(path, "w", **profile) as dataset:
        dataset.write(board, 1)
        dataset.build_overviews([2, 4, 8], Resampling.average)
    return path


def test_large_rasters_are_drawn_from_their_overviews(raster_with_overviews, monkeypatch):
    from seamline_geo import reader

    reads = []
    original = reader._read_window
    monkeypatch.setattr(reader, "_read_window", lambda *args: reads.append(args[-1]) or original(*args))
    scene = seamline.open(raster_with_overviews, chunks=256)
    pixels = decimated(scene, 8)
    with rasterio.open(raster_with_overviews, overview_level=2) as overview:  # the 1/8 overview
        np.testing.assert_array_equal(pixels, overview.read())
    assert set(np.unique(pixels)) == {100} and reads == []  # not one block of the full resolution read

    window = scene.window(slice(256, 768), slice(0, 512))
    np.testing.assert_array_equal(decimated(window, 8), pixels[:, 32:96, :64])

    computed = scene.replace(data=scene.data + 0)  # no longer the file's pixels: strided, chunk by chunk
    strided = decimated(computed, 8)
    assert len(reads) == 16  # each of the 16 chunks read once
    np.testing.assert_array_equal(strided, scene.data[:, ::8, ::8].compute())
    assert set(np.unique(strided).tolist()) == {0}


def test_overview_reads_follow_the_bands_and_window_asked_for(tmp_path):
    path = tmp_path / "bands.tif"
    bands = np.stack([np.full((512, 512), value, np.uint8) for value in (10, 20, 30)])
    bands[:, :, 256:] += 100  # the east half is brighter, so a window shows in the values
    profile = {"driver": "GTiff", "height": 512, "width": 512, "count": 3, "dtype": "uint8", "crs": "EPSG:32645"}
    with rasterio.open(path, "w", transform=from_origin(500000, 3100000, 10, 10), **profile) as dataset:
        dataset.write(bands)  # no band descriptions: the Image's bands are unnamed
        dataset.build_overviews([2, 4], Resampling.nearest)
    scene = seamline.open(path, bands=[3, 1])
    assert scene.meta["band_names"] is None
    picked = scene[1:].window(slice(0, 512, 2), slice(256, 512))  # band 1, the east half, every other row
    assert file_window(picked) == (str(path), [1], (0, 256), (2, 1))
    assert file_window(picked.replace(data=picked.data[::-1])) == (str(path), [1], (0, 256), (2, 1))
    assert file_window(scene.replace(data=scene.data[::-1])) == (str(path), [1, 3], (0, 0), (1, 1))  # reversed bands
    pixels = decimated(picked, 4)
    assert pixels.shape == picked.data[:, ::4, ::4].shape
    assert set(np.unique(pixels).tolist()) == {110}
