"""``seamline predict``: a bundle over a Zarr image, outputs checked before any model runs."""

from __future__ import annotations

from typing import ClassVar

import numpy as np
import pytest
import torch
from click.testing import CliRunner

import seamline
from seamline import Image, InputError, hookimpl
from seamline.bundle import ModelCard, build_module, save_model
from seamline.cli import get_cli
from seamline.plugins import Output


class Counts:
    """A test plugin with one output: a text file counting the pixels per class."""

    written: ClassVar[list] = []

    @staticmethod
    def write(labels, path, *, image, overwrite=False):
        values, counts = np.unique(labels.data.compute(), return_counts=True)
        Counts.written.append((labels.meta["class_names"], image.shape))
        with seamline.atomic_output(path, overwrite=overwrite) as tmp:
            tmp.write_text(" ".join(f"{v}:{c}" for v, c in zip(values, counts, strict=True)))

    @staticmethod
    def check(path, image):
        if not str(path).endswith(".txt"):
            raise InputError("counts are written as .txt", path)

    @hookimpl
    def seamline_outputs(self, register):
        register(
            Output(
                name="counts", option="--counts", write=Counts.write, help="Pixel counts per class.", check=Counts.check
            )
        )


@pytest.fixture
def cli(fresh_plugins):
    fresh_plugins.register_plugin(Counts(), name="counts")
    Counts.written.clear()
    return get_cli()


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    seamline.save(
        Image.from_array(rng.normal(0, 1, (2, 40, 52)).astype(np.float32), chunks=(2, 20, 26)), tmp_path / "in.zarr"
    )
    card = ModelCard("core.UNet", 2, ["background", "thing"], kwargs={"widths": [4, 8]}, tile_size=32)
    torch.manual_seed(0)
    save_model(build_module(card), tmp_path / "model", card)
    return tmp_path


def test_predict_labels_and_an_output(cli, files):
    args = ["predict", str(files / "in.zarr"), str(files / "out.zarr"), "--model", str(files / "model")]
    result = CliRunner().invoke(cli, [*args, "--counts", str(files / "counts.txt"), "--no-progress"])
    assert result.exit_code == 0, result.output
    expected = seamline.load_model(files / "model").predict(
        seamline.open(files / "in.zarr"), output="labels", progress=False
    )
    saved = seamline.open(files / "out.zarr")
    np.testing.assert_array_equal(saved.data.compute(), expected.data.compute())
    assert saved.meta["class_names"] == {0: "background", 1: "thing"}
    assert Counts.written == [({0: "background", 1: "thing"}, (2, 40, 52))]
    assert (files / "counts.txt").read_text().split()[0].startswith("0:")


def test_probabilities_and_tile_options(cli, files):
    args = ["predict", str(files / "in.zarr"), str(files / "p.zarr"), "-m", str(files / "model"), "--probabilities"]
    result = CliRunner().invoke(
        cli, [*args, "--tile-size", "16", "--overlap", "0.5", "--batch-size", "2", "--counts", str(files / "c.txt")]
    )
    assert result.exit_code == 0, result.output
    probabilities = seamline.open(files / "p.zarr").data.compute()
    assert probabilities.shape == (2, 40, 52) and np.allclose(probabilities.sum(axis=0), 1, atol=1e-5)
    expected = seamline.load_model(files / "model").predict(
        seamline.open(files / "in.zarr"), output="probabilities", tile_size=16, overlap=0.5, progress=False
    )
    np.testing.assert_allclose(probabilities, expected.data.compute(), atol=1e-6)


def test_existing_output_is_refused_before_predicting(cli, files, monkeypatch):
    (files / "out.zarr").mkdir()
    monkeypatch.setattr(seamline.bundle.Bundle, "predict", lambda *a, **k: pytest.fail("predicted anyway"))
    result = CliRunner().invoke(
        cli, ["predict", str(files / "in.zarr"), str(files / "out.zarr"), "-m", str(files / "model")]
    )
    assert result.exit_code == 2 and "out.zarr: exists already" in result.output
    result = CliRunner().invoke(
        cli,
        [
            "predict",
            str(files / "in.zarr"),
            str(files / "new.zarr"),
            "-m",
            str(files / "model"),
            "--counts",
            str(files / "out.zarr"),
        ],
    )
    assert result.exit_code == 2 and not (files / "new.zarr").exists()


def test_band_count_mismatch_is_an_input_error(cli, files):
    seamline.save(Image.from_array(np.zeros((3, 16, 16), np.float32)), files / "three.zarr")
    result = CliRunner().invoke(
        cli, ["predict", str(files / "three.zarr"), str(files / "o.zarr"), "-m", str(files / "model")]
    )
    assert result.exit_code == 2 and "three.zarr: model expects 2 bands, the image has 3" in result.output


def test_missing_bundle_is_a_model_error(cli, files):
    result = CliRunner().invoke(
        cli, ["predict", str(files / "in.zarr"), str(files / "o.zarr"), "-m", str(files / "none")]
    )
    assert result.exit_code == 2 and "none: no such model bundle" in result.output


def test_help_lists_every_registered_output(cli):
    help_text = CliRunner().invoke(cli, ["predict", "--help"]).output
    assert "--counts PATH" in help_text and "Pixel counts per class." in help_text


def test_an_output_that_cannot_be_made_is_refused_before_predicting(cli, files, monkeypatch):
    monkeypatch.setattr(seamline.bundle.Bundle, "predict", lambda *a, **k: pytest.fail("predicted anyway"))
    args = ["predict", str(files / "in.zarr"), str(files / "out.zarr"), "-m", str(files / "model")]
    result = CliRunner().invoke(cli, [*args, "--counts", str(files / "counts.csv")])
    assert result.exit_code == 2 and "counts.csv: counts are written as .txt" in result.output
    result = CliRunner().invoke(cli, [*args[:2], str(files / "out.xyz"), *args[3:]])
    assert result.exit_code == 2 and "out.xyz: no writer for this format" in result.output
    assert sorted(p.name for p in files.iterdir()) == ["in.zarr", "model"]


def test_probabilities_of_a_one_class_model_give_the_same_labels_to_outputs(cli, files):
    card = ModelCard("core.UNet", 2, ["glacier"], kwargs={"widths": [4, 8]}, tile_size=32)
    torch.manual_seed(1)
    save_model(build_module(card), files / "one", card)
    args = ["predict", str(files / "in.zarr"), "-m", str(files / "one"), "--no-progress"]
    for name, extra in (("labels", []), ("scores", ["--probabilities"])):
        result = CliRunner().invoke(cli, [*args[:2], str(files / f"{name}.zarr"), *args[2:], *extra, "--counts",
                                          str(files / f"{name}.txt")])  # fmt: skip
        assert result.exit_code == 0, result.output
    labels = seamline.open(files / "labels.zarr").data.compute()
    assert labels.any(), "the test needs class 1 predicted somewhere"
    assert (files / "labels.txt").read_text() == (files / "scores.txt").read_text()


def test_scores_is_a_deprecated_alias_of_probabilities(cli, files):
    args = ["predict", str(files / "in.zarr"), "-m", str(files / "model"), "--no-progress"]
    for name, flag in (("old", "--scores"), ("new", "--probabilities")):
        result = CliRunner().invoke(cli, [*args[:2], str(files / f"{name}.zarr"), *args[2:], flag])
        assert result.exit_code == 0, result.output
    old = CliRunner().invoke(cli, [*args[:2], str(files / "again.zarr"), *args[2:], "--scores"])
    assert "warning: --scores is deprecated and will be removed; use --probabilities" in old.output
    np.testing.assert_array_equal(
        seamline.open(files / "old.zarr").data.compute(), seamline.open(files / "new.zarr").data.compute()
    )
