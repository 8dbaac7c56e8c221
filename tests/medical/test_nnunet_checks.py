"""nnU-Net model folders and imported bundles: spacing as nnU-Net's readers report it, and bad input refused.

The spacing is checked against nnU-Net's own readers (``NibabelIOWithReorient``,
``SimpleITKIO``) and SimpleITK on files whose pixdim disagrees with their sform or whose
spatial unit is not the millimetre. A folder or an imported bundle that is corrupt in any
field is refused when it loads, as one line naming the file (exit 2 from the command
line), never a traceback, and a plans.json asking for a network of terabytes is refused
before anything is allocated.
"""

from __future__ import annotations

import json
import time

import nibabel as nib
import numpy as np
import pytest
import torch
from click.testing import CliRunner

import seamline
from seamline.errors import ModelError
from seamline_medical.nnunet.network import NNUNetNetwork
from seamline_medical.nnunet.preprocess import to_network_grid
from tests.conftest import data_file
from tests.medical import nnunet_folders as folders

pytest.importorskip("nnunetv2")
pytestmark = pytest.mark.peer

CT = ("totalsegmentator_ct_mr", "example_ct_sm.nii.gz")
#: Voxel axes permuted and flipped (not RAS), the sform's column lengths 2, 1.5 and 3.
OBLIQUE = np.array([[0, 0, -3.0, 10], [2.0, 0, 0, 5], [0, -1.5, 0, 1], [0, 0, 0, 1]])
RAS = np.diag([2.0, 1.5, 3.0, 1.0])


def write_nifti(path, affine, *, pixdim, units="mm"):
    """A small volume whose sform is *affine* and whose pixdim and spatial unit are set apart from it."""
    data = np.arange(1, 7 * 8 * 9 + 1, dtype=np.int16).reshape(7, 8, 9)
    header = nib.Nifti1Image(data, affine).header
    header.set_sform(affine, code=1)
    header.set_qform(None, code=0)
    header["pixdim"][1:4] = pixdim
    header.set_xyzt_units(units, "sec")
    nib.save(nib.Nifti1Image(data, None, header), path)
    return path


def grid_spacing(image, *, reader, reorient):
    """The spacing seamline's preprocessing uses, along nnU-Net's axes (transpose_forward the identity)."""
    pipeline = {
        "reader": reader,
        "reorient": reorient,
        "transpose_forward": [0, 1, 2],
        "spacing": [1.0, 1.0, 1.0],
        "normalization": [{"scheme": "NoNormalization", "use_mask": False}],
        "resampling": {"data": None, "probabilities": None},
    }
    return list(to_network_grid(image, pipeline)[1].spacing)


@pytest.mark.parametrize("affine", [OBLIQUE, RAS], ids=["oblique", "ras"])
@pytest.mark.parametrize("pixdim", [(1.0, 1.0, 1.0), (2.0, 1.5, 3.0), (0.7, 0.9, 1.1)])
def test_reoriented_spacing_is_nibabel_reorienting_readers(tmp_path, affine, pixdim):
    """as_reoriented rewrites pixdim from the new affine (float32), unless the volume is RAS already."""
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIOWithReorient

    path = write_nifti(tmp_path / "v.nii.gz", affine, pixdim=pixdim)
    expected = NibabelIOWithReorient().read_images([str(path)])[1]["spacing"]
    got = grid_spacing(seamline.open(path), reader="NibabelIOWithReorient", reorient=True)
    assert got == expected


@pytest.mark.parametrize("units", ["mm", "micron", "meter", "unknown"])
@pytest.mark.parametrize("affine", [OBLIQUE, RAS], ids=["oblique", "ras"])
def test_simpleitk_reader_spacing_is_itks(tmp_path, units, affine):
    """ITK scales pixdim by the file's spatial unit; nibabel's readers do not."""
    import SimpleITK as sitk
    from nnunetv2.imageio.nibabel_reader_writer import NibabelIO
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    path = write_nifti(tmp_path / "v.nii.gz", affine, pixdim=(0.7, 0.9, 1.1), units=units)
    image = seamline.open(path)
    itk = list(sitk.ReadImage(str(path)).GetSpacing())[::-1]
    got = grid_spacing(image, reader="SimpleITKIO", reorient=False)
    np.testing.assert_allclose(got, itk, rtol=1e-12)
    np.testing.assert_allclose(got, SimpleITKIO().read_images([str(path)])[1]["spacing"], rtol=1e-12)
    assert grid_spacing(image, reader="NibabelIO", reorient=False) == NibabelIO().read_images([str(path)])[1]["spacing"]


def test_a_header_the_affine_no_longer_matches_is_not_trusted(tmp_path):
    """An image given another affine (resampled, say) has that affine's spacing, as a file of it would."""
    from nnunetv2.imageio.simpleitk_reader_writer import SimpleITKIO

    image = seamline.open(write_nifti(tmp_path / "v.nii.gz", RAS, pixdim=(1.0, 1.0, 1.0)))
    moved = image.replace(affine=np.diag([0.5, 4.0, 2.5, 1.0]))
    path = tmp_path / "moved.nii.gz"
    nib.save(nib.Nifti1Image(np.asarray(moved.data[0]), moved.affine), path)
    expected = SimpleITKIO().read_images([str(path)])[1]["spacing"]
    np.testing.assert_allclose(grid_spacing(moved, reader="SimpleITKIO", reorient=False), expected, rtol=1e-6)


def test_mirrorings_and_folds_are_summed_in_float32():
    """Under float16 autocast a network returns float16; 60000 + 60000 overflows it, not float32."""

    class Half(torch.nn.Module):
        def forward(self, x):
            return torch.full((x.shape[0], 2, *x.shape[2:]), 60000.0, dtype=torch.float16)

    network = NNUNetNetwork([Half(), Half()], mirror_axes=(0, 1), heads=2)
    out = network(torch.zeros((1, 1, 4, 4, 4)))
    assert out.dtype == torch.float32 and bool(torch.all(out == 60000.0))


def test_gpu_runs_autocast_in_float16_and_the_cpu_none(folder_factory):
    bundle = seamline.load_model(folder_factory("ct"))
    assert bundle._engine_options({"device": "cuda"})["amp"] == "float16"
    assert "amp" not in bundle._engine_options({"device": "cpu"})
    assert bundle._engine_options({"device": "cuda", "amp": False})["amp"] is False


def _plans(edit):
    return folders.edit_json("plans.json", edit)


def _config(edit):
    return _plans(lambda p: edit(p["configurations"]["3d_fullres"]))


def _arch(key, value):
    return _config(lambda c: c["architecture"]["arch_kwargs"].update({key: value}))


def _nested(folder):
    (folder / "plans.json").write_text("[" * 200 + "]" * 200)


CORRUPT = {
    "configuration not an object": (_plans(lambda p: p["configurations"].update({"3d_fullres": [1]})), "plans.json"),
    "spacing not numbers": (_config(lambda c: c.update(spacing=["a", "b", "c"])), "plans.json"),
    "patch size fractional": (_config(lambda c: c.update(patch_size=[16.5, 32, 32])), "plans.json"),
    "resampling order not a number": (
        _config(lambda c: c["resampling_fn_data_kwargs"].update(order="three")),
        "plans.json",
    ),
    "resampling kwargs a list": (_config(lambda c: c.update(resampling_fn_data_kwargs=[1])), "plans.json"),
    "CT statistics not numbers": (
        _plans(lambda p: p["foreground_intensity_properties_per_channel"]["0"].update(mean="x")),
        "plans.json",
    ),
    "transpose_forward a number": (_plans(lambda p: p.update(transpose_forward=5)), "plans.json"),
    "transpose_forward strings": (_plans(lambda p: p.update(transpose_forward=["a", 1, 2])), "plans.json"),
    "reader a list": (_plans(lambda p: p.update(image_reader_writer=["SimpleITKIO"])), "plans.json"),
    "architecture a list": (_config(lambda c: c.update(architecture=[])), "plans.json"),
    "negative features": (_arch("features_per_stage", [-3, 16, 32]), "plans.json"),
    "absurd features": (_arch("features_per_stage", [10**6, 10**6, 10**6]), "checkpoint_final.pth"),
    "plans nested deep": (_nested, "plans.json"),
    "label not a number": (
        folders.edit_json("dataset.json", lambda d: d["labels"].update(liver="four")),
        "dataset.json",
    ),
    "label a dict": (folders.edit_json("dataset.json", lambda d: d["labels"].update(liver={})), "dataset.json"),
    "channel keys not numbers": (
        folders.edit_json("dataset.json", lambda d: d.update(channel_names={"CT": "CT"})),
        "dataset.json",
    ),
    "init_args not a dict": (folders.rewrite_checkpoint(lambda c: c.update(init_args=[1])), "checkpoint_final.pth"),
    "mirroring axis out of range": (
        folders.rewrite_checkpoint(lambda c: c.update(inference_allowed_mirroring_axes=(0, 5))),
        "checkpoint_final.pth",
    ),
    "mirroring axes a string": (
        folders.rewrite_checkpoint(lambda c: c.update(inference_allowed_mirroring_axes="012")),
        "checkpoint_final.pth",
    ),
}


@pytest.mark.parametrize("case", sorted(CORRUPT))
def test_a_corrupt_folder_exits_2_with_one_line_naming_the_file(folder_factory, tmp_path, case):
    from seamline.cli import get_cli

    change, named = CORRUPT[case]
    folder = folders.broken_copy(folder_factory, tmp_path, case.replace(" ", "-"), change)
    args = ["predict", str(data_file(*CT)), str(tmp_path / "out.nii.gz"), "--model", str(folder), "--no-progress"]
    started = time.perf_counter()
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and "Traceback" not in result.output, result.output
    assert named in result.output and str(folder) in result.output, result.output
    assert time.perf_counter() - started < 20


def test_a_network_of_terabytes_is_refused_before_allocating(folder_factory, tmp_path):
    import resource

    folder = folders.broken_copy(folder_factory, tmp_path, "huge", _arch("features_per_stage", [10**6] * 3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started = time.perf_counter()
    with pytest.raises(ModelError) as raised:
        seamline.load_model(folder)
    assert time.perf_counter() - started < 10
    assert resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before < 2**20  # kB: less than a GiB more
    message = str(raised.value)
    assert "\n" not in message and "plans.json" in message and "mis-shaped" in message


def _imported(folder_factory, tmp_path, edit, *, regions=False):
    """An nnU-Net folder imported as a seamline bundle, its card's pipeline then edited."""
    from seamline.bundle import CARD_FILE
    from seamline.cli import get_cli

    name = "ct-regions-nomirror" if regions else "ct"
    options = {"regions": True, "trainer": "nnUNetTrainerNoMirroring"} if regions else {}
    target = tmp_path / "imported"
    result = CliRunner().invoke(get_cli(), ["import-model", str(folder_factory(name, **options)), str(target)])
    assert result.exit_code == 0, result.output
    card = json.loads((target / CARD_FILE).read_text())
    edit(card["pipeline"])
    (target / CARD_FILE).write_text(json.dumps(card))
    return target


@pytest.mark.parametrize(
    ("edit", "regions", "field"),
    [
        (lambda p: p.pop("regions_class_order"), True, "regions_class_order"),
        (lambda p: p["normalization"][0].update(scheme="Mine"), False, "normalization[0].scheme"),
        (lambda p: p["normalization"][0].pop("mean"), False, "mean"),
        (lambda p: p["resampling"]["data"].update(order="cubic"), False, "resampling.data"),
        (lambda p: p.update(transpose_forward=[0, 0, 1]), False, "transpose_forward"),
        (lambda p: p.update(spacing=[1.0, -1.0, 1.0]), False, "spacing"),
        (lambda p: p.update(reader="Tiff3DIO"), False, "reader"),
        (lambda p: p.update(regions=[[1, 2]], regions_class_order=[1]), False, "regions"),
    ],
)
def test_an_imported_bundle_with_a_bad_pipeline_is_refused_when_it_loads(
    folder_factory, tmp_path, edit, regions, field
):
    bundle = _imported(folder_factory, tmp_path, edit, regions=regions)
    with pytest.raises(ModelError) as raised:
        seamline.load_model(bundle)
    assert field in str(raised.value) and "\n" not in str(raised.value)


def test_an_imported_bundle_without_its_reader_reads_as_simpleitk(folder_factory, tmp_path):
    """Cards written before the reader was recorded: nnU-Net's default reader."""
    bundle = seamline.load_model(_imported(folder_factory, tmp_path, lambda p: p.pop("reader")))
    assert bundle.pipeline["reader"] == "SimpleITKIO"
