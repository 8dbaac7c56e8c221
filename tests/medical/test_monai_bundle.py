"""MONAI bundle folders against ``monai.bundle`` running the bundle's own inference config."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from scipy import ndimage

import seamline
from seamline import Image, ModelError
from seamline.normalize import normalize
from tests.conftest import data_file

torch = pytest.importorskip("torch")
monai = pytest.importorskip("monai")
from monai.bundle import ConfigParser  # noqa: E402
from monai.data import MetaTensor  # noqa: E402
from monai.networks import nets  # noqa: E402
from monai.transforms import Compose, EnsureChannelFirstd, LoadImaged, Orientationd, Spacingd  # noqa: E402

from seamline_medical.geometry import first_voxel_grid, resample  # noqa: E402

FOLDER = "totalsegmentator_ct_mr"
PIXDIM = [2.0, 2.0, 4.0]
CLASSES = ["air", "body", "organ"]


def transform(name, **args):
    return {"_target_": name, "keys": "@image_key", **args}


def inference_config(network, preprocessing, inferer=None, postprocessing=None):
    """A bundle config as MONAI's model zoo writes them: components, references, expressions it never needs."""
    return {
        "imports": ["$import torch"],
        "bundle_root": ".",
        "image_key": "image",
        "device": "$torch.device('cuda:0' if torch.cuda.is_available() else 'cpu')",
        "network_def": network,
        "network": "$@network_def.to(@device)",
        "preprocessing": {"_target_": "Compose", "transforms": preprocessing},
        "inferer": inferer
        or {"_target_": "SlidingWindowInferer", "roi_size": [64, 64, 16], "sw_batch_size": 4, "overlap": 0.5},
        "postprocessing": {"_target_": "Compose", "transforms": postprocessing or []},
        "dataset": {"_target_": "Dataset", "data": "$[{'image': i} for i in @datalist]", "transform": "@preprocessing"},
    }


SEGRESNET = {"_target_": "SegResNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 3, "init_filters": 8,
             "blocks_down": [1, 1, 1], "blocks_up": [1, 1]}  # fmt: skip
CT_STEPS = [
    transform("LoadImaged"),
    transform("EnsureChannelFirstd"),
    transform("Orientationd", axcodes="RAS"),
    transform("Spacingd", pixdim=PIXDIM, mode="bilinear"),
    transform("ScaleIntensityRanged", a_min=-300, a_max=300, b_min=0.0, b_max=1.0, clip=True),
    transform("EnsureTyped"),
]
POST = [
    {"_target_": "Activationsd", "keys": "pred", "softmax": True},
    {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "@image_key",
     "nearest_interp": False, "to_tensor": True},
    {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
]  # fmt: skip


def write_bundle(folder, config, state, *, weights="model.pt", metadata=None):
    (folder / "configs").mkdir(parents=True)
    (folder / "models").mkdir()
    (folder / "configs" / "inference.json").write_text(json.dumps(config, indent=1))
    if metadata is not None:
        (folder / "configs" / "metadata.json").write_text(json.dumps(metadata))
    if weights == "model.pt":
        torch.save(state, folder / "models" / "model.pt")
    else:
        state.save(str(folder / "models" / weights))
    return folder


def metadata(inputs, outputs):
    """configs/metadata.json naming the input and output channels, as MONAI's bundle spec has it."""
    channels = {
        "inputs": {"image": {"channel_def": dict(enumerate(inputs))}},
        "outputs": {"pred": {"channel_def": dict(enumerate(outputs))}},
    }
    return {"name": "test", "version": "0.1", "network_data_format": channels}


def monai_parts(folder):
    """MONAI's own objects for the bundle, built by its ConfigParser from the bundle's config."""
    parser = ConfigParser()
    parser.read_config(str(folder / "configs" / "inference.json"))
    parser["bundle_root"] = str(folder)
    network = parser.get_parsed_content("network_def")
    network.load_state_dict(torch.load(folder / "models" / "model.pt", weights_only=True))
    return network.eval(), *(parser.get_parsed_content(k) for k in ("preprocessing", "inferer", "postprocessing"))


def run_monai(folder, path):
    """The bundle run by MONAI: probabilities on the network grid, and the final labels on the input grid."""
    network, preprocessing, inferer, postprocessing = monai_parts(folder)
    data = preprocessing({"image": str(path)})
    with torch.no_grad():
        data["pred"] = inferer(data["image"][None], network)[0]
    steps = postprocessing.transforms
    if steps and type(steps[0]).__name__ == "Activationsd":
        data = steps[0](data)
        steps = steps[1:]
    on_grid = data["pred"].numpy().copy()
    for step in steps:
        data = step(data)
    return on_grid, data["pred"].numpy()


def seamline_on_grid(bundle, image):
    """seamline's probabilities on the network grid (the engine fed what the bundle's card prepares)."""
    model_input, _ = bundle.model_input(image)
    card = bundle.card
    options = {"tile_size": card.tile_size, "overlap": card.overlap, "blend": card.blend, "progress": False}
    return seamline.predict(model_input, bundle.module, output="probabilities", **options).data.compute()


def assert_labels_agree(ours, theirs):
    """At least 99.9 % equal, and every voxel that differs lies within one voxel of a boundary of MONAI's labels."""
    ours, theirs = np.squeeze(ours), np.squeeze(theirs).astype(ours.dtype)
    differ = ours != theirs
    assert differ.mean() <= 1e-3, differ.mean()
    boundary = ndimage.maximum_filter(theirs, size=3) != ndimage.minimum_filter(theirs, size=3)
    assert not (differ & ~boundary).any()


@pytest.fixture(scope="session")
def fitted_bundle(tmp_path_factory):
    """A SegResNet bundle whose classifier is fitted to the shared CT: air, body, labelled organs (few near-ties)."""
    ct, organs = data_file(FOLDER, "example_ct_sm.nii.gz"), data_file(FOLDER, "example_seg.nii.gz")
    torch.manual_seed(0)
    network = nets.SegResNet(**{k: v for k, v in SEGRESNET.items() if k != "_target_"}).eval()
    grid = [EnsureChannelFirstd("k"), Orientationd("k", axcodes="RAS")]
    image = Compose([LoadImaged("k"), *grid, Spacingd("k", pixdim=PIXDIM)])({"k": str(ct)})["k"]
    labels = Compose([LoadImaged("k"), *grid, Spacingd("k", pixdim=PIXDIM, mode="nearest")])({"k": str(organs)})["k"]
    target = (image[0] >= -300).long()
    target[labels[0] > 0] = 2
    x = (torch.clamp(image.as_tensor(), -300, 300) + 300) / 600
    features = {}
    final = network.conv_final[2]
    final.register_forward_hook(lambda module, given, out: features.setdefault("x", given[0]))
    pad = [(-s) % 8 for s in x.shape[1:]]
    with torch.no_grad():
        network(torch.nn.functional.pad(x[None], (0, pad[2], 0, pad[1], 0, pad[0])))
    f = features["x"][0, :, : x.shape[1], : x.shape[2], : x.shape[3]].reshape(8, -1).T[::7]
    y = target.reshape(-1)[::7]
    w, b = torch.zeros(3, 8, requires_grad=True), torch.zeros(3, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], max_iter=100)

    def loss():
        optimizer.zero_grad()
        value = torch.nn.functional.cross_entropy(f @ w.T + b, y)
        value.backward()
        return value

    optimizer.step(loss)
    with torch.no_grad():  # sharpened: probabilities far from ties away from the decision surfaces
        final.conv.weight.copy_(4 * w.reshape(final.conv.weight.shape))
        final.conv.bias.copy_(4 * b)
    config = inference_config(SEGRESNET, CT_STEPS, postprocessing=POST)
    config["inferer"]["mode"] = "gaussian"
    folder = tmp_path_factory.mktemp("monai") / "bundle"
    return write_bundle(folder, config, network.state_dict(), metadata=metadata(["CT"], CLASSES))


@pytest.mark.slow
@pytest.mark.parametrize("name", ["example_ct_sm.nii.gz", "example_mr_sm.nii.gz"])  # RAS CT, LPS MR
def test_same_answer_as_monai_bundle(fitted_bundle, name, tmp_path):
    path = data_file(FOLDER, name)
    on_grid, labels = run_monai(fitted_bundle, path)
    bundle = seamline.load_model(fitted_bundle)
    assert bundle.missing == () and list(bundle.card.class_names.values()) == CLASSES
    image = seamline.open(path)
    ours = seamline_on_grid(bundle, image)
    assert ours.shape == on_grid.shape
    # channels-last convolutions round differently; the fitted head, sharpened 4x, and the
    # network's norms magnify that to a few 1e-3 in probabilities (labels agree below)
    np.testing.assert_allclose(ours, on_grid, atol=2e-2)
    assert np.abs(ours - on_grid).mean() < 1e-4
    predicted = bundle.predict(image, output="labels", progress=False)
    assert predicted.shape == (1, *image.spatial_shape)
    np.testing.assert_array_equal(predicted.affine, image.affine)
    assert_labels_agree(predicted.data.compute(), labels)
    if name.startswith("example_mr"):  # the imported bundle gives the same labels, without MONAI's config
        seamline.import_model(fitted_bundle, tmp_path / "imported")
        imported = seamline.load_model(tmp_path / "imported").predict(image, output="labels", progress=False)
        np.testing.assert_array_equal(imported.data.compute(), predicted.data.compute())


@pytest.mark.slow
def test_torchscript_weights_lps_orientation_nonzero_zscore_nearest_invert(tmp_path):
    path = data_file(FOLDER, "example_ct_sm.nii.gz")  # RAS, so LPS flips two axes
    torch.manual_seed(0)
    unet = {"_target_": "monai.networks.nets.UNet", "spatial_dims": 3, "in_channels": 1, "out_channels": 2,
            "channels": [4, 8], "strides": [2]}  # fmt: skip
    network = nets.UNet(**{k: v for k, v in unet.items() if k != "_target_"}).eval()
    steps = [
        transform("LoadImaged", image_only=True),
        transform("EnsureChannelFirstd"),
        transform("CastToTyped", dtype="$torch.float32"),
        transform("Orientationd", axcodes="LPS"),
        transform("NormalizeIntensityd", nonzero=True, channel_wise=True),
    ]
    post = [
        {"_target_": "AsDiscreted", "keys": "pred", "argmax": True},
        {"_target_": "Invertd", "keys": "pred", "transform": "@preprocessing", "orig_keys": "image"},
        {"_target_": "SaveImaged", "keys": "pred", "output_dir": "$@bundle_root + '/eval'", "_disabled_": True},
    ]
    inferer = {"_target_": "SlidingWindowInferer", "roi_size": [48, 48, 16], "sw_batch_size": 2, "overlap": 0.25}
    folder = write_bundle(
        tmp_path / "b", inference_config(unet, steps, inferer, post), torch.jit.script(network), weights="model.ts"
    )
    bundle = seamline.load_model(folder)
    card = bundle.card
    assert (card.orientation, card.target_spacing, card.blend, card.labels_from) == ("LPS", None, "constant", "labels")
    assert card.kwargs["num_res_units"] == 0  # MONAI's default written out, not seamline's builder's
    assert set(bundle.missing) == {"bands", "classes"}
    torch.save(network.state_dict(), folder / "models" / "model.pt")  # what MONAI's parser loads
    on_grid, labels = run_monai(folder, path)
    image = seamline.open(path)
    ours = seamline_on_grid(bundle, image)
    np.testing.assert_allclose(ours, torch.softmax(torch.from_numpy(on_grid), 0).numpy(), atol=1e-4)
    assert_labels_agree(bundle.predict(image, output="labels", progress=False).data.compute(), labels)


@pytest.fixture
def tiny(tmp_path):
    """A bundle folder maker: *steps* and *post* around a tiny UNet, loaded by seamline."""

    def make(steps, post=(), *, channels=1, inferer=None, network=None, data=None):
        torch.manual_seed(0)
        unet = network or {"_target_": "UNet", "spatial_dims": 3, "in_channels": channels, "out_channels": 2,
                           "channels": [2, 4], "strides": [2]}  # fmt: skip
        state = nets.UNet(**{k: v for k, v in unet.items() if k != "_target_"}).state_dict() if network is None else {}
        config = inference_config(unet, steps, inferer, list(post))
        config.update(data or {})
        folder = tmp_path / f"b{len(list(tmp_path.iterdir()))}"
        return write_bundle(folder, config, state)

    return make


def test_a_volume_smaller_than_the_roi_is_padded_as_monai_pads_it(tiny, tmp_path):
    nib = pytest.importorskip("nibabel")
    rng = np.random.default_rng(0)
    path = tmp_path / "small.nii.gz"  # smaller than the 64 x 64 x 16 roi along every axis
    nib.Nifti1Image(rng.normal(50, 80, (37, 22, 9)).astype(np.float32), np.diag([1.5, 1.5, 3.0, 1.0])).to_filename(path)
    steps = [transform("LoadImaged"), transform("EnsureChannelFirstd"), transform("ScaleIntensityd")]
    folder = tiny(steps, [{"_target_": "Activationsd", "keys": "pred", "softmax": True}])
    bundle = seamline.load_model(folder)
    assert bundle.card.pad_to_tile
    on_grid, _ = run_monai(folder, path)
    ours = bundle.predict(seamline.open(path), output="probabilities", progress=False).data.compute()
    np.testing.assert_allclose(ours, on_grid, atol=1e-5)


@pytest.mark.parametrize(
    "step",
    [
        transform("ScaleIntensityRanged", a_min=-100, a_max=200, b_min=0.0, b_max=1.0, clip=True),
        transform("ScaleIntensityRanged", a_min=-100, a_max=200, b_min=-1.0, b_max=2.0, clip=True),
        transform("ScaleIntensityRanged", a_min=-100, a_max=200, b_min=-1.0, b_max=2.0),
        transform("NormalizeIntensityd", nonzero=True, channel_wise=True),
        transform("NormalizeIntensityd", channel_wise=True),
        transform("NormalizeIntensityd", subtrahend=[10.0, -3.0], divisor=[4.0, 0.0], channel_wise=True),
        transform("ScaleIntensityd", minv=-1.0, maxv=3.0, channel_wise=True),
        transform("ScaleIntensityd", minv=None, maxv=None, factor=0.5),
    ],
)
def test_intensity_transforms_equal_monai(tiny, step):
    bundle = seamline.load_model(tiny([transform("LoadImaged"), step], channels=2))
    rng = np.random.default_rng(0)
    data = rng.normal(50, 80, (2, 9, 10, 11)).astype(np.float32)
    data[:, :3] = 0  # zeros for nonzero=True
    args = {k: v for k, v in step.items() if k not in ("_target_", "keys")}
    expected = getattr(monai.transforms, step["_target_"])(keys="image", **args)(
        {"image": torch.from_numpy(data.copy())}
    )
    ours = normalize(Image.from_array(data, chunks=(2, 4, 5, 6)), bundle.card.normalization).data.compute()
    np.testing.assert_allclose(ours, expected["image"].numpy(), rtol=1e-5, atol=1e-5)


def test_class_and_band_names_from_metadata(tiny):
    folder = tiny([transform("LoadImaged")])
    (folder / "configs" / "metadata.json").write_text(json.dumps(metadata(["T1"], ["background", "tumour"])))
    bundle = seamline.load_model(folder)
    assert bundle.missing == () and bundle.card.bands == ["T1"]
    assert bundle.card.class_names == {0: "background", 1: "tumour"}


def test_yaml_config_and_references(tiny):
    folder = tiny([transform("LoadImaged"), transform("Spacingd", pixdim="@spacing::0", mode="$@interpolation")],
                  data={"spacing": [[1.5, 1.5, 2.5]], "interpolation": "bilinear"})  # fmt: skip
    config = json.loads((folder / "configs" / "inference.json").read_text())
    (folder / "configs" / "inference.json").unlink()
    import yaml

    (folder / "configs" / "inference.yaml").write_text(yaml.safe_dump(config))
    assert seamline.load_model(folder).card.target_spacing == [1.5, 1.5, 2.5]


ONE = [1, 1, 1]
REFUSED = [
    ([transform("CropForegroundd", source_key="image")], (), "transform CropForegroundd is not one seamline can"),
    ([transform("Spacingd", pixdim=ONE, mode="nearest")], (), "Spacingd is followed with mode='bilinear'"),
    ([transform("Spacingd", pixdim=ONE, diagonal=True)], (), "diagonal=True"),
    ([transform("Spacingd", pixdim="$[1, 1, 1]")], (), "preprocessing::transforms::1::pixdim is Python code"),
    ([transform("Spacingd", pixdim=ONE), transform("Orientationd", axcodes="RAS")], (), "Orientationd after Spacingd"),
    ([transform("Lambdad", func="$lambda x: x")], (), "transform Lambdad is not one"),
    ([transform("NormalizeIntensityd"), transform("ScaleIntensityd")], (), "a second intensity transform"),
    ([{"_target_": "os.system", "keys": "image"}], (), "os.system is not in monai.transforms"),
    ([], [{"_target_": "Invertd", "keys": "pred", "nearest_interp": False}], "Invertd interpolates raw network"),
    ([], [{"_target_": "Activationsd", "keys": "pred", "sigmoid": True}], "Activationsd is followed as softmax"),
    ([], [{"_target_": "KeepLargestConnectedComponentd", "keys": "pred"}], "KeepLargestConnectedComponentd"),
    ([], [{"_target_": "Activationsd", "keys": "pred", "softmax": True, "other": "$torch.tanh"}], "is Python code"),
]


@pytest.mark.parametrize(("steps", "post", "message"), REFUSED)
def test_what_seamline_cannot_reproduce_is_one_line_naming_it(tiny, steps, post, message):
    folder = tiny([transform("LoadImaged"), *steps], post)
    with pytest.raises(ModelError) as caught:
        seamline.load_model(folder)
    text = str(caught.value)
    assert text.startswith(f"{folder / 'configs' / 'inference.json'}: ") and message in text and "\n" not in text


@pytest.mark.parametrize(
    ("network", "inferer", "message"),
    [
        ({"_target_": "torch.nn.Conv3d", "in_channels": 1, "out_channels": 2}, None, "not in monai.networks.nets"),
        ({"_target_": "monai.networks.nets.DiNTS"}, None, "DiNTS is not a network seamline builds"),
        ({"_target_": "$monai.networks.nets.UNet"}, None, "is not a class name"),
        (None, {"_target_": "SimpleInferer"}, "seamline runs sliding-window inferers only"),
        (None, {"_target_": "SlidingWindowInferer", "roi_size": [32, 32, 16], "sigma_scale": 0.2}, "sigma_scale"),
    ],
)
def test_networks_and_inferers_seamline_does_not_build(tiny, network, inferer, message):
    with pytest.raises(ModelError, match=message):
        seamline.load_model(tiny([transform("LoadImaged")], inferer=inferer, network=network))


def test_a_bundle_without_weights(tiny):
    folder = tiny([transform("LoadImaged")])
    (folder / "models" / "model.pt").unlink()
    with pytest.raises(ModelError, match=r"no weights: models/model\.pt \(a state dict\) or models/model\.ts"):
        seamline.load_model(folder)


rotations = st.tuples(*[st.floats(-40, 40)] * 3)
flips = st.tuples(*[st.sampled_from([-1.0, 1.0])] * 3)
spacings = st.tuples(*[st.floats(0.6, 3.5)] * 3)


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(angles=rotations, flip=flips, spacing=spacings, target=spacings, shape=st.tuples(*[st.integers(4, 13)] * 3))
def test_first_voxel_grid_is_monai_spacing(angles, flip, spacing, target, shape):
    from scipy.spatial.transform import Rotation

    affine = np.eye(4)
    rotation = Rotation.from_euler("xyz", angles, degrees=True).as_matrix()
    affine[:3, :3] = rotation @ np.diag(np.multiply(flip, spacing))
    affine[:3, 3] = [12.5, -7.0, 3.25]
    data = np.random.default_rng(0).normal(size=(1, *shape)).astype(np.float32)
    theirs = monai.transforms.Spacing(pixdim=target)(
        MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(affine))
    )
    image = Image.from_array(data, affine=affine, meta={"anchor": "center"})
    grid_shape, grid_affine = first_voxel_grid(image, target)
    assert grid_shape == tuple(theirs.shape[1:])
    np.testing.assert_allclose(grid_affine, np.asarray(theirs.affine), atol=1e-9)
    ours = resample(image, grid_shape, grid_affine).data.compute()
    np.testing.assert_allclose(ours, theirs.numpy(), atol=1e-4)


def test_without_orientationd_the_stored_axes_are_resampled(tiny):
    """No Orientationd: MONAI's Spacingd works on the axes as stored (LPS here), and so does seamline."""
    from seamline_medical.geometry import prepare_input

    bundle = seamline.load_model(tiny([transform("LoadImaged"), transform("Spacingd", pixdim=[2.0, 1.5, 2.5])]))
    assert bundle.card.orientation is None
    affine = np.diag([-3.0, -3.0, 3.0, 1.0])
    affine[:3, 3] = [100.0, 80.0, -20.0]
    data = np.random.default_rng(0).normal(size=(1, 12, 10, 8)).astype(np.float32)
    image = Image.from_array(data, affine=affine, meta={"anchor": "center"})
    model_grid, restore = prepare_input(image, bundle.card)
    theirs = monai.transforms.Spacing(pixdim=[2.0, 1.5, 2.5])(
        MetaTensor(torch.from_numpy(data), affine=torch.from_numpy(affine))
    )
    np.testing.assert_allclose(model_grid.affine, np.asarray(theirs.affine), atol=1e-9)
    np.testing.assert_allclose(model_grid.data.compute(), theirs.numpy(), atol=1e-5)
    back = restore(model_grid, "scores")
    assert back.shape == image.shape
    np.testing.assert_array_equal(back.affine, affine)
