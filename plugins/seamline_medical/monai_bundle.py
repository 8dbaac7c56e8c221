"""MONAI bundle folders as seamline models: the network, the steps around it, the weights.

A MONAI bundle describes its inference as components in ``configs/inference.json`` (or
``.yaml``), with weights in ``models/model.pt`` (or TorchScript ``models/model.ts``) and,
usually, channel names in ``configs/metadata.json``. :func:`load` reads that description
as data (:mod:`.monai_config`: nothing evaluated, nothing imported) and writes it as a
model card that seamline's own pipeline then follows:

=============================================  =============================================
MONAI                                          seamline card
=============================================  =============================================
``network_def`` (an allow-listed class)        ``architecture`` ``monai.<Class>``, ``kwargs``
``Orientationd(axcodes)``                      ``orientation``
``Spacingd(pixdim, mode="bilinear")``          ``target_spacing``, ``resample_grid="first_voxel"``
``ScaleIntensityRanged``,                      ``normalization`` (``window``/``scale``,
``NormalizeIntensityd``, ``ScaleIntensityd``   ``zscore``, ``percentile`` 0-100), on the model
                                               grid when after ``Spacingd``
``SlidingWindowInferer``                       ``tile_size``, ``overlap``, ``blend``
``Activationsd``, ``AsDiscreted``, ``Invertd`` ``labels_from`` (``"probabilities"``: resampled
                                               linearly, then the most likely class)
=============================================  =============================================

``LoadImaged``, ``EnsureChannelFirstd``, ``EnsureTyped``, ``CastToTyped`` (to a float
type) and ``SaveImaged`` change nothing seamline needs. Any other transform, and any
argument of these that seamline does not follow, is a one-line
:class:`~seamline.errors.ModelError` naming it and the config file.
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from seamline.errors import ModelError

from .models import MONAI_NETWORKS
from .monai_config import BundleConfig, find_config

__all__ = ["load"]

_NO_OPS = {"LoadImaged", "EnsureChannelFirstd", "EnsureTyped", "ToTensord", "CastToTyped", "SaveImaged"}
#: Arguments that change nothing seamline computes (where data lives, metadata keys, typing).
_HARMLESS = {
    "keys", "allow_missing_keys", "lazy", "meta_keys", "meta_key_postfix", "orig_meta_keys", "dtype", "device",
    "track_meta", "data_type", "wrap_sequence", "image_only", "reader", "ensure_channel_first", "overwriting",
    "simple_keys", "prune_meta_pattern", "prune_meta_sep", "expanduser", "strict_check", "to_tensor", "sw_device",
    "progress", "cache_roi_weight_map", "cpu_thresh", "buffer_steps", "buffer_dim", "sw_batch_size",
    "ensure_same_shape", "transform", "orig_keys",
}  # fmt: skip
_INTENSITY = {"ScaleIntensityRanged", "NormalizeIntensityd", "ScaleIntensityd"}


class _Reader:
    """Reads one config's components, naming the config file in every refusal."""

    def __init__(self, config: BundleConfig) -> None:
        self.config = config

    def refuse(self, message: str) -> ModelError:
        return ModelError(message, self.config.path)

    def arguments(self, name: str, raw: Mapping[str, Any], where: str, defaults: Mapping[str, Any]) -> dict[str, Any]:
        """The arguments of component *name*: *defaults* overridden by the config; others refused."""
        found = dict(defaults)
        for key, value in raw.items():
            if key in defaults:
                found[key] = self.config.resolve(value, f"{where}::{key}")
            elif key not in _HARMLESS:
                raise self.refuse(f"{where}: {name} argument {key!r} is not one seamline follows")
        return found

    def transforms(self, entry: str) -> list[tuple[str, str, Mapping[str, Any]]]:
        """The components of a ``Compose`` (or a list) at *entry*, flattened, disabled ones left out."""
        found: list[tuple[str, str, Mapping[str, Any]]] = []

        def walk(definition: Any, where: str) -> None:
            if isinstance(definition, list):
                for i, item in enumerate(definition):
                    walk(item, f"{where}::{i}")
                return
            component = self.config.component(definition, where, "monai.transforms")
            if component is None:
                return
            name, raw = component
            if name == "Compose":
                walk(raw.get("transforms", []), f"{where}::transforms")
            else:
                found.append((name, where, raw))

        if entry in self.config:
            walk(self.config.data[entry], entry)
        return found

    def keys(self, raw: Mapping[str, Any], where: str) -> list[str]:
        keys = self.config.resolve(raw.get("keys", []), f"{where}::keys")
        return [keys] if isinstance(keys, str) else list(keys)


def _per_key(value: Any, keys: list[str], key: str) -> Any:
    """A per-key argument (``mode=["bilinear", "nearest"]`` for ``keys=["image", "label"]``) for *key*."""
    return value[keys.index(key)] if isinstance(value, list) and len(value) == len(keys) else value


def _scale_intensity_range(a: Mapping[str, Any], refuse: Callable[[str], ModelError]) -> dict[str, Any]:
    low, high, b_min, b_max = (a[k] for k in ("a_min", "a_max", "b_min", "b_max"))
    if low is None or high is None or low == high:
        raise refuse(f"ScaleIntensityRanged needs a_min < a_max, got {low} and {high}")
    if b_min is None or b_max is None:
        if a["clip"]:
            raise refuse("ScaleIntensityRanged clips to b_min and b_max, which are not given")
        b_min, b_max = 0.0, 1.0
    if a["clip"]:
        if not low < high or not b_min < b_max:
            raise refuse(f"ScaleIntensityRanged with clip needs a_min < a_max and b_min < b_max, got {dict(a)}")
        spec = {"kind": "window", "low": float(low), "high": float(high)}
        return spec if (b_min, b_max) == (0, 1) else {**spec, "to": [float(b_min), float(b_max)]}
    factor = (b_max - b_min) / (high - low)
    return {"kind": "scale", "factor": float(factor), "offset": float(b_min - low * factor)}


def _normalize_intensity(a: Mapping[str, Any], channels: int, refuse: Callable[[str], ModelError]) -> dict[str, Any]:
    if channels > 1 and not a["channel_wise"]:
        raise refuse("NormalizeIntensityd with channel_wise=False pools all channels; seamline normalizes per channel")
    if (a["subtrahend"] is None) != (a["divisor"] is None):
        raise refuse("NormalizeIntensityd with only one of subtrahend and divisor is not supported")
    spec: dict[str, Any] = {"kind": "zscore"}
    if a["subtrahend"] is not None:
        spec.update(mean=a["subtrahend"], std=a["divisor"])
    return {**spec, "nonzero": True} if a["nonzero"] else spec


def _scale_intensity(a: Mapping[str, Any], channels: int, refuse: Callable[[str], ModelError]) -> dict[str, Any]:
    minv, maxv, factor = a["minv"], a["maxv"], a["factor"]
    if minv is None and maxv is None:
        return {"kind": "none"} if factor is None else {"kind": "scale", "factor": 1.0 + float(factor)}
    if minv is None or maxv is None or not minv < maxv:
        raise refuse(f"ScaleIntensityd needs minv < maxv, got {minv} and {maxv}")
    if channels > 1 and not a["channel_wise"]:
        raise refuse("ScaleIntensityd with channel_wise=False pools all channels; seamline scales per channel")
    return {"kind": "percentile", "low": 0.0, "high": 100.0, "to": [float(minv), float(maxv)]}


def _no_op(reader: _Reader, name: str, raw: Mapping[str, Any], where: str) -> None:
    """Check that a loading or typing transform changes nothing seamline computes."""
    if name == "SaveImaged":
        return
    a = reader.arguments(name, raw, where, {"channel_dim": None, "reader": None})
    if a["channel_dim"] not in (None, "no_channel") or not isinstance(a["reader"], (str, type(None))):
        raise reader.refuse(f"{where}: {name} with channel_dim or a configured reader is not supported")
    dtype = str(raw.get("dtype", "float32"))  # read as text: "$torch.float16" is a float type too
    if name == "CastToTyped" and "float" not in dtype:
        raise reader.refuse(f"{where}: CastToTyped to {dtype} changes the image; not supported")


def _preprocessing(reader: _Reader, channels: int, spatial_dims: int) -> dict[str, Any]:
    """Card fields from the ``preprocessing`` transforms."""
    card: dict[str, Any] = {"orientation": None, "normalization": {"kind": "none"}}
    steps = reader.transforms("preprocessing")
    image_key = "image"
    if steps and image_key not in reader.keys(steps[0][2], steps[0][1]):
        image_key = (reader.keys(steps[0][2], steps[0][1]) or ["image"])[0]
    resampled = normalized = False
    defaults: dict[str, Any]
    for name, where, raw in steps:
        keys = reader.keys(raw, where)
        if image_key not in keys:
            continue
        if name in _NO_OPS:
            _no_op(reader, name, raw, where)
            continue
        if name in ("Orientationd", "Spacingd") and spatial_dims != 3:
            raise reader.refuse(f"{where}: {name} in a {spatial_dims}D bundle; seamline regrids volumes only")
        if name == "Orientationd":
            a = reader.arguments(name, raw, where, {"axcodes": None, "as_closest_canonical": False, "labels": None})
            if a["labels"] is not None or resampled:
                raise reader.refuse(f"{where}: Orientationd after Spacingd, or with labels, is not supported")
            card["orientation"] = "RAS" if a["as_closest_canonical"] else str(a["axcodes"]).upper()
        elif name == "Spacingd":
            defaults = {
                "pixdim": None, "mode": "bilinear", "padding_mode": "border", "align_corners": False,
                "diagonal": False, "scale_extent": False, "recompute_affine": False,
                "min_pixdim": None, "max_pixdim": None,
            }  # fmt: skip
            a = reader.arguments(name, raw, where, defaults)
            mode, padding = _per_key(a["mode"], keys, image_key), _per_key(a["padding_mode"], keys, image_key)
            changed = [k for k in defaults if k not in ("pixdim", "mode", "padding_mode") and a[k] != defaults[k]]
            if mode not in ("bilinear", 1) or padding != "border" or changed:
                what = ", ".join([*(f"{k}={a[k]!r}" for k in changed), f"mode={mode!r}", f"padding_mode={padding!r}"])
                raise reader.refuse(
                    f"{where}: Spacingd is followed with mode='bilinear' and padding 'border' only ({what})"
                )
            pixdim = [float(p) for p in (a["pixdim"] if isinstance(a["pixdim"], list) else [a["pixdim"]])]
            card["target_spacing"] = (pixdim + [pixdim[-1]] * 3)[:3]
            card["resample_grid"], resampled = "first_voxel", True
        elif name in _INTENSITY:
            if normalized:
                raise reader.refuse(f"{where}: a second intensity transform ({name}); seamline applies one")
            normalized = True
            if name == "ScaleIntensityRanged":
                defaults = {"a_min": None, "a_max": None, "b_min": None, "b_max": None, "clip": False}
                spec = _scale_intensity_range(reader.arguments(name, raw, where, defaults), reader.refuse)
            elif name == "NormalizeIntensityd":
                defaults = {"subtrahend": None, "divisor": None, "nonzero": False, "channel_wise": False}
                spec = _normalize_intensity(reader.arguments(name, raw, where, defaults), channels, reader.refuse)
            else:
                defaults = {"minv": 0.0, "maxv": 1.0, "factor": None, "channel_wise": False}
                spec = _scale_intensity(reader.arguments(name, raw, where, defaults), channels, reader.refuse)
            card["normalization"] = spec
            card["normalize_on"] = "model_grid" if resampled else "input"
        else:
            raise reader.refuse(f"{where}: transform {name} is not one seamline can reproduce")
    return card


def _inferer(reader: _Reader, spatial_dims: int) -> dict[str, Any]:
    """Tile size, overlap and blend from the ``inferer`` (a sliding window)."""
    component = reader.config.component(reader.config.data.get("inferer"), "inferer", "monai.inferers")
    if component is None or component[0] not in ("SlidingWindowInferer", "SlidingWindowInfererAdapt"):
        found = "no inferer" if component is None else component[0]
        raise reader.refuse(f"inferer: {found}; seamline runs sliding-window inferers only")
    name, raw = component
    defaults = {
        "roi_size": None, "overlap": 0.25, "mode": "constant", "sigma_scale": 0.125,
        "padding_mode": "constant", "cval": 0.0, "with_coord": False,
    }  # fmt: skip
    a = reader.arguments(name, raw, "inferer", defaults)
    roi = a["roi_size"] if isinstance(a["roi_size"], list) else [a["roi_size"]] * spatial_dims
    overlap = set(a["overlap"]) if isinstance(a["overlap"], list) else {a["overlap"]}
    sigma = set(a["sigma_scale"]) if isinstance(a["sigma_scale"], list) else {a["sigma_scale"]}
    if len(roi) != spatial_dims or not all(isinstance(r, int) and r > 0 for r in roi):
        raise reader.refuse(f"inferer: roi_size {a['roi_size']} is not {spatial_dims} positive sizes")
    if len(overlap) != 1 or a["mode"] not in ("constant", "gaussian") or sigma != {0.125}:
        raise reader.refuse(
            f"inferer: overlap {a['overlap']}, mode {a['mode']!r}, sigma_scale {a['sigma_scale']}: "
            "seamline follows one overlap, mode constant or gaussian, and sigma_scale 0.125"
        )
    if a["padding_mode"] != "constant" or a["cval"] != 0 or a["with_coord"]:
        raise reader.refuse("inferer: padding other than constant 0, or with_coord, is not supported")
    return {"tile_size": roi, "overlap": float(overlap.pop()), "blend": a["mode"]}


def _postprocessing(reader: _Reader, channels: int) -> str:
    """How labels come back onto the input's grid (``labels_from``) from the ``postprocessing`` transforms."""
    steps = reader.transforms("postprocessing")
    pred_key = (reader.keys(steps[0][2], steps[0][1]) or ["pred"])[0] if steps else "pred"
    activated = discrete = False
    labels_from = "labels"
    for name, where, raw in steps:
        if pred_key not in reader.keys(raw, where) or name in _NO_OPS:
            continue
        if name == "Activationsd":
            a = reader.arguments(name, raw, where, {"softmax": False, "sigmoid": False, "other": None})
            if a["other"] is not None or a["softmax"] == a["sigmoid"] or a["sigmoid"] != (channels == 1):
                raise reader.refuse(
                    f"{where}: Activationsd is followed as softmax over several channels or sigmoid of one"
                )
            activated = True
        elif name == "AsDiscreted":
            defaults = {
                "argmax": False,
                "to_onehot": None,
                "threshold": None,
                "rounding": None,
                "dim": 0,
                "keepdim": True,
            }
            a = reader.arguments(name, raw, where, defaults)
            one = channels == 1 and activated and a["threshold"] == 0.5 and not a["argmax"]
            many = channels > 1 and a["argmax"] and a["threshold"] is None
            if not (one or many) or a["to_onehot"] is not None or a["rounding"] is not None or a["dim"] != 0:
                raise reader.refuse(f"{where}: AsDiscreted is followed as argmax, or threshold 0.5 of a sigmoid")
            discrete = True
        elif name == "Invertd":
            a = reader.arguments(name, raw, where, {"nearest_interp": True, "post_func": None})
            if a["post_func"] is not None or (discrete and not a["nearest_interp"]):
                raise reader.refuse(
                    f"{where}: Invertd interpolating labels linearly, or with post_func, is not supported"
                )
            if not discrete and not a["nearest_interp"]:
                if not activated:
                    raise reader.refuse(
                        f"{where}: Invertd interpolates raw network outputs; seamline interpolates "
                        "probabilities (put Activationsd first)"
                    )
                labels_from = "probabilities"
        else:
            raise reader.refuse(f"{where}: transform {name} is not one seamline can reproduce")
    return labels_from


def _network(reader: _Reader) -> tuple[str, dict[str, Any], int, int, int]:
    """Architecture name, its kwargs, input channels, output channels and rank, from ``network_def``."""
    from monai.networks import nets

    from seamline.plugins import registry

    component = reader.config.component(reader.config.data.get("network_def"), "network_def", "monai.networks.nets")
    if component is None or component[0] not in MONAI_NETWORKS:
        found = "a disabled network_def" if component is None else component[0]
        raise reader.refuse(f"network_def: {found} is not a network seamline builds ({', '.join(MONAI_NETWORKS)})")
    name, raw = component
    args = {key: reader.config.resolve(value, f"network_def::{key}") for key, value in raw.items()}
    own = inspect.signature(getattr(nets, name)).parameters

    def default(key: str) -> Any:
        parameter = own.get(key)
        return None if parameter is None or parameter.default is inspect.Parameter.empty else parameter.default

    in_channels, out_channels = (
        args.pop("in_channels", default("in_channels")),
        args.pop("out_channels", default("out_channels")),
    )
    spatial_dims = args.get("spatial_dims", default("spatial_dims") or 3)
    if not isinstance(in_channels, int) or not isinstance(out_channels, int):
        raise reader.refuse("network_def: in_channels and out_channels must be numbers")
    architecture = registry("models")[f"monai.{name}"]
    for key, parameter in inspect.signature(architecture.build).parameters.items():
        # seamline's own builders have defaults of their own: write MONAI's where the config gives none
        if parameter.kind is parameter.KEYWORD_ONLY and key not in args and key in own and default(key) is not None:
            value = default(key)
            args[key] = list(value) if isinstance(value, tuple) else value
    return f"monai.{name}", args, in_channels, out_channels, int(spatial_dims)


def _channel_names(folder: Path, which: str, count: int) -> list[str] | None:
    """Channel names from ``configs/metadata.json``'s ``network_data_format`` (inputs or outputs)."""
    path = folder / "configs" / "metadata.json"
    try:
        metadata = json.loads(path.read_text(encoding="utf-8"))
        entries = list(metadata["network_data_format"][which].values())
        names = entries[0]["channel_def"]
        ordered = [str(names[k]) for k in sorted(names, key=int)]
    except (OSError, ValueError, KeyError, IndexError, TypeError, AttributeError):
        return None
    return ordered if len(ordered) == count else None


def _weights(folder: Path) -> Path:
    for name in ("model.pt", "model.ts"):
        if (folder / "models" / name).is_file():
            return folder / "models" / name
    raise ModelError("no weights: models/model.pt (a state dict) or models/model.ts (TorchScript) is missing", folder)


def load(path: str) -> Any:
    """Load a MONAI bundle folder as a seamline model.

    Parameters
    ----------
    path : str
        The bundle folder (``configs/inference.json`` or ``.yaml``, ``models/model.pt`` or ``.ts``).

    Returns
    -------
    seamline.bundle.Bundle
        The network with the bundle's weights and a card that reproduces the bundle's
        inference; ``missing`` lists ``bands`` or ``classes`` when ``configs/metadata.json``
        does not name the channels.

    Raises
    ------
    ModelError
        If the config holds a network, transform, argument or expression seamline does not
        follow (named with the config file), or the weights are missing or do not fit.
    """
    from seamline.bundle import Bundle, ModelCard, build_module
    from seamline.weights import fit_weights, read_checkpoint

    folder = Path(path)
    config_path = find_config(folder)
    if config_path is None:
        raise ModelError("not a MONAI bundle: configs/inference.json (or .yaml) is missing", folder)
    reader = _Reader(BundleConfig(config_path))
    architecture, kwargs, in_channels, out_channels, spatial_dims = _network(reader)
    fields = {**_preprocessing(reader, in_channels, spatial_dims), **_inferer(reader, spatial_dims)}
    fields["labels_from"] = _postprocessing(reader, out_channels)
    bands = _channel_names(folder, "inputs", in_channels)
    classes = _channel_names(folder, "outputs", out_channels)
    if out_channels == 1:
        kwargs["classes"] = 1  # one sigmoid channel: labels 0 and 1
        classes = ["background", *classes] if classes else None
    card = ModelCard(
        architecture=architecture,
        in_channels=in_channels,
        classes=classes or [f"class {i}" for i in range(max(out_channels, 2))],
        kwargs=kwargs,
        bands=bands,
        spatial_dims=spatial_dims,
        pad_to_tile=True,  # sliding_window_inference pads an image smaller than its roi
        training={"imported_from": {"format": "monai-bundle", "folder": folder.name, "config": config_path.name}},
        **fields,
    )
    weights = _weights(folder)
    try:
        module = build_module(card)
    except ModelError as exc:
        raise ModelError(f"network_def: {exc.message}", config_path) from exc
    fit_weights(module, read_checkpoint(weights), source=weights, architecture=architecture)
    missing = [name for name, value in (("bands", bands), ("classes", classes)) if value is None]
    return Bundle(module, card, missing=missing)
