"""Patch sampling, regions, foreground oversampling, nodata, augmentation, schedules."""

from __future__ import annotations

import itertools

import dask.array as da
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from seamline import Image, InputError
from seamline.training.augment import augment
from seamline.training.sampling import (
    BlockCache,
    PatchSampler,
    TrainingPair,
    free_window,
    read_labels,
    split_region,
)
from seamline.training.trainer import learning_rate


def _pair(shape=(40, 60), **kwargs):
    columns = np.broadcast_to(np.arange(shape[-1], dtype=np.float32), shape)
    labels = np.zeros(shape, np.uint8)
    labels[5:8, 50:53] = 1
    image = Image.from_array(columns[None].copy(), chunks=(1, 16, 16))
    return TrainingPair(image, Image.from_array(labels[None], chunks=(1, 16, 16)), **kwargs)


def test_split_region_by_axis_name():
    train, val = split_region((40, 60), "x", fraction=0.5)
    assert train == (slice(0, 40), slice(0, 30)) and val == (slice(0, 40), slice(30, 60))
    train, val = split_region((40, 60), "y", fraction=0.25, side="low")
    assert train == (slice(10, 40), slice(0, 60)) and val == (slice(0, 10), slice(0, 60))
    assert split_region((8, 9, 10), "z")[1] == (slice(0, 8), slice(0, 9), slice(5, 10))
    with pytest.raises(InputError, match="split axis 'w'"):
        split_region((8, 8), "w")


def test_patches_stay_inside_the_region_and_are_deterministic():
    pair = _pair(region=(slice(0, 40), slice(0, 30)))
    sampler = PatchSampler([pair], 16, classes=2, foreground_fraction=0.0)
    images, labels = sampler.batch(np.random.default_rng(3), 20)
    assert images.shape == (20, 1, 16, 16) and labels.shape == (20, 16, 16)
    assert images.max() < 30
    again, _ = sampler.batch(np.random.default_rng(3), 20)
    np.testing.assert_array_equal(images, again)


def test_foreground_oversampling_centres_patches_on_foreground():
    sampler = PatchSampler([_pair()], 8, classes=2, foreground_fraction=1.0)
    _, labels = sampler.batch(np.random.default_rng(0), 16)
    assert all((patch == 1).any() for patch in labels)
    assert (labels[:, 4, 4] == 1).mean() > 0.5
    uniform = PatchSampler([_pair()], 8, classes=2, foreground_fraction=0.0)
    _, labels = uniform.batch(np.random.default_rng(0), 16)
    assert np.mean([(patch == 1).any() for patch in labels]) < 0.5


def test_coarse_index_is_small_and_finds_every_class():
    sampler = PatchSampler([_pair()], 8, classes=2)
    assert sampler.index[0].shape == (1, 10, 15)
    assert np.argwhere(sampler.index[0][0]).tolist() == [[1, 12], [1, 13]]


def test_nodata_is_ignored_and_mostly_nodata_patches_are_redrawn():
    data = np.ones((2, 32, 32), np.float32)
    data[:, :, :20] = -1
    image = Image.from_array(data, meta={"nodata": -1})
    labels = Image.from_array(np.ones((1, 32, 32), np.uint8))
    pair = TrainingPair(image, labels, image.valid_mask())
    sampler = PatchSampler([pair], 12, classes=2, min_valid=0.5, foreground_fraction=0.0, ignore_index=9)
    images, labels = sampler.batch(np.random.default_rng(1), 12)
    assert ((labels == 9) == (images[:, 0] == 0)).all()
    assert (labels != 9).mean(axis=(1, 2)).min() >= 0.5


def test_excluded_windows_are_never_touched():
    pair = _pair(exclude=[(slice(0, 40), slice(30, 60))])
    sampler = PatchSampler([pair], 10, classes=2, foreground_fraction=0.0)
    images, _ = sampler.batch(np.random.default_rng(2), 20)
    assert images.max() < 30


def test_region_smaller_than_a_patch_is_padded_with_ignore():
    sampler = PatchSampler([_pair((6, 7))], 8, classes=2, foreground_fraction=0.0, min_valid=0.0)
    images, labels = sampler.batch(np.random.default_rng(0), 2)
    assert images.shape == (2, 1, 8, 8) and (labels == 255).sum(axis=(1, 2)).tolist() == [64 - 42] * 2


def test_a_patch_wider_than_the_region_reads_nothing_outside_it():
    pair = _pair(region=(slice(0, 40), slice(0, 10)))  # columns 10.. are validation: never read
    sampler = PatchSampler([pair], 16, classes=2, foreground_fraction=0.5, min_valid=0.0)
    images, labels = sampler.batch(np.random.default_rng(0), 8)
    assert images.shape == (8, 1, 16, 16) and images.max() == 9
    padded = (np.arange(16) < 3) | (np.arange(16) >= 13)  # centred on the region: 3 columns each side
    assert ((labels == 255) == padded).all() and (images[:, 0][:, :, padded] == 0).all()


def test_a_narrow_gap_between_excluded_windows_is_still_sampled():
    pair = _pair(exclude=[(slice(0, 40), slice(0, 26)), (slice(0, 40), slice(34, 60))])
    sampler = PatchSampler([pair], 8, classes=2, foreground_fraction=0.5)
    images, _ = sampler.batch(np.random.default_rng(0), 10)
    assert images.min() == 26 and images.max() == 33


def test_windows_leaving_no_room_for_a_patch_are_an_input_error():
    pair = _pair(exclude=[(slice(0, 40), slice(5, 55))])
    with pytest.raises(InputError, match=r"validation windows leave no room for a training patch of size \(8, 8\)"):
        PatchSampler([pair], 8, classes=2)
    with pytest.raises(InputError, match="patch size"):
        PatchSampler([pair], (4, 4, 4), classes=2)


_spans = st.tuples(st.integers(0, 12), st.integers(1, 6)).map(lambda t: slice(t[0], t[0] + t[1]))


@settings(max_examples=200, deadline=None)
@given(
    exclude=st.lists(st.tuples(_spans, _spans), max_size=4),
    size=st.tuples(st.integers(1, 8), st.integers(1, 8)),
)
def test_free_window_finds_a_free_patch_whenever_one_exists(exclude, size):
    region = (slice(0, 14), slice(0, 12))
    free = [
        window
        for corner in itertools.product(range(14 - size[0] + 1), range(12 - size[1] + 1))
        if not any(
            all(c < w.stop and w.start < c + n for c, n, w in zip(corner, size, other, strict=True))
            for other in exclude
        )
        for window in [tuple(slice(c, c + n) for c, n in zip(corner, size, strict=True))]
    ]
    if free:
        assert free_window(region, exclude, size) in free
    else:
        with pytest.raises(InputError, match="no room"):
            free_window(region, exclude, size)


def test_3d_sampling():
    labels = np.zeros((1, 12, 14, 16), np.uint8)
    labels[0, 2:4, 3:5, 10:12] = 2
    pair = TrainingPair(Image.from_array(np.random.default_rng(0).random((2, 12, 14, 16))), Image.from_array(labels))
    sampler = PatchSampler([pair], (6, 6, 6), classes=3, foreground_fraction=1.0)
    images, patches = sampler.batch(np.random.default_rng(0), 4)
    assert images.shape == (4, 2, 6, 6, 6) and all((p == 2).any() for p in patches)


def test_label_map_merges_values():
    labels = Image.from_array(np.array([[[0, 5, 7, 255, 3]]], np.uint8))
    mapped = read_labels(labels, label_map={5: 1, 7: 1, 3: 2}, ignore_index=255)
    np.testing.assert_array_equal(mapped.data.compute(), [[[0, 1, 1, 255, 2]]])
    labels = Image.from_array(np.array([[[-1, 5, -3, 255, 300]]], np.int16))
    mapped = read_labels(labels, label_map={-1: 2, 300: 1}, ignore_index=255)
    np.testing.assert_array_equal(mapped.data.compute(), [[[2, 0, 0, 255, 1]]])
    mapped = read_labels(labels, label_map={255: 0, 5: 1}, ignore_index=255)
    np.testing.assert_array_equal(mapped.data.compute(), [[[0, 1, 0, 0, 0]]])


@pytest.mark.parametrize("shape", [(3, 2, 8, 8), (2, 1, 6, 6, 6)])
def test_augment_moves_image_and_labels_together(shape):
    labels = torch.randint(0, 5, (shape[0], *shape[2:]))
    images = labels.unsqueeze(1).float().repeat(1, shape[1], *([1] * (len(shape) - 2)))
    out_images, out_labels = augment(images, labels, torch.Generator().manual_seed(0))
    assert out_images.shape == images.shape
    torch.testing.assert_close(out_images[:, 0], out_labels.float())
    again, _ = augment(images, labels, torch.Generator().manual_seed(0))
    torch.testing.assert_close(out_images, again)
    changed = [
        not torch.equal(out_images, augment(images, labels, torch.Generator().manual_seed(s))[0]) for s in range(5)
    ]
    assert any(changed)


def test_intensity_jitter_changes_values_not_labels():
    images, labels = torch.ones(4, 2, 8, 8), torch.zeros(4, 8, 8, dtype=torch.long)
    out, same = augment(images, labels, torch.Generator().manual_seed(1), flip=False, rotate=False, intensity=0.2)
    assert torch.equal(same, labels) and not torch.equal(out, images)
    assert torch.allclose(out, out[..., :1, :1].expand_as(out))


def test_rotation_skips_planes_that_are_not_square():
    images = torch.arange(2 * 6 * 8, dtype=torch.float32).reshape(1, 2, 6, 8)
    out, _ = augment(images, torch.zeros(1, 6, 8, dtype=torch.long), torch.Generator().manual_seed(0), flip=False)
    assert torch.equal(out, images)


def test_learning_rate_schedules():
    cosine = [learning_rate(s, 100, lr=1.0, schedule="cosine", warmup=0.1) for s in range(100)]
    assert cosine[0] == pytest.approx(0.1) and max(cosine) == pytest.approx(1.0) and cosine[-1] < 0.01
    assert np.all(np.diff(cosine[:10]) > 0) and np.all(np.diff(cosine[10:]) <= 0)
    one_cycle = [learning_rate(s, 100, lr=1.0, schedule="onecycle", warmup=0.0) for s in range(100)]
    assert int(np.argmax(one_cycle)) == 29 and one_cycle[-1] >= 1e-3
    assert learning_rate(80, 100, lr=0.5, schedule="constant", warmup=0.1) == 0.5
    with pytest.raises(InputError, match="unknown schedule"):
        learning_rate(0, 10, lr=1.0, schedule="step", warmup=0.1)


def test_block_cache_reads_windows_like_numpy_within_its_budget():
    values = np.arange(3 * 20 * 30).reshape(3, 20, 30)
    cache = BlockCache(da.from_array(values, chunks=(3, 7, 8)), max_bytes=3 * 7 * 8 * 8 * 2)
    rng = np.random.default_rng(0)
    for _ in range(30):
        r0, c0 = int(rng.integers(0, 19)), int(rng.integers(0, 29))
        window = (slice(None), slice(r0, int(rng.integers(r0 + 1, 21))), slice(c0, int(rng.integers(c0 + 1, 31))))
        np.testing.assert_array_equal(cache.read(window), values[window])
        assert len(cache.blocks) <= 2
