"""TransUNet (Chen et al. 2021): a CNN-Transformer hybrid encoder and a cascaded upsampler.

The encoder is the paper's R50-ViT-B/16 hybrid: a ResNet-50 (v2 layout, standardized
convolutions and group norm, built with timm's :class:`~timm.models.resnetv2.ResNetV2`,
never pretrained here) takes the image to 1/16 of its size; its feature map is cut into
1x1 patches (16x16 pixels of the image), embedded with learned position embeddings and
run through ViT-B transformer blocks (timm's :class:`~timm.models.vision_transformer.Block`).
The decoder ("cascaded upsampler") reshapes the tokens back into a map and upsamples four
times by 2, concatenating the CNN's features at 1/8, 1/4 and 1/2 (three skip
connections), then a 3x3 convolution gives the class scores at full resolution.

Every size is a parameter; :data:`VARIANTS` holds the paper's ``"base"`` and a
``"tiny"`` one for tests on a CPU. Inputs whose size is not a multiple of 16 are padded
and the output cropped back; a tile whose token grid differs from ``img_size / 16`` uses
position embeddings resampled to it.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from timm.layers import GroupNormAct, resample_abs_pos_embed
from timm.models.resnetv2 import ResNetV2
from timm.models.vision_transformer import Block
from torch import nn

__all__ = ["TransUNet", "build_transunet", "VARIANTS"]

VARIANTS: dict[str, dict[str, Any]] = {
    "base": {
        "img_size": 224,
        "resnet_layers": (3, 4, 9),
        "resnet_channels": (256, 512, 1024),
        "stem_channels": 64,
        "norm_groups": 32,
        "hidden_size": 768,
        "num_layers": 12,
        "num_heads": 12,
        "mlp_dim": 3072,
        "head_channels": 512,
        "decoder_channels": (256, 128, 64, 16),
    },
    "tiny": {
        "img_size": 64,
        "resnet_layers": (1, 1, 1),
        "resnet_channels": (32, 64, 128),
        "stem_channels": 16,
        "norm_groups": 8,
        "hidden_size": 32,
        "num_layers": 1,
        "num_heads": 2,
        "mlp_dim": 64,
        "head_channels": 32,
        "decoder_channels": (32, 16, 16, 8),
    },
}
PATCH = 16


def _conv_bn_relu(in_channels: int, out_channels: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


class _DecoderBlock(nn.Module):
    """Upsample by 2, concatenate a skip feature map (if any), two 3x3 conv-BN-ReLU."""

    def __init__(self, in_channels: int, skip_channels: int, out_channels: int) -> None:
        super().__init__()
        self.conv1 = _conv_bn_relu(in_channels + skip_channels, out_channels)
        self.conv2 = _conv_bn_relu(out_channels, out_channels)

    def forward(self, x: torch.Tensor, skip: torch.Tensor | None) -> torch.Tensor:
        x = F.interpolate(x, scale_factor=2, mode="bilinear", align_corners=False)
        if skip is not None:
            x = torch.cat([x, skip], dim=1)
        return self.conv2(self.conv1(x))


class TransUNet(nn.Module):
    """TransUNet: R50 + ViT hybrid encoder, cascaded upsampler with 3 skip connections.

    Parameters
    ----------
    in_channels : int
        Input channels.
    classes : int
        Output channels (class scores).
    img_size : int
        The tile size the position embeddings are made for (other sizes resample them).
    resnet_layers : sequence of int
        Bottleneck blocks in each of the three ResNet stages ((3, 4, 9) for R50-ViT).
    resnet_channels : sequence of int
        Output channels of the three stages (at 1/4, 1/8 and 1/16 of the image).
    stem_channels : int
        Channels of the 7x7 stem convolution (the 1/2 skip connection).
    norm_groups : int
        Groups of the encoder's group norms.
    hidden_size, num_layers, num_heads, mlp_dim : int
        The transformer: token width, blocks, attention heads, MLP width.
    head_channels : int
        Channels of the convolution that turns tokens back into a map.
    decoder_channels : sequence of int
        Output channels of the four decoder blocks (1/8, 1/4, 1/2 and full size).
    dropout : float
        Dropout after the position embeddings.
    """

    def __init__(
        self,
        in_channels: int,
        classes: int,
        *,
        img_size: int = 224,
        resnet_layers: Sequence[int] = (3, 4, 9),
        resnet_channels: Sequence[int] = (256, 512, 1024),
        stem_channels: int = 64,
        norm_groups: int = 32,
        hidden_size: int = 768,
        num_layers: int = 12,
        num_heads: int = 12,
        mlp_dim: int = 3072,
        head_channels: int = 512,
        decoder_channels: Sequence[int] = (256, 128, 64, 16),
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        if len(resnet_layers) != 3 or len(resnet_channels) != 3 or len(decoder_channels) != 4:
            raise ValueError("TransUNet needs 3 ResNet stages and 4 decoder blocks")
        self.cnn = ResNetV2(
            layers=list(resnet_layers),
            channels=tuple(resnet_channels),
            num_classes=0,
            in_chans=in_channels,
            global_pool="",
            output_stride=PATCH,
            stem_chs=stem_channels,
            preact=False,
            norm_layer=functools.partial(GroupNormAct, num_groups=norm_groups),
        )
        self.grid = img_size // PATCH
        self.patch_embed = nn.Conv2d(resnet_channels[-1], hidden_size, 1)
        self.pos_embed = nn.Parameter(torch.zeros(1, self.grid * self.grid, hidden_size))
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        self.pos_drop = nn.Dropout(dropout)
        self.blocks = nn.Sequential(
            *[Block(hidden_size, num_heads, mlp_ratio=mlp_dim / hidden_size, qkv_bias=True) for _ in range(num_layers)]
        )
        self.norm = nn.LayerNorm(hidden_size, eps=1e-6)
        self.conv_more = _conv_bn_relu(hidden_size, head_channels)
        skips = (resnet_channels[1], resnet_channels[0], stem_channels, 0)
        widths = (head_channels, *decoder_channels[:-1])
        self.decoder = nn.ModuleList(
            _DecoderBlock(i, s, o) for i, s, o in zip(widths, skips, decoder_channels, strict=True)
        )
        self.head = nn.Conv2d(decoder_channels[-1], classes, 3, padding=1)

    def _encode(self, x: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """The 1/16 feature map and the skips at 1/8, 1/4 and 1/2."""
        stem: Any = self.cnn.stem
        half = stem.norm(stem.conv(x))
        quarter = self.cnn.stages[0](stem.pool(half))
        eighth = self.cnn.stages[1](quarter)
        return self.cnn.stages[2](eighth), [eighth, quarter, half]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return class scores shaped ``(B, classes, H, W)`` like the input."""
        height, width = x.shape[-2:]
        pad_h, pad_w = -height % PATCH, -width % PATCH
        if pad_h or pad_w:
            x = F.pad(x, (0, pad_w, 0, pad_h), mode="replicate")
        features, skips = self._encode(x)
        tokens = self.patch_embed(features)
        grid = tokens.shape[-2:]
        tokens = tokens.flatten(2).transpose(1, 2)
        pos = self.pos_embed
        if tuple(grid) != (self.grid, self.grid):
            pos = resample_abs_pos_embed(pos, list(grid), [self.grid, self.grid], num_prefix_tokens=0)
        tokens = self.norm(self.blocks(self.pos_drop(tokens + pos)))
        y = self.conv_more(tokens.transpose(1, 2).reshape(tokens.shape[0], -1, *grid))
        for block, skip in zip(self.decoder, [*skips, None], strict=True):
            y = block(y, skip)
        return self.head(y)[..., :height, :width]


def build_transunet(in_channels: int, classes: int, *, variant: str = "base", **kwargs: Any) -> TransUNet:
    """Build a TransUNet with random weights (never pretrained).

    Parameters
    ----------
    in_channels : int
        Input channels.
    classes : int
        Output classes.
    variant : {"base", "tiny"}
        ``"base"`` is the paper's R50-ViT-B/16; ``"tiny"`` a few-layer model for tests.
    **kwargs
        Override any :class:`TransUNet` parameter of the variant.

    Returns
    -------
    TransUNet

    Raises
    ------
    ValueError
        If the variant is unknown.
    """
    if variant not in VARIANTS:
        raise ValueError(f"unknown TransUNet variant {variant!r}; one of {', '.join(VARIANTS)}")
    return TransUNet(in_channels, classes, **{**VARIANTS[variant], **kwargs})
