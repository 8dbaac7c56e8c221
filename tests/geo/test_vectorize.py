"""seamline.vectorize against whole-image rasterio.features.shapes, over many chunkings."""

from __future__ import annotations

import sys
import warnings

import dask.array as da
import hypothesis.extra.numpy as hnp
import numpy as np
import pyproj
import pytest
import rasterio.features
import shapely
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.errors import NotGeoreferencedWarning

import seamline
from seamline_geo.grid import affine_from_transform


def reference(array: np.ndarray, connectivity: int = 4, transform: Affine | None = None) -> list:
    """Whole-image GDAL polygons as (class, geometry), made valid (8-connected rings touch themselves)."""
    kwargs = {} if transform is None else {"transform": transform}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        shapes = rasterio.features.shapes(array, mask=array != 0, connectivity=connectivity, **kwargs)
        pairs = [(int(v), shapely.geometry.shape(g)) for g, v in shapes]
    return [(v, g if g.is_valid else shapely.make_valid(g, method="structure")) for v, g in pairs]


def assert_same_polygons(frame, expected: list) -> None:
    """Same number of polygons, and each output polygon equals (topologically) the one of its class at its place."""
    assert len(frame) == len(expected)
    geoms = np.array([g for _, g in expected], dtype=object)
    classes = np.array([c for c, _ in expected])
    tree = shapely.STRtree(geoms)
    matched = set()
    for cls, geom in zip(frame["class_id"], frame.geometry.values, strict=True):
        hits = [i for i in tree.query(shapely.point_on_surface(geom), predicate="intersects") if classes[i] == cls]
        equal = [i for i in hits if shapely.equals(geoms[i], geom)]
        assert len(equal) == 1, f"class {cls}: {geom.wkt[:200]} has no equal reference polygon"
        matched.add(equal[0])
    assert len(matched) == len(expected)


def assert_exact_4(frame, array: np.ndarray) -> None:
    """With connectivity 4 even the vertices are GDAL's: normalized polygons are identical."""
    expected = {(c, shapely.normalize(g).wkb) for c, g in reference(array)}
    got = {(int(c), shapely.normalize(g).wkb) for c, g in zip(frame["class_id"], frame.geometry.values, strict=True)}
    assert got == expected


@pytest.mark.slow
@settings(max_examples=40, deadline=None)
@given(
    array=hnp.arrays(
        np.uint8, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=30), elements=st.integers(0, 3)
    ),
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    connectivity=st.sampled_from([4, 8]),
)
def test_any_chunking_gives_the_whole_image_polygons(array, rows, cols, connectivity):
    frame = seamline.vectorize(da.from_array(array, chunks=(rows, cols)), connectivity=connectivity)
    assert_same_polygons(frame, reference(array, connectivity))
    if connectivity == 4:
        assert_exact_4(frame, array)


def donuts(size: int = 96) -> np.ndarray:
    """Nested rings of classes 1 and 2 around a central hole, each crossing many chunks."""
    yy, xx = np.mgrid[:size, :size]
    radius = np.hypot(yy - size / 2, xx - size / 2)
    array = np.where(radius < 44, 1, 0) + np.where((radius > 20) & (radius < 30), 1, 0)
    array[np.abs(radius - 10) < 3] = 0
    return array.astype(np.uint8)


@pytest.mark.parametrize("chunks", [5, 7, 16, (96, 3), (3, 96), 96])
def test_components_across_many_chunks_keep_their_holes(chunks):
    array = donuts()
    frame = seamline.vectorize(da.from_array(array, chunks=chunks))
    assert_exact_4(frame, array)
    assert sum(len(g.interiors) for g in frame.geometry) >= 2


@pytest.mark.parametrize("connectivity", [4, 8])
def test_pixels_touching_only_at_corners(connectivity):
    array = (np.indices((12, 12)).sum(axis=0) % 2).astype(np.uint8)
    frame = seamline.vectorize(da.from_array(array, chunks=5), connectivity=connectivity)
    assert_same_polygons(frame, reference(array, connectivity))
    assert len(frame) == (72 if connectivity == 4 else 1)
    assert frame.geometry.is_valid.all()


def test_world_coordinates_match_rasterio_with_a_transform():
    transform = Affine(30.0, 0.0, 478000.0, 0.0, -30.0, 3108140.0)
    array = np.random.default_rng(1).integers(0, 3, (50, 40)).astype(np.uint8)
    image = seamline.Image(
        da.from_array(array[None], chunks=(1, 13, 11)), affine_from_transform(transform), pyproj.CRS(32645)
    )
    frame = seamline.vectorize(image)
    assert frame.crs == pyproj.CRS(32645)
    expected = {(c, shapely.normalize(g).wkb) for c, g in reference(array, transform=transform)}
    assert {(int(c), shapely.normalize(g).wkb) for c, g in zip(frame.class_id, frame.geometry, strict=True)} == expected
    np.testing.assert_allclose(frame.area.sum(), np.count_nonzero(array) * 900.0)


def test_columns_class_names_nodata_instances_and_filters():
    array = np.zeros((20, 20), np.uint8)
    array[2:6, 2:6] = 1
    array[10:12, 10:17] = 2
    array[15:17, 1:3] = 1
    array[0, 19] = 9  # nodata
    image = seamline.Image(array[None], meta={"class_names": {1: "field", 2: "road"}, "nodata": 9})
    frame = seamline.vectorize(image, instances=True)
    assert list(frame.columns) == ["class_id", "class_name", "area", "perimeter", "instance_id", "geometry"]
    assert frame.class_name.tolist() == ["field", "field", "road"]
    assert frame.instance_id.tolist() == [1, 2, 3]
    assert sorted(frame.area) == [4.0, 14.0, 16.0]
    assert frame.perimeter.tolist() == list(frame.geometry.length)
    assert seamline.vectorize(image, min_area=5).area.tolist() == [16.0, 14.0]
    assert seamline.vectorize(image, simplify=1.0).geometry.is_valid.all()


def test_geographic_crs_adds_square_metres():
    array = np.ones((1, 4, 4), np.uint8)
    affine = affine_from_transform(Affine(0.001, 0, 86.9, 0, -0.001, 28.0))
    frame = seamline.vectorize(seamline.Image(array, affine, pyproj.CRS(4326)))
    assert "area_m2" in frame.columns
    # A 0.004 deg square at 28 N: about 444 m x 393 m.
    assert frame.area_m2.iloc[0] == pytest.approx(444.8 * 393.4, rel=0.01)


def test_bad_input():
    with pytest.raises(seamline.InputError, match="integer"):
        seamline.vectorize(np.zeros((4, 4), np.float32))
    with pytest.raises(seamline.InputError, match="connectivity"):
        seamline.vectorize(np.zeros((4, 4), np.uint8), connectivity=6)


def test_without_the_geo_plugin_vectorize_says_what_is_missing(monkeypatch, fresh_plugins):
    monkeypatch.setenv(fresh_plugins.ENV_VAR, "core")
    with pytest.raises(seamline.PluginError, match="geo plugin"):
        seamline.vectorize(np.ones((4, 4), np.uint8))


@pytest.mark.parametrize("suffix", [".gpkg", ".parquet", ".fgb"])
def test_polygons_streamed_to_a_file_are_the_whole_image_polygons(tmp_path, suffix, monkeypatch):
    import geopandas as gpd

    from seamline_geo.polygons import write_polygon_batches

    monkeypatch.setattr(sys.modules["seamline.vectorize"], "workers", lambda: 1)  # groups of 4 chunks
    transform = Affine(30.0, 0.0, 478000.0, 0.0, -30.0, 3108140.0)
    array = donuts()
    array[::7, ::5] = 3  # small components inside chunks too
    image = seamline.Image(
        da.from_array(array[None], chunks=(1, 16, 16)), affine_from_transform(transform), "EPSG:32645"
    )
    tables = list(seamline.vectorize_batches(image, instances=True))
    assert len(tables) > 2  # groups of chunks, then the components merged across chunk borders
    path = tmp_path / f"polygons{suffix}"
    count, classes = write_polygon_batches(iter(tables), path)
    written = gpd.read_file(path) if suffix != ".parquet" else gpd.read_parquet(path)
    whole = seamline.vectorize(image)
    assert count == len(written) == len(whole) and classes == whole.class_id.nunique()
    assert pyproj.CRS(written.crs) == pyproj.CRS(32645)
    assert sorted(written.instance_id) == list(range(1, count + 1))
    expected = {(c, shapely.normalize(g).wkb) for c, g in reference(array, transform=transform)}
    got = {(int(c), shapely.normalize(g).wkb) for c, g in zip(written.class_id, written.geometry, strict=True)}
    assert got == expected
    assert list(written.columns) == [*whole.columns[:-1], "instance_id", "geometry"]


def test_a_failed_stream_leaves_no_file(tmp_path):
    from seamline_geo.polygons import write_polygon_batches

    def failing():
        yield from seamline.vectorize_batches(donuts())
        raise RuntimeError("the input went away")

    with pytest.raises(RuntimeError):
        write_polygon_batches(failing(), tmp_path / "p.gpkg")
    assert list(tmp_path.iterdir()) == []
