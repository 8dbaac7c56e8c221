"""TorchScript archives read as tensors: the network's weights, none of its code.

A TorchScript file (``torch.jit.save``, a MONAI bundle's ``models/model.ts``) is a zip
holding the module's code and a pickle of its attributes. Loading it with
``torch.jit.load`` compiles and runs that code, so seamline never does. :func:`read_torchscript`
unpickles the attributes with an unpickler that resolves no class to code: every
``__torch__.*`` class becomes an inert record of its attributes, and the only callables it
admits are the ones that rebuild tensors and plain lists. The tensors found walking those
records are the module's state dict, named as ``module.state_dict()`` names them
(``"model.0.conv.weight"``); the network itself is built by seamline from an
architecture it knows.
"""

from __future__ import annotations

import collections
import os
import pickle
import zipfile
from typing import Any

import torch

from .errors import ModelError

__all__ = ["is_torchscript", "read_torchscript"]

_STORAGE_DTYPES = {
    "FloatStorage": torch.float32,
    "DoubleStorage": torch.float64,
    "HalfStorage": torch.float16,
    "BFloat16Storage": torch.bfloat16,
    "LongStorage": torch.int64,
    "IntStorage": torch.int32,
    "ShortStorage": torch.int16,
    "CharStorage": torch.int8,
    "ByteStorage": torch.uint8,
    "BoolStorage": torch.bool,
}
_LISTS = ("build_intlist", "build_doublelist", "build_boollist", "build_tensorlist", "build_genericlist")


class _ScriptObject:
    """A TorchScript class instance reduced to its pickled attributes; it has no behaviour."""

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _Storage:
    """What a ``torch.*Storage`` global stands for here: the element type of a stored buffer."""

    def __init__(self, dtype: torch.dtype) -> None:
        self.dtype = dtype


def _tag(value: Any, *_: Any) -> Any:
    """``torch.jit._pickle.restore_type_tag``: the value, its type annotation dropped."""
    return value


class _Unpickler(pickle.Unpickler):
    """Builds tensors, containers and inert records; refuses every other global."""

    def __init__(self, data: Any, archive: zipfile.ZipFile, root: str) -> None:
        super().__init__(data)
        self.archive, self.root = archive, root

    def find_class(self, module: str, name: str) -> Any:
        if module == "__torch__" or module.startswith("__torch__."):
            return _ScriptObject
        if (module, name) == ("torch._utils", "_rebuild_tensor_v2"):
            return torch._utils._rebuild_tensor_v2
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch" and name in _STORAGE_DTYPES:
            return _Storage(_STORAGE_DTYPES[name])
        if module == "torch.jit._pickle" and name in _LISTS:
            return list
        if (module, name) == ("torch.jit._pickle", "restore_type_tag"):
            return _tag
        raise pickle.UnpicklingError(f"it holds {module}.{name}, which is not a tensor or a plain container")

    def persistent_load(self, pid: Any) -> Any:
        kind, storage, key, _location, _numel = pid
        if kind != "storage" or not isinstance(storage, _Storage):
            raise pickle.UnpicklingError(f"unknown stored object {kind!r}")
        raw = bytearray(self.archive.read(f"{self.root}/data/{key}"))
        untyped = torch.frombuffer(raw, dtype=torch.uint8).untyped_storage() if raw else torch.UntypedStorage(0)
        return torch.storage.TypedStorage(wrap_storage=untyped, dtype=storage.dtype, _internal=True)


def _archive_root(archive: zipfile.ZipFile) -> str | None:
    """The archive's top folder when it is a TorchScript archive (it has ``code/`` and ``constants.pkl``)."""
    for name in archive.namelist():
        root, _, rest = name.partition("/")
        if rest == "constants.pkl":
            return root
    return None


def is_torchscript(path: str | os.PathLike) -> bool:
    """Whether *path* is a TorchScript archive (``torch.jit.save``), from its zip index alone.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as archive:
        return _archive_root(archive) is not None


def _collect(value: Any, prefix: str, into: dict[str, torch.Tensor]) -> None:
    state = value.state if isinstance(value, _ScriptObject) else None
    if not isinstance(state, dict):
        return
    for name, item in state.items():
        if isinstance(item, torch.Tensor):
            into[prefix + name] = item
        elif isinstance(item, _ScriptObject):
            _collect(item, f"{prefix}{name}.", into)


def read_torchscript(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """The tensors of a TorchScript module, named as its ``state_dict()`` names them; no code runs.

    Parameters
    ----------
    path : str or os.PathLike
        A TorchScript archive.

    Returns
    -------
    dict of str to torch.Tensor
        Every tensor attribute of the module and its submodules (parameters and buffers).

    Raises
    ------
    ModelError
        If the archive is not TorchScript, is damaged, or its attributes hold anything
        but tensors, plain values and TorchScript modules.
    """
    try:
        with zipfile.ZipFile(path) as archive:
            root = _archive_root(archive)
            if root is None:
                raise ModelError("not a TorchScript archive (no constants.pkl)", path)
            with archive.open(f"{root}/data.pkl") as data:
                module = _Unpickler(data, archive, root).load()
    except ModelError:
        raise
    except pickle.UnpicklingError as exc:
        raise ModelError(f"cannot read the TorchScript weights without running code: {exc}", path) from exc
    except (zipfile.BadZipFile, KeyError, EOFError, ValueError, TypeError, RuntimeError) as exc:
        raise ModelError(f"damaged TorchScript archive: {exc}", path) from exc
    tensors: dict[str, torch.Tensor] = {}
    _collect(module, "", tensors)
    if not tensors:
        raise ModelError("the TorchScript archive holds no module with tensors", path)
    return tensors
