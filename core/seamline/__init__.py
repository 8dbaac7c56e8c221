"""seamline: seamless tiled segmentation of images too large for memory.

The public API. Heavy parts (torch, the engine, training) load on first use, so that
``import seamline`` and ``seamline plugins`` stay fast and never import torch.
"""

from __future__ import annotations

import importlib
from importlib.metadata import PackageNotFoundError, version
from typing import Any

from .atomic import atomic_output
from .errors import InputError, ModelError, OutputExistsError, PluginError, SeamlineError
from .hookspecs import hookimpl
from .image import Image
from .io import open, open_stac, save
from .show import show  # eager, like vectorize: a submodule of the same name would shadow a lazy function
from .stack import stack  # eager, like show
from .terrain import terrain  # eager, like show
from .vectorize import vectorize, vectorize_batches

try:
    __version__ = version("seamline")
except PackageNotFoundError:  # a source tree that is not installed
    __version__ = "0+unknown"

__all__ = [
    "Image",
    "open",
    "open_stac",
    "save",
    "stack",
    "predict",
    "vectorize",
    "vectorize_batches",
    "label",
    "train",
    "evaluate",
    "load_model",
    "save_model",
    "import_model",
    "show",
    "terrain",
    "areas",
    "hookimpl",
    "atomic_output",
    "SeamlineError",
    "InputError",
    "OutputExistsError",
    "PluginError",
    "ModelError",
]

_LAZY = {
    "predict": "seamline.inference",
    "label": "seamline.labels",
    "train": "seamline.training",
    "evaluate": "seamline.metrics",
    "load_model": "seamline.bundle",
    "save_model": "seamline.bundle",
    "import_model": "seamline.import_command",
    "areas": "seamline.area",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'seamline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
