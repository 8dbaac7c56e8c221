"""Random tilings: as many tiles as MONAI, ones blend to one, identity gives the input, nothing else matters."""

from __future__ import annotations

import warnings

import dask.array as da
import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seamline.inference import MIN_TILE_PIXELS, predict

sliding_window_inference = pytest.importorskip("monai.inferers").sliding_window_inference


class Identity(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.clone()


class Ones(torch.nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.ones_like(x)


class Counting(torch.nn.Module):
    """Identity that counts the tiles it sees."""

    def __init__(self) -> None:
        super().__init__()
        self.tiles = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.tiles += int(x.shape[0])
        return x.clone()


@st.composite
def tilings(draw):
    ndim = draw(st.integers(2, 3))
    top = 40 if ndim == 2 else 14
    shape = tuple(draw(st.lists(st.integers(1, top), min_size=ndim, max_size=ndim)))
    tile = tuple(draw(st.lists(st.integers(2, 16), min_size=ndim, max_size=ndim)))
    if np.prod(tile) < MIN_TILE_PIXELS:
        tile = (max(tile[0], -(-MIN_TILE_PIXELS // int(np.prod(tile[1:])))), *tile[1:])
    overlap = draw(st.sampled_from([0.0, 0.1, 0.25, 0.5, 0.6, 0.75]))
    bands = draw(st.integers(1, 2))
    chunks = tuple(draw(st.integers(1, n)) for n in shape)
    batch = draw(st.integers(2, 6))
    return shape, tile, overlap, bands, chunks, batch


def compute(x, model, scheduler="threads", **options):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # high overlaps warn
        return predict(x, model, progress=False, **options).data.compute(scheduler=scheduler)


def check(case) -> None:
    shape, tile, overlap, bands, chunks, batch = case
    x = np.random.default_rng(sum(shape) + bands).random((bands, *shape), dtype=np.float32)
    options = {"tile_size": tile, "overlap": overlap}
    counting = Counting()
    identity = compute(x, counting, batch_size=batch, **options)
    fitted = tuple(min(t, s) for t, s in zip(tile, shape, strict=True))
    ours, counting.tiles = counting.tiles, 0  # the engine's probe is an empty batch: no tile
    with torch.inference_mode():
        sliding_window_inference(torch.from_numpy(x)[None], fitted, 4, counting, overlap=overlap)
    assert ours == counting.tiles
    np.testing.assert_allclose(identity, x, rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(compute(x, Ones(), **options), 1.0)
    others = [
        compute(da.from_array(x, chunks=(bands, *chunks)), Identity(), batch_size=batch, **options),
        compute(x, Identity(), batch_size=batch + 3, **options),
        compute(x, Identity(), scheduler="synchronous", batch_size=batch, **options),
    ]
    for other in others:
        np.testing.assert_array_equal(other, identity)


PROPERTIES = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow], "derandomize": True}


@settings(max_examples=30, **PROPERTIES)
@given(tilings())
def test_random_tilings(case):
    check(case)


@pytest.mark.slow
@settings(max_examples=1000, **PROPERTIES)
@given(tilings())
def test_a_thousand_random_tilings(case):
    check(case)
