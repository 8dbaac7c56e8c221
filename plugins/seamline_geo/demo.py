"""``seamline demo``: the whole job on a sample shipped inside the package.

A 384 x 384 crop of the Everest Landsat 7 scene (red, green, blue, near-infrared) and a
small U-Net bundle trained by seamline on the western half of that scene (the crop is in
the eastern half, unseen in training) travel with ``seamline_geo`` (see
``demo_data/SOURCE.md``). The demo predicts glaciers tile by tile, writes a
Cloud-Optimized GeoTIFF of labels, the glacier polygons, and scores the map against the
Randolph Glacier Inventory outlines; its PNG map shows the glaciers with the RGI outlines
over them, a legend, a scale bar, UTM coordinates and the IoU. No network, no arguments.
"""

from __future__ import annotations

import time
from pathlib import Path

import click

DEMO_DATA = Path(__file__).resolve().parent / "demo_data"
SCENE = DEMO_DATA / "everest_crop.tif"
OUTLINES = DEMO_DATA / "everest_glaciers.geojson"
BUNDLE = DEMO_DATA / "bundle"


def run_demo(out: Path, *, tile_size: int = 128, progress: bool = True) -> dict:
    """Run the demo into *out* and return its summary.

    Parameters
    ----------
    out : pathlib.Path
        Directory for the outputs; created when missing, its demo files replaced.
    tile_size : int
        Tile size in pixels (the crop is 384 pixels a side, so 128 makes 16 tiles with
        the bundle's overlap).
    progress : bool
        Show a progress bar over tiles.

    Returns
    -------
    dict
        ``paths`` (dict of ``labels``, ``polygons``, ``preview`` to the files written),
        ``classes`` (list of the bundle's class names), ``polygons`` (int, glacier
        polygons), ``area_km2`` (float, glacier area), ``iou`` (float, glacier IoU
        against the RGI outlines) and ``seconds`` (float, time taken).
    """
    import geopandas as gpd

    import seamline
    from seamline.show import write_preview

    from .polygons import write_polygons

    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    paths = {name: out / f"glaciers{suffix}" for name, suffix in
             (("labels", ".tif"), ("polygons", ".gpkg"), ("preview", ".png"))}  # fmt: skip

    scene = seamline.open(SCENE)
    model = seamline.load_model(BUNDLE)
    labels = seamline.predict(scene, model, tile_size=tile_size, output="labels", progress=progress)
    seamline.save(labels, paths["labels"], overwrite=True)
    labels = seamline.open(paths["labels"])

    polygons = seamline.vectorize(labels)
    write_polygons(polygons, paths["polygons"], overwrite=True)

    report = seamline.evaluate(labels, seamline.open(OUTLINES, like=scene), num_classes=2)
    iou = float(report.per_class.loc[1, "iou"])
    write_preview(
        labels,
        paths["preview"],
        image=scene,
        truth=gpd.read_file(OUTLINES),
        truth_label="RGI 6.0 outlines",
        title=f"Glaciers near Everest (Landsat 7): IoU {iou:.3f} against RGI 6.0",
        overwrite=True,
    )
    glaciers = polygons[polygons["class_id"] == 1]
    return {
        "paths": paths,
        "classes": [card["name"] for card in model.card.classes],
        "polygons": len(glaciers),
        "area_km2": float(glaciers["area"].sum() / 1e6),
        "iou": iou,
        "seconds": time.perf_counter() - started,
    }


@click.command("demo")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("seamline-demo"),
    show_default=True,
    help="Directory for the outputs (its demo files are replaced).",
)
@click.option("--progress/--no-progress", default=True, help="Show a progress bar over tiles.")
def command(out: Path, progress: bool) -> None:
    """Map glaciers on a built-in Everest Landsat crop, end to end, offline."""
    summary = run_demo(out, progress=progress)
    click.echo(f"classes:        {', '.join(summary['classes'])}")
    click.echo(f"glacier polygons: {summary['polygons']}, {summary['area_km2']:.1f} km²")
    click.echo(f"IoU against the RGI 6.0 outlines: {summary['iou']:.3f}")
    for name, path in summary["paths"].items():
        click.echo(f"{name + ':':16}{path}")
    click.echo(f"done in {summary['seconds']:.1f} s")
