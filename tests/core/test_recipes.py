"""Recipes: one schema (a partial training config), used from a config file or the CLI alone."""

from __future__ import annotations

import json

import numpy as np
import pytest
import yaml

import seamline
from seamline import hookimpl
from seamline.cli import main
from seamline.errors import InputError
from seamline.plugins import Recipe, register_plugin, registry
from seamline.training.config import load_config

TINY = Recipe(
    name="tiny-blobs",
    description="bright blobs on a dark field, for tests",
    config={
        "card": {"bands": ["red", "nir"]},
        "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "blob", "color": [255, 0, 0]}],
        "model": {"architecture": "core.UNet", "kwargs": {"widths": [4, 8]}},
        "normalization": {"kind": "zscore"},
        "patches": {"size": 16, "per_epoch": 8},
        "training": {"epochs": 3, "batch_size": 4, "progress": False},
        "validation": None,
        "predict": {"tile_size": 32, "overlap": 0.5},
    },
)


class TinyRecipes:
    @hookimpl
    def seamline_recipes(self, register):
        register(TINY)


@pytest.fixture
def tiny(fresh_plugins):
    register_plugin(TinyRecipes(), name="tiny-recipes")
    yield TINY


@pytest.fixture
def scene(tmp_path):
    rng = np.random.default_rng(0)
    labels = np.zeros((48, 48), np.uint8)
    labels[8:20, 10:30] = 1
    labels[30:44, 5:15] = 1
    image = rng.normal(0, 0.2, (2, 48, 48)).astype(np.float32) + labels
    image_path = seamline.save(seamline.Image.from_array(image), tmp_path / "scene.zarr")
    labels_path = seamline.save(seamline.Image.from_array(labels[None]), tmp_path / "labels.zarr")
    return image_path, labels_path


def test_every_registered_recipe_is_a_valid_training_config(fresh_plugins, scene):
    image, labels = scene
    recipes = registry("recipes")
    assert recipes, "the built-in plugins register recipes"
    for name in recipes:
        config = load_config(None, recipe=name, data={"image": image, "labels": labels}, out="run")
        assert config.recipe == name


def test_a_config_overrides_its_recipe_key_by_key(tiny, scene, tmp_path):
    image, labels = scene
    path = tmp_path / "train.yaml"
    path.write_text(yaml.safe_dump({"recipe": "tiny-blobs", "data": {"image": image, "labels": labels},
                                    "patches": {"size": 24}}))  # fmt: skip
    config = load_config(path, epochs=1)
    assert config.patches.size == 24  # the file's
    assert config.patches.per_epoch == 8  # the recipe's, kept beside the file's size
    assert config.training.epochs == 1  # the option's
    assert config.model.kwargs == {"widths": [4, 8]}
    assert config.card.bands == ["red", "nir"]


def test_an_unknown_recipe_names_the_file_and_the_key(fresh_plugins, tmp_path):
    path = tmp_path / "train.yaml"
    path.write_text("recipe: glaciers-lansat\n")
    with pytest.raises(InputError, match=r"train\.yaml: recipe: unknown 'glaciers-lansat'; one of .*glaciers-landsat"):
        load_config(path)


def test_card_bands_must_match_the_image(tiny, scene, tmp_path):
    image, labels = scene
    with pytest.raises(InputError, match=r"card\.bands names 3 bands"):
        seamline.train(None, recipe="tiny-blobs", data={"image": image, "labels": labels},
                       card={"bands": ["r", "g", "b"]}, out=tmp_path / "run")  # fmt: skip


def test_train_from_the_command_line_with_a_recipe_and_no_file(tiny, scene, tmp_path, capsys):
    image, labels = scene
    out = tmp_path / "run"
    with pytest.raises(SystemExit) as exit_info:
        main(["train", "--recipe", "tiny-blobs", "--image", image, "--labels", labels, "--out", str(out),
              "--epochs", "2"])  # fmt: skip
    assert exit_info.value.code == 0, capsys.readouterr().err
    card = json.loads((out / "model" / "seamline.json").read_text())
    assert card["bands"] == ["red", "nir"]
    assert card["tile_size"] == 32 and card["overlap"] == 0.5
    assert card["training"]["recipe"] == "tiny-blobs"
    assert [c["color"] for c in card["classes"]] == [[0, 0, 0], [255, 0, 0]]
    assert len(json.loads((out / "history.json").read_text())) == 2


def test_train_without_a_config_or_a_recipe_is_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["train"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip() == "error: give a CONFIG file or --recipe NAME (seamline recipes lists them)"


def test_recipes_command_lists_names_descriptions_and_plugins(tiny, capsys):
    with pytest.raises(SystemExit):
        main(["recipes"])
    lines = capsys.readouterr().out.splitlines()
    assert any(line.startswith("tiny-blobs") and "bright blobs" in line and "[tiny-recipes]" in line for line in lines)
    assert any(line.startswith("glaciers-landsat ") for line in lines)


def test_models_command_lists_the_shipped_bundle(fresh_plugins, capsys):
    with pytest.raises(SystemExit):
        main(["models", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    glaciers = rows["glaciers-landsat"]
    assert glaciers["bands"] == ["red", "green", "blue", "nir"]
    assert glaciers["classes"] == ["background", "glacier"]
    assert glaciers["plugin"] == "geo"
