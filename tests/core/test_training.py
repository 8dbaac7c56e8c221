"""The training loop end to end on a small synthetic scene: determinism, resume, early stop, CLI."""

from __future__ import annotations

import json

import dask.array as da
import numpy as np
import pytest
import torch
import yaml
from click.testing import CliRunner

import seamline
from seamline import Image, InputError, OutputExistsError, hookimpl
from seamline.bundle import load_model
from seamline.cli import get_cli
from seamline.plugins import Reader
from seamline.training import load_config, trainer
from seamline.training.checkpoint import load_checkpoint


@pytest.fixture(scope="module")
def scene(tmp_path_factory):
    folder = tmp_path_factory.mktemp("scene")
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:48, 0:64]
    truth = ((np.sin(xx / 5.0) + np.cos(yy / 4.0)) > 0.4).astype(np.uint8)
    image = np.stack([truth + rng.normal(0, 0.3, truth.shape), rng.normal(0, 1, truth.shape)]).astype(np.float32)
    seamline.save(Image.from_array(image, chunks=(2, 24, 32)), folder / "image.zarr")
    seamline.save(Image.from_array(truth[None], chunks=(1, 24, 32)), folder / "labels.zarr")
    return folder


def _config(scene, out, **loop):
    return {
        "data": {"image": str(scene / "image.zarr"), "labels": str(scene / "labels.zarr")},
        "classes": ["background", "blob"],
        "model": {"kwargs": {"widths": [4, 8]}},
        "patches": {"size": 16, "per_epoch": 16},
        "training": {"epochs": 2, "batch_size": 4, "progress": False, **loop},
        "predict": {"tile_size": 32},
        "out": str(out),
    }


def _weights(path):
    return load_model(path).module.state_dict()


def _assert_same_weights(a, b):
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0)


def test_train_writes_bundle_history_and_checkpoint(scene, tmp_path):
    result = seamline.train(_config(scene, tmp_path / "run"))
    assert result.path == tmp_path / "run" / "model"
    assert [row["epoch"] for row in result.history] == [1, 2]
    assert {"loss", "lr", "val_mean_iou", "seconds"} <= set(result.history[0])
    assert json.loads((tmp_path / "run" / "history.json").read_text()) == result.history
    assert (tmp_path / "run" / "history.csv").read_text().startswith("epoch,loss,lr,val_mean_iou")
    card = result.bundle.card
    assert card.normalization["kind"] == "zscore" and len(card.normalization["mean"]) == 2
    assert card.kwargs == {"widths": [4, 8], "spatial_dims": 2} and card.tile_size == 32
    assert card.training["best_metric"] == result.best_metric
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoint").iterdir()) == [
        "model",
        "optimizer.safetensors",
        "state.json",
    ]
    with pytest.raises(OutputExistsError):
        seamline.train(_config(scene, tmp_path / "run"))


def test_same_seed_same_model(scene, tmp_path):
    a = seamline.train(_config(scene, tmp_path / "a", metric="mean_dice"))
    b = seamline.train(_config(scene, tmp_path / "b", metric="mean_dice"))
    _assert_same_weights(_weights(a.path), _weights(b.path))
    assert [r["loss"] for r in a.history] == [r["loss"] for r in b.history]


def test_resume_gives_the_uninterrupted_result(scene, tmp_path, monkeypatch):
    straight = seamline.train(_config(scene, tmp_path / "straight", epochs=3))
    run_epoch = trainer._epoch

    def interrupted(*args):
        if args[6] == 2:  # the third epoch
            raise KeyboardInterrupt
        return run_epoch(*args)

    monkeypatch.setattr(trainer, "_epoch", interrupted)
    with pytest.raises(KeyboardInterrupt):
        seamline.train(_config(scene, tmp_path / "resumed", epochs=3))
    monkeypatch.setattr(trainer, "_epoch", run_epoch)
    state = json.loads((tmp_path / "resumed" / "checkpoint" / "state.json").read_text())
    assert state["loop"]["epoch"] == 1
    resumed = seamline.train(_config(scene, tmp_path / "resumed", epochs=3), resume=True)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]
    _assert_same_weights(
        load_model(tmp_path / "straight" / "checkpoint" / "model").module.state_dict(),
        load_model(tmp_path / "resumed" / "checkpoint" / "model").module.state_dict(),
    )
    changed = _config(scene, tmp_path / "resumed", epochs=4)
    changed["model"] = {"kwargs": {"widths": [4, 4]}}
    with pytest.raises(InputError, match=r"checkpoint: its model differs|optimizer.safetensors: cannot restore"):
        seamline.train(changed, resume=True)


def test_resume_needs_a_checkpoint(scene, tmp_path):
    with pytest.raises(InputError, match=r"run/checkpoint: nothing to resume: no checkpoint$"):
        seamline.train(_config(scene, tmp_path / "run"), resume=True)
    (tmp_path / "run" / ".checkpoint.1a2b3c4d.old").mkdir(parents=True)
    with pytest.raises(InputError, match=r"left at .checkpoint.1a2b3c4d.old: rename it to checkpoint"):
        seamline.train(_config(scene, tmp_path / "run"), resume=True)
    assert not (tmp_path / "run" / "model").exists()


def test_a_corrupt_checkpoint_state_is_an_input_error_naming_it(tmp_path):
    (tmp_path / "state.json").write_text('{"loop": ')
    optimizer = torch.optim.AdamW(torch.nn.Linear(2, 2).parameters())
    with pytest.raises(InputError, match=r"state.json: unreadable checkpoint state \(JSONDecodeError"):
        load_checkpoint(tmp_path, optimizer)


def test_early_stopping(scene, tmp_path):
    config = _config(scene, tmp_path / "run", epochs=6, patience=2)
    config["optimizer"] = {"lr": 0.0}
    result = seamline.train(config)
    assert result.stopped_early and len(result.history) == 3 and result.best_epoch == 1


def test_a_nan_validation_metric_is_never_best_and_never_blocks_a_real_one(scene, tmp_path, monkeypatch):
    figures = iter([float("nan"), 0.2, float("nan"), 0.1])
    monkeypatch.setattr(trainer, "_validate", lambda *args: {"val_mean_iou": next(figures)})
    result = seamline.train(_config(scene, tmp_path / "run", epochs=4))
    assert (result.best_epoch, result.best_metric) == (2, 0.2)
    assert result.bundle.card.training["epochs"] == 2


@pytest.mark.parametrize("metric", ["mean_boundary_f1", "mean_hd95", "pq"])
def test_every_metric_is_computed_as_evaluate_computes_it(scene, tmp_path, metric):
    result = seamline.train(_config(scene, tmp_path / "run", epochs=1, metric=metric))
    image, truth = seamline.open(scene / "image.zarr"), seamline.open(scene / "labels.zarr")
    window = (slice(0, 48), slice(32, 64))
    prediction = result.bundle.predict(image.window(*window), output="labels", progress=False)
    options = {"mean_boundary_f1": {}, "mean_hd95": {"spacing": True}, "pq": {"objects": True}}[metric]
    report = seamline.evaluate(prediction, truth.window(*window), num_classes=2, ignore_index=255, **options)
    expected = report.objects["pq"] if metric == "pq" else getattr(report, metric)
    np.testing.assert_allclose(result.history[0][f"val_{metric}"], expected)


def test_validation_windows_and_no_validation(scene, tmp_path):
    config = _config(scene, tmp_path / "windows", epochs=1)
    config["validation"] = {"windows": [[[0, 48], [40, 64]]]}
    assert "val_mean_iou" in seamline.train(config).history[0]
    config["validation"] = {"windows": [[[0, 48], [8, 60]]]}  # 8 and 4 columns left for 16-wide patches
    with pytest.raises(InputError, match=r"no room for a training patch of size \(16, 16\)"):
        seamline.train(config, overwrite=True)
    config = _config(scene, tmp_path / "none", epochs=1)
    config["validation"] = None
    result = seamline.train(config)
    assert "val_mean_iou" not in result.history[0] and result.best_epoch == 1


PAIR = {"image": "image.zarr", "labels": "labels.zarr"}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"patches": {"sise": 16}}, r"cfg.yaml: patches.sise: unknown key"),
        ({"training": {"epochs": "many"}}, r"cfg.yaml: training.epochs: expected int, got str 'many'"),
        (
            {"data": {"image": "missing.tif", "labels": "labels.zarr"}},
            r"cfg.yaml: data.image: no such file: missing.tif",
        ),
        ({"data": {"labels": "labels.zarr"}}, r"cfg.yaml: data.image: required"),
        ({"optimizer": {"schedule": "cosin"}}, r"cfg.yaml: optimizer.schedule: unknown 'cosin'; one of cosine"),
        ({"loss": "dcie"}, r"cfg.yaml: loss: unknown loss 'dcie'; one of ce, dice"),
        ({"loss": {"kind": "dice", "gamma": 2}}, r"cfg.yaml: loss: loss 'dice' takes no option 'gamma'"),
        ({"normalization": {"kind": "zcore"}}, r"cfg.yaml: normalization.kind: unknown 'zcore'; one of none"),
        ({"model": {"architecture": "core.Unet"}}, r"cfg.yaml: model.architecture: unknown 'core.Unet'; one of"),
        ({"training": {"metric": "iou"}}, r"cfg.yaml: training.metric: unknown 'iou'; one of mean_iou"),
        ({"classes": ["glacier"]}, r"cfg.yaml: classes: at least two are needed"),
        ({"data": {**PAIR, "label_map": {5: 2}}}, r"cfg.yaml: data.label_map: 5: 2: source values are integers"),
        ({"data": {**PAIR, "label_map": {"x": 1}}}, r"cfg.yaml: data.label_map: 'x': 1: source values are"),
    ],
)
def test_config_errors_name_the_file_and_the_key(scene, change, message):
    config = {"data": PAIR, **change}
    path = scene / "cfg.yaml"
    path.write_text(yaml.safe_dump(config))
    with pytest.raises(InputError, match=message):
        load_config(path)
    result = CliRunner().invoke(get_cli(), ["train", str(path)])
    assert result.exit_code == 2 and "error:" in result.output


def test_config_paths_are_relative_to_the_file_and_overrides_apply(scene, tmp_path, monkeypatch):
    path = scene / "relative.yaml"
    path.write_text(yaml.safe_dump({"data": {"image": "image.zarr", "labels": "labels.zarr"}, "out": "run"}))
    config = load_config(path, epochs=7, training={"seed": 3})
    assert config.data.image == str(scene / "image.zarr") and config.out == str(scene / "run")
    assert config.training.epochs == 7 and config.training.seed == 3
    monkeypatch.chdir(tmp_path)
    (tmp_path / "here.zarr").mkdir()
    config = load_config(path, out="runs/x", data={"image": "here.zarr"})
    assert config.out == str(tmp_path / "runs" / "x") and config.data.image == str(tmp_path / "here.zarr")
    assert config.data.labels == str(scene / "labels.zarr")


def test_empty_sections_take_their_defaults(scene):
    path = scene / "empty.yaml"
    path.write_text("data: {image: image.zarr, labels: labels.zarr}\ntraining:\npatches:\nvalidation:\n")
    config = load_config(path, epochs=3)
    assert config.training.epochs == 3 and config.training.batch_size == 8 and config.patches.size == 128
    assert config.validation is None
    assert load_config(path, validation={"fraction": 0.25}).validation.fraction == 0.25


def test_cli_train(scene, tmp_path, monkeypatch):
    path = scene / "cli.yaml"
    path.write_text(yaml.safe_dump(_config(scene, tmp_path / "ignored")))
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(get_cli(), ["train", str(path), "--out", "runs/cli", "--epochs", "1"])
    assert result.exit_code == 0, result.output
    assert "trained 1 epochs" in result.output and (tmp_path / "runs" / "cli" / "model" / "seamline.json").exists()
    help_text = CliRunner().invoke(get_cli(), ["train", "--help"]).output
    assert "architecture: core.UNet" in help_text and "validation:" in help_text


class SquareLabels:
    """A test plugin: a "vector" reader that needs like=<Image> for its grid, as the geo one does."""

    @hookimpl
    def seamline_readers(self, register):
        def open_squares(path, chunks=None, *, like=None, attribute=None):
            if like is None:
                raise InputError("vector labels need like=<an Image>", path)
            labels = np.zeros(like.spatial_shape, np.uint8)
            labels[4:20, 8:40] = 1
            return like.replace(data=da.from_array(labels[None], chunks=(1, 24, 32)), meta={"attribute": attribute})

        register(Reader(name="squares", can_open=lambda p: str(p).endswith(".squares"), open=open_squares))


def test_vector_labels_are_opened_on_the_image_grid(scene, tmp_path, fresh_plugins):
    fresh_plugins.register_plugin(SquareLabels(), name="squares")
    (scene / "labels.squares").write_text("")
    config = _config(scene, tmp_path / "run", epochs=1)
    config["data"] = {**config["data"], "labels": str(scene / "labels.squares"), "label_attribute": "kind"}
    cfg = load_config(config)
    image, labels = trainer._open_pair(cfg.data.image, cfg.data.labels, cfg)
    assert labels.spatial_shape == image.spatial_shape and labels.meta["attribute"] == "kind"
    assert int(labels.data.sum().compute()) == 16 * 32
    assert seamline.train(config).history[0]["epoch"] == 1


@pytest.mark.parametrize(("flags", "progress"), [([], None), (["--no-progress"], False), (["--progress"], True)])
def test_cli_progress_overrides_the_config_only_when_given(scene, monkeypatch, flags, progress):
    seen = {}

    def fake_train(config, **options):
        seen.update(options)
        return trainer.TrainResult(None, scene / "model", [], None, None, False)

    monkeypatch.setattr(seamline.training, "train", fake_train, raising=False)
    result = CliRunner().invoke(get_cli(), ["train", str(scene / "cli.yaml"), *flags])
    assert result.exit_code == 0, result.output
    assert seen.get("progress") is progress
