"""The ``seamline stats`` command: organ statistics of a label volume.

``seamline stats LABELS.nii.gz [--image VOLUME.nii.gz] [--names NAMES.json]
[--names-key KEY] [--out STATS.csv|.json]`` measures every label (voxels, volume in mL,
world centroid, bounding box and, with ``--image``, mean intensity) and prints the table,
or writes it as CSV or JSON with ``--out``.
"""

from __future__ import annotations

import click

__all__ = ["stats_command"]


@click.command("stats")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--image", type=click.Path(dir_okay=False), help="Intensity volume on the same grid (mean per label).")
@click.option("--names", type=click.Path(dir_okay=False), help="JSON of label names: {id: name}, or tables of them.")
@click.option("--names-key", help="Which table of a --names file with several (e.g. 'total').")
@click.option("--out", type=click.Path(dir_okay=False), help="Write STATS.csv or STATS.json instead of printing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
def stats_command(
    labels: str, image: str | None, names: str | None, names_key: str | None, out: str | None, overwrite: bool
) -> None:
    """Per-label statistics of LABELS: voxels, volume (mL), centroid (mm), bounding box."""
    import pandas as pd

    import seamline
    from seamline.atomic import check_writable

    from .stats import check_stats_output, organ_statistics, write_statistics

    if out:
        check_writable(out, overwrite=overwrite)
    label_image = seamline.open(labels)
    check_stats_output(out, label_image)
    intensity = seamline.open(image) if image else None
    table = organ_statistics(label_image, intensity, names=names, names_key=names_key)
    if out:
        write_statistics(table, out, overwrite=overwrite)
        click.echo(f"wrote {len(table)} labels to {out}")
        return
    with pd.option_context("display.max_rows", None, "display.width", 200):
        click.echo(table.round(3).to_string(index=False))
