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
image reader that orders axes another way. Each value is checked by :mod:`.checks` (the
checks imported cards get too); a value of a shape nobody foresaw is still one line
naming the file (:func:`.checks.malformed`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from seamline.bundle import ModelCard
from seamline.errors import ModelError

from . import checks
from .checks import CT_KEYS, NORMALIZATIONS, READERS
from .network import LAYERS, NETWORKS
from .resample import ANISOTROPY_THRESHOLD

__all__ = ["model_card", "configuration", "NORMALIZATIONS", "READERS"]

_RESAMPLINGS = ("resample_data_or_seg_to_shape", "no_resampling_hack")
_RESAMPLING_KEYS = {"is_seg", "order", "order_z", "force_separate_z", "separate_z_anisotropy_threshold"}


def _old_architecture(config: Mapping[str, Any], where: str, source: Path) -> dict[str, Any]:
    """The ``architecture`` entry of plans written before nnU-Net 2.3 (``UNet_class_name``)."""
    name = config.get("UNet_class_name")
    paths = {
        "PlainConvUNet": "dynamic_network_architectures.architectures.unet.PlainConvUNet",
        "ResidualEncoderUNet": "dynamic_network_architectures.architectures.residual_unet.ResidualEncoderUNet",
    }
    if name not in paths:
        raise ModelError(f"{where}.UNet_class_name {name!r} is not PlainConvUNet or ResidualEncoderUNet", source)
    for key in ("UNet_base_num_features", "unet_max_num_features"):
        value = config.get(key)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ModelError(f"{where}.{key} {value!r} is not a positive whole number", source)
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
        if not isinstance(configurations[name], Mapping):
            raise ModelError(f"configurations.{name} is not a JSON object", source)
        parent = configurations[name].get("inherits_from")
        if parent is None:
            break
        if not isinstance(parent, str):
            raise ModelError(f"configurations.{name}.inherits_from {parent!r} is not a configuration's name", source)
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
    field = f"{where}.resampling_fn_{which}_kwargs"
    kwargs = config.get(f"resampling_fn_{which}_kwargs") or {}
    if not isinstance(kwargs, Mapping):
        raise ModelError(f"{field} is not a JSON object", source)
    unknown = sorted(set(kwargs) - _RESAMPLING_KEYS)
    if unknown or kwargs.get("is_seg", False):
        raise ModelError(f"{field}: {f'unknown keys {unknown}' if unknown else 'is_seg is true'}", source)
    step = {
        "order": kwargs.get("order", 3),
        "order_z": kwargs.get("order_z", 0),
        "force_separate_z": kwargs.get("force_separate_z", False),
        "threshold": kwargs.get("separate_z_anisotropy_threshold", ANISOTROPY_THRESHOLD),
    }
    return checks.resampling(step, field, source)


def _intensities(plans: Mapping[str, Any], channel: int, source: Path) -> dict[str, float]:
    """CTNormalization's numbers for one channel: the dataset's foreground mean, std and percentiles."""
    table = plans.get("foreground_intensity_properties_per_channel")
    if table is None:
        table = plans.get("foreground_intensity_properties_by_modality")
    entry = table.get(str(channel)) if isinstance(table, Mapping) else None
    return checks.numbers_of(entry, CT_KEYS, f"foreground_intensity_properties_per_channel.{channel}", source)


def _normalization(
    plans: Mapping[str, Any], config: Mapping[str, Any], channels: int, where: str, source: Path
) -> list[dict[str, Any]]:
    schemes = config.get("normalization_schemes")
    masks = config.get("use_mask_for_norm")
    if not isinstance(schemes, list) or not isinstance(masks, list) or not len(schemes) == len(masks) == channels:
        raise ModelError(f"{where}.normalization_schemes and use_mask_for_norm need one entry per channel", source)
    steps = []
    for channel, (scheme, mask) in enumerate(zip(schemes, masks, strict=True)):
        checks.normalization_scheme(scheme, f"{where}.normalization_schemes[{channel}]", source)
        step: dict[str, Any] = {"scheme": scheme, "use_mask": bool(mask)}
        if scheme == "CTNormalization":
            step.update(_intensities(plans, channel, source))
        steps.append(step)
    return steps


def _channels(dataset: Mapping[str, Any], source: Path) -> list[str]:
    """The input channels' names, in the order of their numbers ``"0"``, ``"1"``, ..."""
    channels = dataset.get("channel_names", dataset.get("modality"))
    if not isinstance(channels, Mapping) or not channels or set(channels) != {str(c) for c in range(len(channels))}:
        raise ModelError("channel_names must name the input channels by their numbers 0, 1, ...", source)
    return [str(channels[str(c)]) for c in range(len(channels))]


def _labels(
    dataset: Mapping[str, Any], source: Path
) -> tuple[list[str], int, list[list[int]] | None, list[int] | None]:
    """Class names by output label value, network heads, and the regions (as nnU-Net's LabelManager)."""
    labels = dataset.get("labels")
    if not isinstance(labels, Mapping) or labels.get("background") != 0:
        raise ModelError("labels must map names to values, with background 0", source)
    entries = {
        name: [checks.label_value(x, f"labels.{name}", source) for x in (v if isinstance(v, list | tuple) else [v])]
        for name, v in labels.items()
        if name != "ignore"
    }
    if any(not values for values in entries.values()):
        raise ModelError("labels: every label needs a value", source)
    values = sorted({x for v in entries.values() for x in v})
    if not any(len(v) > 1 for v in entries.values()):
        named = {v[0]: k for k, v in entries.items()}
        return [named.get(value, f"class {i}") for i, value in enumerate(values)], len(values), None, None
    regions = {k: v for k, v in entries.items() if set(v) != {0}}
    found, order = checks.regions(list(regions.values()), dataset.get("regions_class_order"), "labels", source)
    assert found is not None and order is not None
    names = ["background"] + [f"class {i}" for i in range(1, max(order) + 1)]
    for name, value in zip(regions, order, strict=True):
        names[value] = name
    return names, len(regions), found, order


def _check_axes(plans: Mapping[str, Any], source: Path) -> list[int]:
    forward = checks.permutation(plans.get("transpose_forward"), "transpose_forward", source)
    backward = plans.get("transpose_backward")
    if [int(a) for a in np.argsort(forward)] != backward:
        raise ModelError(f"transpose_backward {backward!r} is not the inverse of transpose_forward {forward}", source)
    return forward


def _architecture(config: Mapping[str, Any], where: str, source: Path) -> dict[str, Any]:
    architecture = config["architecture"]
    if not isinstance(architecture, Mapping):
        raise ModelError(f"{where}.architecture is not a JSON object", source)
    network = architecture.get("network_class_name")
    kwargs = architecture.get("arch_kwargs")
    imports = architecture.get("_kw_requires_import", [])
    if not isinstance(network, str) or network.rsplit(".", 1)[-1] not in NETWORKS:
        raise ModelError(
            f"{where}.architecture.network_class_name {network!r} is not one of {', '.join(NETWORKS)}", source
        )
    if not isinstance(kwargs, Mapping) or not isinstance(imports, list) or not all(isinstance(k, str) for k in imports):
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
    with checks.malformed(dataset_file):
        bands = _channels(dataset, dataset_file)
        names, heads, regions, order = _labels(dataset, dataset_file)
    with checks.malformed(plans_file):
        config = configuration(plans, name, plans_file)
        where = f"configurations.{name}"
        if config.get("previous_stage") is not None:
            raise ModelError(
                f"{where} is a cascade stage (previous_stage {config['previous_stage']!r}): it needs the previous "
                "stage's segmentation as input, which seamline does not run",
                plans_file,
            )
        if config.get("preprocessor_name", "DefaultPreprocessor") != "DefaultPreprocessor":
            raise ModelError(
                f"{where}.preprocessor_name {config['preprocessor_name']!r} is not DefaultPreprocessor", plans_file
            )
        if plans.get("label_manager", "LabelManager") != "LabelManager":
            raise ModelError(f"label_manager {plans['label_manager']!r} is not LabelManager", plans_file)
        reader = plans.get("image_reader_writer", "SimpleITKIO")
        if not isinstance(reader, str) or reader not in READERS:
            raise ModelError(f"image_reader_writer {reader!r} is not one of {', '.join(READERS)}", plans_file)
        patch = checks.vector(config.get("patch_size"), f"{where}.patch_size", plans_file, whole=True)
        pipeline = {
            "format": "nnunet",
            "reader": reader,
            "reorient": READERS[reader] if reorient is None else bool(reorient),
            "transpose_forward": _check_axes(plans, plans_file),
            "spacing": checks.vector(config.get("spacing"), f"{where}.spacing", plans_file),
            "patch_size": patch,
            "tile_step_size": 0.5,
            "normalization": _normalization(plans, config, len(bands), where, plans_file),
            "resampling": {which: _resampling(config, which, where, plans_file) for which in ("data", "probabilities")},
            "regions": regions,
            "regions_class_order": order,
        }
        return ModelCard(
            architecture="nnunet.network",
            in_channels=len(bands),
            classes=names,
            kwargs={
                **_architecture(config, where, plans_file),
                "heads": heads,
                "folds": len(folds),
                "mirror_axes": list(mirror_axes),
            },
            bands=bands,
            tile_size=patch,
            overlap=0.5,
            spatial_dims=3,
            blend="nnunet",
            pad_to_tile=True,
            orientation="RAS" if pipeline["reorient"] else None,
            labels_from="probabilities",
            training=dict(training),
            pipeline=pipeline,
        )
