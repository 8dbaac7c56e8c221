"""Benchmark an nnU-Net v2 model folder: nnU-Net's own predictor vs seamline, on the CPU.

Both run the same checkpoint on the same synthetic CT-like volume, file to file, each in
its own child process (peak RSS sampled, see ``_rss.py``; time from reading the input
to the written labels):

- nnU-Net: ``nnUNetPredictor.predict_from_files_sequential`` (SimpleITK reading, its
  preprocessing, sliding window, and its export, which resamples the whole
  ``(classes x volume)`` logits at once and is what runs out of memory on large volumes);
- seamline: ``seamline.load_model(folder).predict(image, output="labels")`` saved with
  ``seamline.save``, lazily, block by block.

The volume is a body with organs, bone, lungs and noise at ``--spacing`` mm; the network
(the small test network of ``tests/medical/nnunet_folders.py``, with decoy classes added
to reach ``--classes``) runs at ``--network-spacing`` mm. The table gives the ratios
(goal: peak RSS <= 0.3x, time <= 1.0x) and the label agreement (goal: >= 99.9 %, every
differing voxel on a label boundary).

Usage::

    python benchmarks/foreign_models.py                      # 512x512x600 at 0.8 mm, 16 classes
    python benchmarks/foreign_models.py --size 128,128,150   # a smoke run, seconds
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rss import PeakRSS

ROOT = Path(__file__).resolve().parents[1]


def synthetic_ct(shape: tuple[int, int, int], spacing: float, seed: int = 0) -> np.ndarray:
    """A CT-like int16 volume (i, j, k in RAS): air, a body, organs, a spine, lungs, noise."""
    rng = np.random.default_rng(seed)
    volume = np.full(shape, -1000, np.int16)
    x = (np.arange(shape[0]) - shape[0] / 2) * spacing
    y = (np.arange(shape[1]) - shape[1] / 2) * spacing
    half = 0.5 * min(shape[0], shape[1]) * spacing
    organs = [  # (centre x, y as a fraction of the body's half-width, z fraction, radii fractions, HU)
        ((-0.35, 0.1, 0.45), (0.35, 0.3, 0.2), 60),  # liver
        ((0.45, -0.05, 0.5), (0.15, 0.12, 0.1), 45),  # spleen
        ((-0.3, -0.35, 0.35), (0.1, 0.08, 0.1), 150),  # kidneys
        ((0.3, -0.35, 0.35), (0.1, 0.08, 0.1), 150),
        ((0.2, 0.2, 0.5), (0.18, 0.12, 0.08), 20),  # stomach
        ((-0.35, 0.0, 0.85), (0.3, 0.35, 0.2), -850),  # lungs
        ((0.35, 0.0, 0.85), (0.3, 0.35, 0.2), -850),
    ]
    for k in range(shape[2]):
        z = k / shape[2]
        plane = np.full(shape[:2], -1000, np.float32)
        body = (x[:, None] / (0.85 * half)) ** 2 + (y[None, :] / (0.6 * half)) ** 2 <= 1
        plane[body] = 40
        for (cx, cy, cz), (rx, ry, rz), hu in organs:
            dz = (z - cz) / rz
            if abs(dz) >= 1:
                continue
            scale = np.sqrt(1 - dz**2)
            inside = ((x[:, None] / half - cx) / (rx * scale)) ** 2 + ((y[None, :] / half - cy) / (ry * scale)) ** 2
            plane[inside <= 1] = hu
        spine = (x[:, None] / half) ** 2 + ((y[None, :] / half + 0.45) / 1.0) ** 2 <= 0.08**2
        plane[spine] = 700
        plane += rng.normal(0, 20, shape[:2]).astype(np.float32) * body
        volume[..., k] = np.clip(plane, -1024, 3000).astype(np.int16)
    return volume


def _run_nnunet(job: dict) -> None:
    import torch
    from nnunetv2.inference.predict_from_raw_data import nnUNetPredictor

    predictor = nnUNetPredictor(
        tile_step_size=0.5,
        use_mirroring=job["mirror"],
        perform_everything_on_device=False,
        device=torch.device("cpu"),
        allow_tqdm=False,
    )
    predictor.initialize_from_trained_model_folder(job["folder"], None, "checkpoint_final.pth")
    predictor.predict_from_files_sequential([[job["input"]]], [job["output"]], False, True, None)


def _run_seamline(job: dict) -> None:
    import seamline

    bundle = seamline.load_model(job["folder"], mirror=job["mirror"])
    labels = bundle.predict(seamline.open(job["input"]), output="labels", progress=False)
    seamline.save(labels, job["output"] + ".nii.gz", overwrite=True)


def _child(job: dict) -> dict:
    import dask
    import nnunetv2.inference.predict_from_raw_data  # noqa: F401  (both children carry the same imports)
    import torch

    import seamline  # noqa: F401

    torch.set_num_threads(job["threads"])
    dask.config.set(num_workers=job["threads"])
    start = time.perf_counter()
    with PeakRSS() as memory:
        (_run_nnunet if job["kind"] == "nnunet" else _run_seamline)(job)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "peak_mb": memory.peak_mb, "baseline_mb": memory.baseline_mb}


def _measure(job: dict) -> dict:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT / "core"), str(ROOT / "plugins"), str(ROOT)])}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {job['kind']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _agreement(ours: np.ndarray, theirs: np.ndarray) -> tuple[float, int]:
    """The fraction of equal labels, and how many differing voxels lie away from every label boundary."""
    from scipy import ndimage

    differ = ours != theirs
    boundary = np.zeros(ours.shape, bool)
    for labels in (ours, theirs):
        boundary |= ndimage.maximum_filter(labels, size=3) != ndimage.minimum_filter(labels, size=3)
    return 1 - float(differ.mean()), int((differ & ~boundary).sum())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="512,512,600", help="voxels i,j,k (default 512,512,600)")
    parser.add_argument("--spacing", type=float, default=0.8, help="input voxel size in mm (default 0.8)")
    parser.add_argument("--network-spacing", type=float, default=1.5, help="the network's mm (default 1.5)")
    parser.add_argument("--classes", type=int, default=16, help="output classes, at least 9 (default 16)")
    parser.add_argument("--patch", type=int, default=128, help="patch size per axis (default 128)")
    parser.add_argument("--mirror", action="store_true", help="test-time mirroring in both (8x the network)")
    parser.add_argument("--threads", type=int, default=2, help="torch and dask threads (default 2)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    sys.path.insert(0, str(ROOT))
    import nibabel as nib

    from tests.medical import nnunet_folders

    shape = tuple(int(s) for s in args.size.split(","))
    with tempfile.TemporaryDirectory() as tmp:
        spacing = (args.network_spacing,) * 3
        with contextlib.redirect_stdout(io.StringIO()):  # nnU-Net's trainer greets
            folder = nnunet_folders.write_folder(
                Path(tmp) / "Dataset902_Synthetic" / "nnUNetTrainer__nnUNetPlans__3d_fullres",
                plans_data=nnunet_folders.plans(spacing=spacing, patch=(args.patch,) * 3),
                dataset_data=nnunet_folders.dataset(decoys=args.classes - len(nnunet_folders.CLASSES)),
                decoys=args.classes - len(nnunet_folders.CLASSES),
            )
        ct = f"{tmp}/ct.nii.gz"
        nib.save(nib.Nifti1Image(synthetic_ct(shape, args.spacing), np.diag([args.spacing] * 3 + [1.0])), ct)
        job = {"folder": str(folder), "input": ct, "threads": args.threads, "mirror": args.mirror}
        theirs = _measure({**job, "kind": "nnunet", "output": f"{tmp}/nnunet"})
        ours = _measure({**job, "kind": "seamline", "output": f"{tmp}/seamline"})
        agree, away = _agreement(
            np.asarray(nib.load(f"{tmp}/seamline.nii.gz").dataobj), np.asarray(nib.load(f"{tmp}/nnunet.nii.gz").dataobj)
        )
    above = [r["peak_mb"] - r["baseline_mb"] for r in (ours, theirs)]
    size = "x".join(map(str, shape))
    seconds, peaks = (ours["seconds"], theirs["seconds"]), (ours["peak_mb"], theirs["peak_mb"])
    rows = [
        ("time", seconds[0] / seconds[1], "<= 1.0", f"{seconds[0]:.1f} s / {seconds[1]:.1f} s"),
        ("peak RSS", peaks[0] / peaks[1], "<= 0.3", f"{peaks[0]:.0f} MB / {peaks[1]:.0f} MB"),
        ("peak RSS above imports", above[0] / above[1], "", f"{above[0]:.0f} MB / {above[1]:.0f} MB"),
        ("labels equal", agree, ">= 0.999", f"{away} differing voxels off every boundary (goal 0)"),
    ]
    print(f"nnU-Net folder, {size} at {args.spacing} mm -> {args.network_spacing} mm, {args.classes} classes, "
          f"patch {args.patch}, mirroring {'on' if args.mirror else 'off'}, {args.threads} threads")  # fmt: skip
    print(f"{'seamline vs nnU-Net':<28} {'ratio':>7} {'goal':>9}  detail")
    for name, ratio, goal, detail in rows:
        print(f"{name:<28} {ratio:>7.3f} {goal:>9}  {detail}")


if __name__ == "__main__":
    main()
