"""State-dict checkpoints (``.pth``, ``.pt``, ``.ckpt``, ``.bin``, ``.safetensors``) with a named architecture.

A checkpoint holds a network's tensors, not the network, so the user names a registered
architecture and what it is built with::

    seamline.load_model("x.ckpt", architecture="smp.Unet", in_channels=4, classes=2, encoder_name="resnet34")
    seamline predict scene.tif out.tif --model x.ckpt --architecture smp.Unet \\
        --model-option in_channels=4 --model-option classes=2 --model-option encoder_name=resnet34

A checkpoint saved by a TorchGeo ``SemanticSegmentationTask`` (through Lightning) says it
itself, in its ``hyper_parameters`` (``model``, ``backbone``, ``in_channels``,
``num_classes``, ``task``): those fill whatever the user leaves out. The tensors are found
inside whatever wraps them (Lightning's ``state_dict`` and the task's ``model.`` prefix
included) and loaded strictly (:mod:`seamline.weights`). Pickled files are read only with
``torch.load(..., weights_only=True)``. Class names, band names and the normalization are
not in a checkpoint: they are placeholders listed in ``Bundle.missing`` until given.

This module imports no torch until a checkpoint is loaded.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import ModelError

__all__ = ["SUFFIXES", "TORCHGEO_MODELS", "can_load", "load"]

SUFFIXES = (".pth", ".pt", ".ckpt", ".bin", ".safetensors", ".ts")
#: TorchGeo's ``model`` names and the architectures they are (TorchGeo builds them with smp).
TORCHGEO_MODELS = {
    "unet": "smp.Unet",
    "deeplabv3+": "smp.DeepLabV3Plus",
    "upernet": "smp.UPerNet",
    "segformer": "smp.Segformer",
    "dpt": "smp.DPT",
}


def can_load(path: str) -> bool:
    """Whether *path* is a file with a checkpoint's suffix (the file is not read).

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
    """
    return Path(path).suffix.lower() in SUFFIXES and os.path.isfile(path)


def _torchgeo(checkpoint: Any, path: str) -> dict[str, Any]:
    """Architecture, channels and classes from a TorchGeo segmentation task's hyper-parameters."""
    hparams = checkpoint.get("hyper_parameters") if isinstance(checkpoint, Mapping) else None
    if not isinstance(hparams, Mapping) or not {"model", "backbone"} <= set(hparams):
        return {}
    model = str(hparams["model"]).lower()
    if model not in TORCHGEO_MODELS:
        known = ", ".join(TORCHGEO_MODELS)
        raise ModelError(f"TorchGeo model {model!r} is not one seamline builds (it builds {known})", path)
    task = hparams.get("task", "multiclass")
    if task == "multilabel":
        raise ModelError("a multilabel TorchGeo task: seamline's labels hold one class per pixel", path)
    return {
        "architecture": TORCHGEO_MODELS[model],
        "in_channels": hparams.get("in_channels"),
        "classes": 1 if task == "binary" else hparams.get("num_classes"),
        "kwargs": {"encoder_name": str(hparams["backbone"])},
    }


def _spatial_dims(architecture: Any, kwargs: Mapping[str, Any]) -> int:
    """The rank the network takes: its kwargs', its record's, its ``build``'s default, or 2."""
    if "spatial_dims" in kwargs:
        return int(kwargs["spatial_dims"])
    if architecture.spatial_dims is not None:
        return int(architecture.spatial_dims)
    default = inspect.signature(architecture.build).parameters.get("spatial_dims")
    return 2 if default is None or default.default is inspect.Parameter.empty else int(default.default)


def _classes(classes: int | Sequence[str], path: str) -> tuple[list[str], dict[str, int]]:
    """Class names (placeholders for a count) and the build argument for one sigmoid channel."""
    if isinstance(classes, int) and not isinstance(classes, bool) and classes >= 1:
        return [f"class {i}" for i in range(max(classes, 2))], ({"classes": 1} if classes == 1 else {})
    if isinstance(classes, Sequence) and not isinstance(classes, str) and len(classes) >= 1:
        return [str(c) for c in classes], {}
    raise ModelError(f"classes takes a count or a list of names, got {classes!r}", path)


def load(
    path: str,
    *,
    architecture: str | None = None,
    in_channels: int | None = None,
    classes: int | Sequence[str] | None = None,
    **kwargs: Any,
) -> Any:
    """Build *architecture* and load the checkpoint's weights into it.

    Parameters
    ----------
    path : str
        The checkpoint file.
    architecture : str, optional
        A registered architecture (``seamline plugins --all``); from TorchGeo's
        ``hyper_parameters`` when absent.
    in_channels : int, optional
        Input bands.
    classes : int or sequence of str, optional
        The number of output classes (1: one sigmoid channel, labels 0 and 1), or their names.
    **kwargs
        Arguments of the architecture (``encoder_name="resnet34"``, ...).

    Returns
    -------
    Bundle
        With ``missing`` listing ``bands``, ``normalization`` and (without names) ``classes``.

    Raises
    ------
    ModelError
        If the architecture, channels or classes are neither given nor in the file, the
        file needs full unpickling or is unreadable, or its weights do not fit.
    """
    from .bundle import Bundle, ModelCard, build_module
    from .defaults import TILE_SIZE
    from .plugins import registry
    from .weights import fit_weights, read_checkpoint

    checkpoint = read_checkpoint(path)
    found = _torchgeo(checkpoint, path)
    architecture = architecture or found.get("architecture")
    in_channels = in_channels if in_channels is not None else found.get("in_channels")
    classes = classes if classes is not None else found.get("classes")
    kwargs = {**found.get("kwargs", {}), **kwargs}
    if architecture is None or in_channels is None or classes is None:
        given = (("architecture", architecture), ("in_channels", in_channels), ("classes", classes))
        lacking = [name for name, value in given if value is None]
        raise ModelError(
            f"a checkpoint holds weights, not the network: give {', '.join(lacking)} "
            "(--architecture NAME, --model-option in_channels=N, --model-option classes=N)",
            path,
        )
    models = registry("models")
    if architecture not in models:
        raise ModelError(f"unknown architecture {architecture!r}; known: {', '.join(models) or 'none'}", path)
    names, channels = _classes(classes, path)
    spatial_dims = _spatial_dims(models[architecture], kwargs)
    card = ModelCard(
        architecture=architecture,
        in_channels=int(in_channels),
        classes=names,
        kwargs={**kwargs, **channels},
        spatial_dims=spatial_dims,
        tile_size=TILE_SIZE if spatial_dims == 2 else 96,
        training={"imported_from": {"format": "checkpoint", "file": Path(path).name, "torchgeo": bool(found)}},
    )
    try:
        module = build_module(card)
    except ModelError as exc:
        raise ModelError(exc.message, path) from exc
    fit_weights(module, checkpoint, source=path, architecture=architecture)
    missing = ["bands", "normalization"] + ([] if isinstance(classes, Sequence) else ["classes"])
    return Bundle(module, card, missing=missing)
