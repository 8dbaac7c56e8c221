"""A small 3D model fits a CT volume: a smoke test of the 3D training path.

example_ct.nii.gz (122 x 101 x 112, 3 mm, RAS) with TotalSegmentator's label volume
(example_seg_fast_force_split.nii.gz) reduced to five large structures through the
config's ``label_map``: liver, spleen, kidneys (left + right), urinary bladder and hips
(left + right). A 3D core.UNet (instance normalization, as nnU-Net uses for small
3D batches) is trained on 3D patches with CT windowing and Dice+CE,
then the whole volume is predicted through the engine (and the medical plugin's
geometry round trip) and scored per class: Dice on the *training* volume, to show the
3D path learns, not to claim generalization.

Run: python benchmarks/train_organs.py [--epochs N] [--out DIR] [--figure PNG]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import torch

import seamline

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "totalsegmentator_ct_mr"
LABEL_MAP = {5: 1, 1: 2, 2: 3, 3: 3, 21: 4, 77: 5, 78: 5}
CLASSES = ["background", "liver", "spleen", "kidneys", "urinary bladder", "hips"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=30)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument("--figure", type=Path, default=None, help="save three slices of the prediction here (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    work = Path(args.out or tempfile.mkdtemp(prefix="seamline-organs-"))
    volume, segmentation = DATA / "example_ct.nii.gz", DATA / "example_seg_fast_force_split.nii.gz"
    config = {
        "data": {"image": os.fspath(volume), "labels": os.fspath(segmentation), "label_map": LABEL_MAP},
        "classes": CLASSES,
        "validation": None,
        "model": {"architecture": "core.UNet", "kwargs": {"widths": [8, 16, 32], "norm": "instance"}},
        "normalization": {"kind": "window", "low": -200, "high": 500},
        "patches": {"size": [64, 64, 48], "per_epoch": 32, "foreground_fraction": 0.66},
        "augment": {"flip": False, "rotate": False, "intensity": 0.05},
        "loss": {"kind": "dice_ce"},
        "optimizer": {"lr": 0.005, "schedule": "cosine", "warmup": 0.05},
        "training": {"epochs": args.epochs, "batch_size": 2, "seed": 0, "progress": False},
        "predict": {"tile_size": [64, 64, 48], "overlap": 0.25},
        "out": os.fspath(work / "run"),
    }
    started = time.perf_counter()
    result = seamline.train(config, overwrite=True)
    minutes = (time.perf_counter() - started) / 60

    from seamline.training.sampling import read_labels

    truth = read_labels(seamline.open(segmentation), label_map=LABEL_MAP, ignore_index=255)
    prediction = result.bundle.predict(seamline.open(volume), output="labels", progress=False)
    report = seamline.evaluate(prediction, truth, num_classes=len(CLASSES), boundary_tolerance=None)
    print(f"{'class':<20}{'voxels':>10}{'dice':>8}")
    for index, name in enumerate(CLASSES):
        row = report.per_class.iloc[index]
        print(f"{name:<20}{int(report.confusion[index].sum()):>10}{row['dice']:>8.3f}")
    foreground = report.per_class["dice"].iloc[1:]
    print(f"{'mean foreground Dice':<30}{foreground.mean():>8.3f}")
    print(f"{'final training loss':<30}{result.history[-1]['loss']:>8.3f}")
    print(f"{f'training minutes (CPU, {args.threads} thread)':<30}{minutes:>8.1f}")
    if args.figure:
        from seamline.show import write_preview

        title = f"A 3D U-Net on its training CT: mean foreground Dice {foreground.mean():.3f}"
        write_preview(
            prediction,
            args.figure,
            image=seamline.open(volume),
            truth=truth,
            truth_label="TotalSegmentator",
            title=title,
        )
        print(f"figure: {args.figure}")


if __name__ == "__main__":
    main()
