"""Stacks of rasters on one grid, from Python and from the command line (``stack``, ``predict``)."""

from __future__ import annotations

import numpy as np
import pyproj
import pytest
import rasterio
from affine import Affine
from click.testing import CliRunner
from rasterio.warp import calculate_default_transform, reproject
from rio_cogeo.cogeo import cog_validate

import seamline
from seamline.cli import get_cli
from seamline.errors import InputError
from seamline.stack import grid
from seamline_geo.demo import BUNDLE
from seamline_geo.grid import affine_from_transform
from seamline_geo.warp import warp_image
from tests.conftest import data_file
from tests.geo.test_raster_io import write_raster

RGB = ("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif")
NIR = ("geoutils_everest_glaciers", "LE71400412000304SGS00_B4.tif")


def in_wgs84(path, out):
    """The raster reprojected to WGS 84 by rasterio, whole: a second source on another grid."""
    with rasterio.open(path) as ds:
        t, width, height = calculate_default_transform(ds.crs, "EPSG:4326", ds.width, ds.height, *ds.bounds)
        data = np.zeros((ds.count, height, width), ds.dtypes[0])
        reproject(ds.read(), data, src_transform=ds.transform, src_crs=ds.crs, dst_transform=t, dst_crs="EPSG:4326")
    return write_raster(out, data, crs="EPSG:4326", transform=t, nodata=0)


def crop(parts, out, rows=slice(150, 406), cols=slice(416, 672), names=None):
    """A window of a real raster, written as its own file (band descriptions from *names*)."""
    with rasterio.open(data_file(*parts)) as ds:
        window = rasterio.windows.Window.from_slices(rows, cols)
        data, transform = ds.read(window=window), ds.window_transform(window)
    return write_raster(out, data, transform=transform, descriptions=names)


def test_files_on_one_grid_are_stacked_as_they_are():
    rgb, nir = data_file(*RGB), data_file(*NIR)
    stacked = seamline.stack([rgb, nir])
    assert stacked.meta["band_names"] is None  # neither file names its bands: nor does the stack
    assert not any(str(key[0]).startswith("warp") for key in dict(stacked.data.dask) if isinstance(key, tuple))
    expected = np.concatenate([rasterio.open(rgb).read(), rasterio.open(nir).read()])
    np.testing.assert_array_equal(stacked.data.compute(), expected)
    np.testing.assert_array_equal(stacked.affine, seamline.open(rgb).affine)
    assert stacked.crs == pyproj.CRS(32645) and "mask" not in stacked.meta and stacked.meta["nodata"] is None


def test_a_file_on_another_grid_is_warped_onto_the_first(tmp_path):
    rgb = data_file(*RGB)
    other = in_wgs84(data_file(*NIR), tmp_path / "nir_wgs84.tif")
    stacked = seamline.stack([rgb, other], names=["red", "green", "blue", "nir"], resampling="bilinear")
    scene = seamline.open(rgb)
    expected = seamline.open(other, like=scene, resampling="bilinear")
    np.testing.assert_array_equal(stacked[3].data.compute(), expected.data.compute())
    # the reprojected file has nodata 0 at its corners: there the stack has no data
    np.testing.assert_array_equal(stacked.meta["mask"].compute(), expected.valid_mask().compute()[None])
    assert stacked.meta["band_names"] == ["red", "green", "blue", "nir"]
    # an Image on another grid is warped by the geo plugin's hook, through its chunks, to the same pixels
    again = seamline.stack([scene, seamline.open(other)], names=["red", "green", "blue", "nir"], resampling="bilinear")
    np.testing.assert_array_equal(again.data.compute(), stacked.data.compute())


def test_a_given_grid():
    rgb, nir = data_file(*RGB), data_file(*NIR)
    bounds = (480000, 3090000, 495000, 3105000)
    stacked = seamline.stack([rgb, nir], resolution=60, bounds=bounds, resampling="average", chunks=128)
    assert stacked.spatial_shape == (250, 250) and stacked.data.chunks[1:] == ((128, 122), (128, 122))
    like = grid(crs=pyproj.CRS(32645), resolution=60, bounds=bounds)
    expected = seamline.open(nir, like=like, resampling="average")
    np.testing.assert_array_equal(stacked[3].data.compute(), expected.data.compute())
    with pytest.raises(InputError, match="needs resolution= and bounds="):
        seamline.stack([rgb], crs="EPSG:4326")


def test_validity_is_the_intersection_and_round_trips_through_a_cog(tmp_path):
    a = np.full((1, 64, 64), 7, np.uint8)
    a[0, :10] = 0
    b = np.full((2, 64, 64), 300, np.uint16)
    b[:, :, :5] = 65535
    first = write_raster(tmp_path / "a.tif", a, nodata=0)
    second = write_raster(tmp_path / "b.tif", b, nodata=65535, descriptions=["x", "y"])
    stacked = seamline.stack([first, second])
    assert stacked.dtype == np.uint16 and stacked.meta["nodata"] is None
    valid = np.ones((64, 64), bool)
    valid[:10] = valid[:, :5] = False
    np.testing.assert_array_equal(stacked.valid_mask().compute(), valid)
    seamline.save(stacked, tmp_path / "stack.tif", blocksize=16)
    assert cog_validate(str(tmp_path / "stack.tif"))[0]
    back = seamline.open(tmp_path / "stack.tif")
    np.testing.assert_array_equal(back.valid_mask().compute(), valid)
    assert back.meta["band_names"] == ["a", "x", "y"]


def test_what_cannot_be_stacked_is_an_input_error(tmp_path):
    rgb = data_file(*RGB)
    with pytest.raises(InputError, match="3 names for 4 bands"):
        seamline.stack([rgb, data_file(*NIR)], names=["a", "b", "c"])
    with pytest.raises(InputError, match="more than once"):
        seamline.stack([rgb, data_file(*NIR)], names=["a", "b", "c", "a"])
    loose = seamline.Image(np.zeros((1, 10, 10), np.uint8))
    with pytest.raises(InputError, match="no plugin can warp it"):
        seamline.stack([rgb, loose])
    with pytest.raises(InputError, match="unknown resampling"):
        seamline.stack([rgb], resampling="sinc")
    with pytest.raises(InputError, match="no CRS"):
        warp_image(seamline.open(rgb).replace(crs=None), seamline.open(rgb).window(slice(0, 5), slice(0, 5)))


def test_seamline_stack_writes_a_cog(tmp_path):
    rgb, nir = data_file(*RGB), data_file(*NIR)
    out = tmp_path / "rgbn.tif"
    result = CliRunner().invoke(get_cli(), ["stack", str(rgb), str(nir), str(out), "--names", "red,green,blue,nir"])
    assert result.exit_code == 0, result.output
    assert cog_validate(str(out))[0]
    with rasterio.open(out) as ds:
        assert ds.descriptions == ("red", "green", "blue", "nir") and ds.crs == rasterio.open(rgb).crs
        np.testing.assert_array_equal(ds.read(4), rasterio.open(nir).read(1))
    other = in_wgs84(data_file(*NIR), tmp_path / "nir_wgs84.tif")
    back = tmp_path / "back.tif"
    args = ["stack", str(other), str(back), "--like", str(rgb), "--resampling", "cubic"]
    assert CliRunner().invoke(get_cli(), args).exit_code == 0
    expected = seamline.open(other, like=seamline.open(rgb), resampling="cubic").data.compute()
    np.testing.assert_array_equal(seamline.open(back).data.compute(), expected)
    again = CliRunner().invoke(get_cli(), ["stack", str(rgb), str(nir), str(out)])
    assert again.exit_code == 2 and "exists already" in again.output


@pytest.fixture(scope="module")
def everest(tmp_path_factory):
    """A crop of the Everest scene as the shared data has it (RGB + NIR files) and as one 4-band file."""
    folder = tmp_path_factory.mktemp("everest")
    files = {"rgb": crop(RGB, folder / "scene_RGB.tif"), "nir": crop(NIR, folder / "scene_B4.tif")}
    data = np.concatenate([rasterio.open(files["rgb"]).read(), rasterio.open(files["nir"]).read()])
    with rasterio.open(files["rgb"]) as ds:
        transform = ds.transform
    names = ["red", "green", "blue", "nir"]
    files["rgbn"] = write_raster(folder / "rgbn.tif", data, transform=transform, descriptions=names)
    for index, name in enumerate(names):
        single = data[index : index + 1]
        files[f"{name} file"] = write_raster(folder / f"LE7_2000_{name}.tif", single, transform=transform)
    return files


def predict(*args):
    result = CliRunner().invoke(get_cli(), ["predict", *map(str, args), "--model", str(BUNDLE), "--no-progress"])
    return result


def test_predict_stacks_several_files_as_the_bundle_names_them(tmp_path, everest):
    assert predict(everest["rgbn"], tmp_path / "expected.tif").exit_code == 0
    expected = rasterio.open(tmp_path / "expected.tif").read()
    assert 0.2 < (expected == 1).mean() < 0.9  # glaciers and rock both
    listing = tmp_path / "bands.yaml"
    rgb = everest["rgb"]
    listing.write_text(
        f"red: {{path: {rgb}, band: 1}}\ngreen: {{path: {rgb}, band: 2}}\nblue: {{path: {rgb}, band: 3}}\n"
        f"nir: {everest['nir']}\n"
    )
    text = tmp_path / "bands.txt"
    text.write_text(f"# name file band\nred {rgb} 1\ngreen {rgb} 2\nblue {rgb} 3\nnir {everest['nir']}\n")
    runs = {
        # unnamed bands in file order: the model's order
        "in order": ([rgb, everest["nir"]], []),
        "names": ([rgb, everest["nir"]], ["--names", "red,green,blue,nir"]),
        "yaml": ([listing], []),
        "text": ([text], []),
        # single-band files named after their bands, in any order: matched by file name
        "files": ([everest["blue file"], everest["red file"], everest["nir file"], everest["green file"]], []),
    }
    for name, (inputs, options) in runs.items():
        out = tmp_path / f"{name.replace(' ', '_')}.tif"
        result = predict(*inputs, out, *options)
        assert result.exit_code == 0, (name, result.output)
        np.testing.assert_array_equal(rasterio.open(out).read(), expected, err_msg=name)


def test_a_band_the_bundle_needs_and_nothing_names_is_one_line(tmp_path, everest):
    result = predict(everest["red file"], everest["green file"], everest["blue file"], tmp_path / "out.tif")
    assert result.exit_code == 2 and result.output.count("\n") == 1
    assert "it lacks ['nir']" in result.output
    wrong = predict(everest["rgb"], everest["nir"], tmp_path / "out.tif", "--names", "r,g,b,nir")
    assert wrong.exit_code == 2 and "it lacks ['red', 'green', 'blue']" in wrong.output
    assert not (tmp_path / "out.tif").exists()
    listing = tmp_path / "bad.yaml"
    listing.write_text(f"red: {everest['rgb']}\n")
    result = predict(listing, tmp_path / "out.tif")
    assert result.exit_code == 2 and "has 3 bands; say which one" in result.output


@pytest.mark.slow
def test_predict_on_the_everest_rgb_and_nir_files(tmp_path):
    """The issue's done-when: the shared Everest files, as they are, predicted from the command line."""
    out = tmp_path / "glaciers.tif"
    result = predict(data_file(*RGB), data_file(*NIR), out)
    assert result.exit_code == 0, result.output
    labels = seamline.open(out)
    outlines = data_file("geoutils_everest_glaciers", "15_rgi60_glacier_outlines.gpkg")
    truth = seamline.open(outlines, like=seamline.open(data_file(*RGB)))
    report = seamline.evaluate(labels, truth, num_classes=2)
    assert report.per_class.loc[1, "iou"] > 0.6


def test_stacking_a_transform_keeps_the_grid(tmp_path):
    """A stack's affine is the grid's, exactly (no float drift from warping)."""
    t = Affine(30, 0, 478000, 0, -30, 3108140)
    path = write_raster(tmp_path / "a.tif", np.ones((1, 32, 32), np.uint8), transform=t)
    np.testing.assert_array_equal(seamline.stack([path]).affine, affine_from_transform(t))


def test_a_stack_never_writes_over_one_of_its_inputs(tmp_path):
    """Every input's fingerprint follows the stack, so saving over any of them is refused (issue 12)."""
    a = write_raster(tmp_path / "a.tif", np.full((1, 32, 32), 3, np.uint8))
    b = write_raster(tmp_path / "b.tif", np.full((1, 32, 32), 5, np.uint8))
    before = b.read_bytes()
    with pytest.raises(InputError, match="is an input of this job"):
        seamline.save(seamline.stack([a, b], names=["a", "b"]), b, overwrite=True)
    result = CliRunner().invoke(get_cli(), ["stack", str(a), str(b), str(b), "--overwrite"])
    assert result.exit_code == 2 and "is an input" in result.output
    assert b.read_bytes() == before
