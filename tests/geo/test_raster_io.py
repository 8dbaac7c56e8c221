"""Reading rasters lazily and writing (Cloud-Optimized) GeoTIFFs, against rasterio itself."""

from __future__ import annotations

import pickle

import dask.array as da
import numpy as np
import pyproj
import pytest
import rasterio
import rasterio.shutil
import torch
from affine import Affine
from rasterio.enums import ColorInterp, MaskFlags
from rio_cogeo.cogeo import cog_validate

import seamline
from seamline_geo.demo import SCENE
from seamline_geo.grid import affine_from_transform, to_pyproj, transform_from_affine
from tests.conftest import data_file

REAL = [
    ("geoutils_everest_glaciers", "LE71400412000304SGS00_RGB.tif"),
    ("geoutils_everest_glaciers", "LE71400412000304SGS00_B4.tif"),
    ("solaris_spacenet_pivots", "sample_geotiff.tif"),
    ("solaris_spacenet_pivots", "sample_geotiff_custom_proj.tif"),
]


def write_raster(path, data, *, nodata=None, descriptions=None, tiled=True, block=64, **extra):
    profile = {
        "driver": "GTiff",
        "height": data.shape[1],
        "width": data.shape[2],
        "count": data.shape[0],
        "dtype": data.dtype.name,
        "crs": "EPSG:32645",
        "transform": Affine(30.0, 0.0, 478000.0, 0.0, -30.0, 3108140.0),
        "nodata": nodata,
        **({"tiled": True, "blockxsize": block, "blockysize": block} if tiled else {}),
        **extra,
    }
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(data)
        for i, name in enumerate(descriptions or (), start=1):
            ds.set_band_description(i, name)
    return path


@pytest.mark.parametrize("folder,name", REAL)
def test_real_rasters_read_like_rasterio(folder, name):
    path = data_file(folder, name)
    image = seamline.open(path)
    with rasterio.open(path) as ds:
        expected = ds.read()
        assert image.shape == (ds.count, ds.height, ds.width)
        assert transform_from_affine(image.affine) == ds.transform
        assert image.crs == pyproj.CRS.from_wkt(ds.crs.to_wkt())
        assert image.meta["nodata"] == ds.nodata
        block_rows = ds.block_shapes[0][0]
    assert isinstance(image.crs, pyproj.CRS)
    assert image.meta["anchor"] == "corner"
    rows = image.data.chunks[1]
    assert all(r % block_rows == 0 for r in rows[:-1]) and image.data.chunks[2] == (image.spatial_shape[1],)
    np.testing.assert_array_equal(image.data.compute(), expected)


def test_custom_projection_without_epsg_keeps_its_crs():
    image = seamline.open(data_file("solaris_spacenet_pivots", "sample_geotiff_custom_proj.tif"))
    assert image.crs.to_epsg() is None
    assert "Albers" in image.crs.to_wkt()


def test_tiled_file_chunks_are_whole_tiles_and_each_chunk_opens_its_own_handle(tmp_path):
    data = np.arange(3 * 300 * 260, dtype=np.uint16).reshape(3, 300, 260)
    path = write_raster(tmp_path / "tiled.tif", data, block=64)
    image = seamline.open(path)
    assert all(c % 64 == 0 for axis in image.data.chunks[1:] for c in axis[:-1])
    small = seamline.open(path, chunks=128)
    assert small.data.chunks[1:] == ((128, 128, 44), (128, 128, 4))
    assert pickle.loads(pickle.dumps(small.data)).compute().tolist() == data.tolist()
    np.testing.assert_array_equal(small.data.compute(scheduler="threads"), data)


def test_band_selection_by_index_and_name(tmp_path):
    data = np.stack([np.full((40, 30), v, np.uint8) for v in (1, 2, 3, 4)])
    path = write_raster(tmp_path / "bands.tif", data, descriptions=["red", "green", "blue", "nir"])
    image = seamline.open(path, bands=["nir", 1])
    assert image.meta["band_names"] == ["nir", "red"]
    assert image.meta["path"] == str(path)
    assert image.data[:, 0, 0].compute().tolist() == [4, 1]
    with pytest.raises(seamline.InputError, match="no band named 'swir'"):
        seamline.open(path, bands=["swir"])
    with pytest.raises(seamline.InputError, match="has no band 5"):
        seamline.open(path, bands=[5])


def test_scale_offset_nodata_and_masks(tmp_path):
    data = np.array([[[0, 10], [20, 30]]], dtype=np.int16)
    path = write_raster(tmp_path / "scaled.tif", data, nodata=0, tiled=False)
    with rasterio.open(path, "r+") as ds:
        ds.scales, ds.offsets = (0.5,), (1.0,)
    image = seamline.open(path)
    assert image.dtype == np.float32 and np.isnan(image.meta["nodata"])
    np.testing.assert_array_equal(image.data.compute(), [[[np.nan, 6.0], [11.0, 16.0]]])
    masked = write_raster(tmp_path / "masked.tif", np.ones((1, 32, 32), np.uint8), tiled=False)
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(masked, "r+") as ds:
        mask = np.full((32, 32), 255, np.uint8)
        mask[:5] = 0
        ds.write_mask(mask)
    image = seamline.open(masked)
    assert image.meta["mask"].shape == (1, 32, 32)
    assert image.meta["mask"].compute()[0].tolist() == (mask > 0).tolist()


def test_vrt_reads(tmp_path):
    path = write_raster(tmp_path / "a.tif", np.arange(64 * 64, dtype=np.uint16).reshape(1, 64, 64))
    rasterio.shutil.copy(path, tmp_path / "a.vrt", driver="VRT")
    np.testing.assert_array_equal(seamline.open(tmp_path / "a.vrt").data.compute(), seamline.open(path).data.compute())


def test_unnamed_bands_are_selected_as_band1_to_bandN_not_sensor_names(tmp_path):
    path = write_raster(tmp_path / "rgb.tif", np.stack([np.full((16, 16), v, np.uint8) for v in (1, 2, 3)]))
    assert seamline.open(path).meta["band_names"] is None
    assert seamline.open(path, bands=["band3"]).data[:, 0, 0].compute().tolist() == [3]
    with pytest.raises(seamline.InputError, match="no band named 'B1'"):  # Landsat's blue, not band 1
        seamline.open(path, bands=["B1"])


def test_corrupt_tiff_is_an_input_error_naming_the_file(tmp_path):
    bad = tmp_path / "broken.tif"
    bad.write_bytes(b"II*\x00garbage" * 10)
    with pytest.raises(seamline.InputError, match=r"broken\.tif"):
        seamline.open(bad)


def corrupt_tiles(path):
    """A deflated, tiled GeoTIFF whose header reads but whose tiles do not decode."""
    data = np.random.default_rng(0).integers(0, 255, (1, 256, 256), dtype=np.uint8)
    write_raster(path, data, block=128, compress="deflate")
    raw = bytearray(path.read_bytes())
    raw[2000:-100] = bytes((b * 7 + 3) % 256 for b in raw[2000:-100])
    path.write_bytes(raw)
    return path


def test_corrupt_tiles_are_an_input_error_naming_the_file(tmp_path):
    image = seamline.open(corrupt_tiles(tmp_path / "tiles.tif"))  # the header is fine
    with pytest.raises(seamline.InputError, match=r"tiles\.tif: is corrupt or unreadable in rows 0-256, cols 0-256 \("):
        image.data.compute(scheduler="sync")


def test_options_a_raster_reader_or_writer_does_not_take_are_input_errors(tmp_path):
    path = write_raster(tmp_path / "a.tif", np.zeros((1, 32, 32), np.uint8))
    with pytest.raises(seamline.InputError, match=r"a\.tif: the raster reader takes no option 'band'"):
        seamline.open(path, band=1)
    image = seamline.open(path)
    with pytest.raises(seamline.InputError, match=r"b\.tif: the geotiff writer takes no option 'compression'"):
        seamline.save(image, tmp_path / "b.tif", compression="zstd")


@pytest.mark.parametrize(
    "options,problem",
    [
        ({"blocksize": 0}, "blocksize must be a positive multiple of 16"),
        ({"blocksize": -16}, "blocksize must be a positive multiple of 16"),
        ({"blocksize": 24}, "blocksize must be a positive multiple of 16"),
        ({"compress": "bogus"}, "unknown compression 'bogus'; use one of deflate, zstd"),
    ],
)
def test_bad_blocksize_or_compression_is_an_input_error_before_anything_is_written(tmp_path, options, problem):
    image = seamline.Image(np.zeros((1, 32, 32), np.uint8), affine_from_transform(Affine(1, 0, 0, 0, -1, 0)))
    with pytest.raises(seamline.InputError, match=rf"x\.tif: {problem}"):
        seamline.save(image, tmp_path / "x.tif", **options)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("compress", ["LZW", "lzma", "packbits", "none"])
def test_every_listed_compression_writes_a_cog(tmp_path, compress):
    data = np.arange(3 * 40 * 50, dtype=np.uint16).reshape(3, 40, 50)
    image = seamline.Image(data, affine_from_transform(Affine(30, 0, 0, 0, -30, 0)), pyproj.CRS(32645))
    seamline.save(image, tmp_path / "x.tif", compress=compress)
    with rasterio.open(tmp_path / "x.tif") as ds:
        assert (ds.compression.name if ds.compression else "none") == compress.lower()
        np.testing.assert_array_equal(ds.read(), data)


@pytest.mark.parametrize("cog", [True, False])
@pytest.mark.parametrize("bands", [3, 4])
def test_rgb_like_uint8_bands_are_data_not_colour_and_alpha(tmp_path, cog, bands):
    data = np.random.default_rng(0).integers(0, 255, (bands, 48, 40), dtype=np.uint8)
    data[-1, :8] = 0  # a near-infrared band with zeros is not a transparency mask
    image = seamline.Image(data, affine_from_transform(Affine(30, 0, 0, 0, -30, 0)), pyproj.CRS(32645))
    seamline.save(image, tmp_path / "x.tif", cog=cog)
    with rasterio.open(tmp_path / "x.tif") as ds:
        assert set(ds.colorinterp) <= {ColorInterp.gray, ColorInterp.undefined}
        assert all(flags == [MaskFlags.all_valid] for flags in ds.mask_flag_enums)
    back = seamline.open(tmp_path / "x.tif")
    assert "mask" not in back.meta
    np.testing.assert_array_equal(back.data.compute(), data)


def test_demo_scene_has_four_data_bands_and_no_mask():
    with rasterio.open(SCENE) as ds:
        assert ColorInterp.alpha not in ds.colorinterp and ds.descriptions == ("red", "green", "blue", "nir")
    assert "mask" not in seamline.open(SCENE).meta


@pytest.mark.parametrize("folder,name", REAL)
def test_cog_round_trip_keeps_grid_crs_and_pixels(tmp_path, folder, name):
    image = seamline.open(data_file(folder, name))
    out = tmp_path / "out.tif"
    seamline.save(image, out)
    valid, errors, _ = cog_validate(str(out))
    assert valid, errors
    back = seamline.open(out)
    assert back.shape == image.shape and np.array_equal(back.affine, image.affine)
    assert back.crs == image.crs and back.meta["nodata"] == image.meta["nodata"]
    with rasterio.open(out) as ds:
        assert ds.compression.name.lower() == "deflate"
        assert bool(ds.overviews(1)) == (max(image.spatial_shape) > 512)  # down to one 512 px tile
    np.testing.assert_array_equal(back.data.compute(), image.data.compute())


def test_plain_tiled_geotiff_with_zstd_and_nodata(tmp_path):
    data = np.random.default_rng(0).random((2, 700, 600)).astype(np.float32)
    image = seamline.Image(
        da.from_array(data, chunks=(2, 300, 250)), affine_from_transform(Affine(10, 0, 5, 0, -10, 9))
    )
    seamline.save(image, tmp_path / "plain.tif", cog=False, compress="zstd", nodata=-1.0, blocksize=256)
    with rasterio.open(tmp_path / "plain.tif") as ds:
        assert ds.block_shapes[0] == (256, 256) and ds.compression.name.lower() == "zstd" and ds.nodata == -1.0
        assert ds.crs is None and ds.transform == Affine(10, 0, 5, 0, -10, 9)
        np.testing.assert_array_equal(ds.read(), data)


def test_labels_get_a_colour_table_and_class_names(tmp_path):
    labels = np.random.default_rng(0).integers(0, 3, (1, 100, 120)).astype(np.uint8)
    meta = {
        "class_names": {0: "background", 1: "glacier", 2: "debris"},
        "colors": {1: (80, 180, 255), 2: (120, 90, 60)},
    }
    image = seamline.Image(labels, affine_from_transform(Affine(30, 0, 0, 0, -30, 0)), pyproj.CRS(32645), meta)
    seamline.save(image, tmp_path / "labels.tif")
    assert cog_validate(str(tmp_path / "labels.tif"))[0]
    with rasterio.open(tmp_path / "labels.tif") as ds:
        assert ds.colormap(1)[1] == (80, 180, 255, 255)
    back = seamline.open(tmp_path / "labels.tif")
    assert back.meta["class_names"] == meta["class_names"]
    assert back.meta["colors"][2] == (120, 90, 60)
    np.testing.assert_array_equal(back.data.compute(), labels)


class CountingNet(torch.nn.Module):
    """A 3x3 convolution that counts the tiles it sees."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(1, 2, 3, padding=1)
        self.tiles = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles += x.shape[0]
        return self.conv(x)


@pytest.mark.parametrize("cog", [False, True])
def test_saving_a_prediction_runs_every_tile_once_and_writes_it_exactly(tmp_path, cog):
    x = np.random.default_rng(0).random((1, 300, 520), dtype=np.float32)
    image = seamline.Image(x, affine_from_transform(Affine(30, 0, 500000, 0, -30, 4000000)), pyproj.CRS(32645))
    model = CountingNet()
    scores = seamline.predict(image, model, tile_size=64, progress=False)
    expected = scores.data.compute()
    tiles, model.tiles = model.tiles, 0
    seamline.save(scores, tmp_path / "scores.tif", cog=cog, blocksize=128)
    assert model.tiles == tiles
    with rasterio.open(tmp_path / "scores.tif") as dataset:
        np.testing.assert_array_equal(dataset.read(), expected)


def test_existing_output_needs_overwrite_and_leaves_nothing_behind(tmp_path):
    image = seamline.Image(np.zeros((1, 32, 32), np.uint8), affine_from_transform(Affine(1, 0, 0, 0, -1, 0)))
    out = tmp_path / "x.tif"
    seamline.save(image, out)
    with pytest.raises(seamline.OutputExistsError):
        seamline.save(image, out)
    seamline.save(image, out, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.tif"]


def test_grid_conversions_are_exact():
    transform = Affine(0.5, 0.1, 733601.0, -0.2, -0.5, 3725139.0)
    assert transform_from_affine(affine_from_transform(transform)) == transform
    assert to_pyproj(rasterio.crs.CRS.from_epsg(4326)) == pyproj.CRS(4326)
    assert to_pyproj(None) is None
