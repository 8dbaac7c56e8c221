"""nnU-Net v2 model folders give nnU-Net's own answer, checked against nnU-Net's predictor.

The folders are made with nnU-Net's code (:mod:`tests.medical.nnunet_folders`: its
PlansManager checks the plans, its trainer saves the checkpoints) around a small network
trained on the shared CT and MR volumes. nnU-Net's ``nnUNetPredictor`` runs on the CPU
on the same files. The criteria:

- the network's input equals nnU-Net's preprocessing (``DefaultPreprocessor``) to 1e-5;
- probabilities on the network grid agree within 1e-3 with nnU-Net's sliding window
  (its padding, tiles, importance map, mirroring and fold average) summed in float32,
  and differ from the predictor's own, which sums in float16, by no more than that
  float32 sum does: everything that differs is nnU-Net's float16;
- labels, from nnU-Net's ``predict_from_files_sequential`` written by its own
  reader/writer, agree on at least 99.9 % of the voxels, and every voxel that differs
  lies on a label boundary.
"""

from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import ndimage

import seamline
from seamline.errors import ModelError
from seamline_medical.nnunet import resample
from tests.conftest import data_file
from tests.medical import nnunet_folders as folders

pytest.importorskip("nnunetv2")
pytestmark = pytest.mark.peer

CT = ("totalsegmentator_ct_mr", "example_ct_sm.nii.gz")
CT_LONG = ("totalsegmentator_ct_mr", "example_ct.nii.gz")
MR = ("totalsegmentator_ct_mr", "example_mr_sm.nii.gz")


def predictor(folder, *, mirror=True):
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    torch.set_num_threads(2)
    found = nnUNetPredictor(
        tile_step_size=0.5, use_mirroring=mirror, perform_everything_on_device=False, device=torch.device("cpu"),
        allow_tqdm=False,
    )  # fmt: skip
    found.initialize_from_trained_model_folder(str(folder), None, "checkpoint_final.pth")
    return found


def nnunet_labels(reference, path, tmp_path):
    """nnU-Net's labels for a file, written by its own reader/writer and read back."""
    reference.predict_from_files_sequential([[str(path)]], [str(tmp_path / "nnunet")], False, True, None)
    return np.asarray(nib.load(tmp_path / "nnunet.nii.gz").dataobj)


def nnunet_float32_logits(reference, data):
    """nnU-Net's sliding window (its padding, tiles, importance map, mirroring, fold average) summed in float32.

    The predictor itself sums in float16; this is its own loop with a float32 accumulator.
    """
    from acvl_utils.cropping_and_padding.padding import pad_nd_image
    from nnunetv2.inference.sliding_window_prediction import compute_gaussian

    patch = reference.configuration_manager.patch_size
    weights = compute_gaussian(tuple(patch), 1 / 8, 10, device=torch.device("cpu")).float()
    padded, revert = pad_nd_image(torch.from_numpy(data), patch, "constant", {"value": 0}, True, None)
    total = 0
    with torch.inference_mode():
        for parameters in reference.list_of_parameters:
            reference.network.load_state_dict(parameters)
            logits = torch.zeros((reference.label_manager.num_segmentation_heads, *padded.shape[1:]))
            counts = torch.zeros(padded.shape[1:])
            for tile in reference._internal_get_sliding_window_slicers(padded.shape[1:]):
                logits[tile] += reference._internal_maybe_mirror_and_predict(padded[tile][None])[0] * weights
                counts[tile[1:]] += weights
            total = total + (logits / counts)[(slice(None), *revert[1:])]
    return total / len(reference.list_of_parameters)


def probabilities(reference, logits):
    return reference.label_manager.apply_inference_nonlin(torch.as_tensor(logits)).numpy()


def assert_labels_agree(ours, theirs):
    """At least 99.9 % equal; every voxel that differs lies on a label boundary."""
    assert ours.shape == theirs.shape
    differ = ours != theirs
    assert 1 - differ.mean() >= 0.999, f"{differ.sum()} of {differ.size} voxels differ"
    footprint = np.ones((3, 3, 3), bool)
    boundary = np.zeros(ours.shape, bool)
    for labels in (ours, theirs):
        boundary |= ndimage.maximum_filter(labels, footprint=footprint) != ndimage.minimum_filter(
            labels, footprint=footprint
        )
    assert not (differ & ~boundary).any(), "a voxel away from every boundary differs"


def compare(folder, path, tmp_path, *, mirror=True, **load_options):
    """Run seamline and nnU-Net on one file and check the criteria of the module docstring."""
    bundle = seamline.load_model(folder, mirror=mirror, **load_options)
    reference = predictor(folder, mirror=mirror)
    image = seamline.open(path)
    data = nnunet_preprocessed(folder, path)
    np.testing.assert_allclose(bundle.model_input(image)[0].data.compute(), data, rtol=1e-5, atol=1e-5)
    ours = probabilities(reference, bundle.network_scores(image, progress=False).data.compute())
    exact = probabilities(reference, nnunet_float32_logits(reference, data))
    np.testing.assert_allclose(ours, exact, rtol=0, atol=1e-3)
    half = probabilities(reference, reference.predict_logits_from_preprocessed_data(torch.from_numpy(data)))
    assert np.abs(ours - half).max() <= np.abs(exact - half).max() + 1e-4  # all that differs is its float16
    labels = bundle.predict(image, output="labels", progress=False).data.compute()[0]
    assert_labels_agree(labels, nnunet_labels(reference, path, tmp_path))
    return bundle, labels


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.sampled_from([0.5, 0.8, 1.0, 1.5, 2.5, 3.0, 5.0]), min_size=3, max_size=3),
    st.lists(st.sampled_from([0.7, 1.0, 1.5, 3.0, 4.0]), min_size=3, max_size=3),
    st.sampled_from([None, True, False]),
)
def test_separate_axis_is_nnunets_rule(spacing, target, force):
    from nnunetv2.preprocessing.resampling.default_resampling import determine_do_sep_z_and_axis

    separate, axis = determine_do_sep_z_and_axis(force, spacing, target)
    assert resample.separate_axis(spacing, target, force) == (axis if separate else None)


@pytest.mark.parametrize(
    ("spacing", "target", "order", "order_z", "force"),
    [
        ((3.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 0, None),  # anisotropic input: slices in plane, nearest along z
        ((1.0, 1.0, 1.0), (1.5, 1.5, 1.5), 3, 0, None),
        ((1.0, 1.0, 1.0), (0.7, 0.8, 1.3), 3, 0, None),
        ((3.0, 1.0, 1.0), (1.0, 1.5, 1.5), 1, 0, None),  # the export's order 1
        ((3.0, 1.0, 1.0), (1.5, 0.8, 0.8), 3, 1, None),  # linear between slices
        ((1.0, 1.0, 4.0), (1.0, 1.0, 1.0), 3, 0, None),  # the last axis coarse
        ((2.0, 1.0, 1.0), (1.0, 1.0, 1.0), 3, 0, True),
        ((4.0, 1.0, 1.0), (2.0, 1.0, 1.0), 1, 0, None),  # every nearest slice a tie
    ],
)
def test_resampling_is_nnunets_block_by_block(spacing, target, order, order_z, force):
    import dask.array as da
    from nnunetv2.preprocessing.resampling.default_resampling import compute_new_shape, resample_data_or_seg_to_shape

    rng = np.random.default_rng(0)
    data = ndimage.gaussian_filter(rng.normal(size=(2, 24, 30, 36)), (0, 1, 2, 2)).astype(np.float32)
    shape = resample.new_shape(data.shape[1:], spacing, target)
    assert list(shape) == list(compute_new_shape(data.shape[1:], spacing, target))
    expected = resample_data_or_seg_to_shape(data, shape, spacing, target, False, order, order_z, force)
    chunked = da.from_array(data, chunks=(1, 5, 30, 13))
    got = resample.resample_to_shape(
        chunked, shape, spacing, target, order=order, order_z=order_z, force_separate_z=force
    )
    np.testing.assert_allclose(got.compute(), expected, rtol=0, atol=1e-6)


def test_ct_labels_and_probabilities_equal_nnunets(folder_factory, tmp_path):
    folder = folder_factory("ct")
    bundle, labels = compare(folder, data_file(*CT), tmp_path, mirror=False)
    assert bundle.card.class_names[4] == "liver" and (labels == 4).sum() > 1000


@pytest.mark.parametrize(
    ("name", "options", "volume"),
    [
        ("ct-zscore", {"scheme": "ZScoreNormalization", "spacing": (4.5, 4.5, 4.5)}, CT),
        ("mr-zscore", {"scheme": "ZScoreNormalization", "spacing": (4.0, 3.5, 2.5)}, MR),
        ("mr-transposed", {"scheme": "ZScoreNormalization", "transpose": (2, 0, 1), "spacing": (3.0, 5.0, 4.0)}, MR),
        ("mr-rescale", {"scheme": "RescaleTo01Normalization", "spacing": (3.0, 3.0, 3.0)}, MR),
        ("mr-reoriented", {"scheme": "ZScoreNormalization", "reader": "NibabelIOWithReorient"}, MR),
        ("ct-anisotropic", {"spacing": (10.0, 2.5, 2.5)}, CT),
        ("ct-anisotropic-linear-z", {"spacing": (10.0, 2.5, 2.5), "resampling": {"order_z": 1}}, CT),
    ],
)
def test_network_input_equals_nnunets_preprocessing(folder_factory, name, options, volume):
    folder = folder_factory(name, **options)
    path = data_file(*volume)
    prepared = seamline.load_model(folder).model_input(seamline.open(path))[0].data.compute()
    np.testing.assert_allclose(prepared, nnunet_preprocessed(folder, path), rtol=1e-5, atol=1e-5)


def nnunet_preprocessed(folder, path):
    """nnU-Net's DefaultPreprocessor on a file, with the folder's plans."""
    from nnunetv2.preprocessing.preprocessors.default_preprocessor import DefaultPreprocessor
    from nnunetv2.utilities.plans_handling.plans_handler import PlansManager

    plans = PlansManager(json.loads((folder / "plans.json").read_text()))
    dataset = json.loads((folder / "dataset.json").read_text())
    data, _, _ = DefaultPreprocessor(verbose=False).run_case(
        [str(path)], None, plans, plans.get_configuration("3d_fullres"), dataset
    )
    return data


def test_masked_zscore_fills_holes_as_nnunet(folder_factory, tmp_path):
    """use_mask_for_norm: statistics over the non-zero mask with its holes filled, and only there."""
    source = nib.load(data_file(*MR))
    volume = np.asarray(source.dataobj).astype(np.int16)
    volume[:, :15] = 0  # a band of zeros at the edge: outside the mask
    volume[50:60, 40:50, 5:12] = 0  # a hole: inside the mask once filled
    path = tmp_path / "mr_masked.nii.gz"
    nib.save(nib.Nifti1Image(volume, source.affine, source.header), path)
    folder = folder_factory("mr-masked", scheme="ZScoreNormalization", use_mask=True, spacing=(3.0, 3.0, 3.0))
    prepared = seamline.load_model(folder).model_input(seamline.open(path))[0].data.compute()
    np.testing.assert_allclose(prepared, nnunet_preprocessed(folder, path), rtol=1e-5, atol=1e-5)
    assert prepared.shape[2] == volume.shape[1] - 15  # cropped to the non-zero box


def test_imported_bundle_predicts_as_the_folder(folder_factory, tmp_path):
    from seamline.cli import get_cli

    folder = folder_factory("ct-2folds", folds=(0, 1))
    bundle = seamline.load_model(folder, mirror=False)
    assert len(bundle.module.folds) == 2
    command = ["import-model", str(folder), str(tmp_path / "imported"), "--model-option", "mirror=false"]
    result = CliRunner().invoke(get_cli(), command)
    assert result.exit_code == 0, result.output
    again = seamline.load_model(tmp_path / "imported")
    assert type(again) is type(bundle) and again.card.to_dict() == bundle.card.to_dict()
    image = seamline.open(data_file(*CT))
    found = {}
    for output in ("labels", "probabilities"):
        expected = bundle.predict(image, output=output, progress=False)
        found[output] = again.predict(image, output=output, progress=False).data.compute()
        np.testing.assert_array_equal(found[output], expected.data.compute())
        assert again.predict(image, output=output).meta["class_names"] == expected.meta["class_names"]
    through_engine = seamline.predict(image, again, output="labels", progress=False)  # the bundle's own defaults
    np.testing.assert_array_equal(through_engine.data.compute(), found["labels"])


def test_reorient_option_feeds_the_network_as_nibabel_reorienting_reader(folder_factory):
    image = seamline.open(data_file(*MR))  # LPS
    plain = folder_factory("mr-zscore-6mm", scheme="ZScoreNormalization")
    reader = folder_factory("mr-reoriented", scheme="ZScoreNormalization", reader="NibabelIOWithReorient")
    expected = seamline.load_model(reader).model_input(image)[0].data.compute()
    np.testing.assert_array_equal(
        seamline.load_model(plain, reorient=True).model_input(image)[0].data.compute(), expected
    )
    assert not np.array_equal(seamline.load_model(plain).model_input(image)[0].data.compute(), expected)  # LPS: flipped


def test_plans_from_before_the_architecture_entry_build_nnunets_network(tmp_path):
    import copy

    from nnunetv2.utilities.plans_handling.plans_handler import ConfigurationManager

    plans = folders.plans()
    config = plans["configurations"]["3d_fullres"]
    del config["architecture"]
    config.update(
        UNet_class_name="PlainConvUNet",
        UNet_base_num_features=8,
        unet_max_num_features=32,
        n_conv_per_stage_encoder=[2, 2, 2],
        n_conv_per_stage_decoder=[2, 2],
        num_pool_per_axis=[2, 2, 2],
        pool_op_kernel_sizes=[[1, 1, 1], [2, 2, 2], [2, 2, 2]],
        conv_kernel_sizes=[[3, 3, 3]] * 3,
    )
    folder = folders.write_folder(
        tmp_path / "Dataset901_Organs" / "nnUNetTrainer__nnUNetPlans__3d_fullres", plans_data=plans,
        dataset_data=folders.dataset(),
    )  # fmt: skip
    bundle = seamline.load_model(folder)
    converted = ConfigurationManager(copy.deepcopy(config)).configuration["architecture"]
    assert bundle.card.kwargs["arch_kwargs"] == converted["arch_kwargs"]
    assert bundle.card.kwargs["network"] == converted["network_class_name"]


def test_predict_command_writes_organ_names(folder_factory, tmp_path):
    from seamline.cli import get_cli

    folder = folder_factory("ct-nomirror", trainer="nnUNetTrainerNoMirroring")
    path = data_file(*CT)
    out, stats, meshes = tmp_path / "organs.nii.gz", tmp_path / "organs.csv", tmp_path / "meshes"
    args = ["predict", str(path), str(out), "--model", str(folder), "--stats", str(stats), "--meshes", str(meshes)]
    result = CliRunner().invoke(get_cli(), [*args, "--no-progress"])
    assert result.exit_code == 0, result.output
    written, source = nib.load(out), nib.load(path)
    np.testing.assert_array_equal(written.affine, source.affine)
    assert written.shape == source.shape
    names = set(np.genfromtxt(stats, delimiter=",", names=True, dtype=None, encoding=None)["name"])
    assert "liver" in names and names <= set(folders.CLASSES)
    assert any(p.name == "004_liver.stl" for p in meshes.iterdir())


def test_region_probabilities_give_the_region_labels_on_the_command_line(folder_factory, tmp_path):
    """--probabilities with --stats: labels painted region by region, not the most likely channel."""
    from seamline.cli import get_cli

    folder = folder_factory("ct-regions-nomirror", regions=True, trainer="nnUNetTrainerNoMirroring")
    path = data_file(*CT)
    labels = seamline.load_model(folder).predict(seamline.open(path), output="labels", progress=False)
    out, stats = tmp_path / "probabilities.nii.gz", tmp_path / "stats.csv"
    command = ["predict", str(path), str(out), "--model", str(folder), "--probabilities", "--stats", str(stats)]
    result = CliRunner().invoke(get_cli(), [*command, "--no-progress"])
    assert result.exit_code == 0, result.output
    table = np.genfromtxt(stats, delimiter=",", names=True, dtype=None, encoding=None)
    found, counts = np.unique(labels.data.compute(), return_counts=True)
    expected = {int(v): int(n) for v, n in zip(found, counts, strict=True) if v}
    assert {int(i): int(n) for i, n in zip(table["id"], table["voxels"], strict=True)} == expected


def test_plugins_lists_the_model_format():
    from seamline.cli import get_cli

    result = CliRunner().invoke(get_cli(), ["plugins", "--all"])
    formats = [line for line in result.output.splitlines() if line.strip().startswith("model_formats:")]
    assert result.exit_code == 0 and any("nnunet" in line.split(":")[1].split(", ") for line in formats)


class Opaque:
    """A class a weights-only unpickler must not build."""


BROKEN = {
    "missing fold": (lambda f: None, {"folds": [3]}, "fold_3"),
    "unknown trainer": (folders.rewrite_checkpoint(lambda c: c.update(trainer_name="MyTrainer")), {}, "trainer_name"),
    "unknown network": (
        folders.edit_json(
            "plans.json",
            lambda p: p["configurations"]["3d_fullres"]["architecture"].update(network_class_name="my.Net"),
        ),
        {},
        "network_class_name",
    ),
    "layer not allowed": (
        folders.edit_json(
            "plans.json",
            lambda p: p["configurations"]["3d_fullres"]["architecture"]["arch_kwargs"].update(nonlin="os.system"),
        ),
        {},
        "nonlin",
    ),
    "cascade": (
        folders.edit_json("plans.json", lambda p: p["configurations"]["3d_fullres"].update(previous_stage="3d_lowres")),
        {},
        "previous_stage",
    ),
    "normalization": (
        folders.edit_json(
            "plans.json", lambda p: p["configurations"]["3d_fullres"].update(normalization_schemes=["Mine"])
        ),
        {},
        "normalization_schemes",
    ),
    "resampling": (
        folders.edit_json(
            "plans.json", lambda p: p["configurations"]["3d_fullres"].update(resampling_fn_data="resample_torch_simple")
        ),
        {},
        "resampling_fn_data",
    ),
    "reader": (
        folders.edit_json("plans.json", lambda p: p.update(image_reader_writer="Tiff3DIO")),
        {},
        "image_reader_writer",
    ),
    "not a checkpoint": (lambda f: (f / "fold_0" / "checkpoint_final.pth").write_bytes(b"junk"), {}, "checkpoint"),
    "needs unpickling": (folders.rewrite_checkpoint(lambda c: c.update(extra=Opaque())), {}, "full unpickling"),
    "weights do not fit": (
        folders.rewrite_checkpoint(lambda c: c["network_weights"].pop("decoder.seg_layers.1.bias")),
        {},
        "network_weights",
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_bad_folder_is_one_line_naming_file_and_field(folder_factory, tmp_path, case):
    change, options, field = BROKEN[case]
    folder = folders.broken_copy(folder_factory, tmp_path, case.replace(" ", "-"), change)
    with pytest.raises(ModelError) as raised:
        seamline.load_model(folder, **options)
    message = str(raised.value)
    assert "\n" not in message and field in message and str(folder) in message


def test_the_command_line_exits_2_on_a_bad_folder(folder_factory, tmp_path):
    from seamline.cli import get_cli

    folder = folders.broken_copy(
        folder_factory, tmp_path, "cli", folders.rewrite_checkpoint(lambda c: c.update(trainer_name="Mine"))
    )
    args = ["predict", str(data_file(*CT)), str(tmp_path / "out.nii.gz"), "--model", str(folder)]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 2
    assert result.output.count("\n") == 1 and "trainer_name" in result.output


def test_a_pickle_with_code_is_never_run(folder_factory, tmp_path):
    ran = tmp_path / "ran"

    class Payload:
        def __reduce__(self):
            return (open, (str(ran), "w"))

    folder = folders.broken_copy(
        folder_factory, tmp_path, "payload", folders.rewrite_checkpoint(lambda c: c.update(payload=Payload()))
    )
    with pytest.raises(ModelError):
        seamline.load_model(folder)
    assert not ran.exists()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("name", "options", "volume", "load"),
    [
        ("ct", {}, CT, {}),
        ("ct-2folds", {"folds": (0, 1)}, CT, {"mirror": False}),
        ("ct-long-5mm", {"spacing": (5.0, 5.0, 5.0)}, CT_LONG, {"mirror": False}),
        ("ct-long-anisotropic", {"spacing": (16.0, 5.0, 5.0)}, CT_LONG, {"mirror": False}),
        ("ct-regions", {"regions": True}, CT, {"mirror": False}),
        ("mr", {"scheme": "ZScoreNormalization", "channel": "MR"}, MR, {}),
        ("mr-transposed-6mm", {"scheme": "ZScoreNormalization", "transpose": (2, 0, 1)}, MR, {"mirror": False}),
        ("mr-reoriented", {"scheme": "ZScoreNormalization", "reader": "NibabelIOWithReorient"}, MR, {"mirror": False}),
    ],
)
def test_labels_and_probabilities_equal_nnunets(folder_factory, tmp_path, name, options, volume, load):
    folder = folder_factory(name, **options)
    _, labels = compare(folder, data_file(*volume), tmp_path, **load)
    assert len(np.unique(labels)) >= 3  # organs, so that there are boundaries to check
