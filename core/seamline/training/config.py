"""The training configuration: a YAML file checked against typed sections.

Every key has a type and a default; an unknown key, a value of the wrong type, or a
missing file is an :class:`~seamline.errors.InputError` that names the config file and
the key (``train.yaml: data.image: no such file``). Names are checked too (the loss, the
schedule, the normalization, the architecture, the validation metric), so that a typo
stops the run before any data is read. Paths in the file are relative to the file; paths
given as overrides (``--out``, ``train(out=...)``) are relative to the current directory.
:data:`EXAMPLE` is the reference config, shown by ``seamline train --help``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Union

import yaml

from ..defaults import BATCH_SIZE, OVERLAP
from ..errors import InputError
from ..normalize import KINDS as NORMALIZATIONS
from ..plugins import registry

__all__ = ["TrainConfig", "load_config", "loss_spec", "EXAMPLE", "METRICS", "LOSS_OPTIONS", "SCHEDULES"]

#: Validation metrics (summary figures of :func:`seamline.evaluate`, object scores of
#: connected components) and the :func:`~seamline.evaluate` options each one needs.
METRICS: dict[str, dict[str, Any]] = {
    "mean_iou": {},
    "mean_dice": {},
    "pixel_accuracy": {},
    "mean_accuracy": {},
    "mean_boundary_f1": {"boundary_tolerance": 2.0},
    "mean_hd95": {"spacing": True},
    "mean_surface_dice": {"spacing": True},
    "pq": {"objects": True},
    "sq": {"objects": True},
    "rq": {"objects": True},
    "object_f1": {"objects": True},
}

#: Loss kinds and the options each takes (see :func:`seamline.training.losses.make_loss`).
LOSS_OPTIONS: dict[str, tuple[str, ...]] = {
    "ce": ("class_weights",),
    "dice": ("include_background", "batch"),
    "dice_ce": ("class_weights", "dice_weight", "ce_weight"),
    "focal": ("gamma",),
    "boundary": ("weight",),
}

#: Learning-rate schedules (see :func:`seamline.training.trainer.learning_rate`).
SCHEDULES = ("cosine", "onecycle", "constant")

EXAMPLE = """\
recipe: null                   # start from a recipe (seamline recipes); the rest overrides it
data:
  image: scene.tif             # raster or volume (any format seamline opens)
  labels: outlines.gpkg        # label raster/volume, or vector polygons (rasterized)
  label_attribute: null        # vector column holding the class id (null: 1 inside)
  label_crs: null              # the vectors' real CRS when their file states a wrong one
  label_map: null              # {source value: class id}; other values become 0
  bands: null                  # band names or 1-based indices to read
  ignore_index: 255            # label ignored by the loss (nodata, unlabelled)
classes: [background, glacier]
validation:
  split: x                     # hold out part of one axis: x, y (z) or an index
  fraction: 0.5                # share of that axis held out
  side: high                   # high = east/bottom end, low = west/top
model:
  architecture: core.UNet      # any registered architecture (seamline plugins --all)
  kwargs: {widths: [16, 32, 64]}
normalization: {kind: zscore}  # none, scale, zscore, window, percentile
patches:
  size: 128
  per_epoch: 256
  foreground_fraction: 0.33
augment: {flip: true, rotate: true, intensity: 0.1}
loss: {kind: dice_ce}          # ce, dice, dice_ce, focal, boundary
optimizer: {lr: 0.001, weight_decay: 0.0001, schedule: cosine, warmup: 0.05}
training:
  epochs: 20
  batch_size: 8
  seed: 0
  patience: 5                  # early stopping on the validation metric
  metric: mean_iou
predict: {tile_size: 256, overlap: 0.25}
card: {bands: null}            # band names for the model card (default: the image's)
out: runs/glacier
"""


@dataclasses.dataclass
class DataConfig:
    """Where the training image and its labels come from."""

    image: str = ""
    labels: str = ""
    label_attribute: str | None = None
    label_crs: str | None = None
    label_map: dict | None = None
    bands: list | None = None
    ignore_index: int = 255


@dataclasses.dataclass
class ValidationConfig:
    """The held-out region: one end of an axis, explicit windows, or another pair."""

    split: str | int | None = "x"
    fraction: float = 0.5
    side: str = "high"
    windows: list | None = None
    image: str | None = None
    labels: str | None = None


@dataclasses.dataclass
class ModelConfig:
    """The architecture to build, by registered name."""

    architecture: str = "core.UNet"
    kwargs: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class PatchConfig:
    """Patch sampling."""

    size: int | list = 128
    per_epoch: int = 256
    foreground_fraction: float = 0.33
    min_valid: float = 0.5


@dataclasses.dataclass
class AugmentConfig:
    """Augmentations."""

    flip: bool = True
    rotate: bool = True
    intensity: float = 0.1


@dataclasses.dataclass
class OptimizerConfig:
    """AdamW and its learning-rate schedule."""

    lr: float = 1e-3
    weight_decay: float = 1e-4
    schedule: str = "cosine"
    warmup: float = 0.05


@dataclasses.dataclass
class LoopConfig:
    """The training loop."""

    epochs: int = 20
    batch_size: int = 8
    accumulate: int = 1
    seed: int = 0
    patience: int | None = None
    metric: str = "mean_iou"
    device: str = "auto"
    amp: bool | None = None
    progress: bool = True


@dataclasses.dataclass
class PredictConfig:
    """Prediction defaults stored in the bundle and used for validation."""

    tile_size: int | list | None = None
    overlap: float = OVERLAP
    batch_size: int = BATCH_SIZE
    target_spacing: list | None = None


@dataclasses.dataclass
class CardConfig:
    """Model-card fields a run sets beyond those it learns from its data."""

    bands: list | None = None


@dataclasses.dataclass
class TrainConfig:
    """A whole training run; see :data:`EXAMPLE`."""

    recipe: str | None = None
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    classes: list = dataclasses.field(default_factory=lambda: ["background", "foreground"])
    validation: ValidationConfig | None = dataclasses.field(default_factory=ValidationConfig)
    model: ModelConfig = dataclasses.field(default_factory=ModelConfig)
    normalization: dict = dataclasses.field(default_factory=lambda: {"kind": "zscore"})
    patches: PatchConfig = dataclasses.field(default_factory=PatchConfig)
    augment: AugmentConfig = dataclasses.field(default_factory=AugmentConfig)
    loss: dict | str = "dice_ce"
    optimizer: OptimizerConfig = dataclasses.field(default_factory=OptimizerConfig)
    training: LoopConfig = dataclasses.field(default_factory=LoopConfig)
    predict: PredictConfig = dataclasses.field(default_factory=PredictConfig)
    card: CardConfig = dataclasses.field(default_factory=CardConfig)
    out: str = "seamline-run"

    def to_dict(self) -> dict[str, Any]:
        """The config as plain data (for the training summary)."""
        return dataclasses.asdict(self)


_SCALARS = {int: (int,), float: (int, float), str: (str,), bool: (bool,), list: (list,), dict: (dict,)}


def _check_value(value: Any, hint: Any, key: str, source: str) -> Any:
    options = typing.get_args(hint) if typing.get_origin(hint) in (Union, types.UnionType) else (hint,)
    if value is None and type(None) in options:
        return None
    for option in options:
        if isinstance(option, type) and dataclasses.is_dataclass(option) and isinstance(value, Mapping):
            return _build(option, value, key, source)
        accepted = _SCALARS.get(option, ())
        if isinstance(value, accepted) and not (isinstance(value, bool) and option in (int, float)):
            return float(value) if option is float and isinstance(value, int | float) else value
    names = " or ".join("a mapping" if dataclasses.is_dataclass(o) else getattr(o, "__name__", str(o)) for o in options)
    raise InputError(f"{key}: expected {names}, got {type(value).__name__} {value!r}", source)


def _build(cls: type, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    hints = typing.get_type_hints(cls)
    values = {}
    for key, value in data.items():
        where = f"{prefix}.{key}" if prefix else str(key)
        if key not in hints:
            raise InputError(f"{where}: unknown key; expected one of {', '.join(hints)}", source)
        values[key] = _check_value(value, hints[key], where, source)
    return cls(**values)


def loss_spec(spec: Mapping[str, Any] | str) -> tuple[str, dict[str, Any]]:
    """Split a loss spec into its kind and options, checking both.

    Parameters
    ----------
    spec : str or mapping
        A kind, or a mapping with ``kind`` (``dice_ce`` when absent) and its options.

    Returns
    -------
    tuple of (str, dict)

    Raises
    ------
    InputError
        If the kind is unknown or an option does not belong to it.
    """
    options = {"kind": spec} if isinstance(spec, str) else dict(spec)
    kind = options.pop("kind", "dice_ce")
    if kind not in LOSS_OPTIONS:
        raise InputError(f"unknown loss {kind!r}; one of {', '.join(LOSS_OPTIONS)}")
    unknown = sorted(set(options) - set(LOSS_OPTIONS[kind]))
    if unknown:
        raise InputError(f"loss {kind!r} takes no option {unknown[0]!r}; it takes {sorted(LOSS_OPTIONS[kind])}")
    return kind, options


def _integer(value: Any) -> int | None:
    """*value* as an int when it is one (``5`` or ``"5"``, not ``5.5`` or ``True``)."""
    if isinstance(value, (int, str)) and not isinstance(value, bool):
        with contextlib.suppress(ValueError):
            return int(value) if str(int(value)) == str(value).strip() else None
    return None


def _check_names(config: TrainConfig, source: str) -> None:
    """Check every name the run will look up, so that a typo fails before any work."""
    try:
        loss_spec(config.loss)
    except InputError as exc:
        raise InputError(f"loss: {exc.message}", source) from None
    problems = {
        "optimizer.schedule": (config.optimizer.schedule, SCHEDULES),
        "normalization.kind": (config.normalization.get("kind") if config.normalization else "none", NORMALIZATIONS),
        "training.metric": (config.training.metric, tuple(METRICS)),
        "model.architecture": (config.model.architecture, tuple(registry("models"))),
    }
    for key, (value, known) in problems.items():
        if value not in known:
            raise InputError(f"{key}: unknown {value!r}; one of {', '.join(known) or 'none registered'}", source)
    if len(config.classes) < 2:
        raise InputError(f"classes: at least two are needed (background first), got {config.classes}", source)
    ids = [*range(len(config.classes)), config.data.ignore_index]
    label_map = {}
    for key, value in (config.data.label_map or {}).items():
        source_value, class_id = _integer(key), _integer(value)
        if source_value is None or class_id not in ids:
            raise InputError(
                f"data.label_map: {key!r}: {value!r}: source values are integers and class ids "
                f"0..{len(config.classes) - 1} or ignore_index {config.data.ignore_index}",
                source,
            )
        label_map[source_value] = class_id
    config.data.label_map = label_map or None


def _resolve(path: str, base: Path, key: str, source: str) -> str:
    resolved = Path(path) if Path(path).is_absolute() else base / path
    if not resolved.exists():
        raise InputError(f"{key}: no such file: {path}", source)
    return os.fspath(resolved)


_PATHS = {"data": ("image", "labels"), "validation": ("image", "labels")}


def _from_here(key: str, value: Any) -> Any:
    """An override with its paths made absolute from the current directory."""

    def absolute(path: Any) -> Any:
        return os.fspath(Path(path).absolute()) if isinstance(path, (str, os.PathLike)) else path

    if key == "out":
        return absolute(value)
    if key in _PATHS and isinstance(value, Mapping):
        return {k: absolute(v) if k in _PATHS[key] else v for k, v in value.items()}
    return value


def _with_recipe(data: dict[str, Any], chosen: str | None, source: str) -> dict[str, Any]:
    """The config laid over its recipe's: sections merge key by key, the config's values win."""
    name = chosen if chosen is not None else data.get("recipe")
    if name is None:
        return data
    recipes = registry("recipes")
    if name not in recipes:
        raise InputError(f"recipe: unknown {name!r}; one of {', '.join(recipes) or 'none registered'}", source)
    merged: dict[str, Any] = {key: dict(value) if isinstance(value, Mapping) else value
                              for key, value in recipes[name].config.items()}  # fmt: skip
    for key, value in data.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = {**merged[key], **value}
        else:
            merged[key] = value
    merged["recipe"] = name
    return merged


def load_config(config: str | os.PathLike | Mapping[str, Any] | TrainConfig | None, **overrides: Any) -> TrainConfig:
    """Read and check a training config.

    Parameters
    ----------
    config : path, mapping, TrainConfig or None
        A YAML file, or its content already parsed; None for a run set by a recipe and
        overrides alone.
    **overrides
        Values that replace the config's: a section (``training={"epochs": 2}``, merged)
        or a key of one section by its own name (``epochs=2``, ``out="run"``). Paths
        among them (``out``, ``data={"image": ...}``) are relative to the current
        directory, not to the config file. ``recipe="NAME"`` starts from that recipe.

    Returns
    -------
    TrainConfig
        With data paths made absolute (relative paths in the file are relative to the
        file).

    Raises
    ------
    InputError
        For an unreadable file, an unknown key, a wrong type, an unknown name (loss,
        schedule, normalization, architecture, metric, recipe) or a missing data file;
        the message names the config file and the key.
    """
    if config is None:
        data, source, base = {}, "<options>", Path.cwd()
    elif isinstance(config, TrainConfig):
        data, source, base = config.to_dict(), "<config>", Path.cwd()
    elif isinstance(config, Mapping):
        data, source, base = dict(config), "<config>", Path.cwd()
    else:
        source, base = os.fspath(config), Path(config).absolute().parent
        try:
            data = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise InputError(f"cannot read the config: {str(exc).splitlines()[0]}", source) from exc
        if not isinstance(data, Mapping):
            raise InputError("the config must be a mapping of sections", source)
    data = _with_recipe(data, overrides.get("recipe"), source)
    overrides = {k: v for k, v in overrides.items() if k != "recipe"}
    sections = typing.get_type_hints(TrainConfig)
    # An empty section (``training:`` with nothing under it) is YAML's None: its defaults.
    data = {k: dict(v) if isinstance(v, Mapping) else v for k, v in data.items()}
    data.update({k: {} for k, v in data.items() if v is None and dataclasses.is_dataclass(sections.get(k))})
    for key, value in overrides.items():
        value = _from_here(key, value)
        if key in sections:
            data[key] = {**(data.get(key) or {}), **value} if isinstance(value, Mapping) else value
            continue
        owners = [s for s, h in sections.items() if dataclasses.is_dataclass(h) and key in typing.get_type_hints(h)]
        if len(owners) != 1:
            raise InputError(f"unknown or ambiguous override {key!r}", source)
        data[owners[0]] = {**(data.get(owners[0]) or {}), key: value}
    result = _build(TrainConfig, data, "", source)
    _check_names(result, source)
    for key in ("image", "labels"):
        if not getattr(result.data, key):
            raise InputError(f"data.{key}: required", source)
        setattr(result.data, key, _resolve(getattr(result.data, key), base, f"data.{key}", source))
    if result.validation is not None:
        for key in ("image", "labels"):
            if getattr(result.validation, key):
                value = _resolve(getattr(result.validation, key), base, f"validation.{key}", source)
                setattr(result.validation, key, value)
    if not Path(result.out).is_absolute():
        result.out = os.fspath(base / result.out)
    return result
