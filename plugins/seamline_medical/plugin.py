"""The medical plugin's hook implementations: NIfTI, DICOM, geometry, statistics, models, recipes.

Each hook only registers records; the work lives in the modules named by idea
(:mod:`.nifti`, :mod:`.dicom_read`, :mod:`.dicom_seg`, :mod:`.geometry`, :mod:`.stats`,
:mod:`.meshes`, :mod:`.models`, :mod:`.transunet`, :mod:`.slices`, :mod:`.presets`,
:mod:`.commands`). Loading the plugin imports no nibabel, pydicom, highdicom, scipy,
pandas, scikit-image, torch or MONAI: NIfTI and DICOM files are recognised from the path
and a few bytes (:mod:`.formats`), and each registered callable imports its module on its
first call (:func:`seamline.plugins.deferred`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from seamline.hookspecs import hookimpl
from seamline.plugins import Architecture, ModelFormat, Output, Reader, Writer, deferred

from . import formats, models, monai_config, presets

if TYPE_CHECKING:
    from seamline.bundle import ModelCard
    from seamline.image import Image


@hookimpl
def seamline_readers(register: Any) -> None:
    register(
        Reader(
            name="nifti",
            can_open=formats.can_open,
            open=deferred("seamline_medical.nifti_read", "open_nifti"),
            suffixes=formats.SUFFIXES,
            description="NIfTI-1/NIfTI-2 volumes through nibabel, lazily (memory-mapped .nii)",
        )
    )
    register(
        Reader(
            name="dicom-seg",
            can_open=formats.can_open_seg,
            open=deferred("seamline_medical.dicom_seg_read", "open_seg"),
            suffixes=(".dcm",),
            description="DICOM segmentations (SEG) as label volumes, on the grid of like= when given",
            needs_grid=True,
        )
    )
    register(
        Reader(
            name="dicom",
            can_open=formats.can_open_dicom,
            open=deferred("seamline_medical.dicom_read", "open_dicom"),
            suffixes=formats.DICOM_SUFFIXES,
            description="DICOM series (folder, DICOMDIR, multi-frame file) through pydicom, slice by slice",
        )
    )


@hookimpl
def seamline_writers(register: Any) -> None:
    register(
        Writer(
            name="nifti",
            can_save=formats.can_save,
            save=deferred("seamline_medical.nifti_write", "save_nifti"),
            suffixes=formats.SUFFIXES,
            description="NIfTI volumes, streamed, source header kept; labels with a label table",
        )
    )
    register(
        Writer(
            name="dicom-seg",
            can_save=formats.can_save_seg,
            save=deferred("seamline_medical.dicom_seg", "save_seg"),
            suffixes=(".dcm",),
            description="label volumes as DICOM SEG through highdicom, referencing the source series",
        )
    )


@hookimpl
def seamline_models(register: Any) -> None:
    for name, build, description in (
        ("monai.UNet", models.build_unet, "MONAI residual UNet, 2D or 3D (spatial_dims; slice_axis)"),
        ("monai.SwinUNETR", models.build_swin_unetr, "MONAI Swin UNETR, 2D or 3D (spatial_dims)"),
        ("monai.UNETR", models.build_unetr, "MONAI UNETR, 2D or 3D (spatial_dims, img_size)"),
        ("monai.SegResNet", models.build_segresnet, "MONAI SegResNet, 2D or 3D (spatial_dims)"),
    ):
        register(Architecture(name=name, build=build, description=description))
    own = {"UNet", "SwinUNETR", "UNETR", "SegResNet"}
    for network in (n for n in models.MONAI_NETWORKS if n not in own):
        register(
            Architecture(
                name=f"monai.{network}",
                build=deferred("seamline_medical.models", "build_monai", network),
                description=f"MONAI {network} with its own arguments",
            )
        )
    register(
        Architecture(
            name="nnunet.network",
            build=deferred("seamline_medical.nnunet.network", "build_network"),
            spatial_dims=3,
            description="nnU-Net v2's networks from plans (PlainConvUNet, ResidualEncoderUNet), folds and mirroring",
        )
    )
    register(
        Architecture(
            name="medical.TransUNet",
            build=models.build_transunet,
            description="TransUNet (R50+ViT-B/16 hybrid, cascaded upsampler), 2D; slice_axis for volumes",
        )
    )


def _is_monai_bundle(path: str) -> bool:
    return monai_config.find_config(path) is not None


@hookimpl
def seamline_model_formats(register: Any) -> None:
    register(
        ModelFormat(
            name="monai-bundle",
            can_load=_is_monai_bundle,
            load=deferred("seamline_medical.monai_bundle", "load"),
            description="MONAI bundle folders (configs/inference.json or .yaml, models/model.pt or .ts)",
        )
    )
    register(
        ModelFormat(
            name="nnunet",
            can_load=deferred("seamline_medical.nnunet.folder", "can_load"),
            load=deferred("seamline_medical.nnunet.folder", "load"),
            from_card=deferred("seamline_medical.nnunet.pipeline", "from_card"),
            description="nnU-Net v2 results folders (TotalSegmentator's too): nnU-Net's own pipeline, same answer",
        )
    )


@hookimpl
def seamline_outputs(register: Any) -> None:
    register(
        Output(
            name="stats",
            option="--stats",
            write=deferred("seamline_medical.stats", "write_stats_output"),
            help="Write per-label statistics (voxels, volume in mL, centroid, bbox) to STATS.csv or .json.",
            check=deferred("seamline_medical.stats", "check_stats_output"),
        )
    )
    register(
        Output(
            name="meshes",
            option="--meshes",
            write=deferred("seamline_medical.meshes", "write_meshes_output"),
            help="Write one surface mesh per label (binary STL, world mm) into this directory.",
            check=deferred("seamline_medical.meshes", "check_meshes_output"),
        )
    )


@hookimpl
def seamline_recipes(register: Any) -> None:
    for recipe in presets.RECIPES:
        register(recipe)


@hookimpl
def seamline_commands(cli: Any) -> None:
    from .commands import dicom_info_command, stats_command

    cli.add_command(stats_command)
    cli.add_command(dicom_info_command)


@hookimpl
def seamline_prepare_input(image: Image, card: ModelCard, kind: str) -> Any:
    if image.ndim != 3 or image.meta.get("anchor") != "center":
        return None  # not a volume in RAS world space: nothing to do, and nothing imported
    return deferred("seamline_medical.geometry", "prepare_input")(image, card, kind=kind)
