"""An nnU-Net v2 results folder: recognised, read and checked without running its code.

nnU-Net writes a trained model as a folder (``nnUNetv2_train``, and the folders
TotalSegmentator downloads)::

    Dataset291_TotalSegmentator_part1_organs_1559subj/
      nnUNetTrainerNoMirroring__nnUNetPlans__3d_fullres/    <- the model folder
        dataset.json  plans.json
        fold_0/checkpoint_final.pth   (or checkpoint_best.pth; fold_all/ ...)

:func:`can_load` accepts the model folder or a dataset folder holding model folders
(pick one with ``configuration``, and ``trainer`` or ``plans`` when several match).
:func:`load` reads both JSON files and every fold's checkpoint, a pickle, as
:func:`seamline.weights.read_checkpoint` reads any: with ``torch.load(weights_only=True)``,
whose unpickler builds tensors, containers and the NumPy scalars nnU-Net's training log
holds; a checkpoint that needs anything else is refused with a message saying so. The JSON
files are read with limits (:data:`JSON_LIMIT` bytes, :func:`seamline.bundle_files.loads`'
nesting depth). The network is built by :mod:`.network`, first on torch's ``meta`` device
and compared with each checkpoint's tensor shapes (:func:`seamline.weights.build_checked`),
so that plans asking for a huge network are refused before anything is allocated; the
pipeline is described by :mod:`.plans`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from seamline.bundle_files import loads
from seamline.errors import ModelError

__all__ = ["can_load", "load", "model_folder", "read_checkpoint", "JSON_LIMIT"]

_FOLD = re.compile(r"fold_(\d+|all)$")
#: The largest plans.json or dataset.json read (nnU-Net's are kilobytes; a dataset.json may list every case).
JSON_LIMIT = 64 * 2**20


def _is_model_folder(path: Path) -> bool:
    return (path / "plans.json").is_file() and (path / "dataset.json").is_file()


def _model_folders(path: Path) -> list[Path]:
    return sorted(child for child in path.iterdir() if child.is_dir() and _is_model_folder(child))


def can_load(path: str) -> bool:
    """Whether *path* is an nnU-Net model folder, or a dataset folder holding some; cheap.

    Parameters
    ----------
    path : str

    Returns
    -------
    bool
    """
    folder = Path(path)
    if not folder.is_dir():
        return False
    return _is_model_folder(folder) or bool(_model_folders(folder))


def model_folder(
    path: Path, *, configuration: str | None = None, trainer: str | None = None, plans: str | None = None
) -> Path:
    """The model folder *path* names, chosen among a dataset folder's by name.

    Parameters
    ----------
    path : pathlib.Path
        A model folder (``Trainer__Plans__configuration``) or a dataset folder.
    configuration, trainer, plans : str, optional
        The parts of the model folder's name to match.

    Returns
    -------
    pathlib.Path

    Raises
    ------
    ModelError
        If no model folder matches, or several do (they are listed).
    """
    if _is_model_folder(path):
        return path
    wanted = [(0, trainer), (1, plans), (2, configuration)]
    found = [
        f for f in _model_folders(path) if all(w is None or f.name.split("__")[i : i + 1] == [w] for i, w in wanted)
    ]
    if len(found) != 1:
        names = ", ".join(f.name for f in _model_folders(path))
        problem = "no model folder matches" if not found else "several model folders match; choose with configuration"
        raise ModelError(f"{problem} (trainer, plans); it holds {names}", path)
    return found[0]


def read_checkpoint(path: Path) -> dict[str, Any]:
    """Read an nnU-Net checkpoint as data (:func:`seamline.weights.read_checkpoint`).

    Parameters
    ----------
    path : pathlib.Path
        A ``checkpoint_final.pth`` (or ``_best``).

    Returns
    -------
    dict
        The checkpoint; ``network_weights`` and ``trainer_name`` at least.

    Raises
    ------
    ModelError
        If the file is missing, is not a torch checkpoint, needs full unpickling (the
        message names what it holds), or lacks those keys.
    """
    from seamline.weights import read_checkpoint as read_weights

    checkpoint = read_weights(path)
    if not isinstance(checkpoint, dict) or not {"network_weights", "trainer_name"} <= set(checkpoint):
        raise ModelError("is not an nnU-Net checkpoint: it lacks network_weights or trainer_name", path)
    return checkpoint


def _read_json(path: Path) -> dict[str, Any]:
    """A JSON object from a file of at most :data:`JSON_LIMIT` bytes, nested at most a few dozen levels."""
    try:
        size = path.stat().st_size
        if size > JSON_LIMIT:
            raise ModelError(f"is {size} bytes, more than the {JSON_LIMIT} a model folder's JSON may hold", path)
        data = loads(path.read_bytes(), path, what=path.name)
    except OSError as exc:
        raise ModelError(f"cannot be read: {exc.strerror or exc}", path) from exc
    if not isinstance(data, dict):
        raise ModelError("is not a JSON object", path)
    return data


def _folds(folder: Path, folds: Sequence[int | str] | int | str | None, checkpoint: str) -> list[int | str]:
    """The folds to load: those given (each must have the checkpoint), or every numbered fold that has it."""
    if folds is None:
        found = [m.group(1) for f in folder.iterdir() if (m := _FOLD.match(f.name)) and m.group(1) != "all"]
        chosen: list[int | str] = sorted(int(f) for f in found if (folder / f"fold_{f}" / checkpoint).is_file())
        if not chosen:
            raise ModelError(f"has no fold_N/{checkpoint}", folder)
        return chosen
    chosen = [folds] if isinstance(folds, int | str) else list(folds)
    for fold in chosen:
        if not (folder / f"fold_{fold}" / checkpoint).is_file():
            raise ModelError("is missing", folder / f"fold_{fold}" / checkpoint)
    return chosen


def load(
    path: str | os.PathLike,
    *,
    configuration: str | None = None,
    folds: Sequence[int | str] | int | str | None = None,
    checkpoint: str = "checkpoint_final.pth",
    mirror: bool = True,
    trainer: str | None = None,
    plans: str | None = None,
    reorient: bool | None = None,
) -> Any:
    """Load an nnU-Net v2 trained model as a seamline bundle that predicts as nnU-Net does.

    Parameters
    ----------
    path : str or os.PathLike
        A model folder, or a dataset folder holding model folders.
    configuration : str, optional
        ``"3d_fullres"``, ``"3d_lowres"``, ...: picks the model folder in a
        dataset folder, and must be the one the checkpoints were trained for.
    folds : int, str or sequence, optional
        The folds to average (``0``, ``[0, 1]``, ``"all"``); by default every
        ``fold_N`` with the checkpoint (not ``fold_all``), as nnU-Net does.
    checkpoint : str
        The checkpoint file in each fold folder (``"checkpoint_best.pth"``, ...).
    mirror : bool
        Test-time mirroring over the axes the checkpoint allows (nnU-Net's default, on).
    trainer, plans : str, optional
        Pick the model folder in a dataset folder by trainer or plans name.
    reorient : bool, optional
        Reorient volumes to RAS before nnU-Net's steps (what TotalSegmentator does before
        calling nnU-Net, and nnU-Net's NibabelIOWithReorient reader); by default as the
        plans' ``image_reader_writer`` does.

    Returns
    -------
    seamline_medical.nnunet.pipeline.NNUNetBundle

    Raises
    ------
    ModelError
        For a missing fold or file, an unreadable checkpoint, an unknown trainer or
        network class, or a plans feature seamline does not reproduce; one line naming
        the file and the field.
    """
    from .checks import malformed, mirror_axes
    from .network import NNUNetNetwork, check_trainer
    from .pipeline import from_card
    from .plans import model_card

    folder = model_folder(Path(path), configuration=configuration, trainer=trainer, plans=plans)
    chosen = _folds(folder, folds, checkpoint)
    plans_data, dataset = _read_json(folder / "plans.json"), _read_json(folder / "dataset.json")
    files = [folder / f"fold_{fold}" / checkpoint for fold in chosen]
    checkpoints, first = [], None
    for file in files:
        data = read_checkpoint(file)
        if first is None:
            first = data
            check_trainer(data["trainer_name"], file)
        elif data["trainer_name"] != first["trainer_name"]:
            raise ModelError(f"trainer_name {data['trainer_name']!r} differs from fold {chosen[0]}'s", file)
        checkpoints.append({"network_weights": data["network_weights"]})
    assert first is not None
    with malformed(files[0]):
        init_args = first.get("init_args") or {}
        if not isinstance(init_args, dict):
            raise ModelError(f"init_args is a {type(init_args).__name__}, not a dict", files[0])
        trained = init_args.get("configuration") or folder.name.rsplit("__", 1)[-1]
        if not isinstance(trained, str):
            raise ModelError(f"init_args.configuration {trained!r} is not a configuration's name", files[0])
        if configuration is not None and configuration != trained:
            raise ModelError(f"init_args.configuration is {trained!r}, not the {configuration!r} asked for", files[0])
        axes = mirror_axes(first.get("inference_allowed_mirroring_axes"), "inference_allowed_mirroring_axes", files[0])
    card = model_card(
        plans_data,
        dataset,
        trained,
        folder=folder,
        folds=chosen,
        mirror_axes=axes if mirror else (),
        reorient=reorient,
        training={
            "source": "nnU-Net v2",
            "trainer": first["trainer_name"],
            "plans": plans_data.get("plans_name"),
            "dataset": plans_data.get("dataset_name"),
            "configuration": trained,
            "folds": chosen,
            "checkpoint": checkpoint,
            "inference_allowed_mirroring_axes": axes,
        },
    )
    networks = [_fold_network(card, weights, file) for weights, file in zip(checkpoints, files, strict=True)]
    module = NNUNetNetwork(networks, card.kwargs["mirror_axes"], card.kwargs["heads"])
    return from_card(module, card)


def _fold_network(card: Any, weights: dict[str, Any], file: Path) -> Any:
    """One fold's network with its weights: built on torch's meta device and checked against them first.

    A plans.json asking for a network of terabytes (``features_per_stage`` of a million)
    is so refused before anything is allocated.
    """
    from seamline.weights import build_checked, fit_weights, tensors_by_name

    from .network import build_fold

    kwargs, plans_file = card.kwargs, file.parent.parent / "plans.json"
    name = kwargs["network"].rsplit(".", 1)[-1]
    shapes = {key: tuple(value.shape) for key, value in tensors_by_name(weights["network_weights"]).items()}
    arguments = (card.in_channels, kwargs["heads"], kwargs["network"], kwargs["arch_kwargs"], kwargs["requires_import"])
    try:
        network = build_checked(
            lambda: build_fold(*arguments), shapes, file, architecture=f"{name} as {plans_file} builds it"
        )
    except ModelError as exc:
        if exc.path is None:  # the plans' arguments do not build the network
            raise ModelError(exc.message, plans_file) from exc
        raise ModelError(f"network_weights: {exc.message}", file) from exc
    fit_weights(network, weights, source=file, architecture=name)
    return network
