"""Benchmark the tiled inference engine; prints one table of ratios.

Every measurement runs in its own child process, so that its peak RSS
(``resource.getrusage``) is its own. Rows:

- seamline vs MONAI ``sliding_window_inference`` (same model, tiles, overlap, batch
  size, gaussian blending) on a 2D raster and a 3D volume that MONAI can hold: both read
  the input from the same Zarr store (MONAI all of it, seamline lazily, block by block)
  and leave the output on disk (MONAI: ``np.save`` of its in-memory result; seamline: a
  Zarr store written chunk by chunk). Both children
  import torch, MONAI and seamline, so their baselines are equal; the table gives the
  ratio of peak RSS and of peak RSS above that import baseline.
- efficiency: time spent in the model alone on the same tiles (batched, pre-cut,
  ``inference_mode``) divided by seamline's end-to-end time (input to Zarr store), with
  a U-Net-ResNet18; both in one process, alternated, best of two each.
- memory growth: peak RSS predicting a 16384x16384 single-band raster into Zarr over
  the peak for a 2048x2048 one, with a small conv net.

Children run with glibc's default allocator settings, as a user's process does.
``--trim`` runs them with ``MALLOC_TRIM_THRESHOLD_=65536`` (what dask.distributed gives its
workers): glibc then hands freed memory back at once, so RSS measures the engine more than
the allocator, at the price of time (seamline's 8192^2 raster took 2.4x as long with it).

Usage::

    python benchmarks/engine.py           # full sizes (several minutes on 2 cores)
    python benchmarks/engine.py --quick   # small sizes, a smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

FULL = {
    "raster": (1, 8192, 8192),
    "volume": (1, 448, 448, 448),
    "unet": (3, 1536, 1536),
    "small": 2048,
    "large": 16384,
}
QUICK = {
    "raster": (1, 2048, 2048),
    "volume": (1, 128, 128, 128),
    "unet": (3, 512, 512),
    "small": 1024,
    "large": 4096,
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _small_net(ndim: int, bands: int):
    import torch

    conv = torch.nn.Conv2d if ndim == 2 else torch.nn.Conv3d
    torch.manual_seed(0)
    return torch.nn.Sequential(conv(bands, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 2, 3, padding=1)).eval()


def _unet(bands: int):
    import segmentation_models_pytorch as smp
    import torch

    torch.manual_seed(0)
    return smp.Unet(encoder_name="resnet18", encoder_weights=None, in_channels=bands, classes=2).eval()


def _run_monai(image, model, job: dict) -> None:
    import monai.inferers
    import torch

    with torch.inference_mode():
        result = monai.inferers.sliding_window_inference(
            torch.from_numpy(np.array(image))[None],
            job["tile"],
            job["batch"],
            model,
            overlap=job["overlap"],
            mode="gaussian",
        )
    np.save(Path(job["out"]) / "monai.npy", result[0].numpy())


def _run_seamline(image, model, job: dict) -> None:
    import dask
    import dask.array as da

    import seamline

    if not isinstance(image, da.Array):  # a Zarr array: seamline opens the same store lazily
        image = seamline.open(job["input"])
    result = seamline.predict(
        image,
        model,
        tile_size=job["tile"],
        overlap=job["overlap"],
        batch_size=job["batch"],
        progress=False,
        output=job.get("output", "scores"),
    )
    with dask.config.set(scheduler="threads", num_workers=job["threads"]):
        seamline.save(result, Path(job["out"]) / "seamline.zarr", overwrite=True)


def _run_model(image, model, job: dict) -> float:
    """Seconds spent in the model alone on seamline's tiles, cut and batched beforehand."""
    import torch

    from seamline.tiling import tile_grid

    grid = tile_grid(image.shape[1:], job["tile"], job["overlap"])
    tiles = [np.array(image[(slice(None), *grid.slices(i))]) for i in grid]
    batches = [torch.from_numpy(np.stack(tiles[i : i + job["batch"]])) for i in range(0, len(tiles), job["batch"])]
    with torch.inference_mode():
        start = time.perf_counter()
        for batch in batches:
            model(batch)
        return time.perf_counter() - start


def _timed(run, *args) -> float:
    start = time.perf_counter()
    run(*args)
    return time.perf_counter() - start


def _child(job: dict) -> dict:
    """Run one measurement in this (child) process and return its figures."""
    import torch

    torch.set_num_threads(job["threads"])
    import dask.array as da
    import monai.inferers  # noqa: F401  (both children carry the same imports)
    import zarr

    import seamline  # noqa: F401

    baseline = _peak_mb()
    if job["kind"] == "growth":
        size = job["size"]
        image = da.random.default_rng(0).random((1, size, size), chunks=(1, 1024, 1024), dtype=np.float32)
        model = _small_net(2, 1)
    else:
        image = zarr.open_array(job["input"], mode="r")
        model = _unet(image.shape[0]) if job["model"] == "unet" else _small_net(image.ndim - 1, image.shape[0])
    if job["kind"] == "efficiency":
        _run_model(image, model, job)  # warm-up: the first calls of a network are slow
        # alternate the two, best of two each, so that the machine's load hits both alike
        times = [(_run_model(image, model, job), _timed(_run_seamline, image, model, job)) for _ in range(2)]
        return {"model_seconds": min(t[0] for t in times), "seconds": min(t[1] for t in times)}
    seconds = _timed(_run_monai if job["kind"] == "monai" else _run_seamline, image, model, job)
    return {"seconds": seconds, "peak_mb": _peak_mb(), "baseline_mb": baseline}


def _write_input(path: str, array: np.ndarray) -> str:
    """Store *array* as a Zarr array in blocks of 512 x 512 (2D) or 128^3 (3D)."""
    import zarr

    block = 512 if array.ndim == 3 else 128
    store = zarr.create_array(
        path, shape=array.shape, chunks=(array.shape[0], *(block,) * (array.ndim - 1)), dtype=array.dtype
    )
    store[...] = array
    return path


def _measure(job: dict) -> dict:
    env = {**os.environ, **({"MALLOC_TRIM_THRESHOLD_": "65536"} if job["trim"] else {})}
    done = subprocess.run(
        [sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True, check=False, env=env
    )
    if done.returncode != 0:
        raise RuntimeError(f"child {job['kind']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--threads", type=int, default=2, help="torch and dask threads (default 2)")
    parser.add_argument("--trim", action="store_true", help="children return freed memory at once (slower)")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(_child(json.loads(args.child))))
        return
    sizes = QUICK if args.quick else FULL
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        common = {"threads": args.threads, "out": tmp, "overlap": 0.25, "batch": 4, "trim": args.trim}
        for name, tile in (("raster", 256), ("volume", 64)):
            path = _write_input(f"{tmp}/{name}.zarr", rng.random(sizes[name], dtype=np.float32))
            job = {**common, "input": path, "tile": tile, "model": "small"}
            monai, ours = _measure({**job, "kind": "monai"}), _measure({**job, "kind": "seamline"})
            shape = "x".join(map(str, sizes[name][1:]))
            rows.append(
                (
                    f"{name} {shape} vs MONAI: time",
                    ours["seconds"] / monai["seconds"],
                    "<= 1.0",
                    f"{ours['seconds']:.1f} s / {monai['seconds']:.1f} s",
                )
            )
            rows.append(
                (
                    f"{name} {shape} vs MONAI: peak RSS",
                    ours["peak_mb"] / monai["peak_mb"],
                    "<= 0.5",
                    f"{ours['peak_mb']:.0f} MB / {monai['peak_mb']:.0f} MB",
                )
            )
            above = [r["peak_mb"] - r["baseline_mb"] for r in (ours, monai)]
            rows.append(
                (
                    f"{name} {shape} vs MONAI: peak above imports",
                    above[0] / above[1],
                    "<= 0.5",
                    f"{above[0]:.0f} MB / {above[1]:.0f} MB",
                )
            )
        path = _write_input(f"{tmp}/unet.zarr", rng.random(sizes["unet"], dtype=np.float32))
        job = {**common, "input": path, "tile": 256, "model": "unet"}
        figures = _measure({**job, "kind": "efficiency"})
        shape = "x".join(map(str, sizes["unet"][1:]))
        rows.append(
            (
                f"efficiency U-Net-ResNet18 {shape}",
                figures["model_seconds"] / figures["seconds"],
                ">= 0.9",
                f"{figures['model_seconds']:.1f} s model / {figures['seconds']:.1f} s end to end",
            )
        )
        growth = {"kind": "growth", **common, "tile": 512, "output": "labels"}
        small, large = (_measure({**growth, "size": sizes[k]}) for k in ("small", "large"))
        rows.append(
            (
                f"memory growth {sizes['small']}^2 -> {sizes['large']}^2",
                large["peak_mb"] / small["peak_mb"],
                "<= 1.5",
                f"{large['peak_mb']:.0f} MB / {small['peak_mb']:.0f} MB ({large['seconds']:.0f} s)",
            )
        )
    print(f"{'measure':<48} {'ratio':>7} {'goal':>7}  detail")
    for name, ratio, goal, detail in rows:
        print(f"{name:<48} {ratio:>7.2f} {goal:>7}  {detail}")


if __name__ == "__main__":
    main()
