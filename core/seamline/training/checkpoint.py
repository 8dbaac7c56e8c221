"""Checkpoints without pickle: a bundle, the optimizer's tensors, and JSON.

``torch.save`` pickles, and a pickle runs code when loaded, so a checkpoint here is a
directory::

    checkpoint/
      model/                 a model bundle (weights.safetensors + seamline.json)
      optimizer.safetensors  every tensor of the optimizer state, flattened by name
      state.json             the optimizer's hyper-parameters, epoch, history, ...

and resuming reads tensors and JSON only.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from ..atomic import atomic_output
from ..bundle import Bundle, ModelCard, load_model, save_model
from ..errors import InputError

__all__ = ["save_checkpoint", "load_checkpoint"]


def _flatten_optimizer(state: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors, scalars = {}, {}
    for index, values in state["state"].items():
        for key, value in values.items():
            if isinstance(value, torch.Tensor):
                tensors[f"{index}.{key}"] = value.detach().cpu().contiguous().clone()
            else:
                scalars[f"{index}.{key}"] = value
    groups = [{k: list(v) if isinstance(v, tuple) else v for k, v in g.items()} for g in state["param_groups"]]
    return tensors, {"param_groups": groups, "scalars": scalars}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict[str, Any]) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for name, value in [*tensors.items(), *info["scalars"].items()]:
        index, key = name.split(".", 1)
        state.setdefault(int(index), {})[key] = value
    groups = [{k: tuple(v) if k == "betas" else v for k, v in g.items()} for g in info["param_groups"]]
    return {"state": state, "param_groups": groups}


def save_checkpoint(
    path: str | os.PathLike, module: torch.nn.Module, card: ModelCard, optimizer: torch.optim.Optimizer, state: dict
) -> Path:
    """Write a checkpoint directory atomically, replacing the previous one.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint directory.
    module : torch.nn.Module
        The network.
    card : ModelCard
        Its card.
    optimizer : torch.optim.Optimizer
        The optimizer, whose state is saved tensor by tensor.
    state : dict
        JSON-ready loop state (epoch, history, best metric, ...).

    Returns
    -------
    pathlib.Path
    """
    tensors, info = _flatten_optimizer(optimizer.state_dict())
    with atomic_output(path, overwrite=True) as tmp:
        tmp = Path(tmp)
        tmp.mkdir()
        save_model(module, tmp / "model", card)
        save_file(tensors, os.fspath(tmp / "optimizer.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"optimizer": info, "loop": state}, indent=1))
    return Path(path)


def load_checkpoint(path: str | os.PathLike, optimizer: torch.optim.Optimizer) -> tuple[Bundle, dict]:
    """Read a checkpoint: restore *optimizer* in place, return the bundle and the loop state.

    Parameters
    ----------
    path : str or os.PathLike
        A directory written by :func:`save_checkpoint`.
    optimizer : torch.optim.Optimizer
        An optimizer over the same parameters, to restore.

    Returns
    -------
    tuple of (Bundle, dict)
        The network with its weights, and the loop state.

    Raises
    ------
    InputError
        If ``state.json`` or the optimizer tensors cannot be read, or do not match
        *optimizer* (the message names the file).
    """
    path = Path(path)
    try:
        saved = json.loads((path / "state.json").read_text())
        loop, info = saved["loop"], saved["optimizer"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(f"unreadable checkpoint state ({type(exc).__name__}: {exc})", path / "state.json") from None
    bundle = load_model(path / "model")
    tensors = path / "optimizer.safetensors"
    try:
        optimizer.load_state_dict(_unflatten_optimizer(load_file(os.fspath(tensors)), info))
    except (OSError, ValueError, KeyError, SafetensorError) as exc:
        raise InputError(f"cannot restore the optimizer from it: {exc}", tensors) from None
    return bundle, loop
