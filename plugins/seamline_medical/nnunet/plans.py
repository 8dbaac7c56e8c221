"""What an nnU-Net model's plans.json and dataset.json say, checked and turned into a card.

nnU-Net keeps everything inference needs in two JSON files: the plans (axis order,
spacing, patch size, normalization, resampling, network) and the dataset description
(channels, labels, regions). :func:`model_card` reads one configuration of them, as
nnU-Net's ``PlansManager``, ``ConfigurationManager`` and ``LabelManager`` do (configuration
inheritance, plans from before the ``architecture`` entry, region-based label sets), and
returns a :class:`~seamline.card.ModelCard` whose ``pipeline`` holds, as plain JSON,
every step :mod:`.pipeline` runs. Whatever seamline does not reproduce is refused here,
as a :class:`~seamline.errors.ModelError` naming the file and the field: a cascade stage,
a custom preprocessor, resampling or label manager, an unknown normalization scheme, an
image reader that orders axes another way.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seamline.bundle import ModelCard
from seamline.errors import ModelError

from .network import LAYERS, NETWORKS
from .resample import ANISOTROPY_THRESHOLD

__all__ = ["model_card", "configuration", "NORMALIZATIONS", "READERS"]

#: Normalization schemes reproduced (nnunetv2's default_normalization_schemes).
NORMALIZATIONS = (
    "CTNormalization",
    "ZScoreNormalization",
    "RescaleTo01Normalization",
    "RGBTo01Normalization",
    "NoNormalization",
)
#: Image readers whose axis order seamline reproduces; True where the reader reorients to RAS first.
READERS = {"SimpleITKIO": False, "NibabelIO": False, "NibabelIOWithReorient": True}
_RESAMPLINGS = ("resample_data_or_seg_to_shape", "no_resampling_hack")
_RESAMPLING_KEYS = {"is_seg", "order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold"}
_CT_KEYS = ("mean", "std", "percentile_00_5", "percentile_99_5")


def _old_architecture(config: Mapping[str, Any], where: str, source: Path) -> dict[str, Any]:
    """The ``architecture`` entry of plans written before nnU-Net 2.3 (``UNet_class_name``)."""
    name = config.get("UNet_class_name")
    paths = {
        "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "ResidualEncoderUNet": "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
    }
    if name not in paths:
        raise ModelError(f"{where}.UNet_class_name {name!r} is not PlainConvUNet or ResidualEncoderUNet", source)
    try:
        stages = len(config["n_conv_per_stage_encoder"])
        dim = len(config["patch_size"])
        blocks = "n_conv_per_stage" if name == "PlainConvUNet" else "n_blocks_per_stage"
        kwargs = {
            "n_stages": stages,
            "features_per_stage": [
                min(config["UNet_base_num_features"] * 2**i, config["unet_max_num_features"]) for i in range(stages)
            ],
            "conv_op": f"torch.nn.modules.conv.Conv{dim}d",
            "kernel_sizes": config["conv_kernel_sizes"],
            "strides": config["pool_op_kernel_sizes"],
            blocks: config["n_conv_per_stage_encoder"],
            "n_conv_per_stage_decoder": config["n_conv_per_stage_decoder"],
            "conv_bias": True,
            "norm_op": f"torch.nn.modules.instancenorm.InstanceNorm{dim}d",
            "norm_op_kwargs": {"eps": 1e-05, "affine": True},
            "dropout_op": None,
            "dropout_op_kwargs": None,
            "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"inplace": True},
        }
    except (KeyError, TypeError) as exc:
        raise ModelError(f"{where} has neither an architecture nor the old network fields ({exc})", source) from exc
    return {
        "network_class_name": paths[name],
        "arch_kwargs": kwargs,
        "_kw_requires_import": ["conv_op", "norm_op", "dropout_op", "nonlin"],
    }


def configuration(plans: Mapping[str, Any], name: str, source: Path) -> dict[str, Any]:
    """One configuration of the plans, its ``inherits_from`` chain resolved.

    Parameters
    ----------
    plans : mapping
        plans.json.
    name : str
        The configuration (``"3d_fullres"``, ...).
    source : pathlib.Path
        plans.json, named in errors.

    Returns
    -------
    dict
        The configuration, with an ``architecture`` entry.

    Raises
    ------
    ModelError
        If it or a parent is missing, or the inheritance is circular.
    """
    configurations = plans.get("configurations")
    if not isinstance(configurations, Mapping):
        raise ModelError("has no configurations", source)
    chain: list[str] = []
    while name not in chain:
        if name not in configurations:
            raise ModelError(f"has no configuration {name!r} (it has: {', '.join(configurations)})", source)
        chain.append(name)
        parent = configurations[name].get("inherits_from")
        if parent is None:
            break
        name = parent
    else:
        raise ModelError(f"configurations inherit in a circle: {' -> '.join([*chain, name])}", source)
    resolved: dict[str, Any] = {}
    for link in reversed(chain):
        resolved.update(configurations[link])
    if "architecture" not in resolved:
        resolved["architecture"] = _old_architecture(resolved, f"configurations.{chain[0]}", source)
    return resolved


def _resampling(config: Mapping[str, Any], which: str, where: str, source: Path) -> dict[str, Any] | None:
    """The resampling kwargs for ``data`` or ``probabilities``; None for nnU-Net's no-resampling hack."""
    function = config.get(f"resampling_fn_{which}")
    if function not in _RESAMPLINGS:
        raise ModelError(f"{where}.resampling_fn_{which} {function!r} is not one of {', '.join(_RESAMPLINGS)}", source)
    if function == "no_resampling_hack":
        return None
    kwargs = dict(config.get(f"resampling_fn_{which}_kwargs") or {})
    unknown = sorted(set(kwargs) - _RESAMPLING_KEYS)
    if unknown or kwargs.get("is_seg", False) or kwargs.get("order_z", 0) not in (0, 1):
        problem = f"unknown keys {unknown}" if unknown else "is_seg or order_z outside 0, 1"
        raise ModelError(f"{where}.resampling_fn_{which}_kwargs: {problem}", source)
    return {
        "order": int(kwargs.get("order", 3)),
        "order_z": int(kwargs.get("order_z", 0)),
        "force_separate_z": kwargs.get("force_separate_z", False),
        "threshold": float(kwargs.get("separate_z_anisotropy_threshold", ANISOTROPY_THRESHOLD)),
    }


def _intensities(plans: Mapping[str, Any], channel: int, source: Path) -> dict[str, float]:
    """CTNormalization's numbers for one channel: the dataset's foreground mean, std and percentiles."""
    table = plans.get("foreground_intensity_properties_per_channel")
    if table is None:
        table = plans.get("foreground_intensity_properties_by_modality")
    entry = (table or {}).get(str(channel))
    if not isinstance(entry, Mapping) or any(key not in entry for key in _CT_KEYS):
        raise ModelError(
            f"foreground_intensity_properties_per_channel.{channel} lacks {', '.join(_CT_KEYS)} for CTNormalization",
            source,
        )
    return {key: float(entry[key]) for key in _CT_KEYS}


def _normalization(
    plans: Mapping[str, Any], config: Mapping[str, Any], channels: int, where: str, source: Path
) -> list[dict[str, Any]]:
    schemes = config.get("normalization_schemes")
    masks = config.get("use_mask_for_norm")
    if not isinstance(schemes, list) or not isinstance(masks, list) or not len(schemes) == len(masks) == channels:
        raise ModelError(f"{where}.normalization_schemes and use_mask_for_norm need one entry per channel", source)
    steps = []
    for channel, (scheme, mask) in enumerate(zip(schemes, masks, strict=True)):
        if scheme not in NORMALIZATIONS:
            raise ModelError(
                f"{where}.normalization_schemes[{channel}] {scheme!r} is not one of {', '.join(NORMALIZATIONS)}",
                source,
            )
        step: dict[str, Any] = {"scheme": scheme, "use_mask": bool(mask)}
        if scheme == "CTNormalization":
            step.update(_intensities(plans, channel, source))
        steps.append(step)
    return steps


def _labels(
    dataset: Mapping[str, Any], source: Path
) -> tuple[list[str], int, list[list[int]] | None, list[int] | None]:
    """Class names by output label value, network heads, and the regions (as nnU-Net's LabelManager)."""
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping) or labels.get("background") != 0:
        raise ModelError("labels must map names to values, with background 0", source)
    entries = {k: v for k, v in labels.items() if k != "ignore"}
    regions_on = any(isinstance(v, list | tuple) and len(v) > 1 for v in entries.values())
    values = sorted({int(x) for v in entries.values() for x in (v if isinstance(v, list | tuple) else [v])})
    if not regions_on:
        named = {int(v[0] if isinstance(v, list | tuple) else v): k for k, v in entries.items()}
        return [named.get(value, f"class {i}") for i, value in enumerate(values)], len(values), None, None
    order = dataset.get("regions_class_order")
    regions = {
        k: [int(x) for x in (v if isinstance(v, list | tuple) else [v])]
        for k, v in entries.items()
        if set(v if isinstance(v, list | tuple) else [v]) != {0}
    }
    if not isinstance(order, list) or len(order) != len(regions) or not all(isinstance(c, int) for c in order):
        raise ModelError(
            f"regions_class_order must list one label value for each of the {len(regions)} regions", source
        )
    names = ["background"] + [f"class {i}" for i in range(1, max(order) + 1)]
    for name, value in zip(regions, order, strict=True):
        names[value] = name
    return names, len(regions), list(regions.values()), order


def _check_axes(plans: Mapping[str, Any], source: Path) -> list[int]:
    forward, backward = list(plans.get("transpose_forward") or []), plans.get("transpose_backward")
    if sorted(forward) != [0, 1, 2] or list(np.argsort(forward)) != backward:
        raise ModelError(
            f"transpose_forward {forward} and transpose_backward {backward} are not a permutation and its inverse",
            source,
        )
    return forward


def _architecture(config: Mapping[str, Any], where: str, source: Path) -> dict[str, Any]:
    architecture = config["architecture"]
    network = architecture.get("network_class_name")
    kwargs = architecture.get("arch_kwargs")
    imports = architecture.get("_kw_requires_import", [])
    if not isinstance(network, str) or network.rsplit(".", 1)[-1] not in NETWORKS:
        raise ModelError(
            f"{where}.architecture.network_class_name {network!r} is not one of {', '.join(NETWORKS)}", source
        )
    if not isinstance(kwargs, Mapping) or not isinstance(imports, list):
        raise ModelError(f"{where}.architecture needs arch_kwargs and _kw_requires_import", source)
    for key in imports:
        value = kwargs.get(key)
        if value is not None and str(value).rsplit(".", 1)[-1] not in (*LAYERS, "BasicBlockD", "BottleneckD"):
            raise ModelError(f"{where}.architecture.arch_kwargs.{key} {value!r} is not a layer seamline builds", source)
    return {"network": network, "arch_kwargs": dict(kwargs), "requires_import": list(imports)}


def model_card(
    plans: Mapping[str, Any],
    dataset: Mapping[str, Any],
    name: str,
    *,
    folder: Path,
    folds: Sequence[int | str],
    mirror_axes: Sequence[int],
    training: Mapping[str, Any],
    reorient: bool | None = None,
) -> ModelCard:
    """The card of one trained configuration: network, classes and nnU-Net's whole pipeline.

    Parameters
    ----------
    plans, dataset : mapping
        plans.json and dataset.json.
    name : str
        The configuration trained (the checkpoint's ``init_args.configuration``).
    folder : pathlib.Path
        The model folder, for messages.
    folds : sequence
        The folds loaded.
    mirror_axes : sequence of int
        Axes mirrored at inference (empty for none).
    training : mapping
        What the card records of the source (trainer, plans, folds, checkpoint).
    reorient : bool, optional
        Reorient volumes to RAS first (as TotalSegmentator does before calling nnU-Net);
        by default as the plans' image reader does.

    Returns
    -------
    ModelCard
        ``architecture="nnunet.network"``; ``pipeline`` with ``format="nnunet"``, which
        :mod:`.pipeline` runs; the card's own fields (``blend``, ``orientation``,
        ``labels_from``, ...) say the same where they can.

    Raises
    ------
    ModelError
        For anything seamline does not reproduce, naming the file and the field.
    """
    plans_file, dataset_file = folder / "plans.json", folder / "dataset.json"
    config = configuration(plans, name, plans_file)
    where = f"configurations.{name}"
    if config.get("previous_stage") is not None:
        raise ModelError(
            f"{where} is a cascade stage (previous_stage {config['previous_stage']!r}): it needs the previous "
            "stage's segmentation as input, which seamline does not run",
            plans_file,
        )
    for field, expected in (("preprocessor_name", "DefaultPreprocessor"),):
        if config.get(field, expected) != expected:
            raise ModelError(f"{where}.{field} {config[field]!r} is not {expected}", plans_file)
    if plans.get("label_manager", "LabelManager") != "LabelManager":
        raise ModelError(f"label_manager {plans['label_manager']!r} is not LabelManager", plans_file)
    reader = plans.get("image_reader_writer", "SimpleITKIO")
    if reader not in READERS:
        raise ModelError(f"image_reader_writer {reader!r} is not one of {', '.join(READERS)}", plans_file)
    patch, spacing = config.get("patch_size"), config.get("spacing")
    if not isinstance(patch, list) or not isinstance(spacing, list) or len(patch) != 3 or len(spacing) != 3:
        raise ModelError(f"{where}.patch_size {patch} is not 3D: seamline runs nnU-Net's 3D configurations", plans_file)
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, Mapping) or not channels:
        raise ModelError("channel_names must name the input channels", dataset_file)
    names, heads, regions, order = _labels(dataset, dataset_file)
    pipeline = {
        "format": "nnunet",
        "reorient": READERS[reader] if reorient is None else bool(reorient),
        "transpose_forward": _check_axes(plans, plans_file),
        "spacing": [float(s) for s in spacing],
        "patch_size": [int(p) for p in patch],
        "tile_step_size": 0.5,
        "normalization": _normalization(plans, config, len(channels), where, plans_file),
        "resampling": {which: _resampling(config, which, where, plans_file) for which in ("data", "probabilities")},
        "regions": regions,
        "regions_class_order": order,
    }
    return ModelCard(
        architecture="nnunet.network",
        in_channels=len(channels),
        classes=names,
        kwargs={
            **_architecture(config, where, plans_file),
            "heads": heads,
            "folds": len(folds),
            "mirror_axes": list(mirror_axes),
        },
        bands=[str(channels[key]) for key in sorted(channels, key=int)],
        tile_size=[int(p) for p in patch],
        overlap=0.5,
        spatial_dims=3,
        blend="nnunet",
        pad_to_tile=True,
        orientation="RAS" if pipeline["reorient"] else None,
        labels_from="probabilities",
        training=dict(training),
        pipeline=pipeline,
    )
