"""Model bundles: safetensors + JSON round trips, never a pickle, clear errors."""

from __future__ import annotations

import dataclasses
import json
import pickle
import zipfile

import numpy as np
import pytest
import torch

import seamline
from seamline import Image, InputError, ModelError, OutputExistsError, hookimpl
from seamline.bundle import Bundle, ModelCard, build_module, load_model, save_model
from seamline.inference import predict
from seamline.normalize import normalize


@pytest.fixture
def card():
    return ModelCard(
        architecture="core.UNet",
        in_channels=2,
        classes=["background", {"name": "glacier", "color": [0, 128, 255]}],
        kwargs={"widths": [4, 8]},
        bands=["red", "nir"],
        normalization={"kind": "zscore", "mean": [10.0, 20.0], "std": [2.0, 4.0]},
        tile_size=32,
        overlap=0.25,
    )


@pytest.fixture
def bundle(card):
    torch.manual_seed(0)
    return Bundle(build_module(card).eval(), card)


@pytest.fixture
def image():
    rng = np.random.default_rng(0)
    data = rng.normal([[[10.0]], [[20.0]]], 3.0, (2, 40, 50)).astype(np.float32)
    return Image.from_array(data, chunks=(2, 20, 25), meta={"band_names": ["red", "nir"]})


@pytest.mark.parametrize("name", ["model", "model.zip"])
def test_round_trip_gives_the_same_predictions(tmp_path, bundle, image, name):
    path = save_model(bundle.module, tmp_path / name, bundle.card)
    loaded = load_model(path)
    assert loaded.card == bundle.card
    for key, tensor in bundle.module.state_dict().items():
        torch.testing.assert_close(loaded.module.state_dict()[key], tensor, rtol=0, atol=0)
    a = bundle.predict(image, output="scores", progress=False).data.compute()
    b = loaded.predict(image, output="scores", progress=False).data.compute()
    np.testing.assert_array_equal(a, b)


def test_bundle_layout_is_json_and_safetensors(tmp_path, bundle):
    path = save_model(bundle.module, tmp_path / "model", bundle.card)
    assert sorted(p.name for p in path.iterdir()) == ["seamline.json", "weights.safetensors"]
    card = json.loads((path / "seamline.json").read_text())
    assert card["architecture"] == "core.UNet" and card["classes"][1] == {
        "id": 1,
        "name": "glacier",
        "color": [0, 128, 255],
    }
    assert card["normalization"]["kind"] == "zscore" and card["tile_size"] == 32 and card["version"]
    with zipfile.ZipFile(save_model(bundle.module, tmp_path / "m.zip", bundle.card)) as archive:
        assert sorted(archive.namelist()) == ["seamline.json", "weights.safetensors"]


def test_loading_never_unpickles(tmp_path, bundle, monkeypatch):
    path = save_model(bundle.module, tmp_path / "model", bundle.card)

    def refuse(*args, **kwargs):
        raise AssertionError("a bundle must never be unpickled")

    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(torch, "load", refuse)
    load_model(path)


def test_predict_is_the_engine_on_the_normalized_image(bundle, image):
    expected = predict(
        normalize(image, bundle.card.normalization), bundle.module, tile_size=32, overlap=0.25, progress=False
    )
    got = seamline.predict(image, bundle, output="scores", progress=False)
    np.testing.assert_allclose(got.data.compute(), expected.data.compute(), rtol=1e-6, atol=1e-6)
    assert got.meta["band_names"] == ["background", "glacier"]
    labels = bundle.predict(image, output="labels", progress=False)
    assert labels.meta["class_names"] == {0: "background", 1: "glacier"}
    assert labels.meta["colors"][1] == (0, 128, 255) and "band_names" not in labels.meta
    np.testing.assert_array_equal(labels.data.compute()[0], expected.data.compute().argmax(axis=0))


def test_bands_are_selected_by_name(bundle, image):
    swapped = image[[1, 0]]
    assert swapped.meta["band_names"] == ["nir", "red"]
    a = bundle.predict(image, output="scores", progress=False).data.compute()
    b = bundle.predict(swapped, output="scores", progress=False).data.compute()
    np.testing.assert_array_equal(a, b)
    with pytest.raises(InputError, match=r"lacks \['nir'\]"):
        bundle.predict(image.replace(meta={"band_names": ["red", "swir"]}), progress=False)


def test_band_count_error_names_both_numbers(bundle):
    three = Image.from_array(np.zeros((3, 16, 16), np.float32), meta={"path": "SCENE.tif"})
    with pytest.raises(InputError, match=r"SCENE.tif: model expects 2 bands, the image has 3"):
        bundle.predict(three)


def test_a_plugin_prepares_the_input_and_restores_the_output(bundle, image, fresh_plugins):
    calls = []

    class Flip:
        @hookimpl
        def seamline_prepare_input(self, image, card):
            calls.append(card.architecture)

            def restore(output, kind):
                calls.append(kind)
                return output.replace(data=output.data[:, ::-1])

            return image.replace(data=image.data[:, ::-1]), restore

    fresh_plugins.register_plugin(Flip(), name="flip")
    flipped = bundle.predict(image, output="labels", progress=False).data.compute()
    fresh_plugins.unregister_plugin("flip")
    plain = bundle.predict(image.replace(data=image.data[:, ::-1]), output="labels", progress=False).data.compute()
    assert calls == ["core.UNet", "labels"]
    np.testing.assert_array_equal(flipped, plain[:, ::-1])


def test_unknown_architecture_lists_the_known_ones(card):
    card.architecture = "nope.Net"
    with pytest.raises(ModelError, match=r"unknown architecture 'nope.Net'; known: .*core.UNet"):
        build_module(card)


def test_corrupt_and_mismatched_weights_name_the_file(tmp_path, bundle, card):
    path = save_model(bundle.module, tmp_path / "model", card)
    (path / "weights.safetensors").write_bytes(b"not tensors at all")
    with pytest.raises(ModelError, match=r"weights.safetensors: not a safetensors file"):
        load_model(path)
    other = dataclasses.replace(card, kwargs={"widths": [4, 8, 16]})
    path = save_model(build_module(other), tmp_path / "wider", other)
    card_file = path / "seamline.json"
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), "kwargs": {"widths": [4, 8]}}))
    with pytest.raises(ModelError, match=r"weights\.safetensors: weights do not fit core\.UNet: .*unexpected"):
        load_model(path)


def test_broken_cards(tmp_path, bundle, card):
    with pytest.raises(ModelError, match="no such model bundle"):
        load_model(tmp_path / "missing")
    path = save_model(bundle.module, tmp_path / "model", card)
    (path / "seamline.json").write_text("{")
    with pytest.raises(ModelError, match=r"seamline\.json is not valid JSON"):
        load_model(path)
    (path / "seamline.json").write_text(
        json.dumps({"architecture": "core.UNet", "in_channels": 2, "classes": [], "x": 1})
    )
    with pytest.raises(ModelError, match=r"unknown fields \['x'\]"):
        load_model(path)
    good = json.loads(json.dumps(card.to_dict()))
    for broken, message in (
        ([1, 2], "expected a JSON object, got list"),
        ({**good, "classes": [1, 2]}, "not a seamline model card"),
        ({**good, "kwargs": [1]}, "kwargs must be a JSON object"),
        ({**good, "classes": [{"id": 1, "name": "a"}]}, r"class ids must be 0\.\.0"),
    ):
        (path / "seamline.json").write_text(json.dumps(broken))
        with pytest.raises(ModelError, match=message) as caught:
            load_model(path)
        assert caught.value.path == str(path)


def test_save_is_atomic_and_refuses_to_overwrite(tmp_path, bundle):
    path = save_model(bundle.module, tmp_path / "model", bundle.card)
    with pytest.raises(OutputExistsError):
        save_model(bundle.module, path, bundle.card)
    save_model(bundle.module, path, bundle.card, overwrite=True)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_a_2d_image_for_a_3d_model(card):
    card.spatial_dims = 3
    card.kwargs = {"widths": [4, 8], "spatial_dims": 3}
    bundle = Bundle(build_module(card), card)
    with pytest.raises(InputError, match="a 2D image for a 3D model"):
        bundle.predict(np.zeros((2, 8, 8), np.float32))


def test_a_volume_for_a_2d_model(bundle):
    with pytest.raises(InputError, match="a 3D image for a 2D model"):
        bundle.predict(np.zeros((2, 8, 8, 8), np.float32))


@pytest.mark.parametrize(("spatial_dims", "shape"), [(2, (13, 21)), (3, (5, 9, 7))])
def test_core_unet_keeps_any_input_size(spatial_dims, shape):
    card = ModelCard("core.UNet", 3, ["a", "b", "c", "d"], kwargs={"widths": [4, 8, 8], "spatial_dims": spatial_dims})
    module = build_module(card).eval()
    with torch.no_grad():
        out = module(torch.randn(2, 3, *shape))
    assert out.shape == (2, 4, *shape)
