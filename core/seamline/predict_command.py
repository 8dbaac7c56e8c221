"""``seamline predict INPUT... OUT --model BUNDLE``: tiled prediction from the command line.

The model is a seamline bundle, a shipped bundle's name, or a model from another tool (a
MONAI bundle folder, an smp folder, a checkpoint with ``--architecture`` and
``--model-option KEY=VALUE``; see docs/models.md). It opens the input lazily (one file,
several files stacked as bands, or a band list: :mod:`seamline.inputs`), loads the model,
names the input's bands as the model's card does, checks that OUT (and every extra output
asked for) may be written *before* any model runs, streams the labels (or, with
``--probabilities``, the class probabilities) to OUT, and then writes the extra products.
Each registered :class:`~seamline.plugins.Output` (polygons, statistics, meshes, a
preview, ...) adds its own option, so a plugin that registers an output extends this
command too. The products are made from the saved file, so the model runs once; a file
format without a grid of its own (a reader with ``needs_grid``, such as a DICOM SEG that
holds only labelled slices) is read back onto the input's grid. ``--input-option
KEY=VALUE`` passes options to INPUT's reader (``series=3`` to pick one series of a DICOM
folder, for instance).
"""

from __future__ import annotations

import click

from .atomic import check_writable
from .defaults import BATCH_SIZE
from .errors import InputError, about, first_line
from .fingerprints import reads
from .import_command import foreign_model_flags
from .inputs import match_bands, open_inputs
from .logits import labels_of
from .plugins import registry
from .stack import RESAMPLINGS

__all__ = ["command"]


def _bands(text: str | None) -> list[int | str] | None:
    if not text:
        return None
    return [int(b) if b.strip().isdigit() else b.strip() for b in text.split(",")]


def _check_device(device: str) -> None:
    """``--device`` names a device torch knows and this machine has (checked before any work)."""
    import torch

    if device == "auto":
        return
    try:
        kind = torch.device(device).type
    except (RuntimeError, ValueError) as exc:
        raise InputError(f"--device {device}: not a torch device ({first_line(exc)})") from exc
    if kind == "cuda" and not torch.cuda.is_available():
        raise InputError(f"--device {device}: no CUDA device is available here; use --device cpu or auto")


class PredictCommand(click.Command):
    """A command whose options include one per registered Output, looked up when used."""

    def get_params(self, ctx: click.Context) -> list[click.Parameter]:
        params = super().get_params(ctx)
        taken = {opt for param in params for opt in param.opts}
        for output in registry("outputs").values():
            if output.option not in taken:
                params.append(
                    click.Option([output.option], type=click.Path(), default=None, help=output.help or output.name)
                )
        return params


@click.command("predict", cls=PredictCommand)
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path())
@click.argument("out", type=click.Path())
@click.option(
    "--model",
    "-m",
    "model_path",
    required=True,
    help="A model bundle (dir or .zip), a model folder or checkpoint of another tool, or a shipped bundle's name.",
)
@foreign_model_flags
@click.option("--tile-size", type=click.IntRange(min=1), help="Tile size in pixels (default: the bundle's).")
@click.option(
    "--overlap", type=click.FloatRange(0, 1, max_open=True), help="Tile overlap as a fraction (default: the bundle's)."
)
@click.option(
    "--batch-size",
    type=click.IntRange(min=1),
    help=f"Tiles per model call (default: the model's; {BATCH_SIZE} for a seamline bundle).",
)
@click.option("--device", default="auto", show_default=True, help="auto, cpu, cuda, ...")
@click.option(
    "--bands",
    help="Bands to read from a single INPUT, by name or by 1-based index (numbers map, in order, onto the "
    "model's named bands).",
)
@click.option("--names", help="Names of the input's bands, in order, comma-separated (not for a band list).")
@click.option(
    "--resampling",
    type=click.Choice(RESAMPLINGS),
    default="nearest",
    show_default=True,
    help="How INPUTs on another grid than the first are warped onto it.",
)
@click.option(
    "--input-option",
    "input_options",
    multiple=True,
    metavar="KEY=VALUE",
    help="An option for INPUT's reader (repeatable), e.g. series=3 or resample=true for a DICOM folder.",
)
@click.option("--probabilities", is_flag=True, help="Write class probabilities instead of labels.")
@click.option("--scores", is_flag=True, hidden=True, help="Deprecated alias of --probabilities.")
@click.option("--overwrite", is_flag=True, help="Replace existing outputs.")
@click.option("--progress/--no-progress", default=True, help="Show a progress bar.")
@reads("inputs")
def command(
    inputs: tuple[str, ...],
    out: str,
    model_path: str,
    architecture: str | None,
    model_options: tuple[str, ...],
    tile_size: int | None,
    overlap: float | None,
    batch_size: int | None,
    device: str,
    bands: str | None,
    names: str | None,
    resampling: str,
    input_options: tuple[str, ...],
    probabilities: bool,
    scores: bool,
    overwrite: bool,
    progress: bool,
    **products: str | None,
) -> None:
    """Segment INPUT with a model and write OUT (labels, or class probabilities with --probabilities).

    INPUT is one raster or volume; several files, stacked as bands in the order given
    (the first one's grid, the others warped onto it); or a band list (.yaml, .yml, .txt)
    naming each band and its file. A model that names its bands takes them by name: band
    descriptions, --names, or the file names of single-band files (B04 names
    T33UUP_..._B04_10m.tif); unnamed bands are taken in order.
    """
    from . import io
    from .bundle import load_model
    from .foreign import parse_model_options

    if scores:
        click.echo("warning: --scores is deprecated and will be removed; use --probabilities", err=True)
        probabilities = True
    outputs = {o.option.lstrip("-").replace("-", "_"): o for o in registry("outputs").values()}
    wanted = {name: path for name, path in products.items() if path}
    for path in (out, *wanted.values()):
        check_writable(path, overwrite=overwrite)
    io.writer_for(out)
    model_settings = parse_model_options(model_options, architecture=architecture)
    _check_device(device)
    input_path = ", ".join(inputs)
    chosen = _bands(bands)
    listed = [n.strip() for n in names.split(",")] if names else None
    options = parse_model_options(input_options, what="reader option")
    image = open_inputs(inputs, names=listed, bands=chosen, resampling=resampling, options=options)
    if chosen and all(isinstance(b, int) for b in chosen):  # by position: the model's names apply
        image = image.replace(meta={**image.meta, "band_names": None})
    for name, path in wanted.items():
        if outputs[name].check is not None:
            outputs[name].check(path, image)
    bundle = load_model(model_path, **model_settings)
    if bundle.card.bands:
        image = match_bands(image, bundle.card.bands)
    settings = {"tile_size": tile_size, "overlap": overlap, "batch_size": batch_size}
    with about(input_path):
        result = bundle.predict(
            image,
            output="probabilities" if probabilities else "labels",
            device=device,
            progress=progress,
            **{k: v for k, v in settings.items() if v is not None},
        )
    io.save(result, out, overwrite=overwrite)
    click.echo(f"wrote {out} ({'probabilities' if probabilities else 'labels'}, shape {result.shape})")
    if not wanted:
        return
    saved = io.open(out, **({"like": image} if io.reader_for(out).needs_grid else {}))
    saved = saved.replace(meta={**result.meta, **saved.meta, **{k: result.meta[k] for k in ("class_names", "colors")}})
    labels = labels_of(saved) if probabilities else saved
    for name, path in wanted.items():
        outputs[name].write(labels, path, image=image, overwrite=overwrite)
        click.echo(f"wrote {path} ({outputs[name].name})")
