"""Weights from other tools' files: read as tensors, never run, and fitted to a network by name.

A trained network arrives as a state dict in many wrappings: a safetensors file; a
``torch.save`` pickle holding a bare state dict or a checkpoint with one inside
(Lightning's ``"state_dict"``, ``"model"``, ``"network"``, ...); a TorchScript archive.
:func:`read_checkpoint` reads each without running code: safetensors as tensors;
pickles only through ``torch.load(..., weights_only=True)``, whose unpickler builds
tensors and plain containers and nothing else (a file that needs more is refused, and
the message says so); TorchScript through :mod:`seamline.torchscript`.

:func:`fit_weights` then finds the state dict inside whatever was read. Every tensor is
named by its path (``"state_dict.model.encoder.conv1.weight"``), and the prefix whose
removal names the most of the network's own tensors wins (``"state_dict.model."`` for a
TorchGeo task, ``"module."`` for ``DataParallel``, none for a bare state dict). Loading is
strict: a mismatch names the first missing, unexpected and mis-shaped tensors.
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from .errors import ModelError
from .torchscript import is_torchscript, read_torchscript

__all__ = ["read_checkpoint", "tensors_by_name", "fit_weights"]

_REFUSED = (
    "needs full unpickling (it holds {what}, and unpickling that could run code); seamline reads tensors only: "
    "save the weights with torch.save(model.state_dict(), path) or safetensors"
)


def _torch_load(path: Path) -> Any:
    """``torch.load`` with the weights-only unpickler, memory-mapped when the file allows it."""
    mmap = zipfile.is_zipfile(path)
    try:
        return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise ModelError(_REFUSED.format(what=found.group(1) if found else "objects other than tensors"), path) from exc
    except (RuntimeError, EOFError, ValueError, OSError) as exc:
        raise ModelError(f"not a checkpoint torch can read: {str(exc).splitlines()[0]}", path) from exc


def read_checkpoint(path: str | os.PathLike) -> Any:
    """Read a weights file without running code from it.

    Parameters
    ----------
    path : str or os.PathLike
        A ``.safetensors`` file, a ``torch.save`` file (``.pth``, ``.pt``, ``.ckpt``,
        ``.bin``, ...) or a TorchScript archive.

    Returns
    -------
    object
        What the file holds: a dict of tensors, or a checkpoint of nested dicts and lists
        with tensors among plain values.

    Raises
    ------
    ModelError
        If the file is missing or unreadable, or it holds objects other than tensors and
        plain containers (it would need full unpickling, which seamline refuses).
    """
    path = Path(path)
    if not path.is_file():
        raise ModelError("no such weights file", path)
    if path.suffix.lower() == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            return load_file(path)
        except (SafetensorError, OSError) as exc:
            raise ModelError(f"not a safetensors file: {exc}", path) from exc
    if is_torchscript(path):
        return read_torchscript(path)
    return _torch_load(path)


def tensors_by_name(checkpoint: Any, prefix: str = "") -> dict[str, torch.Tensor]:
    """Every tensor in a checkpoint, named by its path of keys and indices joined by dots.

    Parameters
    ----------
    checkpoint : object
        What :func:`read_checkpoint` returned.
    prefix : str
        Prepended to every name.

    Returns
    -------
    dict of str to torch.Tensor
        In the checkpoint's order, e.g. ``{"state_dict.model.encoder.conv1.weight": ...}``.
    """
    found: dict[str, torch.Tensor] = {}
    if isinstance(checkpoint, torch.Tensor):
        found[prefix[:-1]] = checkpoint
    elif isinstance(checkpoint, Mapping):
        for key, value in checkpoint.items():
            found.update(tensors_by_name(value, f"{prefix}{key}."))
    elif isinstance(checkpoint, (list, tuple)):
        for index, value in enumerate(checkpoint):
            found.update(tensors_by_name(value, f"{prefix}{index}."))
    return found


def _best_prefix(names: list[str], wanted: Mapping[str, Any]) -> tuple[str, int]:
    """The prefix whose removal names the most tensors the network wants (the shortest on a tie)."""
    counts: collections.Counter[str] = collections.Counter()
    for name in names:
        starts = [0] + [i + 1 for i, c in enumerate(name) if c == "."]
        for start in starts:
            if name[start:] in wanted:
                counts[name[:start]] += 1
    if not counts:
        return "", 0
    best = max(counts.values())
    return min((p for p, n in counts.items() if n == best), key=len), best


def _first(names: list[str], what: str, detail: str = "") -> str:
    more = f" (and {len(names) - 1} more)" if len(names) > 1 else ""
    return f"{what} {names[0]}{detail}{more}"


def fit_weights(module: torch.nn.Module, checkpoint: Any, *, source: str | os.PathLike, architecture: str) -> None:
    """Load the state dict found in *checkpoint* into *module*, strictly.

    Parameters
    ----------
    module : torch.nn.Module
        The network, built with random weights.
    checkpoint : object
        What :func:`read_checkpoint` returned.
    source : str or os.PathLike
        The file, named in errors.
    architecture : str
        The network's architecture name, for messages.

    Raises
    ------
    ModelError
        If no tensor is named like the network's, or some are missing, unexpected or of
        another shape (the first of each is named, with how many more there are).
    """
    tensors = tensors_by_name(checkpoint)
    wanted = module.state_dict()
    prefix, matched = _best_prefix(list(tensors), wanted)
    if not matched:
        have = next(iter(tensors), "nothing")
        raise ModelError(
            f"no tensor in the file is named like {architecture}'s: the file has {have}, "
            f"the network {next(iter(wanted), 'nothing')}",
            source,
        )
    state = {name[len(prefix) :]: value for name, value in tensors.items() if name.startswith(prefix)}
    transient = {name for name, _ in module.named_buffers()} - set(wanted)
    problems = []
    missing = [name for name in wanted if name not in state]
    unexpected = [name for name in state if name not in wanted and name not in transient]
    shaped = [name for name in wanted if name in state and state[name].shape != wanted[name].shape]
    if missing:
        problems.append(_first(missing, "missing"))
    if unexpected:
        problems.append(_first(unexpected, "unexpected"))
    if shaped:
        name = shaped[0]
        sizes = f" ({list(state[name].shape)} in the file, {list(wanted[name].shape)} in the network)"
        problems.append(_first(shaped, "mis-shaped", sizes))
    if problems:
        where = f" under {prefix!r}" if prefix else ""
        raise ModelError(f"weights{where} do not fit {architecture}: {'; '.join(problems)}", source)
    module.load_state_dict({name: state[name] for name in wanted}, strict=True)
