"""The engine against MONAI's sliding_window_inference, tile counts, outputs, nodata."""

from __future__ import annotations

import math
import time
import warnings

import dask
import dask.array as da
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from monai.inferers import sliding_window_inference

import seamline
from seamline.devices import autocast, resolve_device
from seamline.errors import InputError, ModelError
from seamline.inference import predict
from seamline.tasks import batch_ranges


class Counting(torch.nn.Module):
    """A small conv net that counts the tiles it sees (its 3x3 kernels make tiles differ from a whole-image run)."""

    def __init__(self, bands: int = 1, classes: int = 3, ndim: int = 2) -> None:
        super().__init__()
        torch.manual_seed(0)
        conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
        self.net = torch.nn.Sequential(conv(bands, 4, 3, padding=1), torch.nn.Tanh(), conv(4, classes, 3, padding=1))
        self.batches: list[int] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0]:
            self.batches.append(int(x.shape[0]))
        return self.net(x)


def monai(x: np.ndarray, model: torch.nn.Module, tile, overlap: float, mode: str = "gaussian", batch: int = 4):
    with torch.inference_mode():
        return sliding_window_inference(torch.from_numpy(x)[None], tile, batch, model, overlap=overlap, mode=mode)[
            0
        ].numpy()


def run(image, model, **options):
    return predict(image, model, progress=False, **options).data.compute(scheduler="threads")


CASES = [
    ((1, 64, 64), 32),
    ((2, 37, 53), (16, 24)),
    ((1, 10, 70), (16, 16)),  # first axis shorter than a tile
    ((1, 7, 5), (16, 12)),  # image smaller than a tile
    ((1, 13, 11, 9), (8, 6, 5)),
    ((2, 20, 9, 17), (8, 16, 8)),
]


def fitted(shape, tile):
    """The tile the engine runs for a model that takes any size: shrunk to the image where longer."""
    tile = (tile,) * (len(shape) - 1) if isinstance(tile, int) else tile
    return tuple(min(t, s) for t, s in zip(tile, shape[1:], strict=True))


@pytest.mark.parametrize("overlap", [0.0, 0.25, 0.5, 0.75])
@pytest.mark.parametrize(("shape", "tile"), CASES)
def test_equals_monai_gaussian(shape, tile, overlap):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    model = Counting(shape[0], 3, len(shape) - 1)
    expected = monai(x, model, fitted(shape, tile), overlap)
    result = run(x, model, tile_size=tile, overlap=overlap)
    assert result.dtype == np.float32 and result.shape == expected.shape
    np.testing.assert_allclose(result, expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "tile"), [CASES[2], CASES[3]])
def test_without_fitting_small_images_are_padded_as_monai_pads_them(shape, tile):
    x = np.random.default_rng(1).random(shape, dtype=np.float32)
    model = Counting(shape[0], 3, len(shape) - 1)
    expected = monai(x, model, tile, 0.25)
    np.testing.assert_allclose(run(x, model, tile_size=tile, overlap=0.25, fit=False), expected, atol=1e-5, rtol=0)


@pytest.mark.parametrize(("shape", "tile"), [CASES[1], CASES[4]])
def test_equals_monai_constant(shape, tile):
    x = np.random.default_rng(2).random(shape, dtype=np.float32)
    model = Counting(shape[0], 2, len(shape) - 1)
    expected = monai(x, model, tile, 0.5, mode="constant")
    np.testing.assert_allclose(run(x, model, tile_size=tile, overlap=0.5, blend="constant"), expected, atol=1e-5)


@pytest.mark.parametrize(("shape", "tile", "batch"), [((1, 70, 45), (16, 24), 4), ((1, 30, 20, 25), 8, 3)])
def test_each_tile_runs_once_as_many_as_monai(shape, tile, batch):
    x = np.random.default_rng(3).random(shape, dtype=np.float32)
    model = Counting(1, 2, len(shape) - 1)
    monai(x, model, tile, 0.25, batch=batch)
    monai_tiles, model.batches = sum(model.batches), []
    lazy = predict(x, model, tile_size=tile, overlap=0.25, batch_size=batch, progress=False)
    assert model.batches == []  # lazy: no tile has run yet
    lazy.data.compute(scheduler="threads")
    assert sum(model.batches) == monai_tiles
    assert max(model.batches) <= batch


def test_chunking_and_schedulers_do_not_change_the_result():
    x = np.random.default_rng(4).random((2, 90, 77), dtype=np.float32)
    model = Counting(2, 3)
    expected = monai(x, model, (32, 24), 0.25)
    for chunks in [(2, 90, 77), (1, 17, 30), (2, 64, 64)]:
        lazy = predict(da.from_array(x, chunks=chunks), model, tile_size=(32, 24), progress=False)
        with dask.config.set(scheduler="synchronous"):
            np.testing.assert_allclose(lazy.data.compute(), expected, atol=1e-5)
        np.testing.assert_allclose(lazy.data.compute(scheduler="threads", num_workers=4), expected, atol=1e-5)


def test_output_chunks_end_where_rows_of_tiles_begin_and_are_whole_tiles_wide():
    lazy = predict(np.zeros((1, 100, 9000), np.float32), Counting(), tile_size=32, progress=False)
    assert lazy.data.chunks == ((3,), (24, 24, 24, 24, 4), (9000,))  # steps of 24; up to 2**18 pixels
    lazy = predict(np.zeros((1, 100, 20000), np.float32), Counting(), tile_size=32, overlap=0.75, progress=False)
    assert lazy.data.chunks == ((3,), (16,) * 6 + (4,), (16384, 3616))  # two steps of 8: half a tile
    lazy = predict(np.zeros((1, 70, 70, 70), np.float32), Counting(ndim=3), tile_size=64, progress=False)
    assert lazy.data.chunks == ((3,), (48, 22), (64, 6), (64, 6))  # 48 x 64 x 64 is near 2**18 voxels already


def test_probabilities_and_labels():
    x = np.random.default_rng(5).random((1, 40, 50), dtype=np.float32)
    model = Counting(1, 3)
    scores = torch.from_numpy(monai(x, model, 16, 0.25))
    probabilities = run(x, model, tile_size=16, output="probabilities")
    np.testing.assert_allclose(probabilities, torch.softmax(scores, 0).numpy(), atol=1e-5)
    labels = run(x, model, tile_size=16, output="labels")
    assert labels.dtype == np.uint8 and labels.shape == (1, 40, 50)
    np.testing.assert_array_equal(labels[0], scores.argmax(0).numpy())


def test_one_channel_is_a_sigmoid_thresholded_at_one_half():
    x = np.random.default_rng(6).random((1, 40, 50), dtype=np.float32) - 0.5
    model = Counting(1, 1)
    scores = torch.from_numpy(monai(x, model, 16, 0.25))
    np.testing.assert_allclose(run(x, model, tile_size=16, output="probabilities"), torch.sigmoid(scores), atol=1e-5)
    labels = run(x, model, tile_size=16, output="labels")
    np.testing.assert_array_equal(labels, (torch.sigmoid(scores) > 0.5).numpy().astype(np.uint8))


def test_many_classes_are_uint16_labels():
    labels = run(np.ones((1, 8, 8), np.float32), torch.nn.Conv2d(1, 300, 1), tile_size=8, output="labels")
    assert labels.dtype == np.uint16


def test_result_keeps_affine_crs_and_meta():
    affine = np.array([[0.0, -30, 500], [30, 0, 100], [0, 0, 1]])
    meta = {"class_names": {0: "ice", 1: "rock"}, "band_names": ["red"], "anchor": "corner"}
    image = seamline.Image.from_array(np.zeros((1, 20, 30), np.float32), affine, "EPSG:32645", meta)
    result = predict(image, Counting(1, 2), tile_size=16, output="labels", progress=False)
    np.testing.assert_array_equal(result.affine, affine)
    assert result.crs == "EPSG:32645"
    assert result.meta == {"class_names": {0: "ice", 1: "rock"}, "anchor": "corner", "nodata": 255}


@pytest.mark.parametrize("how", [-9999.0, float("nan"), "mask"])
def test_nodata_in_nodata_out(how):
    rng = np.random.default_rng(7)
    x = rng.random((2, 40, 50), dtype=np.float32) + 1
    missing = np.zeros((40, 50), bool)
    missing[5:15, 10:30] = True
    missing[30:, 45:] = True
    x[0, 20, 20] = -9999  # one band alone at the nodata value is still data
    if how == "mask":
        meta = {"mask": da.from_array(~missing[None], chunks=(1, 16, 50))}
    else:
        x[:, missing] = how
        meta = {"nodata": how}
    image = seamline.Image.from_array(x, meta=meta)
    model = Counting(2, 3)
    expected = monai(np.where(missing, 0, x), model, 16, 0.25)
    scores = predict(image, model, tile_size=16, progress=False)
    assert np.isnan(scores.meta["nodata"])
    values = scores.data.compute()
    assert np.isnan(values[:, missing]).all()
    np.testing.assert_allclose(values[:, ~missing], expected[:, ~missing], atol=1e-5)
    labels = predict(image, model, tile_size=16, output="labels", progress=False)
    assert labels.meta["nodata"] == 255
    values = labels.data.compute()[0]
    assert (values[missing] == 255).all()
    np.testing.assert_array_equal(values[~missing], expected.argmax(0)[~missing])


def test_progress_bar_counts_tiles(capsys):
    x = np.zeros((1, 40, 40), np.float32)
    predict(x, Counting(), tile_size=16, progress=True).data.compute(scheduler="threads")
    assert "9/9" in capsys.readouterr().err
    predict(x, Counting(), tile_size=16, progress=False).data.compute(scheduler="threads")
    assert capsys.readouterr().err == ""


def test_a_bundle_is_handed_the_call():
    class Bundle:
        def predict(self, image, **options):
            self.options = options
            return "done"

    bundle = Bundle()
    assert predict(np.zeros((1, 8, 8)), bundle, overlap=0.5) == "done"
    assert bundle.options["overlap"] == 0.5 and "tile_size" not in bundle.options
    assert "placement" not in bundle.options and "fit" not in bundle.options  # the bundle's own
    predict(np.zeros((1, 8, 8)), bundle, placement="nnunet", fit=False)
    assert bundle.options["placement"] == "nnunet" and bundle.options["fit"] is False


def test_model_errors_are_clear():
    x = np.zeros((1, 32, 32), np.float32)
    with pytest.raises(ModelError, match="spatial"):
        predict(x, torch.nn.Conv2d(1, 2, 3), tile_size=16)
    with pytest.raises(ModelError, match="failed"):
        predict(x, torch.nn.Conv2d(3, 2, 1), tile_size=16)
    with pytest.raises(ModelError, match=r"torch\.nn\.Module"):
        predict(x, "model", tile_size=16)


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"tile_size": 16, "output": "polygons"},
        {"tile_size": 16, "blend": "box"},
        {"tile_size": 16, "batch_size": 0},
        {"tile_size": 16, "amp": "half"},
    ],
)
def test_bad_options_are_input_errors(options):
    with pytest.raises(InputError):
        predict(np.zeros((1, 32, 32), np.float32), torch.nn.Conv2d(1, 2, 1), **options)


def test_devices_and_mixed_precision_on_cpu():
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert not isinstance(autocast(torch.device("cpu")), torch.autocast)
    assert isinstance(autocast(torch.device("cpu"), amp=True), torch.autocast)
    x = np.random.default_rng(8).random((1, 32, 32), dtype=np.float32)
    model = Counting(1, 2)
    full = run(x, model, tile_size=16, device="cpu")
    np.testing.assert_allclose(run(x, model, tile_size=16, device="cpu", amp=True), full, atol=0.05)


class NeedsMultiple(torch.nn.Module):
    """A 1x1 convolution that refuses tiles whose sides are not multiples of 32 (as smp's U-Nets do)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(1, 2, 1)
        self.shapes: list[tuple[int, ...]] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if any(s % 32 for s in x.shape[2:]):
            raise RuntimeError(f"sides must be multiples of 32, got {tuple(x.shape[2:])}")
        if x.shape[0]:
            self.shapes.append(tuple(x.shape[2:]))
        return self.conv(x)


@pytest.mark.parametrize("tile", [1.5, "256", True, (16.0, 16), [16, "16"]])
def test_tile_sizes_are_whole_numbers(tile):
    with pytest.raises(InputError, match="tile_size"):
        predict(np.zeros((1, 32, 32), np.float32), torch.nn.Conv2d(1, 2, 1), tile_size=tile)


def test_numpy_integers_are_tile_sizes_and_tiny_tiles_are_refused():
    x = np.random.default_rng(9).random((1, 40, 40), dtype=np.float32)
    model = Counting(1, 2)
    np.testing.assert_array_equal(run(x, model, tile_size=np.int64(16)), run(x, model, tile_size=16))
    np.testing.assert_array_equal(run(x, model, tile_size=(np.int32(16), 16)), run(x, model, tile_size=16))
    with pytest.raises(InputError, match="at least 64"):
        predict(x, model, tile_size=4)
    slices = predict(np.zeros((1, 12, 12, 3), np.float32), Counting(ndim=3), tile_size=(8, 8, 1), progress=False)
    assert slices.data.compute().shape == (3, 12, 12, 3)  # slice-wise tiles stay possible


def test_a_tile_larger_than_the_image_shrinks_to_it_padded_to_the_models_multiple():
    x = np.random.default_rng(10).random((1, 100, 70), dtype=np.float32)
    model = NeedsMultiple()
    result = run(x, model, tile_size=5000)
    assert set(model.shapes) == {(128, 96)}  # 100 -> 128 and 70 -> 96: multiples of 32, one tile
    expected = monai(x, model, (128, 96), 0.25)
    np.testing.assert_allclose(result, expected, atol=1e-6)
    model.shapes = []
    run(x, model, tile_size=(64, 5000))  # only the longer axis shrinks
    assert set(model.shapes) == {(64, 96)}


def test_a_one_pixel_image_finishes_in_about_a_second():
    from seamline.unet import UNet

    model = UNet(1, 3, spatial_dims=2)
    start = time.perf_counter()
    result = predict(np.ones((1, 1, 1), np.float32), model, tile_size=256, output="labels", progress=False)
    assert result.data.compute().shape == (1, 1, 1)
    assert time.perf_counter() - start < 3  # was 34 s: a 256 x 256 tile padded, 131,000 tasks


def test_high_overlap_warns_with_the_tile_count():
    with pytest.warns(UserWarning, match=r"2025 tiles of \[16, 16\] hold 144 times"):
        predict(np.zeros((1, 60, 60), np.float32), Counting(), tile_size=16, overlap=0.95, progress=False)


@pytest.mark.parametrize("width", [130, 64])  # 64: lines of 3 tiles, which a batch size of 2 cannot halve
@pytest.mark.parametrize("channels_last", [True, False])  # contiguous, a batch of one takes another path
def test_batch_size_changes_no_bit(monkeypatch, width, channels_last):
    if not channels_last:
        monkeypatch.setattr("seamline.inference.convolutional", lambda *_: False)
    x = np.random.default_rng(11).random((2, 150, width), dtype=np.float32)
    model = Counting(2, 3)
    results = [run(x, model, tile_size=32, overlap=0.5, batch_size=b) for b in (8, 5, 3, 2)]
    for other in results[1:]:
        np.testing.assert_array_equal(results[0], other)


@settings(max_examples=300, deadline=None)
@given(count=st.integers(1, 200), batch_size=st.integers(1, 70))
def test_batches_cover_the_tiles_in_order_and_hold_one_tile_only_when_they_must(count, batch_size):
    batches = batch_ranges(count, batch_size)
    assert [i for batch in batches for i in batch] == list(range(count))
    sizes = [len(batch) for batch in batches]
    if count > 1 and batch_size > 1:
        assert min(sizes) >= 2  # torch's CPU convolutions give a tile the same bits in any batch of 2 or more
    else:
        assert sizes == [1] * count
    assert max(sizes) <= (3 if batch_size == 2 else batch_size)
    assert sizes[:-2] == [batch_size] * (len(sizes) - 2)  # full batches but at the end


class Constant(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x[:, :1]).repeat(1, 2, *(1,) * (x.ndim - 2))


@pytest.mark.parametrize("overlap", [0.0, 0.5, 0.9, 0.97])
@pytest.mark.parametrize("blend", ["gaussian", "cosine", "constant"])
def test_a_constant_model_blends_to_exactly_one(overlap, blend):
    x = np.zeros((1, 70, 55), np.float32)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high overlap warns
        result = run(x, Constant(), tile_size=(16, 24), overlap=overlap, blend=blend)
    assert np.abs(result - 1).max() <= 1e-6
    np.testing.assert_array_equal(result, 1.0)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_input_pixels_are_nodata_without_a_declared_nodata(bad):
    x = np.random.default_rng(12).random((2, 40, 50), dtype=np.float32)
    x[1, 5:9, 10:20] = bad  # one band is enough
    missing = np.zeros((40, 50), bool)
    missing[5:9, 10:20] = True
    model = Counting(2, 3)
    expected = monai(np.where(missing, 0, x), model, 16, 0.25)
    scores = predict(x, model, tile_size=16, progress=False)
    values = scores.data.compute()
    assert np.isnan(scores.meta["nodata"]) and np.isnan(values[:, missing]).all()
    np.testing.assert_allclose(values[:, ~missing], expected[:, ~missing], atol=1e-5)
    labels = predict(x, model, tile_size=16, output="labels", progress=False).data.compute()[0]
    assert (labels[missing] == 255).all() and (labels[~missing] == expected.argmax(0)[~missing]).all()


class NaNInAStripe(torch.nn.Module):
    """Class scores 0 and 1, except NaN and infinity in columns 10-14 of every tile that holds them."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.stack([x[:, 0], 1 - x[:, 0]], 1)
        out[..., 10:12] = math.nan
        out[:, 1, ..., 12:15] = math.inf
        return out


def test_a_models_non_finite_output_is_nodata_with_a_warning_counting_pixels():
    x = np.random.default_rng(13).random((1, 30, 40), dtype=np.float32)
    x[0, :, 0] = np.nan  # input nodata is not the model's doing
    with pytest.warns(UserWarning, match=r"the model returned NaN or infinity at 150 pixels"):
        labels = predict(x, NaNInAStripe(), tile_size=(30, 40), output="labels", progress=False).data.compute()
    assert (labels[0][:, 10:15] == 255).all() and (labels[0][:, 0] == 255).all()
    assert (labels[0][:, 15:] < 2).all()
    with pytest.warns(UserWarning, match="at 150 pixels"):
        scores = predict(x, NaNInAStripe(), tile_size=(30, 40), progress=False).data.compute()
    assert np.isnan(scores[:, :, 10:15]).all() and np.isfinite(scores[:, :, 15:]).all()
