"""Glacier mapping from a DEM, with and without slope: train on the west half, score the east half.

The Exploradores ASTER DEM (Patagonia, 30 m, UTM 18S, nodata holes) and the RGI 6.0
outlines of region 17 come from ../shared/data/geoutils_exploradores_dem (or from the
folder $SEAMLINE_DATA names); no optical scene ships for it, so the model sees terrain
only. seamline.terrain computes the slope chunk by chunk, and seamline.stack puts the
elevation and the slope in one GeoTIFF whose mask covers the DEM's holes and the
one-pixel rim where the slope is undefined, so both runs see, and are scored on, the
same pixels.

Two runs of the same small core.UNet, trained exactly as benchmarks/train_glaciers.py
trains on Everest (same options and defaults, on a file holding the west half only):
elevation alone, then elevation and slope. The east half is an untouched test. A height
threshold, tuned on the west half, is the baseline to beat.

Run: python benchmarks/train_glaciers_terrain.py [--epochs N] [--out DIR]
(``--help`` lists the training options, shared with train_glaciers.py)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from train_glaciers import add_training_options, iou, training_config

import seamline
from seamline.training.sampling import split_region

SHARED = Path(os.environ.get("SEAMLINE_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
DATA = SHARED / "geoutils_exploradores_dem"
DEM = DATA / "AST_L1A_00303182012144228_Z.tif"
OUTLINES = DATA / "17_rgi60_glacier_outlines.gpkg"
RUNS = {"elevation": ["elevation"], "elevation + slope": ["elevation", "slope"]}
NODATA = 255


def terrain_stack(folder: Path) -> Path:
    """Elevation and slope as one 2-band GeoTIFF, masked wherever either is undefined."""
    dem = seamline.open(DEM)
    stacked = seamline.stack([dem, seamline.terrain(dem, "slope")], names=["elevation", "slope"])
    return Path(seamline.save(stacked, folder / "exploradores_terrain.tif", overwrite=True))


def height_baseline(
    elevation: np.ndarray, valid: np.ndarray, truth: np.ndarray, west: tuple, east: tuple
) -> tuple[float, float]:
    """Best height threshold over the west half's valid pixels, scored on the east half's."""
    thresholds = np.arange(0, 3000, 10)
    scores = [iou((elevation[west] > t)[valid[west]], truth[west][valid[west]]) for t in thresholds]
    best = float(thresholds[int(np.argmax(scores))])
    return best, iou((elevation[east] > best)[valid[east]], truth[east][valid[east]])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_options(parser)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="seamline-glaciers-terrain-"))
    work.mkdir(parents=True, exist_ok=True)
    stack = seamline.open(terrain_stack(work))
    truth = seamline.open(OUTLINES, like=stack).data.compute()[0].astype(bool)
    elevation, valid = stack.data[0].compute(), stack.valid_mask().compute()
    west, east = split_region(stack.spatial_shape, "x", fraction=0.5)
    threshold, baseline = height_baseline(elevation, valid, truth, west, east)
    west_path = seamline.save(stack.window(*west), work / "exploradores_terrain_west.tif", overwrite=True)
    scored = np.where(valid, truth, NODATA).astype(np.uint8)[east]

    results = {}
    for name, bands in RUNS.items():
        config = training_config(args, Path(west_path), OUTLINES, work / name.replace(" + ", "_"), bands=bands)
        started = time.perf_counter()
        result = seamline.train(config, overwrite=True)
        minutes = (time.perf_counter() - started) / 60
        prediction = result.bundle.predict(stack.window(*east), output="labels", progress=False)
        report = seamline.evaluate(prediction, scored, num_classes=2, ignore_index=NODATA, boundary_tolerance=None)
        results[name] = (float(report.per_class["iou"].iloc[1]), report.mean_iou, minutes)

    print(f"{'figure':<46}{'value':>10}")
    print(f"{'glacier share of the valid pixels':<46}{truth[valid].mean():>10.3f}")
    print(f"{'height threshold (m, tuned on west)':<46}{threshold:>10.0f}")
    print(f"{'baseline glacier IoU, east half':<46}{baseline:>10.3f}")
    for name, (glacier_iou, mean_iou, minutes) in results.items():
        print(f"{name + ': glacier IoU, east half':<46}{glacier_iou:>10.3f}")
        print(f"{name + ': mean IoU, east half':<46}{mean_iou:>10.3f}")
        print(f"{name + f': training minutes ({args.threads} thread)':<46}{minutes:>10.1f}")
    with_slope, without = results["elevation + slope"][0], results["elevation"][0]
    print(f"{'glacier IoU gain from slope':<46}{with_slope - without:>+10.3f}")


if __name__ == "__main__":
    main()
