"""State-dict checkpoints with a named architecture: load_model, predict --model, import-model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import seamline
from seamline import Image, InputError, ModelError
from seamline.cli import get_cli
from seamline.unet import build_unet

torch = pytest.importorskip("torch")

OPTIONS = {"architecture": "core.UNet", "in_channels": 2, "classes": 3, "widths": [4, 8]}


@pytest.fixture
def net():
    torch.manual_seed(0)
    return build_unet(2, 3, widths=[4, 8], spatial_dims=2).eval()


@pytest.fixture
def checkpoint(tmp_path, net):
    """A Lightning-style checkpoint: the network under ``model.``, a loss buffer and an optimizer beside it."""
    path = tmp_path / "run.ckpt"
    state = {f"model.{k}": v for k, v in net.state_dict().items()}
    torch.save({"epoch": 4, "state_dict": {**state, "criterion.weight": torch.ones(3)}, "optimizer_states": []}, path)
    return path


@pytest.fixture
def image(tmp_path):
    rng = np.random.default_rng(0)
    data = rng.normal(0, 1, (2, 40, 56)).astype(np.float32)
    seamline.save(Image.from_array(data, chunks=(2, 20, 28)), tmp_path / "in.zarr")
    return data


def reference(net, data, tile=32):
    """The network on the image through the engine itself: the checkpoint must change nothing."""
    return seamline.predict(data, net, tile_size=tile, output="probabilities", progress=False).data.compute()


def test_checkpoint_predicts_as_the_network_it_was_saved_from(checkpoint, net, image):
    bundle = seamline.load_model(checkpoint, **OPTIONS)
    assert bundle.card.architecture == "core.UNet" and bundle.card.in_channels == 2
    assert set(bundle.missing) == {"bands", "classes", "normalization"}
    ours = bundle.predict(image, tile_size=32, output="probabilities", progress=False).data.compute()
    np.testing.assert_array_equal(ours, reference(net, image))


def test_a_checkpoint_without_its_architecture_says_what_to_give(checkpoint):
    with pytest.raises(ModelError, match=r"run\.ckpt: a checkpoint holds weights, not the network: give architecture"):
        seamline.load_model(checkpoint)
    with pytest.raises(ModelError, match=r"unknown architecture 'no\.Such'"):
        seamline.load_model(checkpoint, **{**OPTIONS, "architecture": "no.Such"})
    with pytest.raises(ModelError, match=r"weights under 'state_dict\.model\.' do not fit core\.UNet: mis-shaped"):
        seamline.load_model(checkpoint, **{**OPTIONS, "classes": 4})


def test_card_fields_given_at_load_time(checkpoint):
    bundle = seamline.load_model(
        checkpoint, **{**OPTIONS, "classes": ["a", "b", "c"]}, bands=["x", "y"], normalization="none"
    )
    assert bundle.missing == ()
    assert bundle.card.class_names == {0: "a", 1: "b", 2: "c"} and bundle.card.bands == ["x", "y"]
    with pytest.raises(InputError, match="3 band names for a model that takes 2 bands"):
        seamline.load_model(checkpoint, **OPTIONS, bands=["x", "y", "z"])
    with pytest.raises(InputError, match="unknown normalization 'nope'"):
        seamline.load_model(checkpoint, **OPTIONS, normalization="nope")


def test_one_sigmoid_channel_is_two_classes(tmp_path, image):
    torch.manual_seed(0)
    net = build_unet(2, 1, widths=[4, 8], spatial_dims=2).eval()
    torch.save(net.state_dict(), tmp_path / "binary.pth")
    options = {**OPTIONS, "classes": 1}
    assert len(seamline.load_model(tmp_path / "binary.pth", **options).card.classes) == 2
    target = seamline.import_model(
        tmp_path / "binary.pth",
        tmp_path / "b",
        options=options,
        bands=["x", "y"],
        classes=["bg", "fg"],
        normalization="none",
    )
    loaded = seamline.load_model(target)
    assert loaded.card.class_names == {0: "bg", 1: "fg"} and loaded.card.kwargs["classes"] == 1
    labels = loaded.predict(image, tile_size=32, output="labels", progress=False).data.compute()
    scores = seamline.predict(image, net, tile_size=32, progress=False).data.compute()
    np.testing.assert_array_equal(labels[0], (scores[0] > 0).astype(np.uint8))


def test_import_model_names_every_missing_field_and_exits_2(checkpoint, tmp_path):
    args = ["import-model", str(checkpoint), str(tmp_path / "out"), "--architecture", "core.UNet"]
    args += ["--model-option", "in_channels=2", "--model-option", "classes=3", "--model-option", "widths=[4, 8]"]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 2
    assert result.output.strip() == (
        f"error: {checkpoint}: the model does not say its bands, normalization, classes: "
        "give --bands, --normalization, --classes"
    )
    assert not (tmp_path / "out").exists()


def test_imported_bundle_predicts_as_the_checkpoint(checkpoint, net, image, tmp_path):
    args = ["import-model", str(checkpoint), str(tmp_path / "out.zip"), "--architecture", "core.UNet"]
    args += ["--model-option", "in_channels=2", "--model-option", "widths=[4, 8]", "--classes", "bg,road,roof"]
    args += ["--bands", "red,nir", "--normalization", '{"kind": "zscore", "mean": [0, 0], "std": [1, 1]}']
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    card = json.loads(__import__("zipfile").ZipFile(tmp_path / "out.zip").read("seamline.json"))
    assert card["bands"] == ["red", "nir"] and [c["name"] for c in card["classes"]] == ["bg", "road", "roof"]
    assert card["training"]["imported_from"] == {"format": "checkpoint", "file": "run.ckpt", "torchgeo": False}
    imported = seamline.load_model(tmp_path / "out.zip")
    source = seamline.load_model(checkpoint, **OPTIONS, normalization=card["normalization"])
    for bundle in (imported, source):
        out = bundle.predict(image, tile_size=32, output="probabilities", progress=False).data.compute()
        np.testing.assert_array_equal(out, reference(net, image))


def test_predict_takes_a_checkpoint_with_its_architecture(checkpoint, net, image, tmp_path):
    args = ["predict", str(tmp_path / "in.zarr"), str(tmp_path / "out.zarr"), "--model", str(checkpoint)]
    args += ["--architecture", "core.UNet", "--model-option", "in_channels=2", "--model-option", "classes=3"]
    args += ["--model-option", "widths=[4,8]", "--tile-size", "32", "--no-progress"]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    labels = seamline.open(tmp_path / "out.zarr").data.compute()
    np.testing.assert_array_equal(labels[0], reference(net, image).argmax(0))
    bad = CliRunner().invoke(get_cli(), [*args[:5], "--model-option", "in_channels", "--overwrite"])
    assert bad.exit_code == 2 and "a model option is KEY=VALUE, got 'in_channels'" in bad.output


def test_plugins_list_the_model_formats():
    result = CliRunner().invoke(get_cli(), ["plugins", "--all"])
    assert result.exit_code == 0
    assert "  model_formats: checkpoint\n" in result.output
