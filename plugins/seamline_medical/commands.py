"""The medical plugin's commands: organ statistics, and the series in a DICOM folder.

``seamline stats LABELS.nii.gz [--image VOLUME.nii.gz] [--names NAMES.json]
[--names-key KEY] [--out STATS.csv|.json]`` measures every label (voxels, volume in mL,
world centroid, bounding box and, with ``--image``, mean intensity) and prints the table,
or writes it as CSV or JSON with ``--out``. LABELS may be a DICOM SEG: with ``--image``
it is put on that image's grid.

``seamline dicom-info PATH [--json]`` lists the series in a folder, DICOMDIR or file:
number, modality, description, size, what it is and its UID, never a patient identifier.
"""

from __future__ import annotations

from typing import Any

import click

from seamline.fingerprints import reads

__all__ = ["stats_command", "dicom_info_command"]


@click.command("stats")
@click.argument("labels", type=click.Path(dir_okay=False))
@click.option("--image", type=click.Path(), help="Intensity volume on the same grid (mean per label).")
@click.option("--names", type=click.Path(dir_okay=False), help="JSON of label names: {id: name}, or tables of them.")
@click.option("--names-key", help="Which table of a --names file with several (e.g. 'total').")
@click.option("--out", type=click.Path(dir_okay=False), help="Write STATS.csv or STATS.json instead of printing.")
@click.option("--overwrite", is_flag=True, help="Replace an existing --out file.")
@reads("labels", "image", "names")
def stats_command(
    labels: str, image: str | None, names: str | None, names_key: str | None, out: str | None, overwrite: bool
) -> None:
    """Per-label statistics of LABELS: voxels, volume (mL), centroid (mm), bounding box."""
    import pandas as pd

    import seamline
    from seamline.atomic import check_writable
    from seamline.io import reader_for

    from .stats import check_stats_output, organ_statistics, write_statistics

    if out:
        check_writable(out, overwrite=overwrite)
    intensity = seamline.open(image) if image else None
    paired = intensity is not None and reader_for(labels).needs_grid
    label_image = seamline.open(labels, **({"like": intensity} if paired else {}))
    check_stats_output(out, label_image)
    table = organ_statistics(label_image, intensity, names=names, names_key=names_key)
    if out:
        write_statistics(table, out, overwrite=overwrite)
        click.echo(f"wrote {len(table)} labels to {out}")
        return
    with pd.option_context("display.max_rows", None, "display.width", 200):
        click.echo(table.round(3).to_string(index=False))


@click.command("dicom-info")
@click.argument("path", type=click.Path(exists=True))
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def dicom_info_command(path: str, as_json: bool) -> None:
    """List the DICOM series in PATH (a folder, a DICOMDIR or a file); no patient data is shown."""
    import json

    from .dicom_series import find_series

    rows: list[dict[str, Any]] = [
        {
            "number": s.number,
            "modality": s.modality,
            "description": s.description,
            "kind": s.kind,
            "size": [s.columns, s.rows, len(s.frames)] if s.kind == "image" else None,
            "files": len(s.files) if s.kind == "image" else None,
            "transfer_syntaxes": list(s.transfer_syntaxes),
            "uid": s.uid,
        }
        for s in find_series(path)
    ]
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    click.echo(f"{'number':>6}  {'modality':<8} {'size':<16} description, uid")
    for row in rows:
        size = "x".join(map(str, row["size"])) if row["size"] else row["kind"]
        number = "-" if row["number"] is None else row["number"]
        click.echo(f"{number:>6}  {row['modality']:<8} {size:<16} {row['description']!r}, uid {row['uid']}")
