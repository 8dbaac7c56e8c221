"""End to end: a model that is an exact function of intensity, through the engine and back.

The model thresholds intensity (a 1x1x1 convolution with fixed weights, two classes), so
the saved labels must equal ``volume > threshold`` voxel for voxel, on the input's own
grid and header, whatever the volume's orientation (RAS CT, LPS MR).
"""

from __future__ import annotations

import nibabel as nib
import numpy as np
import pytest
from click.testing import CliRunner

import seamline
from seamline import hookimpl
from seamline.plugins import Architecture
from tests.conftest import data_file

THRESHOLD = 100.5
VOLUMES = {
    "ct_ras": ("totalsegmentator_ct_mr", "example_ct_sm.nii.gz"),
    "mr_lps": ("totalsegmentator_ct_mr", "example_mr_sm.nii.gz"),
}


def build_threshold(in_channels: int, classes: int, spatial_dims: int = 3):
    import torch

    conv = (torch.nn.Conv3d if spatial_dims == 3 else torch.nn.Conv2d)(in_channels, classes, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.weight[0, 0] = -1.0
        conv.weight[1, 0] = 1.0
        conv.bias.copy_(torch.tensor([THRESHOLD, -THRESHOLD]))
    return conv


class ThresholdPlugin:
    @hookimpl
    def seamline_models(self, register):
        register(Architecture(name="test.Threshold", build=build_threshold))


@pytest.fixture
def bundle(tmp_path, fresh_plugins):
    from seamline.bundle import ModelCard, save_model

    fresh_plugins.register_plugin(ThresholdPlugin(), name="threshold")
    card = ModelCard(
        architecture="test.Threshold",
        in_channels=1,
        classes=["background", "bright"],
        spatial_dims=3,
        tile_size=[48, 40, 16],
        overlap=0.25,
    )
    return save_model(build_threshold(1, 2), tmp_path / "threshold", card)


@pytest.mark.parametrize("name", sorted(VOLUMES))
def test_predict_command_is_exact_on_the_input_grid(tmp_path, bundle, name):
    from seamline.cli import get_cli

    path = data_file(*VOLUMES[name])
    out, stats = tmp_path / "labels.nii.gz", tmp_path / "stats.csv"
    args = ["predict", str(path), str(out), "--model", str(bundle), "--no-progress", "--stats", str(stats)]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 0, result.output
    ref, got = nib.load(path), nib.load(out)
    expected = np.asanyarray(ref.dataobj) > THRESHOLD
    np.testing.assert_array_equal(np.asanyarray(got.dataobj), expected.astype(np.uint8))
    np.testing.assert_array_equal(got.affine, ref.affine)
    for field in ("dim", "sform_code", "qform_code", "srow_x", "srow_y", "srow_z", "pixdim", "xyzt_units"):
        np.testing.assert_array_equal(got.header[field], ref.header[field])
    assert seamline.open(out).meta["class_names"] == {0: "background", 1: "bright"}
    table = np.genfromtxt(stats, delimiter=",", names=True, dtype=None, encoding=None)
    bright = table[table["id"] == 1]
    assert bright["voxels"][0] == expected.sum() and bright["name"][0] == "bright"


def test_predict_with_resampling_keeps_the_grid(tmp_path, bundle):
    from seamline.bundle import load_model

    path = data_file(*VOLUMES["mr_lps"])
    model = load_model(bundle)
    model.card.target_spacing = [4.0, 4.0, 5.0]
    labels = seamline.predict(seamline.open(path), model, output="labels", progress=False)
    saved = nib.load(seamline.save(labels, tmp_path / "resampled.nii.gz"))
    ref = nib.load(path)
    assert saved.shape == ref.shape
    np.testing.assert_array_equal(saved.affine, ref.affine)
    agreement = np.mean(np.asanyarray(saved.dataobj) == (np.asanyarray(ref.dataobj) > THRESHOLD))
    assert agreement > 0.9


def test_single_slice_for_a_3d_model_is_an_input_error(tmp_path, bundle):
    from seamline.cli import get_cli

    path = tmp_path / "slice.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((32, 32, 1), np.int16), np.eye(4)), path)
    result = CliRunner().invoke(get_cli(), ["predict", str(path), str(tmp_path / "o.nii.gz"), "--model", str(bundle)])
    assert result.exit_code == 2
    assert result.output.strip().startswith(f"error: {path}: a volume one slice thick")
    assert not (tmp_path / "o.nii.gz").exists()


def test_2d_transunet_bundle_predicts_a_volume_slice_by_slice(tmp_path, fresh_plugins):
    import torch

    from seamline.bundle import ModelCard, load_model, save_model
    from seamline.plugins import registry

    kwargs = {"variant": "tiny", "slice_axis": 2}
    torch.manual_seed(0)
    module = registry("models")["medical.TransUNet"].build(in_channels=1, classes=3, **kwargs).eval()
    card = ModelCard(
        architecture="medical.TransUNet",
        in_channels=1,
        classes=["background", "a", "b"],
        kwargs=kwargs,
        normalization={"kind": "zscore"},
        spatial_dims=3,
        tile_size=[64, 64, 1],
        overlap=0.0,
    )
    bundle = load_model(save_model(module, tmp_path / "transunet", card))
    path = data_file(*VOLUMES["mr_lps"])
    image = seamline.open(path)
    scores = seamline.predict(image, bundle, output="scores", progress=False, blend="constant")
    assert scores.shape == (3, *image.spatial_shape)
    np.testing.assert_array_equal(scores.affine, image.affine)
    # slice 7 of the LPS volume is slice 7 of the RAS grid, and the model saw it alone:
    # the first 64x64 tile covers RAS [0:53, 0:27] on its own (the next tiles start there)
    volume = np.asanyarray(nib.load(path).dataobj).astype(np.float64)
    ras = np.flip(volume, (0, 1))[:64, :64, 7]
    x = torch.from_numpy(((ras - volume.mean()) / volume.std()).astype(np.float32))[None, None]
    with torch.inference_mode():
        expected = bundle.module.module(x)[0].numpy()
    got = np.flip(scores.data[:, :, :, 7].compute(), (1, 2))
    np.testing.assert_allclose(got[:, :53, :27], expected[:, :53, :27], atol=1e-4)


def test_bad_stats_option_fails_before_any_output(tmp_path, bundle):
    from seamline.cli import get_cli

    path = data_file(*VOLUMES["ct_ras"])
    out, stats = tmp_path / "labels.nii.gz", tmp_path / "stats.txt"
    args = ["predict", str(path), str(out), "--model", str(bundle), "--no-progress", "--stats", str(stats)]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 2
    assert result.output.startswith(f"error: {stats}: statistics are written as .csv or .json")
    assert not out.exists() and not stats.exists()
