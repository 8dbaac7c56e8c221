"""The geo plugin's command line: ``seamline vectorize LABELS OUT``.

It opens a label raster lazily, vectorizes it chunk by chunk (exactly, see
:func:`seamline.vectorize`) and writes the polygons to a vector file whose suffix
chooses the format. An existing OUT is an error unless ``--overwrite`` is given; the
check happens before any work, and the file appears only once it is complete.
"""

from __future__ import annotations

import click

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
@click.option("--band", type=click.IntRange(min=1), default=1, show_default=True, help="The band holding the labels.")
@click.option("--overwrite", is_flag=True, help="Replace OUT if it exists.")
def vectorize_command(
    labels: str,
    out: str,
    connectivity: str,
    simplify: float | None,
    min_area: float,
    instances: bool,
    band: int,
    overwrite: bool,
) -> None:
    """Turn the label raster LABELS into polygons in OUT (.gpkg, .parquet, .fgb, .geojson, .json)."""
    import seamline
    from seamline.atomic import check_writable
    from seamline.errors import InputError, about

    from .formats import check_vector_path
    from .polygons import write_polygons

    check_vector_path(out)
    check_writable(out, overwrite=overwrite)
    image = seamline.open(labels)
    if band > image.channels:
        raise InputError(f"has no band {band} (it has {image.channels})", labels)
    with about(labels):
        frame = seamline.vectorize(
            image[band - 1], connectivity=int(connectivity), simplify=simplify, min_area=min_area, instances=instances
        )
    write_polygons(frame, out, overwrite=overwrite)
    click.echo(f"wrote {out} ({len(frame)} polygons, {frame['class_id'].nunique()} classes)")
