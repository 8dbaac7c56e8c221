"""A small U-Net in pure torch, the core's own architecture (``"core.UNet"``).

It needs nothing beyond torch, so the core can train, save and run a model with no
plugin installed: tests, the demo and benchmarks use it. It works in 2D and 3D, with
any widths; the input may have any size (it is padded to a multiple of the pooling
factor inside and cropped back), and with batch normalization in eval mode it is a
fixed function of its input, which keeps tiled predictions seamless.

The core plugin registers it lazily (:func:`build_unet`), so ``import seamline`` never
imports torch; this module itself imports torch and is only loaded when a model is built.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn import functional as F

__all__ = ["UNet", "build_unet"]


def _block(spatial_dims: int, in_channels: int, out_channels: int, norm: str) -> nn.Sequential:
    conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
    layers: list[nn.Module] = []
    for channels in (in_channels, out_channels):
        layers.append(conv(channels, out_channels, kernel_size=3, padding=1, bias=norm == "none"))
        if norm == "batch":
            layers.append((nn.BatchNorm2d if spatial_dims == 2 else nn.BatchNorm3d)(out_channels))
        elif norm == "instance":
            layers.append((nn.InstanceNorm2d if spatial_dims == 2 else nn.InstanceNorm3d)(out_channels, affine=True))
        layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class UNet(nn.Module):
    """A U-Net (Ronneberger et al. 2015) for 2D or 3D images.

    Parameters
    ----------
    in_channels : int
        Input channels (bands).
    classes : int
        Output channels (class scores).
    spatial_dims : {2, 3}
        Image rank.
    widths : sequence of int
        Feature channels per level, from the top; ``len(widths) - 1`` poolings.
    norm : {"batch", "instance", "none"}
        Normalization after each convolution.
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        spatial_dims: int = 2,
        widths: Sequence[int] = (16, 32, 64),
        norm: str = "batch",
    ) -> None:
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if norm not in ("batch", "instance", "none"):
            raise ValueError(f"norm must be 'batch', 'instance' or 'none', got {norm!r}")
        widths = [int(w) for w in widths]
        self.spatial_dims = spatial_dims
        self.factor = 2 ** (len(widths) - 1)
        self.down = nn.ModuleList()
        channels = in_channels
        for width in widths:
            self.down.append(_block(spatial_dims, channels, width, norm))
            channels = width
        transpose = nn.ConvTranspose2d if spatial_dims == 2 else nn.ConvTranspose3d
        self.upsample = nn.ModuleList()
        self.up = nn.ModuleList()
        for width in reversed(widths[:-1]):
            self.upsample.append(transpose(channels, width, kernel_size=2, stride=2))
            self.up.append(_block(spatial_dims, 2 * width, width, norm))
            channels = width
        conv = nn.Conv2d if spatial_dims == 2 else nn.Conv3d
        self.head = conv(channels, classes, kernel_size=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class scores shaped ``(B, classes, *spatial)`` like the input."""
        size = x.shape[2:]
        pad: list[int] = []
        for extent in reversed(size):
            pad += [0, -extent % self.factor]
        x = F.pad(x, pad)
        skips = []
        for level, block in enumerate(self.down):
            if level:
                x = (F.max_pool2d if self.spatial_dims == 2 else F.max_pool3d)(x, 2)
            x = block(x)
            skips.append(x)
        skips.pop()
        for upsample, block in zip(self.upsample, self.up, strict=True):
            x = block(torch.cat([skips.pop(), upsample(x)], dim=1))
        x = self.head(x)
        return x[(slice(None), slice(None), *(slice(0, extent) for extent in size))]


def build_unet(in_channels: int, classes: int, **kwargs: object) -> UNet:
    """Build a :class:`UNet` with random weights (the ``core.UNet`` architecture).

    Parameters
    ----------
    in_channels : int
        Input channels.
    classes : int
        Output classes.
    **kwargs
        ``spatial_dims``, ``widths``, ``norm`` (see :class:`UNet`).

    Returns
    -------
    UNet
    """
    return UNet(in_channels, classes, **kwargs)  # type: ignore[arg-type]
