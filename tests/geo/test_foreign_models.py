"""smp ``save_pretrained`` folders and TorchGeo checkpoints against segmentation-models-pytorch itself."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import seamline
from seamline import ModelError
from seamline.cli import get_cli

torch = pytest.importorskip("torch")
smp = pytest.importorskip("segmentation_models_pytorch")

RESNET = {"encoder_name": "resnet18"}
CASES = [
    ("Unet", {**RESNET, "in_channels": 4, "classes": 3}),
    ("FPN", {**RESNET, "in_channels": 3, "classes": 1, "activation": "sigmoid"}),
    ("Unet", {**RESNET, "in_channels": 3, "classes": 2, "activation": "softmax2d", "aux_params": {"classes": 5}}),
    ("Segformer", {"encoder_name": "mit_b0", "in_channels": 2, "classes": 3}),
]


def saved(tmp_path, architecture, kwargs, seed=0):
    torch.manual_seed(seed)
    model = getattr(smp, architecture)(encoder_weights=None, **kwargs).eval()
    with torch.no_grad():  # running statistics that are not the defaults, so buffers must load too
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-0.2, 0.2)
                module.running_var.uniform_(0.5, 1.5)
    folder = tmp_path / f"{architecture}-{seed}"
    model.save_pretrained(folder)
    return folder


def as_probabilities(scores, classes):
    return torch.sigmoid(scores) if classes == 1 else torch.softmax(scores, 1)


@pytest.mark.parametrize(("architecture", "kwargs"), CASES)
def test_smp_folder_equals_smp_from_pretrained_on_tiles(tmp_path, architecture, kwargs):
    folder = saved(tmp_path, architecture, kwargs)
    theirs = smp.from_pretrained(str(folder)).eval()
    bundle = seamline.load_model(folder)
    assert bundle.card.architecture == f"smp.{architecture}"
    assert set(bundle.missing) == {"bands", "classes", "normalization"}
    assert len(bundle.card.classes) == max(2, kwargs["classes"])
    rng = np.random.default_rng(0)
    image = rng.normal(0, 1, (kwargs["in_channels"], 64, 96)).astype(np.float32)
    tiles = torch.from_numpy(np.stack([image[:, :, :64], image[:, :, 32:]]))
    with torch.no_grad():
        expected = theirs(tiles)
    expected = expected[0] if isinstance(expected, tuple) else expected  # masks, labels with aux_params
    options = {"tile_size": 64, "overlap": 0.5, "blend": "constant", "progress": False}
    # seamline runs convolutions in channels-last memory: other kernels, float32 rounding apart
    if kwargs.get("activation") is None:  # smp gives the scores: on the overlap (columns 32..63) their mean
        scores = bundle.predict(image, **options, output="scores").data.compute()
        both = (expected[0, :, :, 32:] + expected[1, :, :, :32]).numpy() / 2
        np.testing.assert_allclose(scores[:, :, 32:64], both, rtol=1e-4, atol=1e-4)
        expected = as_probabilities(expected, kwargs["classes"])
    ours = bundle.predict(image, **options, output="probabilities").data.compute()
    np.testing.assert_allclose(ours[:, :, :32], expected[0, :, :, :32].numpy(), atol=2e-5)
    np.testing.assert_allclose(ours[:, :, 64:], expected[1, :, :, 32:].numpy(), atol=2e-5)


def test_smp_folders_seamline_does_not_follow(tmp_path):
    folder = saved(tmp_path, "Unet", {"encoder_name": "resnet18", "in_channels": 3, "classes": 3, "activation": "tanh"})
    with pytest.raises(ModelError, match=r"config\.json: activation 'tanh' on 3 classes"):
        seamline.load_model(folder)
    config = (folder / "config.json").read_text().replace('"Unet"', '"Nonesuch"')
    (folder / "config.json").write_text(config)
    with pytest.raises(ModelError, match=r"config\.json: smp\.Nonesuch is not a registered architecture"):
        seamline.load_model(folder)


def test_smp_folder_imports_to_a_bundle_that_predicts_the_same(tmp_path):
    folder = saved(tmp_path, "Unet", CASES[0][1])
    args = ["import-model", str(folder), str(tmp_path / "fields"), "--bands", "b,g,r,nir"]
    args += ["--classes", "other,field,forest", "--normalization", "none", "--tile-size", "64"]
    assert CliRunner().invoke(get_cli(), args).exit_code == 0
    image = np.random.default_rng(1).normal(0, 1, (4, 80, 100)).astype(np.float32)
    results = [
        bundle.predict(image, output="probabilities", progress=False).data.compute()
        for bundle in (seamline.load_model(folder, tile_size=64), seamline.load_model(tmp_path / "fields"))
    ]
    np.testing.assert_array_equal(*results)
    assert seamline.load_model(tmp_path / "fields").card.class_names[1] == "field"


TORCHGEO_HPARAMS = {
    "model": "unet", "backbone": "resnet18", "weights": None, "in_channels": 4, "num_classes": 3, "num_filters": 3,
    "loss": "ce", "class_weights": None, "ignore_index": None, "lr": 0.001, "patience": 10,
    "freeze_backbone": False, "freeze_decoder": False,
}  # fmt: skip


def torchgeo_checkpoint(path, model, hparams):
    """What Lightning saves of a TorchGeo SemanticSegmentationTask: the smp model under ``model.``, the loss beside."""
    state = {f"model.{k}": v for k, v in model.state_dict().items()}
    state["criterion.weight"] = torch.ones(3)
    torch.save(
        {
            "epoch": 9,
            "global_step": 900,
            "pytorch-lightning_version": "2.4.0",
            "state_dict": state,
            "loops": {"fit_loop": {"state_dict": {}, "epoch_progress": {"current": {"completed": 9}}}},
            "callbacks": {"ModelCheckpoint{'monitor': 'val_loss'}": {"best_model_score": torch.tensor(0.3)}},
            "optimizer_states": [{"state": {}, "param_groups": [{"lr": 0.001, "params": [0, 1]}]}],
            "lr_schedulers": [],
            "hparams_name": "kwargs",
            "hyper_parameters": {**TORCHGEO_HPARAMS, **hparams},
        },
        path,
    )


def test_torchgeo_checkpoint_names_its_own_architecture(tmp_path):
    torch.manual_seed(0)
    model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=4, classes=3).eval()
    torchgeo_checkpoint(tmp_path / "epoch=9.ckpt", model, {})
    bundle = seamline.load_model(tmp_path / "epoch=9.ckpt")
    assert bundle.card.architecture == "smp.Unet" and bundle.card.kwargs == {"encoder_name": "resnet18"}
    x = torch.randn(2, 4, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(bundle.module(x), model(x), rtol=0, atol=0)
    target = tmp_path / "torchgeo.zip"
    seamline.import_model(
        tmp_path / "epoch=9.ckpt", target, bands=list("abcd"), classes=["x", "y", "z"], normalization="none"
    )
    with torch.no_grad():
        torch.testing.assert_close(seamline.load_model(target).module(x), model(x), rtol=0, atol=0)


def test_torchgeo_tasks_seamline_cannot_build(tmp_path):
    model = smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=4, classes=1)
    torchgeo_checkpoint(tmp_path / "binary.ckpt", model, {"task": "binary", "num_classes": 2})
    assert seamline.load_model(tmp_path / "binary.ckpt").card.kwargs["classes"] == 1
    torchgeo_checkpoint(tmp_path / "fcn.ckpt", model, {"model": "fcn"})
    with pytest.raises(ModelError, match="TorchGeo model 'fcn' is not one seamline builds"):
        seamline.load_model(tmp_path / "fcn.ckpt")
    torchgeo_checkpoint(tmp_path / "multi.ckpt", model, {"task": "multilabel"})
    with pytest.raises(ModelError, match="multilabel"):
        seamline.load_model(tmp_path / "multi.ckpt")
