"""Rasters onto another grid, chunk by chunk: the same pixels as GDAL's warp of the whole raster.

The reference is GDAL's warper run once over the whole raster (a ``WarpedVRT`` read in one
go) with the settings seamline uses in every chunk: the exact transformer and the grid's
kernel scale. Same-CRS resampling is also checked against plain ``rasterio.warp.reproject``.
"""

from __future__ import annotations

import functools

import dask
import numpy as np
import pyproj
import pytest
import rasterio
from rasterio.vrt import WarpedVRT
from rasterio.warp import Resampling, calculate_default_transform, reproject

import seamline
from seamline.errors import InputError
from seamline.stack import grid
from seamline_geo import reader
from seamline_geo.footprint import RESAMPLINGS, Grid, Source, plan
from seamline_geo.grid import transform_from_affine
from seamline_geo.warp import EXACT, warp_image
from tests.conftest import data_file
from tests.geo.test_raster_io import write_raster

EVEREST = ("geoutils_everest_glaciers", "LE71400412000304SGS00_B4.tif")
EVEREST_RGB = ("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif")
DEM = ("geoutils_exploradores_dem", "AST_L1A_00303182012144228_Z.tif")


def target(path, crs, resolution=None, chunks=100):
    """The grid GDAL suggests for *path* in *crs* (at *resolution*), as a template Image."""
    with rasterio.open(path) as ds:
        t, width, height = calculate_default_transform(
            ds.crs, crs, ds.width, ds.height, *ds.bounds, resolution=resolution
        )
    bounds = (t.c, t.f + height * t.e, t.c + width * t.a, t.f)
    return grid(crs=pyproj.CRS(crs), resolution=(t.a, -t.e), bounds=bounds, chunks=chunks)


def whole_warp(path, like, resampling, *, alpha=False):
    """GDAL's warp of the whole raster onto *like*'s grid, with the settings seamline uses per chunk."""
    with rasterio.open(path) as ds:
        source = Source(
            ds.transform, pyproj.CRS(ds.crs.to_wkt()), ds.shape, ds.count, np.dtype(ds.dtypes[0]), ds.nodata
        )
        _, scale = plan(source, Grid.of(like), resampling)
        height, width = like.spatial_shape
        options = {"add_alpha": True} if alpha else {}
        with WarpedVRT(
            ds,
            crs=like.crs.to_wkt(),
            transform=transform_from_affine(like.affine),
            width=width,
            height=height,
            resampling=RESAMPLINGS[resampling][0],
            tolerance=EXACT,
            XSCALE=scale[0],
            YSCALE=scale[1],
            **options,
        ) as vrt:
            return vrt.read(), scale


def assert_same_pixels(got, expected, nodata, resampling):
    if resampling == "nearest":
        np.testing.assert_array_equal(got, expected)
        return
    valid = np.ones(expected.shape, bool) if nodata is None else expected != nodata
    if nodata is not None:
        np.testing.assert_array_equal(got != nodata, valid)
    # the same warp on a window: only the order of float operations differs (a float32 ulp)
    np.testing.assert_allclose(got[valid], expected[valid], rtol=1e-6, atol=0)


CASES = {
    "everest B4, UTM 45N to WGS 84": (EVEREST, "EPSG:4326", None),
    "everest RGB, UTM 45N to UTM 44N at 45 m": (EVEREST_RGB, "EPSG:32644", 45),
    "exploradores DEM, UTM 18S to WGS 84": (DEM, "EPSG:4326", None),
    "exploradores DEM, to 60 m on its own grid lines": (DEM, "EPSG:32718", 60),
    "exploradores DEM, to 20 m": (DEM, "EPSG:32718", 20),
}


def check_case(case, resampling, chunks, window=(slice(None), slice(None))):
    parts, crs, resolution = CASES[case]
    path = data_file(*parts)
    like = target(path, crs, resolution, chunks).window(*window)
    warped = seamline.open(path, like=like, resampling=resampling)
    expected, _ = whole_warp(path, like, resampling)
    assert warped.spatial_shape == like.spatial_shape and warped.data.chunks[1:] == like.data.chunks[1:]
    np.testing.assert_array_equal(warped.affine, like.affine)
    assert warped.crs == pyproj.CRS(crs)
    assert_same_pixels(warped.data.compute(), expected, warped.meta["nodata"], resampling)
    return warped


@pytest.mark.parametrize("resampling", ["nearest", "bilinear"])
def test_chunks_equal_a_whole_warp_of_the_dem(resampling):
    warped = check_case("exploradores DEM, UTM 18S to WGS 84", resampling, 100, (slice(150, 450), slice(0, 300)))
    assert warped.meta["nodata"] == -9999 and "mask" not in warped.meta
    assert (warped.data == -9999).sum().compute() > 4000  # the DEM's holes and the corner outside it


def test_chunks_equal_a_whole_warp_where_the_grid_reaches_beyond_the_raster():
    path = data_file(*EVEREST)
    like = target(path, "EPSG:4326", chunks=(64, 90)).window(slice(400, 608), slice(0, 300))
    warped = seamline.open(path, like=like)
    expected, _ = whole_warp(path, like, "nearest", alpha=True)
    np.testing.assert_array_equal(warped.data.compute()[0], expected[0])
    # no nodata in the file: where the warp wrote nothing, the mask says so
    assert warped.meta["nodata"] is None
    np.testing.assert_array_equal(warped.meta["mask"].compute()[0], expected[1] > 0)
    assert 0 < (expected[1] == 0).sum() < expected[1].size / 2
    np.testing.assert_array_equal(warped.valid_mask().compute(), expected[1] > 0)


@pytest.mark.slow
@pytest.mark.parametrize("resampling", ["nearest", "bilinear", "cubic", "average"])
@pytest.mark.parametrize("case", list(CASES))
def test_chunks_equal_a_whole_warp(case, resampling):
    # the top-left part of each grid, so that chunks run off the raster's edges too
    chunks = 64 if resampling in ("nearest", "cubic") else (100, 37)
    check_case(case, resampling, chunks, (slice(0, 320), slice(0, 400)))


def test_the_kernel_scale_is_the_ratio_of_pixel_sizes():
    path = data_file(*DEM)
    with rasterio.open(path) as ds:
        source = Source(ds.transform, pyproj.CRS(ds.crs.to_wkt()), ds.shape, 1, np.dtype("float32"), -9999.0)
    for resolution, expected in ((60, 0.5), (20, 1.5), (45, 30 / 45)):
        _, scale = plan(source, Grid.of(target(path, "EPSG:32718", resolution)), "bilinear")
        assert scale == pytest.approx((expected, expected), rel=1e-9)


@pytest.mark.parametrize("resolution", [60, 20])
@pytest.mark.parametrize("resampling", ["nearest", "average"])
def test_same_crs_resampling_equals_plain_reproject(resolution, resampling):
    path = data_file(*DEM)
    like = target(path, "EPSG:32718", resolution, chunks=77)
    with rasterio.open(path) as ds:
        expected = np.full((1, *like.spatial_shape), -9999, np.float32)
        reproject(
            ds.read(),
            expected,
            src_transform=ds.transform,
            src_crs=ds.crs,
            src_nodata=-9999,
            dst_transform=transform_from_affine(like.affine),
            dst_crs=ds.crs,
            dst_nodata=-9999,
            resampling=Resampling[resampling],
        )
    got = seamline.open(path, like=like, resampling=resampling).data.compute()
    assert_same_pixels(got, expected, -9999, resampling if resolution == 60 else "average")


def test_across_crss_plain_reproject_differs_only_by_its_approximation():
    """rasterio's reproject approximates the transformation to 0.125 pixel; seamline's warp does not."""
    path = data_file(*DEM)
    like = target(path, "EPSG:4326", chunks=128)
    with rasterio.open(path) as ds:
        approximate = np.full((1, *like.spatial_shape), -9999, np.float32)
        reproject(
            ds.read(),
            approximate,
            src_transform=ds.transform,
            src_crs=ds.crs,
            src_nodata=-9999,
            dst_transform=transform_from_affine(like.affine),
            dst_crs=like.crs,
            dst_nodata=-9999,
        )
    got = seamline.open(path, like=like).data.compute()
    differ = (got != approximate).mean()
    assert 0 < differ < 0.05, differ


def read_log(monkeypatch):
    """Record every source window the warp reads (the reader's window function, wrapped)."""
    windows = []

    @functools.wraps(reader.read_source)
    def recording(path, indexes, scales, nodata, masked, window):
        windows.append(window)
        return original(path, indexes, scales, nodata, masked, window)

    original = reader.read_source
    monkeypatch.setattr(reader, "read_source", recording)
    return windows


def test_each_chunk_reads_only_the_window_under_it(monkeypatch):
    path = data_file(*DEM)
    like = target(path, "EPSG:4326", chunks=64)
    windows = read_log(monkeypatch)
    warped = seamline.open(path, like=like, resampling="cubic")
    with dask.config.set(scheduler="sync"):
        part = warped.window(slice(192, 256), slice(320, 384)).data.compute()  # one chunk
        assert len(windows) == 1
        *_, height, width = windows[0]
        # the chunk's footprint in the DEM, plus the cubic kernel's margin: far less than the DEM
        assert height * width < 0.05 * 539 * 618, windows[0]
        whole = warped.data.compute()
    np.testing.assert_array_equal(part, whole[:, 192:256, 320:384])
    chunks = len(like.data.chunks[1]) * len(like.data.chunks[2])
    read = sum(h * w for _, _, h, w in windows[1:])
    assert len(windows) - 1 <= chunks  # chunks outside the DEM read nothing
    assert read < 1.6 * 539 * 618, read / (539 * 618)  # each DEM pixel read about once, margins aside


def test_an_image_is_warped_through_its_chunks_like_the_file():
    path = data_file(*DEM)
    like = target(path, "EPSG:4326", chunks=90).window(slice(100, 400), slice(200, 500))
    image = seamline.open(path, chunks=(70, 200))

    for resampling in ("nearest", "bilinear"):
        expected = seamline.open(path, like=like, resampling=resampling).data.compute()
        np.testing.assert_array_equal(warp_image(image, like, resampling).data.compute(), expected)


def test_a_masked_source_keeps_its_mask(tmp_path):
    data = np.arange(1, 64 * 64 + 1, dtype=np.uint16).reshape(1, 64, 64)
    path = write_raster(tmp_path / "masked.tif", data)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "r+") as ds:
        mask = np.full((64, 64), 255, np.uint8)
        mask[:, :20] = 0
        ds.write_mask(mask)
    scene = seamline.open(path)
    like = grid(crs=scene.crs, resolution=15, bounds=(478000 + 300, 3108140 - 1500, 478000 + 1500, 3108140), chunks=32)
    warped = seamline.open(path, like=like, resampling="bilinear")
    valid = warped.meta["mask"].compute()[0]
    # source columns 0-19 are masked: at 15 m, those under output columns up to (20 * 30 - 300) / 15 = 20
    assert not valid[:, :19].any() and valid[:, 21:].all()
    assert (warped.data.compute()[0][:, 21:] > 0).all()


def test_warping_needs_crss_and_a_known_resampling(tmp_path):
    path = write_raster(tmp_path / "nocrs.tif", np.ones((1, 8, 8), np.uint8), crs=None)
    like = grid(crs="EPSG:32645", resolution=30, bounds=(478000, 3107900, 478240, 3108140))
    with pytest.raises(InputError, match="no CRS"):
        seamline.open(path, like=like)
    with pytest.raises(InputError, match="unknown resampling"):
        seamline.open(data_file(*DEM), like=like, resampling="lanczos")


def test_a_raster_on_the_grid_is_read_as_it_is():
    path = data_file(*DEM)
    scene = seamline.open(path)
    like = scene.replace(data=scene.data.rechunk((1, 64, 100)))
    again = seamline.open(path, like=like, resampling="cubic")
    assert again.data.chunks == like.data.chunks
    assert all(key[0].startswith("read-") for key in dict(again.data.dask))
    np.testing.assert_array_equal(again.data.compute(), scene.data.compute())


@pytest.mark.slow
def test_warped_chunks_run_on_dask_distributed():
    distributed = pytest.importorskip("distributed")
    path = data_file(*DEM)
    like = target(path, "EPSG:4326", chunks=100).window(slice(100, 400), slice(100, 400))
    from_file = seamline.open(path, like=like, resampling="bilinear")
    from_chunks = seamline.stack([seamline.open(path, chunks=128)], like=like, resampling="bilinear")
    expected = from_file.data.compute(scheduler="threads")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster),
    ):
        np.testing.assert_array_equal(from_file.data.compute(), expected)
        np.testing.assert_array_equal(from_chunks.data.compute(), expected)
