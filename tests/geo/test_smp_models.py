"""segmentation-models-pytorch architectures built by name, for any band count, without downloads."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import save_file

from seamline.bundle import ModelCard, build_module
from seamline.errors import ModelError
from seamline.plugins import registry
from seamline_geo.plugin import SMP_ARCHITECTURES


def test_every_architecture_is_registered():
    models = registry("models")
    assert {f"smp.{name}" for name in SMP_ARCHITECTURES} <= set(models)
    assert models["smp.Unet"].spatial_dims == 2


@pytest.mark.parametrize(
    "name,encoder",
    [
        ("Unet", "resnet18"),
        ("FPN", "resnet18"),
        ("DeepLabV3Plus", "resnet18"),
        ("Segformer", "resnet18"),
        ("Unet", "mobilenet_v2"),
    ],
)
def test_any_band_count_gives_class_scores_of_the_input_size(name, encoder):
    model = registry("models")[f"smp.{name}"].build(in_channels=5, classes=3, encoder_name=encoder).eval()
    with torch.inference_mode():
        scores = model(torch.zeros(1, 5, 64, 64))
    assert scores.shape == (1, 3, 64, 64)


def test_bundle_cards_build_smp_models_and_local_encoder_weights_load(tmp_path):
    card = ModelCard(
        "smp.Unet",
        7,
        ["background", "glacier"],
        kwargs={"encoder_name": "resnet18", "encoder_depth": 3, "decoder_channels": [32, 16, 8]},
    )
    model = build_module(card)
    assert model.encoder.conv1.in_channels == 7
    weights = {k: torch.full_like(v, 0.5) for k, v in model.encoder.state_dict().items()}
    save_file(weights, tmp_path / "encoder.safetensors")
    build = registry("models")["smp.Unet"].build
    loaded = build(
        7, 2, encoder_weights=tmp_path / "encoder.safetensors", encoder_depth=3, decoder_channels=[32, 16, 8]
    )
    assert torch.all(loaded.encoder.conv1.weight == 0.5)


def test_wrong_encoder_or_weights_are_model_errors():
    build = registry("models")["smp.Unet"].build
    with pytest.raises(ModelError, match="no-such-encoder"):
        build(3, 2, encoder_name="no-such-encoder")
    with pytest.raises(ModelError, match="local"):
        build(3, 2, encoder_weights="imagenet")
