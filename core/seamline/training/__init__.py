"""Training: patch sampling, augmentation, losses and the loop that makes a bundle.

``seamline.train(config)`` (this package's :func:`train`) is the entry point; the
modules inside are usable on their own:

- :mod:`.config`: the YAML config and its checks;
- :mod:`.regions`: training and validation regions, room for a patch;
- :mod:`.sampling`: patches from lazy images, nodata, foreground oversampling;
- :mod:`.augment`: flips, rotations, intensity jitter;
- :mod:`.losses`: cross-entropy, Dice, Dice+CE, focal, boundary;
- :mod:`.trainer`: the loop, checkpoints, resume, early stopping;
- :mod:`.checkpoint`: checkpoints in safetensors and JSON.

Importing this package does not import torch; :func:`train` and :class:`TrainResult`
load the loop (and torch) on first use, so the command line stays fast.
"""

from __future__ import annotations

import importlib
from typing import Any

from .config import EXAMPLE, TrainConfig, load_config

__all__ = ["train", "TrainResult", "TrainConfig", "load_config", "EXAMPLE"]


def __getattr__(name: str) -> Any:
    if name in ("train", "TrainResult"):
        return getattr(importlib.import_module(".trainer", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
