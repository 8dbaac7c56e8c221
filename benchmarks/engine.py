"""Benchmark the tiled inference engine against MONAI; prints one table of ratios from one run.

Every measurement runs in its own child process, so that its peak RSS
(``resource.getrusage``) is its own. Rows:

- seamline vs MONAI ``sliding_window_inference`` (same model, tiles, overlap, batch
  size, gaussian blending) on a 2D raster and a 3D volume that MONAI can hold: both read
  the input from the same Zarr store (MONAI all of it, seamline lazily, block by block)
  and leave the output on disk (MONAI: ``np.save`` of its in-memory result; seamline: a
  Zarr store written chunk by chunk). Both children import torch, MONAI and seamline, so
  their baselines are equal; the table gives the ratio of time, of peak RSS and of peak
  RSS above that import baseline.
- efficiency: time spent in the model alone on the same tiles (batched, pre-cut,
  ``inference_mode``, torch on all threads, in the memory layout the engine runs it in:
  channels-last for convolutional networks) divided by seamline's end-to-end time (input
  to Zarr store), with a U-Net-ResNet18 in 2D and a MONAI 3D U-Net; both in one process,
  alternated, best of two each.
- memory growth: peak RSS predicting a 16384^2 raster (768^3 volume) into Zarr labels
  over the peak for a 2048^2 raster (256^3 volume), with a small conv net.

The detail column also gives each side's CPU seconds (all threads), which tell a loaded
machine from a slow engine. Children run with glibc's default allocator settings, as a
user's process does. ``--trim`` runs them with ``MALLOC_TRIM_THRESHOLD_=65536`` (what
dask.distributed gives its workers): glibc then hands freed memory back at once, so RSS
measures the engine more than the allocator, at the price of time.

Usage::

    python benchmarks/engine.py           # full sizes (about 15 minutes on 2 cores)
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
    "unet3d": (1, 192, 192, 192),
    "small": 2048,
    "large": 16384,
    "small3d": 256,
    "large3d": 768,
}
QUICK = {
    "raster": (1, 2048, 2048),
    "volume": (1, 128, 128, 128),
    "unet": (3, 512, 512),
    "unet3d": (1, 96, 96, 96),
    "small": 1024,
    "large": 4096,
    "small3d": 64,
    "large3d": 192,
}


def _peak_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


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


def _unet3d(bands: int):
    import torch
    from monai.networks.nets import UNet

    torch.manual_seed(0)
    return UNet(3, bands, 2, channels=(16, 32, 64, 128), strides=(2, 2, 2), num_res_units=1).eval()


MODELS = {
    "small": lambda image: _small_net(image.ndim - 1, image.shape[0]),
    "unet": lambda image: _unet(image.shape[0]),
}
MODELS["unet3d"] = lambda image: _unet3d(image.shape[0])


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
    """Seconds spent in the model alone on seamline's tiles, cut and batched beforehand.

    The model runs as the engine runs it: in channels-last memory when it is convolutional.
    """
    import torch

    from seamline.devices import convolutional, placed
    from seamline.tiling import tile_grid

    ndim = image.ndim - 1
    grid = tile_grid(image.shape[1:], job["tile"], job["overlap"])
    tiles = [np.array(image[(slice(None), *grid.slices(i))]) for i in grid]
    batches = [torch.from_numpy(np.stack(tiles[i : i + job["batch"]])) for i in range(0, len(tiles), job["batch"])]
    if convolutional(model, ndim):
        placed(model, torch.device("cpu"), channels_last=True, ndim=ndim)  # a fresh model: never refused
        layout = torch.channels_last if ndim == 2 else torch.channels_last_3d
        batches = [batch.to(memory_format=layout) for batch in batches]
    with torch.inference_mode():
        start = time.perf_counter()
        for batch in batches:
            model(batch)
        return time.perf_counter() - start


def _timed(run, *args) -> tuple[float, float]:
    start, cpu = time.perf_counter(), _cpu()
    run(*args)
    return time.perf_counter() - start, _cpu() - cpu


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
        size, ndim = job["size"], job["ndim"]
        block = (1024,) * 2 if ndim == 2 else (128,) * 3
        image = da.random.default_rng(0).random((1, *(size,) * ndim), chunks=(1, *block), dtype=np.float32)
        model = _small_net(ndim, 1)
    else:
        image = zarr.open_array(job["input"], mode="r")
        model = MODELS[job["model"]](image)
    if job["kind"] == "efficiency":
        _run_model(image, model, job)  # warm-up: the first calls of a network are slow
        # alternate the two, best of two each, so that the machine's load hits both alike
        times = [(_run_model(image, model, job), _timed(_run_seamline, image, model, job)[0]) for _ in range(2)]
        return {"model_seconds": min(t[0] for t in times), "seconds": min(t[1] for t in times)}
    seconds, cpu = _timed(_run_monai if job["kind"] == "monai" else _run_seamline, image, model, job)
    return {"seconds": seconds, "cpu": cpu, "peak_mb": _peak_mb(), "baseline_mb": baseline}


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


def _versus_monai(rows: list, name: str, shape: tuple, job: dict, goals: dict) -> None:
    monai, ours = _measure({**job, "kind": "monai"}), _measure({**job, "kind": "seamline"})
    size = "x".join(map(str, shape[1:]))
    rows.append(
        (
            f"{name} {size} vs MONAI: time",
            ours["seconds"] / monai["seconds"],
            goals["time"],
            f"{ours['seconds']:.1f} s / {monai['seconds']:.1f} s (cpu {ours['cpu']:.0f} s / {monai['cpu']:.0f} s)",
        )
    )
    rows.append(
        (
            f"{name} {size} vs MONAI: peak RSS",
            ours["peak_mb"] / monai["peak_mb"],
            "",
            f"{ours['peak_mb']:.0f} MB / {monai['peak_mb']:.0f} MB",
        )
    )
    above = [r["peak_mb"] - r["baseline_mb"] for r in (ours, monai)]
    rows.append(
        (
            f"{name} {size} vs MONAI: peak above imports",
            above[0] / above[1],
            goals["above"],
            f"{above[0]:.0f} MB / {above[1]:.0f} MB",
        )
    )


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
    rows: list[tuple[str, float, str, str]] = []
    with tempfile.TemporaryDirectory() as tmp:
        rng = np.random.default_rng(0)
        common = {"threads": args.threads, "out": tmp, "overlap": 0.25, "batch": 4, "trim": args.trim}
        for name, tile, above in (("raster", 256, "<= 0.2"), ("volume", 64, "<= 0.3")):
            path = _write_input(f"{tmp}/{name}.zarr", rng.random(sizes[name], dtype=np.float32))
            job = {**common, "input": path, "tile": tile, "model": "small"}
            _versus_monai(rows, name, sizes[name], job, {"time": "<= 0.8", "above": above})
        for name, tile, goal, label in (
            ("unet", 256, ">= 0.93", "U-Net-ResNet18"),
            ("unet3d", 96, ">= 0.9", "MONAI 3D U-Net"),
        ):
            path = _write_input(f"{tmp}/{name}.zarr", rng.random(sizes[name], dtype=np.float32))
            batch = 4 if name == "unet" else 2
            figures = _measure(
                {**common, "kind": "efficiency", "input": path, "tile": tile, "model": name, "batch": batch}
            )
            shape = "x".join(map(str, sizes[name][1:]))
            rows.append(
                (
                    f"efficiency {label} {shape}",
                    figures["model_seconds"] / figures["seconds"],
                    goal,
                    f"{figures['model_seconds']:.1f} s model / {figures['seconds']:.1f} s end to end",
                )
            )
        for ndim, small, large, tile, goal in (
            (2, "small", "large", 512, "<= 1.3"),
            (3, "small3d", "large3d", 64, "<= 1.5"),
        ):
            growth = {"kind": "growth", **common, "tile": tile, "output": "labels", "ndim": ndim}
            low, high = (_measure({**growth, "size": sizes[k]}) for k in (small, large))
            power = "^2" if ndim == 2 else "^3"
            rows.append(
                (
                    f"memory growth {sizes[small]}{power} -> {sizes[large]}{power}",
                    high["peak_mb"] / low["peak_mb"],
                    goal,
                    f"{high['peak_mb']:.0f} MB / {low['peak_mb']:.0f} MB ({high['seconds']:.0f} s)",
                )
            )
    print(f"{'measure':<48} {'ratio':>7} {'goal':>7}  detail")
    for name, ratio, goal, detail in rows:
        print(f"{name:<48} {ratio:>7.2f} {goal:>7}  {detail}")


if __name__ == "__main__":
    main()
