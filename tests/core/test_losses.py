"""Losses against MONAI's (Dice, Dice+CE, focal), with and without ignore_index."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from monai.losses import DiceCELoss as MonaiDiceCE
from monai.losses import DiceLoss as MonaiDice
from monai.losses import FocalLoss as MonaiFocal
from scipy import ndimage

from seamline import InputError
from seamline.training.losses import BoundaryLoss, DiceCELoss, DiceLoss, FocalLoss, make_loss, signed_distance

IGNORE = 255


def _case(shape, classes, seed, ignore=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn((shape[0], classes, *shape[1:]), generator=g)
    target = torch.randint(classes, shape, generator=g)
    if ignore:
        target[torch.rand(shape, generator=g) < 0.3] = IGNORE
    return logits, target


@pytest.mark.parametrize("shape", [(2, 9, 11), (2, 5, 6, 7)])
@pytest.mark.parametrize("ignore", [False, True])
def test_dice_matches_monai(shape, ignore):
    logits, target = _case(shape, 3, 0, ignore)
    reference = MonaiDice(softmax=True, to_onehot_y=True, ignore_index=IGNORE if ignore else None)
    ours = DiceLoss(ignore_index=IGNORE)(logits, target)
    torch.testing.assert_close(ours, reference(logits, target.unsqueeze(1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("batch", [False, True])
def test_dice_batch_and_background_options_match_monai(batch):
    logits, target = _case((3, 8, 8), 4, 1)
    reference = MonaiDice(softmax=True, to_onehot_y=True, include_background=False, batch=batch)
    ours = DiceLoss(include_background=False, batch=batch)(logits, target)
    torch.testing.assert_close(ours, reference(logits, target.unsqueeze(1)), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 9, 11), (1, 4, 6, 5)])
def test_dice_ce_matches_monai(shape):
    logits, target = _case(shape, 3, 2)
    reference = MonaiDiceCE(softmax=True, to_onehot_y=True)(logits, target.unsqueeze(1))
    torch.testing.assert_close(DiceCELoss()(logits, target), reference, rtol=1e-5, atol=1e-6)


def test_dice_ce_ignores_like_monai_dice_plus_torch_ce():
    logits, target = _case((2, 10, 10), 3, 3, ignore=True)
    dice = MonaiDice(softmax=True, to_onehot_y=True, ignore_index=IGNORE)(logits, target.unsqueeze(1))
    ce = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(DiceCELoss(ignore_index=IGNORE)(logits, target), dice + ce, rtol=1e-5, atol=1e-6)


def test_focal_matches_monai():
    logits, target = _case((2, 7, 9), 3, 4)
    reference = MonaiFocal(use_softmax=True, to_onehot_y=True, gamma=2.0)(logits, target.unsqueeze(1))
    # MONAI averages over classes too (its per-class terms are zero off the true class)
    torch.testing.assert_close(FocalLoss(gamma=2.0)(logits, target), reference * 3, rtol=1e-5, atol=1e-6)


def test_focal_with_ignore_matches_monai():
    logits, target = _case((2, 7, 9), 3, 5, ignore=True)
    reference = MonaiFocal(use_softmax=True, to_onehot_y=True, gamma=2.0, ignore_index=IGNORE)
    torch.testing.assert_close(
        FocalLoss(gamma=2.0, ignore_index=IGNORE)(logits, target),
        reference(logits, target.unsqueeze(1)),
        rtol=1e-5,
        atol=1e-6,
    )


def test_focal_with_gamma_zero_is_cross_entropy():
    logits, target = _case((2, 6, 6), 4, 6, ignore=True)
    expected = torch.nn.functional.cross_entropy(logits, target, ignore_index=IGNORE)
    torch.testing.assert_close(FocalLoss(gamma=0.0, ignore_index=IGNORE)(logits, target), expected)


def test_signed_distance_against_scipy():
    mask = np.zeros((12, 15), bool)
    mask[3:8, 4:11] = True
    phi = signed_distance(mask)
    np.testing.assert_allclose(phi[~mask], ndimage.distance_transform_edt(~mask)[~mask])
    np.testing.assert_allclose(phi[mask], 1 - ndimage.distance_transform_edt(mask)[mask])
    assert (signed_distance(np.zeros((4, 4), bool)) == 0).all()


def test_signed_distance_makes_no_boundary_at_unknown_voxels():
    mask, unknown = np.zeros((12, 15), bool), np.zeros((12, 15), bool)
    mask[3:8, 4:11], unknown[:, 11:] = True, True  # the object runs into nodata on its right
    phi = signed_distance(mask, unknown)
    known = ~mask & ~unknown
    np.testing.assert_allclose(phi[known], ndimage.distance_transform_edt(~mask)[known])
    np.testing.assert_allclose(phi[mask], 1 - ndimage.distance_transform_edt(mask | unknown)[mask])
    assert phi[5, 10] == -2  # two voxels from the top and bottom outlines, not on one at the nodata edge
    assert (signed_distance(mask, ~mask) == 0).all()


def test_boundary_loss_uses_distances_without_nodata_and_needs_two_classes():
    logits, target = _case((2, 10, 12), 3, 4, ignore=True)
    probs = torch.softmax(logits, 1)[:, 1:].numpy()
    labels = target.numpy()
    phi = np.stack([[signed_distance(t == c, t == IGNORE) for c in (1, 2)] for t in labels])
    valid = (labels != IGNORE)[:, None]
    expected = (probs * phi * valid).sum() / (valid.sum() * 2)
    torch.testing.assert_close(BoundaryLoss()(logits, target), torch.tensor(expected, dtype=torch.float32))
    with pytest.raises(InputError, match="at least 2 classes"):
        BoundaryLoss()(torch.zeros(1, 1, 4, 4), torch.zeros(1, 4, 4, dtype=torch.long))


def test_boundary_loss_prefers_the_true_outline():
    target = torch.zeros((1, 16, 16), dtype=torch.long)
    target[0, 4:12, 4:12] = 1
    exact = torch.nn.functional.one_hot(target, 2).movedim(-1, 1).float() * 20 - 10
    shifted = torch.roll(exact, shifts=3, dims=3)
    loss = BoundaryLoss()
    assert loss(exact, target) < loss(shifted, target)


@pytest.mark.parametrize("kind", ["ce", "dice", "dice_ce", "focal", "boundary"])
def test_ignored_voxels_do_not_matter(kind):
    logits, target = _case((2, 12, 12), 3, 7, ignore=True)
    loss_fn = make_loss(kind, ignore_index=IGNORE)
    noise = torch.randn(logits.shape) * (target == IGNORE).unsqueeze(1)
    torch.testing.assert_close(loss_fn(logits + 5 * noise, target), loss_fn(logits, target))


@pytest.mark.parametrize("kind", ["ce", "dice", "dice_ce", "focal", "boundary"])
def test_every_loss_trains_down(kind):
    logits, target = _case((2, 12, 12), 3, 8, ignore=True)
    logits.requires_grad_(True)
    loss_fn = make_loss(kind, ignore_index=IGNORE)
    optimizer = torch.optim.SGD([logits], lr=1.0)
    first = float(loss_fn(logits, target).detach())
    for _ in range(20):
        optimizer.zero_grad()
        loss_fn(logits, target).backward()
        optimizer.step()
    assert float(loss_fn(logits, target).detach()) < first


def test_make_loss_errors():
    with pytest.raises(InputError, match="unknown loss 'lovasz'"):
        make_loss("lovasz")
    with pytest.raises(InputError, match="takes no option 'gamma'"):
        make_loss({"kind": "dice", "gamma": 2})
