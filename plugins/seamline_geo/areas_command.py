"""``seamline areas A.tif B.tif ...``: class areas in km² over time, as a table and a plot.

Each file is one date's label map of the same place (its date from its tags or its name,
see :func:`seamline.area.date_of`); the table goes to the screen, and with ``--csv`` to a
file, the plot with ``--plot`` to a PNG. Outputs are checked before any work and appear
only once complete.
"""

from __future__ import annotations

import click

__all__ = ["areas_command"]


@click.command("areas")
@click.argument("labels", nargs=-1, required=True, type=click.Path())
@click.option("--csv", "csv_path", type=click.Path(), default=None, help="Also write the table to this CSV file.")
@click.option("--plot", "plot_path", type=click.Path(), default=None, help="Write a line plot of the areas (PNG).")
@click.option(
    "--class", "classes", type=int, multiple=True, help="A class id to measure (repeatable); all non-zero by default."
)
@click.option("--overwrite", is_flag=True, help="Replace the CSV or PNG if they exist.")
def areas_command(
    labels: tuple[str, ...], csv_path: str | None, plot_path: str | None, classes: tuple[int, ...], overwrite: bool
) -> None:
    """Area in km² of each class in LABELS (one label map per date), and its change from date to date.

    Dates come from each file's ACQUISITIONDATE, date or TIFFTAG_DATETIME tag, else from
    a YYYY-MM-DD or YYYYMMDD in its name. The maps must lie on one grid.
    """
    from matplotlib.figure import Figure

    import seamline
    from seamline.area import plot_areas
    from seamline.atomic import atomic_output, check_writable
    from seamline.fingerprints import reading

    for path in (csv_path, plot_path):
        if path is not None:
            check_writable(path, overwrite=overwrite)
    with reading(*labels):  # no output is written over a label map, nor after one changed
        table = seamline.areas(list(labels), classes=list(classes) or None)
        shown = table.assign(date=table["date"].dt.strftime("%Y-%m-%d %H:%M").str.removesuffix(" 00:00"))
        click.echo(shown.to_string(index=False, float_format=lambda v: f"{v:.4f}"))
        if csv_path is not None:
            with atomic_output(csv_path, overwrite=overwrite) as tmp:
                table.to_csv(tmp, index=False)
        if plot_path is not None:
            figure = Figure(figsize=(6, 3.5))
            plot_areas(table, ax=figure.add_subplot())
            with atomic_output(plot_path, overwrite=overwrite) as tmp:
                figure.savefig(tmp, format="png", dpi=100, bbox_inches="tight")
