"""Normalization specs against NumPy on small arrays, nodata kept, statistics lazy."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline import Image, InputError
from seamline.normalize import fit_normalization, normalize, percentile_bounds


@pytest.fixture
def image():
    rng = np.random.default_rng(1)
    data = np.stack([rng.normal(100, 20, (30, 40)), rng.uniform(-5, 5, (30, 40))]).astype(np.float32)
    return Image.from_array(data, chunks=(2, 10, 15))


def test_none_keeps_values(image):
    out = normalize(image, {"kind": "none"})
    np.testing.assert_array_equal(out.data.compute(), image.data.compute())
    assert out.dtype == np.float32


def test_scale_per_band(image):
    out = normalize(image, {"kind": "scale", "factor": [0.5, 2.0], "offset": 1.0}).data.compute()
    x = image.data.compute()
    np.testing.assert_allclose(out, x * np.array([0.5, 2.0])[:, None, None] + 1.0, rtol=1e-6)


def test_zscore_given_and_computed(image):
    x = image.data.compute().astype(np.float64)
    computed = normalize(image, {"kind": "zscore"}).data.compute()
    expected = (x - x.mean(axis=(1, 2), keepdims=True)) / x.std(axis=(1, 2), keepdims=True)
    np.testing.assert_allclose(computed, expected, atol=1e-5)
    given_stats = normalize(image, {"kind": "zscore", "mean": [100, 0], "std": [20, 5]}).data.compute()
    np.testing.assert_allclose(given_stats, (x - [[[100]], [[0]]]) / [[[20]], [[5]]], atol=1e-5)


def test_fit_records_statistics(image):
    spec = fit_normalization(image, {"kind": "zscore"})
    x = image.data.compute().astype(np.float64)
    np.testing.assert_allclose(spec["mean"], x.mean(axis=(1, 2)), rtol=1e-9)
    np.testing.assert_allclose(spec["std"], x.std(axis=(1, 2)), rtol=1e-9)
    assert fit_normalization(image, {"kind": "window", "low": 0, "high": 1}) == {"kind": "window", "low": 0, "high": 1}


def test_window_is_ct_windowing():
    hu = np.array([[[-1000, -160, 40, 240, 1500]]], dtype=np.int16)
    out = normalize(Image.from_array(hu), {"kind": "window", "low": -160, "high": 240}).data.compute()
    np.testing.assert_allclose(out, [[[0, 0, 0.5, 1, 1]]])


@settings(max_examples=8, deadline=None)
@given(st.integers(0, 10_000), st.floats(0.5, 10), st.floats(90, 99.5))
def test_percentiles_within_a_bin_of_the_empirical_quantile(seed, low, high):
    rng = np.random.default_rng(seed)
    x = rng.gamma(2.0, 50.0, (1, 24, 31)).astype(np.float32)
    image = Image.from_array(x, chunks=(1, 7, 9))
    bounds = percentile_bounds(image, low, high)[0]
    width = (x.max() - x.min()) / 4096
    for q, bound in zip((low, high), bounds, strict=True):
        assert np.mean(x < bound - width) <= q / 100 <= np.mean(x <= bound + width)
    out = normalize(image, {"kind": "percentile", "low": low, "high": high}).data.compute()
    np.testing.assert_allclose(out, (np.clip(x, *bounds) - bounds[0]) / (bounds[1] - bounds[0]), atol=1e-6)


def test_nodata_stays_nodata_and_is_left_out_of_statistics():
    x = np.array([[[0, 10, 20, 30], [40, 0, 60, 70]], [[0, 2, 3, 4], [5, 0, 7, 0]]], dtype=np.uint16)
    image = Image.from_array(x, meta={"nodata": 0})
    valid = image.valid_mask().compute()  # nodata in every band; one band alone at 0 is data
    np.testing.assert_array_equal(valid, [[False, True, True, True], [True, False, True, True]])
    spec = fit_normalization(image, {"kind": "zscore"})
    assert spec["mean"][0] == pytest.approx(x[0][valid].mean())
    for kind in ({"kind": "zscore"}, {"kind": "percentile"}, {"kind": "scale", "factor": 0.0}):
        out = normalize(image, kind)
        values = out.data.compute()
        assert out.meta["nodata"] == 0
        assert (values[:, ~valid] == 0).all()
        assert (values[:, valid] != 0).any(axis=0).all(), "a valid pixel must not look like nodata"


def test_nan_nodata_is_left_out_of_zscore_statistics():
    x = np.array([[[np.nan, 10, 20, 30], [40, np.nan, 60, 70]]], dtype=np.float32)
    spec = fit_normalization(Image.from_array(x, meta={"nodata": np.nan}), {"kind": "zscore"})
    assert spec["mean"][0] == pytest.approx(np.nanmean(x)) and spec["std"][0] == pytest.approx(np.nanstd(x))


def test_result_stays_lazy(image):
    out = normalize(image.replace(data=da.ones((1, 512, 512), chunks=128)), {"kind": "percentile"})
    assert isinstance(out.data, da.Array) and out.data.chunksize == (1, 128, 128)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"kind": "gamma"}, "unknown normalization kind"),
        ({"kind": "window", "low": 0}, "needs high"),
        ({"kind": "zscore", "mean": [1, 2, 3], "std": 1}, "3 values for an image with 2 bands"),
    ],
)
def test_bad_specs(image, spec, message):
    with pytest.raises(InputError, match=message):
        normalize(image, spec)


def test_a_mask_becomes_nan_nodata():
    x = np.arange(24, dtype=np.float32).reshape(2, 3, 4)
    mask = np.ones((1, 3, 4), bool)
    mask[0, 1, 2] = False
    out = normalize(Image.from_array(x, meta={"mask": da.from_array(mask)}), {"kind": "scale", "factor": 2.0})
    values = out.data.compute()
    assert "mask" not in out.meta and np.isnan(out.meta["nodata"])
    assert np.isnan(values[:, 1, 2]).all() and np.isfinite(values[:, mask[0]]).all()
    np.testing.assert_array_equal(values[:, mask[0]], 2 * x[:, mask[0]])


def test_low_must_be_below_high():
    image = Image.from_array(np.ones((1, 4, 4)))
    for kind in ("window", "percentile"):
        with pytest.raises(InputError, match=f"normalization '{kind}' needs low < high"):
            normalize(image, {"kind": kind, "low": 5, "high": 2})


def test_percentiles_with_a_mask_chunked_unlike_the_data():
    rng = np.random.default_rng(1)
    x = rng.gamma(2.0, 50.0, (2, 40, 30)).astype(np.float32)
    valid = rng.random((1, 40, 30)) > 0.3
    image = Image.from_array(x, chunks=(2, 7, 11), meta={"mask": valid})
    bounds = percentile_bounds(image, 10, 90)
    width = (x.max() - x.min()) / 4096
    for band in range(2):
        values = x[band][valid[0]]
        np.testing.assert_allclose(bounds[band], np.percentile(values, [10, 90]), atol=2 * width + 1e-6)
