"""Segmentation losses, all with ``ignore_index``: cross-entropy, Dice, Dice+CE, focal, boundary.

Every loss takes raw class scores ``(B, C, *spatial)`` and integer labels
``(B, *spatial)``; voxels whose label is ``ignore_index`` (nodata, unlabelled) take no
part. They agree with MONAI's (``DiceLoss``, ``DiceCELoss`` and ``FocalLoss`` with
``softmax=True, to_onehot_y=True``), which the tests check.

The boundary-aware loss is Kervadec et al.'s boundary loss (MIDL 2019): the softmax
probability of each foreground class weighted by the signed distance to that class's
ground-truth boundary (negative inside, positive outside), so that mass predicted far
from the true outline costs more than mass near it. Used alone it has trivial minima,
so :func:`make_loss` adds it to Dice+CE with a weight, the way boundary-aware glacier
mappers (Aryal et al. 2023, debris-covered ice) sharpen glacier margins.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy import ndimage
from torch import nn
from torch.nn import functional as F

from ..errors import InputError
from .config import LOSS_OPTIONS, loss_spec

__all__ = ["DiceLoss", "DiceCELoss", "FocalLoss", "BoundaryLoss", "make_loss", "signed_distance", "LOSSES"]

SMOOTH = 1e-5


def _one_hot(target: torch.Tensor, classes: int, ignore_index: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One-hot labels ``(B, C, *spatial)`` and the valid mask ``(B, 1, *spatial)``."""
    valid = target != ignore_index
    safe = torch.where(valid, target, torch.zeros_like(target)).long()
    one_hot = F.one_hot(safe, classes).movedim(-1, 1).to(torch.float32)
    return one_hot, valid.unsqueeze(1).to(torch.float32)


class DiceLoss(nn.Module):
    """Soft Dice loss on softmax probabilities, mean over samples and classes.

    Parameters
    ----------
    ignore_index : int
        Label value that takes no part.
    include_background : bool
        Whether class 0 counts.
    batch : bool
        Sum over the batch before the ratio (nnU-Net's batch Dice) instead of per sample.
    """

    def __init__(self, *, ignore_index: int = 255, include_background: bool = True, batch: bool = False) -> None:
        super().__init__()
        self.ignore_index = ignore_index
        self.include_background = include_background
        self.batch = batch

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for ``logits (B, C, *spatial)`` and ``target (B, *spatial)``."""
        probs = torch.softmax(logits.float(), dim=1)
        one_hot, valid = _one_hot(target, logits.shape[1], self.ignore_index)
        probs, one_hot = probs * valid, one_hot * valid
        if not self.include_background:
            probs, one_hot = probs[:, 1:], one_hot[:, 1:]
        axes = [0, *range(2, probs.ndim)] if self.batch else list(range(2, probs.ndim))
        overlap = (probs * one_hot).sum(axes)
        total = probs.sum(axes) + one_hot.sum(axes)
        return (1 - (2 * overlap + SMOOTH) / (total + SMOOTH)).mean()


class FocalLoss(nn.Module):
    """Softmax focal loss (Lin et al. 2017): ``-(1 - p_t)^gamma log p_t``, mean over valid voxels.

    Parameters
    ----------
    gamma : float
        Focusing parameter; 0 gives cross-entropy.
    ignore_index : int
        Label value that takes no part.
    """

    def __init__(self, *, gamma: float = 2.0, ignore_index: int = 255) -> None:
        super().__init__()
        self.gamma = gamma
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for ``logits (B, C, *spatial)`` and ``target (B, *spatial)``."""
        log_p = torch.log_softmax(logits.float(), dim=1)
        one_hot, valid = _one_hot(target, logits.shape[1], self.ignore_index)
        log_pt = (log_p * one_hot).sum(1, keepdim=True)
        loss = -((1 - log_pt.exp()) ** self.gamma) * log_pt * valid
        return loss.sum() / valid.sum().clamp(min=1.0)


class DiceCELoss(nn.Module):
    """Dice loss plus cross-entropy (nnU-Net's default), each with a weight.

    Parameters
    ----------
    ignore_index : int
        Label value that takes no part.
    dice_weight, ce_weight : float
        Weights of the two terms.
    class_weights : sequence of float, optional
        Cross-entropy class weights.
    """

    def __init__(
        self,
        *,
        ignore_index: int = 255,
        dice_weight: float = 1.0,
        ce_weight: float = 1.0,
        class_weights: Any = None,
    ) -> None:
        super().__init__()
        self.dice = DiceLoss(ignore_index=ignore_index)
        weight = None if class_weights is None else torch.as_tensor(class_weights, dtype=torch.float32)
        self.ce = nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
        self.dice_weight, self.ce_weight = dice_weight, ce_weight

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for ``logits (B, C, *spatial)`` and ``target (B, *spatial)``."""
        ce = self.ce(logits.float(), target.long()) if self.ce_weight else 0.0
        return self.dice_weight * self.dice(logits, target) + self.ce_weight * ce


def signed_distance(mask: np.ndarray, unknown: np.ndarray | None = None) -> np.ndarray:
    """Signed Euclidean distance to the boundary of *mask*: negative inside, positive outside.

    Parameters
    ----------
    mask : numpy.ndarray of bool
        One object class, any rank.
    unknown : numpy.ndarray of bool, optional
        Voxels whose class is unknown (nodata): the object may go on there, so a mask
        voxel next to them is not on a boundary. Their own distances are meaningless.

    Returns
    -------
    numpy.ndarray of float32
        Zero everywhere when the mask is empty or covers every known voxel (no boundary).
    """
    known_mask = mask if unknown is None else mask | unknown
    if not mask.any() or known_mask.all():
        return np.zeros(mask.shape, dtype=np.float32)
    outside = ndimage.distance_transform_edt(~mask)
    inside = ndimage.distance_transform_edt(known_mask)
    return (outside - (inside - 1) * mask).astype(np.float32)


class BoundaryLoss(nn.Module):
    """Kervadec's boundary loss: mean of ``p_c * phi_c`` over foreground classes and voxels.

    ``phi_c`` is :func:`signed_distance` of the ground truth of class *c* (in voxels),
    computed on the CPU per sample. Voxels labelled ``ignore_index`` take no part and
    make no boundary: an object cut by nodata has its outline only where it meets
    known other classes.

    Parameters
    ----------
    ignore_index : int
        Label value that takes no part.
    """

    def __init__(self, *, ignore_index: int = 255) -> None:
        super().__init__()
        self.ignore_index = ignore_index

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Return the loss for ``logits (B, C, *spatial)`` and ``target (B, *spatial)``."""
        classes = logits.shape[1]
        if classes < 2:
            raise InputError(f"the boundary loss needs at least 2 classes (background and objects), got {classes}")
        labels = target.detach().cpu().numpy()
        distances = np.stack(
            [
                np.stack([signed_distance(sample == c, sample == self.ignore_index) for c in range(1, classes)])
                for sample in labels
            ]
        )
        phi = torch.from_numpy(distances).to(logits.device)
        probs = torch.softmax(logits.float(), dim=1)[:, 1:]
        valid = (target != self.ignore_index).unsqueeze(1).to(probs.dtype)
        return (probs * phi * valid).sum() / (valid.sum().clamp(min=1.0) * (classes - 1))


class _Sum(nn.Module):
    def __init__(self, terms: Mapping[str, tuple[nn.Module, float]]) -> None:
        super().__init__()
        self.terms = nn.ModuleDict({name: module for name, (module, _) in terms.items()})
        self.weights = {name: weight for name, (_, weight) in terms.items()}

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        return sum(self.weights[name] * term(logits, target) for name, term in self.terms.items())


LOSSES = tuple(LOSS_OPTIONS)


def make_loss(spec: Mapping[str, Any] | str, *, ignore_index: int = 255) -> nn.Module:
    """Build a loss from a config spec.

    Parameters
    ----------
    spec : str or mapping
        A kind (``"ce"``, ``"dice"``, ``"dice_ce"``, ``"focal"``, ``"boundary"``) or a dict
        with ``kind`` and its options: ``class_weights`` (ce, dice_ce), ``gamma`` (focal),
        ``dice_weight``/``ce_weight`` (dice_ce), ``weight`` (boundary: the boundary
        term's weight added to Dice+CE, 0.5 by default).
    ignore_index : int
        Label value that takes no part.

    Returns
    -------
    torch.nn.Module
        ``loss(logits, target) -> scalar``.

    Raises
    ------
    InputError
        If the kind is unknown or an option does not belong to it.
    """
    kind, spec = loss_spec(spec)
    if kind == "ce":
        weights = spec.get("class_weights")
        weight = None if weights is None else torch.as_tensor(weights, dtype=torch.float32)
        return nn.CrossEntropyLoss(weight=weight, ignore_index=ignore_index)
    if kind == "dice":
        return DiceLoss(ignore_index=ignore_index, **spec)
    if kind == "dice_ce":
        return DiceCELoss(ignore_index=ignore_index, **spec)
    if kind == "focal":
        return FocalLoss(ignore_index=ignore_index, **spec)
    return _Sum(
        {
            "dice_ce": (DiceCELoss(ignore_index=ignore_index), 1.0),
            "boundary": (BoundaryLoss(ignore_index=ignore_index), float(spec.get("weight", 0.5))),
        }
    )
