"""Weights from other tools' files: read as tensors, never run, and fitted to a network by name.

A trained network arrives as a state dict in many wrappings: a safetensors file; a
``torch.save`` pickle holding a bare state dict or a checkpoint with one inside
(Lightning's ``"state_dict"``, ``"model"``, ``"network"``, ...); a TorchScript archive.
:func:`read_checkpoint` reads each without running code: safetensors as tensors;
pickles only through ``torch.load(..., weights_only=True)``, whose unpickler builds
tensors, plain containers and NumPy scalars and nothing else (a file that needs more is
refused, and the message says so); TorchScript through :mod:`seamline.torchscript`.

:func:`fit_weights` then finds the state dict inside whatever was read. Every tensor is
named by its path (``"state_dict.model.encoder.conv1.weight"``), and the prefix whose
removal names the most of the network's own tensors wins (``"state_dict.model."`` for a
TorchGeo task, ``"module."`` for ``DataParallel``, none for a bare state dict). Loading is
strict: a mismatch names the first missing, unexpected and mis-shaped tensors
(:func:`weights_mismatch`).

A seamline bundle's weights are checked before anything large is allocated: a card
asking for ``in_channels=10**9`` would otherwise make torch allocate hundreds of
gigabytes first. :func:`safetensors_shapes` reads the tensor shapes from a safetensors
header without touching the data, and :func:`build_checked` builds the network on torch's
``meta`` device, compares, and only then builds it for real (an architecture that cannot
be built on ``meta`` is built directly).
"""

from __future__ import annotations

import collections
import os
import pickle
import re
import struct
import zipfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from .bundle_files import loads
from .errors import ModelError, first_line
from .torchscript import is_torchscript, read_torchscript

__all__ = [
    "read_checkpoint",
    "tensors_by_name",
    "fit_weights",
    "weights_mismatch",
    "safetensors_shapes",
    "build_checked",
]

HEADER_LIMIT = 100 * 2**20  # safetensors' own limit on its JSON header

_REFUSED = (
    "needs full unpickling (it holds {what}, and unpickling that could run code); seamline reads tensors only: "
    "save the weights with torch.save(model.state_dict(), path) or safetensors"
)


def _plain_globals() -> list[Any]:
    """What checkpoints pickle besides tensors and containers that is data too: NumPy scalars and dtypes.

    A training log's numbers are NumPy scalars (nnU-Net's ``_best_ema`` and ``logging``,
    Lightning callbacks' states); rebuilding one takes its dtype and its bytes, and runs
    nothing. The name NumPy 1 pickled the scalar constructor under is mapped too.
    """
    import numpy as np

    scalar = (np._core if hasattr(np, "_core") else np.core).multiarray.scalar
    numeric = "?bhilqBHILQefdgFDG"
    return [scalar, (scalar, "numpy.core.multiarray.scalar"), np.dtype, *{type(np.dtype(c)) for c in numeric}]


def _torch_load(path: Path) -> Any:
    """``torch.load`` with the weights-only unpickler, memory-mapped when the file allows it."""
    mmap = zipfile.is_zipfile(path)
    try:
        with torch.serialization.safe_globals(_plain_globals()):
            return torch.load(path, map_location="cpu", weights_only=True, mmap=mmap)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))
        raise ModelError(_REFUSED.format(what=found.group(1) if found else "objects other than tensors"), path) from exc
    except (RuntimeError, EOFError, ValueError, OSError, struct.error) as exc:  # struct: bytes that are no pickle
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
    problem = weights_mismatch(_shapes(wanted), _shapes(state), ignore=transient)
    if problem is not None:
        where = f" under {prefix!r}" if prefix else ""
        raise ModelError(f"weights{where} do not fit {architecture}: {problem}", source)
    module.load_state_dict({name: state[name] for name in wanted}, strict=True)


def _shapes(state: Mapping[str, Any]) -> dict[str, tuple[int, ...]]:
    return {name: tuple(value.shape) for name, value in state.items()}


def weights_mismatch(
    wanted: Mapping[str, Sequence[int]],
    found: Mapping[str, Sequence[int]],
    *,
    ignore: frozenset[str] | set[str] = frozenset(),
) -> str | None:
    """Say, in one line, how weights of the shapes *found* differ from those a network *wanted*.

    Parameters
    ----------
    wanted : mapping of str to shape
        The network's state dict names and shapes.
    found : mapping of str to shape
        The file's.
    ignore : set of str
        Names the file may hold that the network does not need (non-persistent buffers).

    Returns
    -------
    str or None
        ``"missing a (and 1 more); unexpected c; mis-shaped d ([3, 4] in the file, [3, 5] in
        the network)"``; None when they fit.
    """
    problems = []
    missing = [name for name in wanted if name not in found]
    unexpected = [name for name in found if name not in wanted and name not in ignore]
    shaped = [name for name in wanted if name in found and tuple(found[name]) != tuple(wanted[name])]
    if missing:
        problems.append(_first(missing, "missing"))
    if unexpected:
        problems.append(_first(unexpected, "unexpected"))
    if shaped:
        name = shaped[0]
        sizes = f" ({list(found[name])} in the file, {list(wanted[name])} in the network)"
        problems.append(_first(shaped, "mis-shaped", sizes))
    return "; ".join(problems) or None


def safetensors_shapes(data: bytes, source: str | os.PathLike | None = None) -> dict[str, tuple[int, ...]]:
    """The shape of every tensor a safetensors file holds, from its header alone.

    Parameters
    ----------
    data : bytes
        The file's bytes (only the header is parsed).
    source : str or os.PathLike, optional
        The file, named in errors.

    Returns
    -------
    dict of str to tuple of int

    Raises
    ------
    ModelError
        If the header is missing, too long, not JSON, or describes tensors that do not
        lie inside the file.
    """
    if len(data) < 8:
        raise ModelError("not a safetensors file: shorter than its header length", source)
    size = int.from_bytes(data[:8], "little")
    if size > min(HEADER_LIMIT, len(data) - 8):
        raise ModelError(f"not a safetensors file: a header of {size} bytes in a file of {len(data)}", source)
    header = loads(data[8 : 8 + size], source, what="safetensors header")
    payload = len(data) - 8 - size
    if not isinstance(header, dict):
        raise ModelError("not a safetensors file: its header is not a JSON object", source)
    shapes = {}
    for name, entry in header.items():
        if name == "__metadata__":
            continue
        shape, offsets = (entry.get("shape"), entry.get("data_offsets")) if isinstance(entry, dict) else (None, None)
        valid = isinstance(shape, list) and all(isinstance(n, int) and n >= 0 for n in shape)
        if not valid or not (isinstance(offsets, list) and len(offsets) == 2 and 0 <= offsets[0] <= offsets[1]):
            raise ModelError(f"not a safetensors file: tensor {name!r} has no valid shape and offsets", source)
        if offsets[1] > payload:
            raise ModelError(f"truncated: tensor {name!r} ends at byte {offsets[1]} of {payload}", source)
        shapes[str(name)] = tuple(int(n) for n in shape or ())
    return shapes


def build_checked(
    build: Callable[[], Any],
    shapes: Mapping[str, Sequence[int]],
    source: str | os.PathLike | None = None,
    *,
    architecture: str = "the model",
) -> Any:
    """Build a network only if its state dict will take weights of these *shapes*.

    Parameters
    ----------
    build : callable
        Builds the network (raising :class:`~seamline.errors.ModelError` when it cannot).
    shapes : mapping of str to shape
        The weights' names and shapes (:func:`safetensors_shapes`).
    source : str or os.PathLike, optional
        The weights' file, named in errors.
    architecture : str
        The network's architecture name, for messages.

    Returns
    -------
    torch.nn.Module
        Built for real (on the CPU), with random weights.

    Raises
    ------
    ModelError
        If the network built on the ``meta`` device differs from *shapes*, or *build* fails.
    """
    try:
        with torch.device("meta"):
            skeleton = build()
    except (NotImplementedError, RuntimeError) as exc:
        if "meta" not in str(exc):
            raise ModelError(f"cannot build {architecture}: {first_line(exc)}", source) from exc
        skeleton = None  # this architecture needs real tensors to be built
    if skeleton is not None:
        transient = {name for name, _ in skeleton.named_buffers()} - set(skeleton.state_dict())
        problem = weights_mismatch(_shapes(skeleton.state_dict()), shapes, ignore=transient)
        if problem is not None:
            raise ModelError(f"weights do not fit {architecture}: {problem}", source)
    return build()
