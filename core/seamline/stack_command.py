"""``seamline stack INPUT... OUT``: several rasters as the bands of one file, on one grid.

The inputs are files stacked in the order given, or one band list (see
:mod:`seamline.inputs`). The grid is the first input's, that of ``--like``, or one given
by ``--crs``, ``--resolution`` and ``--bounds``; inputs on another grid are warped onto it
chunk by chunk (``--resampling``). OUT's format follows its suffix: a ``.tif`` is a
Cloud-Optimized GeoTIFF, with band descriptions and, where some input has no data, an
internal validity mask. OUT is checked before any work and appears only once complete.
"""

from __future__ import annotations

import click

from .atomic import check_writable
from .fingerprints import reads
from .stack import RESAMPLINGS

__all__ = ["command"]


@click.command("stack")
@click.argument("inputs", metavar="INPUT...", nargs=-1, required=True, type=click.Path())
@click.argument("out", type=click.Path())
@click.option("--names", help="Band names, in order, comma-separated (default: band descriptions or file names).")
@click.option(
    "--resampling",
    type=click.Choice(RESAMPLINGS),
    default="nearest",
    show_default=True,
    help="How inputs on another grid are warped onto the stack's.",
)
@click.option("--like", type=click.Path(), help="A raster whose grid the stack takes (default: the first INPUT's).")
@click.option("--crs", help="The grid's CRS (EPSG:32645, a WKT, ...), with --resolution and --bounds.")
@click.option("--resolution", type=click.FloatRange(min=0, min_open=True), help="The grid's pixel size, in CRS units.")
@click.option("--bounds", type=float, nargs=4, metavar="LEFT BOTTOM RIGHT TOP", help="The grid's extent, in CRS units.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@reads("inputs", "like")
def command(
    inputs: tuple[str, ...],
    out: str,
    names: str | None,
    resampling: str,
    like: str | None,
    crs: str | None,
    resolution: float | None,
    bounds: tuple[float, float, float, float] | None,
    overwrite: bool,
) -> None:
    """Stack INPUT files (or one band list) as the bands of OUT, on one grid."""
    from . import io
    from .inputs import open_inputs

    check_writable(out, overwrite=overwrite)
    io.writer_for(out)
    grid = {"like": io.open(like) if like else None, "crs": crs, "resolution": resolution, "bounds": bounds}
    band_names = [n.strip() for n in names.split(",")] if names else None
    image = open_inputs(inputs, names=band_names, resampling=resampling, grid=grid)
    io.save(image, out, overwrite=overwrite)
    names = image.meta.get("band_names")
    bands = f"{image.channels} bands" + (f": {', '.join(map(str, names))}" if names else ", unnamed")
    click.echo(f"wrote {out} ({bands}; shape {image.shape})")
