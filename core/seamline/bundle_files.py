"""Reading a model bundle's files without trusting them.

A bundle comes from elsewhere, so its files are read with limits: a member of a zip is
inflated only when its declared size is within a cap and not out of all proportion to
its compressed size (a few kilobytes that inflate to gigabytes are refused before they
are inflated), and JSON is parsed only when it nests no deeper than a few dozen levels
(the parser would otherwise fail with a RecursionError). The card's values are data:
:func:`file_argument` finds an argument that would make a builder open a file. Every
problem is a
:class:`~seamline.errors.ModelError` naming the bundle.
"""

from __future__ import annotations

import json
import numbers
import os
import re
import zipfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from .errors import ModelError

__all__ = ["read_file", "loads", "count", "file_argument", "MAX_DEPTH", "MAX_RATIO", "CARD_LIMIT", "WEIGHTS_LIMIT"]

MAX_DEPTH = 64
#: How much larger than its compressed size a large zip member may be (weights compress little).
MAX_RATIO = 50
CARD_LIMIT = 2**20
WEIGHTS_LIMIT = 16 * 2**30
MAX_SIZE = 65536  # the most bands or classes a card may ask for (labels are at most uint16)
_FILE_SUFFIXES = (".pt", ".pth", ".bin", ".ckpt", ".safetensors", ".npz", ".npy", ".pkl", ".h5", ".onnx", ".json")
_SMALL = 64 * 2**20  # members below this size are not held to MAX_RATIO
_STRINGS = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)


def read_file(path: Path, name: str, limit: int) -> bytes:
    """The bytes of the file *name* in a bundle directory or zip, at most *limit* of them.

    Parameters
    ----------
    path : pathlib.Path
        The bundle: a directory or a zip file (the member is found at any depth).
    name : str
        The file's name.
    limit : int
        The largest size accepted, in bytes.

    Returns
    -------
    bytes

    Raises
    ------
    ModelError
        If the file is missing, larger than *limit*, a zip member that would inflate out
        of proportion, or the path is neither a directory nor a zip.
    """
    if path.is_dir():
        target = path / name
        if not target.is_file():
            raise ModelError(f"not a model bundle: {name} is missing", path)
        if target.stat().st_size > limit:
            raise ModelError(f"{name} is {target.stat().st_size} bytes, more than the {limit} a bundle may hold", path)
        return target.read_bytes()
    try:
        with zipfile.ZipFile(path) as archive:
            members = {Path(info.filename).name: info for info in archive.infolist()}
            if name not in members:
                raise ModelError(f"not a model bundle: {name} is missing", path)
            info = members[name]
            if info.file_size > limit:
                raise ModelError(f"{name} inflates to {info.file_size} bytes, more than the {limit} allowed", path)
            if info.file_size > _SMALL and info.file_size > MAX_RATIO * max(info.compress_size, 1):
                raise ModelError(
                    f"{name} would inflate from {info.compress_size} to {info.file_size} bytes; refused", path
                )
            with archive.open(info) as member:
                return member.read(info.file_size + 1)[: info.file_size]
    except zipfile.BadZipFile as exc:
        raise ModelError("not a model bundle: neither a directory nor a zip file", path) from exc


def loads(data: bytes, source: str | os.PathLike | None = None, *, what: str = "JSON") -> Any:
    """Parse JSON that nests at most :data:`MAX_DEPTH` levels deep.

    Parameters
    ----------
    data : bytes
        UTF-8 JSON.
    source : str or os.PathLike, optional
        Named in errors.
    what : str
        What the JSON is, for the message.

    Returns
    -------
    object

    Raises
    ------
    ModelError
        If it is not UTF-8 JSON or nests deeper.
    """
    brackets = np.frombuffer(_STRINGS.sub(b'""', data), dtype=np.uint8)
    steps = np.isin(brackets, (ord("["), ord("{"))).astype(np.int64) - np.isin(brackets, (ord("]"), ord("}")))
    if steps.size and int(np.cumsum(steps).max()) > MAX_DEPTH:
        raise ModelError(f"{what} nests deeper than {MAX_DEPTH} levels", source)
    try:
        return json.loads(data)
    except ValueError as exc:  # not JSON, not UTF-8, or an integer of thousands of digits
        raise ModelError(f"{what} is not valid JSON: {exc}", source) from exc


def count(value: Any, most: int = MAX_SIZE) -> bool:
    """Whether *value* is an integer from 1 to *most* (a bool is not).

    Parameters
    ----------
    value : object
    most : int

    Returns
    -------
    bool
    """
    return isinstance(value, numbers.Integral) and not isinstance(value, bool) and 1 <= int(value) <= most


def file_argument(value: Any, where: str) -> tuple[str, str] | None:
    """The first string in *value* (nested) that looks like a file path, and where it is.

    A card's arguments are data: a string with a path separator, one starting with
    ``~`` or ``.``, one ending in a model file's suffix, or one naming an existing file
    would make a builder open a file from outside the bundle.

    Parameters
    ----------
    value : object
        JSON data.
    where : str
        Its name (``"kwargs"``); nested names are built from it (``"kwargs.encoder_weights"``).

    Returns
    -------
    (str, str) or None
        Where the string is, and the string.
    """
    if isinstance(value, Mapping):
        for key, item in value.items():
            found = file_argument(item, f"{where}.{key}")
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = file_argument(item, f"{where}[{index}]")
            if found is not None:
                return found
    elif isinstance(value, str):
        pathlike = any(sep in value for sep in ("/", "\\", os.sep)) or value.startswith(("~", "."))
        if pathlike or value.lower().endswith(_FILE_SUFFIXES) or (value and os.path.exists(value)):
            return where, value
    return None
