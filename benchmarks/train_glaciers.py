"""Glacier mapping on the Everest Landsat scene: train on the west half, score the east half.

The scene (Landsat 7, 2000-10-30, RGB + NIR stacked as 4 bands) and the RGI 6.0 outlines
(EPSG:4326, reprojected to the scene's UTM grid by the geo plugin's vector reader) come
from ../shared/data/geoutils_everest_glaciers. The model is a small core.UNet trained on
the CPU with seamline.train on a file that holds the west half only, all of it, and the
last epoch is kept (``--validation 0.25`` holds out the east end of that half to pick the
best epoch instead). The east half of the scene is an untouched test: nothing reads it
before the final score. A brightness threshold, tuned on the west half, is the
baseline to beat.

Run: python benchmarks/train_glaciers.py [--epochs N] [--out DIR] [--save-bundle PATH] [--figure PNG]
(``--help`` lists the training options: architecture, patch size, learning rate, loss...)
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import dask.array as da
import numpy as np
import torch

import seamline
from seamline.training.sampling import split_region

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "geoutils_everest_glaciers"
SCENE = "LE71400412000304SGS00"
OUTLINES = DATA / "15_rgi60_glacier_outlines.gpkg"


def stacked_scene(folder: Path) -> Path:
    """RGB + B4 stacked as one 4-band GeoTIFF (red, green, blue, nir)."""
    rgb = seamline.open(DATA / f"{SCENE}_RGB.tif")
    nir = seamline.open(DATA / f"{SCENE}_B4.tif")
    meta = {**rgb.meta, "band_names": ["red", "green", "blue", "nir"]}
    stacked = rgb.replace(data=da.concatenate([rgb.data, nir.data]), meta=meta)
    return Path(seamline.save(stacked, folder / "everest_rgbn.tif", overwrite=True))


def iou(prediction: np.ndarray, truth: np.ndarray) -> float:
    return float((prediction & truth).sum() / max((prediction | truth).sum(), 1))


def brightness_baseline(scene: np.ndarray, truth: np.ndarray, west: tuple, east: tuple) -> tuple[float, float]:
    """Best threshold on mean RGB over the west half, scored on the east half."""
    brightness = scene[:3].mean(axis=0)
    thresholds = np.arange(60, 256, 2)
    scores = [iou(brightness[west] > t, truth[west]) for t in thresholds]
    best = float(thresholds[int(np.argmax(scores))])
    return best, iou(brightness[east] > best, truth[east])


def model_kwargs(args: argparse.Namespace) -> dict:
    """The architecture's keyword arguments: widths for core.UNet, a random-init encoder for smp."""
    if args.architecture.startswith("smp."):
        return {"encoder_name": args.encoder, "encoder_weights": None}
    return {"widths": [int(w) for w in args.widths.split(",")]}


def add_training_options(parser: argparse.ArgumentParser) -> None:
    """The training options shared with benchmarks/train_glaciers_terrain.py."""
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--architecture", default="core.UNet", help="a registered architecture")
    parser.add_argument("--widths", default="16,32,64,128", help="core.UNet widths per level")
    parser.add_argument("--encoder", default="resnet18", help="encoder of an smp.* architecture")
    parser.add_argument("--patch", type=int, default=128, help="training patch size (pixels)")
    parser.add_argument("--per-epoch", type=int, default=256, help="training patches per epoch")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--lr", type=float, default=0.003)
    parser.add_argument("--loss", default="dice_ce", choices=["ce", "dice", "dice_ce", "focal", "boundary"])
    parser.add_argument("--foreground", type=float, default=0.33, help="share of patches centred on glacier")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--normalization", default="zscore", choices=["zscore", "percentile"])
    parser.add_argument("--intensity", type=float, default=0.1, help="intensity jitter (normalized units)")
    parser.add_argument(
        "--validation", type=float, default=0.0, help="validation share at the east end of the west half (0: none)"
    )
    parser.add_argument("--out", type=Path, default=None)


def training_config(args: argparse.Namespace, image: Path, labels: Path, out: Path, bands: list | None = None) -> dict:
    """The seamline.train config of a glacier run on *image* (the west half) with *labels*."""
    validation = {"split": "x", "fraction": args.validation, "side": "high"} if args.validation else None
    return {
        "data": {"image": os.fspath(image), "labels": os.fspath(labels), "bands": bands},
        "classes": [{"name": "background", "color": [0, 0, 0]}, {"name": "glacier", "color": [80, 200, 255]}],
        "validation": validation,
        "model": {"architecture": args.architecture, "kwargs": model_kwargs(args)},
        "normalization": {"kind": args.normalization},
        "patches": {"size": args.patch, "per_epoch": args.per_epoch, "foreground_fraction": args.foreground},
        "augment": {"flip": True, "rotate": True, "intensity": args.intensity},
        "loss": {"kind": args.loss},
        "optimizer": {"lr": args.lr, "weight_decay": 0.0001, "schedule": "cosine", "warmup": 0.05},
        "training": {
            "epochs": args.epochs,
            "batch_size": args.batch,
            "seed": 0,
            "metric": "mean_iou",
            "progress": False,
        },
        "predict": {"tile_size": 256, "overlap": 0.25},
        "out": os.fspath(out),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_training_options(parser)
    parser.add_argument("--save-bundle", type=Path, default=None, help="copy the trained bundle here (.zip or dir)")
    parser.add_argument("--figure", type=Path, default=None, help="save a map of the east half here (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="seamline-glaciers-"))
    work.mkdir(parents=True, exist_ok=True)
    scene_path = stacked_scene(work)
    scene = seamline.open(scene_path)
    truth = seamline.open(OUTLINES, like=scene).data.compute()[0].astype(bool)
    pixels = scene.data.compute()
    west, east = split_region(scene.spatial_shape, "x", fraction=0.5)
    threshold, baseline = brightness_baseline(pixels, truth, west, east)
    west_path = seamline.save(scene.window(*west), work / "everest_rgbn_west.tif", overwrite=True)
    config = training_config(args, Path(west_path), OUTLINES, work / "run")
    started = time.perf_counter()
    result = seamline.train(config, overwrite=True)
    minutes = (time.perf_counter() - started) / 60

    east_image = scene.window(*east)
    prediction = result.bundle.predict(east_image, output="labels", progress=False)
    report = seamline.evaluate(prediction, truth[east].astype(np.uint8), num_classes=2, boundary_tolerance=None)
    glacier_iou = float(report.per_class["iou"].iloc[1])
    if args.save_bundle:
        seamline.save_model(result.bundle.module, args.save_bundle, result.bundle.card, overwrite=True)

    print(f"{'figure':<42}{'value':>10}")
    print(f"{'glacier share of the scene':<42}{truth.mean():>10.3f}")
    print(f"{'brightness threshold (tuned on west)':<42}{threshold:>10.0f}")
    print(f"{'baseline glacier IoU, east half':<42}{baseline:>10.3f}")
    print(f"{args.architecture + ' glacier IoU, east half':<42}{glacier_iou:>10.3f}")
    print(f"{args.architecture + ' mean IoU, east half':<42}{report.mean_iou:>10.3f}")
    print(f"{'model / baseline IoU ratio':<42}{glacier_iou / baseline:>10.2f}")
    print(f"{'epochs run (best)':<42}{len(result.history):>7} ({result.best_epoch or 'last'})")
    print(f"{f'training minutes (CPU, {args.threads} thread)':<42}{minutes:>10.1f}")
    print(f"bundle: {result.path}")
    if args.figure:
        from seamline.show import write_preview

        title = f"East half, unseen in training: glacier IoU {glacier_iou:.3f} against RGI 6.0"
        write_preview(prediction, args.figure, image=east_image, truth=OUTLINES, truth_label="RGI 6.0", title=title)
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
