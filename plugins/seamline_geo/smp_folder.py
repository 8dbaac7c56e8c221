"""segmentation-models-pytorch ``save_pretrained`` folders as seamline models.

smp writes a trained model as a folder: ``config.json`` (the class as ``_model_class``
and every argument it was built with) and ``model.safetensors``. :func:`load` builds the
registered ``smp.<class>`` architecture from those arguments and loads the tensors; the
folder names a class, and only a registered one is built, so nothing it holds is
imported or run (``smp.from_pretrained`` would build whatever class it names).

Three arguments are read differently from smp:

- ``encoder_weights`` is dropped: the folder's tensors are the encoder's, and nothing is
  downloaded.
- ``activation`` is what smp applies to the network's output in ``forward``. seamline's
  probabilities are the softmax of the network's scores (the sigmoid of one channel),
  so ``None``, ``"identity"``, ``"softmax"``/``"softmax2d"`` (several classes) and
  ``"sigmoid"`` (one class) give the same labels and probabilities, and the network is
  built without it; any other activation is refused.
- ``aux_params`` (an image-level classification head) is left out, with its tensors.

Class names, band names and the normalization are not in the folder: they are
placeholders listed in ``Bundle.missing`` until given.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from seamline.errors import ModelError

__all__ = ["CONFIG_FILE", "WEIGHTS_FILE", "can_load", "load"]

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
_DROPPED = ("_model_class", "in_channels", "classes", "encoder_weights", "activation", "aux_params")


def _config(folder: Path) -> dict[str, Any] | None:
    try:
        config = json.loads((folder / CONFIG_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return config if isinstance(config, dict) and isinstance(config.get("_model_class"), str) else None


def can_load(path: str) -> bool:
    """Whether *path* is a folder with smp's ``config.json`` (naming ``_model_class``) and ``model.safetensors``.

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
    """
    folder = Path(path)
    return (folder / WEIGHTS_FILE).is_file() and _config(folder) is not None


def _activation(config: dict[str, Any], classes: int, folder: Path) -> None:
    activation = config.get("activation")
    same = activation in (None, "identity") or (
        activation in ("softmax", "softmax2d") if classes > 1 else activation == "sigmoid"
    )
    if not same:
        raise ModelError(
            f"{CONFIG_FILE}: activation {activation!r} on {classes} classes; seamline follows softmax over several "
            "classes or sigmoid of one",
            folder,
        )


def load(path: str) -> Any:
    """Load an smp ``save_pretrained`` folder.

    Parameters
    ----------
    path : str
        The folder.

    Returns
    -------
    seamline.bundle.Bundle
        ``smp.<class>`` with the folder's weights; ``missing`` lists ``bands``,
        ``classes`` and ``normalization``.

    Raises
    ------
    ModelError
        If the config is unreadable, names an architecture seamline does not register or
        an activation it does not follow, or the weights do not fit.
    """
    from seamline.bundle import Bundle, ModelCard, build_module
    from seamline.plugins import registry
    from seamline.weights import fit_weights, read_checkpoint

    folder = Path(path)
    config = _config(folder)
    if config is None:
        raise ModelError(f"not an smp folder: {CONFIG_FILE} is missing, not JSON, or names no _model_class", folder)
    architecture = f"smp.{config['_model_class']}"
    if architecture not in registry("models"):
        known = ", ".join(n for n in registry("models") if n.startswith("smp."))
        raise ModelError(f"{CONFIG_FILE}: {architecture} is not a registered architecture ({known})", folder)
    in_channels, classes = int(config.get("in_channels", 3)), int(config.get("classes", 1))
    _activation(config, classes, folder)
    kwargs = {key: value for key, value in config.items() if key not in _DROPPED}
    kwargs.setdefault("encoder_name", "resnet34")  # smp's default, where seamline's differs
    if classes == 1:
        kwargs["classes"] = 1  # one sigmoid channel: labels 0 and 1
    card = ModelCard(
        architecture=architecture,
        in_channels=in_channels,
        classes=[f"class {i}" for i in range(max(classes, 2))],
        kwargs=kwargs,
        spatial_dims=2,
        training={"imported_from": {"format": "smp", "folder": folder.name}},
    )
    try:
        module = build_module(card)
    except ModelError as exc:
        raise ModelError(f"{CONFIG_FILE}: {exc.message}", folder) from exc
    tensors = read_checkpoint(folder / WEIGHTS_FILE)
    state = {name: value for name, value in tensors.items() if not name.startswith("classification_head.")}
    fit_weights(module, state, source=folder / WEIGHTS_FILE, architecture=architecture)
    return Bundle(module, card, missing=("bands", "classes", "normalization"))
