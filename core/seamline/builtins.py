"""The core's own plugin: the Zarr store and the core commands.

It is registered through the ``seamline`` entry-point group (as ``core``) like every
other plugin, which keeps the contract honest. Command modules are imported only when
the command line is built, and each imports torch only inside its command.
"""

from __future__ import annotations

import importlib
from typing import Any

from .hookspecs import hookimpl

COMMAND_MODULES: tuple[str, ...] = ()


@hookimpl
def seamline_commands(cli: Any) -> None:
    for module in COMMAND_MODULES:
        cli.add_command(importlib.import_module(module).command)
