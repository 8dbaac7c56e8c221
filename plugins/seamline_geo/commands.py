"""The geo plugin's command line: ``seamline vectorize LABELS OUT``.

It opens a label raster lazily, vectorizes it chunk by chunk (exactly, see
:func:`seamline.vectorize`) and writes the polygons to a vector file whose suffix
chooses the format. An existing OUT is an error unless ``--overwrite`` is given; the
check happens before any work, and the file appears only once it is complete.
"""

from __future__ import annotations

import click

from seamline.fingerprints import reads

__all__ = ["vectorize_command"]


@click.command("vectorize")
@click.argument("labels", type=click.Path())
@click.argument("out", type=click.Path())
@click.option(
    "--connectivity", type=click.Choice(["4", "8"]), default="4", show_default=True, help="Pixel connectivity."
)
@click.option(
    "--simplify", type=click.FloatRange(min=0), default=None, help="Simplification tolerance in CRS units (inexact)."
)
@click.option(
    "--min-area",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    help="Drop polygons smaller than this (CRS units²).",
)
@click.option("--instances", is_flag=True, help="Add an instance_id column numbering the polygons.")
@click.option(
    "--band", type=click.IntRange(min=1), help="The band holding the labels (needed when LABELS has several)."
)
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
@reads("labels")
def vectorize_command(
    labels: str,
    out: str,
    connectivity: str,
    simplify: float | None,
    min_area: float,
    instances: bool,
    band: int | None,
    overwrite: bool,
) -> None:
    """Turn the label raster LABELS into polygons in OUT (.gpkg, .parquet, .fgb, .geojson, .json)."""
    import seamline
    from seamline.atomic import check_writable
    from seamline.errors import InputError, about

    from .formats import check_vector_path
    from .polygons import write_polygon_batches

    check_vector_path(out)
    check_writable(out, overwrite=overwrite)
    image = seamline.open(labels)
    if band is None and image.channels > 1:
        raise InputError(f"has {image.channels} bands; vectorize one band of labels (choose it with --band)", labels)
    if band is not None and band > image.channels:
        raise InputError(f"has no band {band} (it has {image.channels})", labels)
    with about(labels):
        tables = seamline.vectorize_batches(
            image[(band or 1) - 1],
            connectivity=int(connectivity),
            simplify=simplify,
            min_area=min_area,
            instances=instances,
        )
        polygons, classes = write_polygon_batches(tables, out, overwrite=overwrite)
    click.echo(f"wrote {out} ({polygons} polygons, {classes} classes)")
