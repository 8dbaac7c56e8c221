"""``seamline evaluate PRED GROUND_TRUTH``: score predicted labels against the truth.

Both files are opened lazily by whichever reader plugin handles them (ground truth given
as polygons is rasterized onto the prediction's grid), checked to lie on one grid (same
shape, affine and CRS), and evaluated chunk by chunk with
:func:`seamline.metrics.evaluate`. The per-class table and the summary are printed;
``--json`` also writes them to a file, atomically.
"""

from __future__ import annotations

import json

import click
import numpy as np

from .atomic import atomic_output, check_writable
from .errors import InputError, about
from .fingerprints import reads
from .io import open as open_image
from .io import reader_for

__all__ = ["command"]


def _classes(value: str | None) -> tuple[int | None, list[str] | None]:
    """``--classes``: a class count, or comma-separated names (their count is K)."""
    if value is None:
        return None, None
    if value.strip().isdigit():
        return int(value), None
    names = [name.strip() for name in value.split(",")]
    return len(names), names


@click.command("evaluate")
@click.argument("prediction", type=click.Path(exists=True))
@click.argument("ground_truth", type=click.Path(exists=True))
@click.option("--classes", help="Number of classes, or their names separated by commas (background,ice,debris).")
@click.option(
    "--spacing", is_flag=True, help="Add HD95 and surface Dice in world units (mm for volumes) from the files' grid."
)
@click.option("--tolerance", type=float, default=1.0, show_default=True, help="Surface Dice tolerance, world units.")
@click.option("--boundary-tolerance", type=float, default=2.0, show_default=True, help="Boundary F1 tolerance, pixels.")
@click.option("--ignore-index", type=int, help="A ground-truth value to leave out (e.g. 255).")
@click.option("--objects", is_flag=True, help="Also score objects (connected components): PQ, SQ, RQ, object F1.")
@click.option("--connectivity", type=int, help="Neighbour count for --objects: 4 or 8 (2D), 6, 18 or 26 (3D).")
@click.option("--json", "json_path", type=click.Path(dir_okay=False), help="Also write the report as JSON here.")
@click.option("--overwrite", is_flag=True, help="Replace an existing JSON report.")
@reads("prediction", "ground_truth")
def command(
    prediction: str,
    ground_truth: str,
    classes: str | None,
    spacing: bool,
    tolerance: float,
    boundary_tolerance: float,
    ignore_index: int | None,
    objects: bool,
    connectivity: int | None,
    json_path: str | None,
    overwrite: bool,
) -> None:
    """Score PREDICTION labels against GROUND_TRUTH labels and print a table per class.

    \b
    Example:
      seamline evaluate east_pred.tif east_truth.tif --classes background,glacier --json scores.json
    """
    from .metrics import evaluate

    if json_path is not None:
        check_writable(json_path, overwrite=overwrite)
    pred = open_image(prediction)
    truth = open_image(ground_truth, **({"like": pred} if reader_for(ground_truth).needs_grid else {}))
    for image, path in ((pred, prediction), (truth, ground_truth)):
        if not (np.issubdtype(image.dtype, np.integer) or image.dtype == bool):
            raise InputError(f"holds {image.dtype} values, not integer labels", path)
    count, names = _classes(classes)
    with about(prediction, context=f"ground truth: {ground_truth}"):
        report = evaluate(
            pred,
            truth,
            num_classes=count,
            spacing=spacing or None,
            class_names=names,
            ignore_index=ignore_index,
            tolerance=tolerance,
            boundary_tolerance=boundary_tolerance,
            objects=objects,
            connectivity=connectivity,
        )
    click.echo(str(report))
    if json_path is not None:
        with atomic_output(json_path, overwrite=overwrite) as tmp:
            tmp.write_text(json.dumps(report.to_dict(), indent=2))
        click.echo(f"report written to {json_path}")
