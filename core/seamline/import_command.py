"""``seamline import-model SRC DST``: a seamline bundle from a model made by another tool.

SRC is anything :func:`seamline.load_model` loads: an nnU-Net or MONAI bundle folder, an
smp ``save_pretrained`` folder, a checkpoint with its architecture. The card is filled
from what the source says about itself; what it does not say (band names, class names,
the normalization) comes from options, and a field still missing is a one-line error
naming it. DST holds tensors and JSON only, so loading it gives the same output as
loading SRC, with nothing of the source tool needed any more.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import click

from .errors import InputError

__all__ = ["import_model", "command"]


def foreign_model_flags(command: Callable[..., Any]) -> Callable[..., Any]:
    """The ``--architecture`` and ``--model-option`` flags of a command that loads a model from another tool."""
    command = click.option(
        "--model-option",
        "model_options",
        multiple=True,
        metavar="KEY=VALUE",
        help="An option of the model (in_channels=4, classes=2, encoder_name=resnet34, ...); JSON or text; repeatable.",
    )(command)
    return click.option("--architecture", help="For a checkpoint: the registered architecture its weights are for.")(
        command
    )


def import_model(
    source: str | os.PathLike,
    target: str | os.PathLike,
    *,
    bands: Sequence[str] | None = None,
    classes: Sequence[str] | None = None,
    normalization: Mapping[str, Any] | str | None = None,
    tile_size: int | Sequence[int] | None = None,
    overlap: float | None = None,
    overwrite: bool = False,
    options: Mapping[str, Any] | None = None,
) -> Path:
    """Write the model at *source* as a seamline bundle at *target*.

    Parameters
    ----------
    source : str or os.PathLike
        A model :func:`seamline.load_model` loads.
    target : str or os.PathLike
        The bundle to write: a directory, or a path ending in ``.zip``.
    bands, classes : sequence of str, optional
        Band names (one per input channel) and class names (one per class), where the
        source does not name them or to rename them.
    normalization : mapping or str, optional
        A normalization spec, its JSON, ``"none"`` or a recipe's name
        (:func:`seamline.foreign.named_normalization`).
    tile_size, overlap : optional
        Prediction defaults to record instead of the source's.
    overwrite : bool
        Replace an existing bundle at *target*.
    options : mapping, optional
        Options for :func:`seamline.load_model`: the source format's (``architecture``,
        ``in_channels``, ``encoder_name``, ...; ``classes`` as a count, 1 for a single
        sigmoid channel whose two classes *classes* names).

    Returns
    -------
    pathlib.Path
        *target*.

    Raises
    ------
    InputError
        If the source leaves a card field unsaid and it is not given (the message names
        every such field and its option), or a given field does not fit the model.
    ModelError
        If the source cannot be loaded.
    """
    from .bundle import load_model, save_model
    from .foreign import fill_card

    fields: dict[str, Any] = {"bands": bands, "classes": classes, "normalization": normalization}
    fields.update(tile_size=tile_size, overlap=overlap)
    given = {name: value for name, value in fields.items() if value is not None}
    bundle = load_model(source, **{**given, **(options or {})})
    fill_card(bundle, **given)
    if bundle.missing:
        flags = ", ".join(f"--{name}" for name in bundle.missing)
        raise InputError(f"the model does not say its {', '.join(bundle.missing)}: give {flags}", source)
    return save_model(bundle.module, target, bundle.card, overwrite=overwrite)


def _names(text: str | None) -> list[str] | None:
    return None if text is None else [name.strip() for name in text.split(",")]


@click.command("import-model")
@click.argument("source", metavar="SRC", type=click.Path(exists=True))
@click.argument("target", metavar="DST", type=click.Path())
@foreign_model_flags
@click.option("--bands", help="Band names in the order the model takes them, comma-separated.")
@click.option("--classes", help="Class names in class order (0 first), comma-separated.")
@click.option("--normalization", help="A normalization spec as JSON, 'none', or a recipe's name.")
@click.option("--tile-size", type=click.IntRange(min=1), help="Default tile size to record (default: the model's).")
@click.option("--overlap", type=click.FloatRange(0, 1, max_open=True), help="Default tile overlap to record.")
@click.option("--overwrite", is_flag=True, help="Replace an existing bundle at DST.")
def command(
    source: str,
    target: str,
    architecture: str | None,
    model_options: tuple[str, ...],
    bands: str | None,
    classes: str | None,
    normalization: str | None,
    tile_size: int | None,
    overlap: float | None,
    overwrite: bool,
) -> None:
    """Write the model at SRC (another tool's folder or checkpoint) as a seamline bundle DST."""
    from .atomic import check_writable
    from .foreign import parse_model_options

    check_writable(target, overwrite=overwrite)
    written = import_model(
        source,
        target,
        bands=_names(bands),
        classes=_names(classes),
        normalization=normalization,
        tile_size=tile_size,
        overlap=overlap,
        overwrite=overwrite,
        options=parse_model_options(model_options, architecture=architecture),
    )
    click.echo(f"wrote {written}")
