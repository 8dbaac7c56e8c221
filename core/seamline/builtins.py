"""The core's own plugin: the Zarr store and the core commands.

It is registered through the ``seamline`` entry-point group (as ``core``) like every
other plugin, which keeps the contract honest. Command modules are imported only when
the command line is built, and each imports torch only inside its command.
"""

from __future__ import annotations

import importlib
from typing import Any

from . import checkpoint_format
from .hookspecs import hookimpl
from .plugins import Architecture, ModelFormat, Output, deferred

COMMAND_MODULES: tuple[str, ...] = (
    "seamline.predict_command",
    "seamline.train_command",
    "seamline.evaluate_command",
    "seamline.import_command",
    "seamline.stack_command",
)
CATALOG_COMMANDS = ("recipes_command", "models_command")


def _build_unet(in_channels: int, classes: int, **kwargs: Any) -> Any:
    from .unet import build_unet

    return build_unet(in_channels, classes, **kwargs)


@hookimpl
def seamline_models(register: Any) -> None:
    register(Architecture(name="core.UNet", build=_build_unet, description="small pure-torch U-Net, 2D or 3D"))


@hookimpl
def seamline_model_formats(register: Any) -> None:
    register(
        ModelFormat(
            name="checkpoint",
            can_load=checkpoint_format.can_load,
            load=deferred("seamline.checkpoint_format", "load"),
            description="state-dict checkpoints (.pth .pt .ckpt .bin .safetensors; Lightning, TorchGeo) "
            "with a registered architecture",
        )
    )


def _write_preview(labels: Any, path: str, *, image: Any, overwrite: bool = False) -> None:
    from .show import write_preview

    write_preview(labels, path, image=image, overwrite=overwrite)


@hookimpl
def seamline_outputs(register: Any) -> None:
    register(
        Output(
            name="preview",
            option="--preview",
            write=_write_preview,
            help="PNG of the labels over the input: a map with a legend and scale bar, or three slices of a volume.",
        )
    )


@hookimpl
def seamline_commands(cli: Any) -> None:
    for module in COMMAND_MODULES:
        cli.add_command(importlib.import_module(module).command)
    catalog = importlib.import_module("seamline.catalog")
    for name in CATALOG_COMMANDS:
        cli.add_command(getattr(catalog, name))


@hookimpl
def seamline_readers(register: Any) -> None:
    from .zarr_store import READER

    register(READER)


@hookimpl
def seamline_writers(register: Any) -> None:
    from .zarr_store import WRITER

    register(WRITER)
