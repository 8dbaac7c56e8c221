"""Building footprints on the SpaceNet Atlanta tile: train on the west half, score the east half.

The tile (panchromatic, 0.5 m, uint16, nodata 0) and its 43 footprints (GeoJSON, same
CRS) come from ../shared/data/solaris_spacenet_pivots; the footprints are rasterized
patch by patch by the geo plugin's vector reader. A small core.UNet is trained on the CPU
with seamline.train on a file that holds the west half only, and the last epoch is kept:
the east half is an untouched test. Reported: building IoU and object F1 (a predicted
building matches a true one at IoU > 0.5) on the east half.

Run: python benchmarks/train_buildings.py [--epochs N] [--out DIR]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

import seamline
from seamline.instances import instance_metrics
from seamline.training.sampling import split_region

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "solaris_spacenet_pivots"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="seamline-buildings-"))
    work.mkdir(parents=True, exist_ok=True)
    outlines = DATA / "geotiff_labels.geojson"
    scene = seamline.open(DATA / "sample_geotiff.tif")
    west, east = split_region(scene.spatial_shape, "x", fraction=0.5)
    west_path = seamline.save(scene.window(*west), work / "atlanta_west.tif", overwrite=True)
    config = {
        "data": {"image": os.fspath(west_path), "labels": os.fspath(outlines)},
        "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "building", "color": [255, 80, 0]}],
        "validation": None,
        "model": {"architecture": "core.UNet", "kwargs": {"widths": [16, 32, 64]}},
        "normalization": {"kind": "zscore"},
        "patches": {"size": 128, "per_epoch": 256, "foreground_fraction": 0.5},
        "augment": {"flip": True, "rotate": True, "intensity": 0.1},
        "loss": {"kind": "dice_ce"},
        "optimizer": {"lr": 0.003, "schedule": "cosine", "warmup": 0.05},
        "training": {"epochs": args.epochs, "batch_size": 8, "seed": 0, "progress": False},
        "predict": {"tile_size": 256, "overlap": 0.25},
        "out": os.fspath(work / "run"),
    }
    started = time.perf_counter()
    result = seamline.train(config, overwrite=True)
    minutes = (time.perf_counter() - started) / 60

    truth = seamline.open(outlines, like=scene.window(*east))
    prediction = result.bundle.predict(scene.window(*east), output="labels", progress=False)
    predicted = np.asarray(prediction.data[0])
    true = np.asarray(truth.data[0]).astype(np.uint8)
    valid = predicted != prediction.meta.get("nodata", 255)
    predicted = np.where(valid, predicted, 0).astype(np.uint8)
    report = seamline.evaluate(predicted, true, num_classes=2, boundary_tolerance=None)
    objects = instance_metrics(predicted, true, components=True)

    print(f"{'figure':<40}{'value':>10}")
    print(f"{'building share, east half':<40}{true.mean():>10.3f}")
    print(f"{'building IoU, east half':<40}{report.per_class['iou'].iloc[1]:>10.3f}")
    print(f"{'mean IoU, east half':<40}{report.mean_iou:>10.3f}")
    print(f"{'object F1 (IoU > 0.5), east half':<40}{objects['f1']:>10.3f}")
    counts = f"{objects['tp'] + objects['fn']} / {objects['tp'] + objects['fp']} / {objects['tp']}"
    print(f"{'objects: true / predicted / matched':<40}{counts:>10}")
    print(f"{'epochs run':<40}{len(result.history):>10}")
    print(f"{f'training minutes (CPU, {args.threads} thread)':<40}{minutes:>10.1f}")


if __name__ == "__main__":
    main()
