"""Patch augmentations in 2D and 3D: flips, 90-degree rotations, intensity jitter.

They run in torch on a batch, after sampling, and draw from a ``torch.Generator`` so a
seed gives the same augmented batches. Flips and rotations move image and labels
together and never resample (no interpolation, labels stay exact); rotations turn a
plane whose two axes have the same size, so patch shapes never change. Intensity jitter
scales and shifts each channel of each patch: ``x * (1 + a) + b`` with ``a, b`` drawn from
``N(0, intensity)``.
"""

from __future__ import annotations

import itertools

import torch

__all__ = ["augment"]


def _coin(generator: torch.Generator) -> bool:
    return bool(torch.rand((), generator=generator) < 0.5)


def augment(
    images: torch.Tensor,
    labels: torch.Tensor,
    generator: torch.Generator,
    *,
    flip: bool = True,
    rotate: bool = True,
    intensity: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Augment a batch of patches.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, C, *spatial)`` float patches.
    labels : torch.Tensor
        ``(B, *spatial)`` integer labels.
    generator : torch.Generator
        The source of randomness (CPU).
    flip : bool
        Flip each spatial axis with probability 1/2.
    rotate : bool
        Rotate by a random multiple of 90 degrees in a random square plane.
    intensity : float
        Standard deviation of the per-channel scale and shift; 0 turns jitter off.

    Returns
    -------
    tuple of torch.Tensor
        The augmented images and labels, same shapes.
    """
    spatial = images.ndim - 2
    planes = [
        (a, b) for a, b in itertools.combinations(range(spatial), 2) if images.shape[2 + a] == images.shape[2 + b]
    ]
    out_images, out_labels = [], []
    for image, label in zip(images, labels, strict=True):
        if flip:
            axes = [axis for axis in range(spatial) if _coin(generator)]
            if axes:
                image = image.flip([1 + a for a in axes])
                label = label.flip(axes)
        if rotate and planes:
            a, b = planes[int(torch.randint(len(planes), (), generator=generator))]
            turns = int(torch.randint(4, (), generator=generator))
            image = torch.rot90(image, turns, (1 + a, 1 + b))
            label = torch.rot90(label, turns, (a, b))
        if intensity > 0:
            shape = (image.shape[0],) + (1,) * spatial
            scale = 1 + intensity * torch.randn(shape, generator=generator)
            shift = intensity * torch.randn(shape, generator=generator)
            image = image * scale.to(image) + shift.to(image)
        out_images.append(image)
        out_labels.append(label)
    return torch.stack(out_images), torch.stack(out_labels)
