"""Medical architectures: MONAI networks in 2D and 3D, TransUNet, slice-by-slice running."""

from __future__ import annotations

import numpy as np
import pytest

from seamline import Image
from seamline.plugins import registry

torch = pytest.importorskip("torch")

SMALL = {
    "monai.UNet": {"channels": (4, 8), "strides": (2,), "num_res_units": 1},
    "monai.SwinUNETR": {"feature_size": 12, "depths": (1, 1, 1, 1), "num_heads": (1, 1, 1, 1)},
    "monai.UNETR": {"img_size": 32, "hidden_size": 48, "mlp_dim": 96, "num_heads": 4, "feature_size": 8},
    "monai.SegResNet": {"init_filters": 8, "blocks_down": (1, 1), "blocks_up": (1,)},
}


@pytest.mark.parametrize("spatial_dims", [2, 3])
@pytest.mark.parametrize(
    "name", [pytest.param(n, marks=pytest.mark.slow) if n == "monai.SwinUNETR" else n for n in sorted(SMALL)]
)
def test_monai_networks_in_2d_and_3d(fresh_plugins, name, spatial_dims):
    torch.manual_seed(0)
    model = registry("models")[name].build(in_channels=2, classes=3, spatial_dims=spatial_dims, **SMALL[name]).eval()
    size = 64 if name == "monai.SwinUNETR" else 32  # Swin halves five times
    x = torch.randn(1, 2, *([size] * spatial_dims))
    with torch.inference_mode():
        assert model(x).shape == (1, 3, *([size] * spatial_dims))


@pytest.mark.parametrize("size", [(64, 64), (48, 80), (50, 70)])
def test_tiny_transunet_shapes(fresh_plugins, size):
    model = registry("models")["medical.TransUNet"].build(in_channels=1, classes=4, variant="tiny").eval()
    with torch.inference_mode():
        assert model(torch.randn(2, 1, *size)).shape == (2, 4, *size)


@pytest.mark.slow
def test_tiny_transunet_learns_on_cpu(fresh_plugins):
    torch.manual_seed(0)
    model = registry("models")["medical.TransUNet"].build(in_channels=1, classes=2, variant="tiny")
    x = torch.randn(2, 1, 32, 32)
    target = (x[:, 0] > 0).long()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(6):
        optimizer.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        losses.append(loss.item())
        optimizer.step()
    assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
    assert losses[-1] < losses[0]


def test_transunet_base_is_r50_vit_b16():
    from seamline_medical.transunet import build_transunet

    model = build_transunet(3, 9)
    assert len(model.blocks) == 12 and model.pos_embed.shape == (1, 196, 768)
    assert [len(stage.blocks) for stage in model.cnn.stages] == [3, 4, 9]
    assert 100e6 < sum(p.numel() for p in model.parameters()) < 110e6


def test_slicewise_runs_each_slice_through_the_2d_model():
    from seamline_medical.slices import SliceWise, slice_tile_size

    conv = torch.nn.Conv2d(2, 3, 3, padding=1)
    x = torch.randn(2, 2, 5, 6, 4)
    for axis in range(3):
        got = SliceWise(conv, axis)(x)
        slices = [conv(x.select(2 + axis, i)) for i in range(x.shape[2 + axis])]
        torch.testing.assert_close(got, torch.stack(slices, dim=2 + axis))
    assert slice_tile_size(224) == (224, 224, 1)
    assert slice_tile_size((96, 128), axis=0) == (1, 96, 128)


def test_2d_model_predicts_a_volume_slice_by_slice():
    from seamline.inference import predict
    from seamline_medical.slices import SliceWise, slice_tile_size

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(1, 2, 3, padding=1)
    volume = np.random.default_rng(0).random((1, 20, 18, 5)).astype(np.float32)
    scores = predict(
        Image(volume), SliceWise(conv), tile_size=slice_tile_size(20), overlap=0, blend="constant", progress=False
    )
    with torch.inference_mode():
        expected = torch.stack([conv(torch.from_numpy(volume[None, ..., k])) for k in range(5)], dim=-1)[0]
    np.testing.assert_allclose(scores.data.compute(), expected.numpy(), atol=1e-5)


def test_slice_axis_wraps_2d_networks_only(fresh_plugins):
    from seamline_medical.slices import SliceWise

    build = registry("models")["monai.UNet"].build
    model = build(in_channels=1, classes=2, spatial_dims=2, slice_axis=2, **SMALL["monai.UNet"]).eval()
    assert isinstance(model, SliceWise)
    with torch.inference_mode():
        assert model(torch.randn(1, 1, 16, 16, 3)).shape == (1, 2, 16, 16, 3)
    with pytest.raises(ValueError, match="spatial_dims=2"):
        build(in_channels=1, classes=2, slice_axis=2)
