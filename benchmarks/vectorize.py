"""Tiled vectorizing vs whole-image ``rasterio.features.shapes`` on a large multi-class mask.

Writes a synthetic multi-class label raster (smoothed noise cut into classes: many
components, holes, components spanning many chunks) as a tiled GeoTIFF, then vectorizes
it twice, each in its own child process so that peak memory is measured cleanly:

- **whole image**: read the raster, ``rasterio.features.shapes`` over it, shapely polygons;
- **seamline**: ``seamline.vectorize(seamline.open(path, chunks=...))`` on dask with
  N worker threads.

It checks that both give identical polygons (normalized WKB and class, compared through
per-polygon digests) and prints the time ratio (goal <= 1.0 with 2 workers) and the
peak-memory ratio (goal <= 0.5), both as whole-process peaks and as growth over the
process's memory after imports.

Usage: ``python benchmarks/vectorize.py [--size 8192] [--chunk 1024] [--workers 2]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def rss_mb() -> float:
    """Current resident memory of this process, in MB."""
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def peak_mb() -> float:
    """Peak resident memory of this process so far, in MB."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def make_mask(path: Path, size: int, classes: int, seed: int = 0) -> None:
    """Write a size x size multi-class mask as a tiled, compressed GeoTIFF, one strip of tiles at a time."""
    import rasterio
    import scipy.ndimage as ndi
    from affine import Affine

    rng = np.random.default_rng(seed)
    profile = {
        "driver": "GTiff",
        "height": size,
        "width": size,
        "count": 1,
        "dtype": "uint8",
        "crs": "EPSG:32645",
        "transform": Affine(10.0, 0.0, 400000.0, 0.0, -10.0, 3200000.0),
        "tiled": True,
        "blockxsize": 512,
        "blockysize": 512,
        "compress": "deflate",
    }
    noise = rng.normal(size=(size // 8, size // 8)).astype(np.float32)
    field = ndi.zoom(ndi.gaussian_filter(noise, 1.5), 8, order=1)
    field += ndi.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 2) * 0.6
    cuts = np.quantile(field[::16, ::16], np.linspace(0, 1, classes + 1)[1:-1])
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.digitize(field, cuts).astype(np.uint8)[None])


def digests(classes: np.ndarray, geometries: np.ndarray) -> np.ndarray:
    """Sorted 64-bit digests of (class, normalized WKB), one per polygon."""
    import shapely

    wkbs = shapely.to_wkb(shapely.normalize(geometries))
    out = [
        int.from_bytes(hashlib.blake2b(int(c).to_bytes(4, "little") + w, digest_size=8).digest(), "little")
        for c, w in zip(classes, wkbs, strict=True)
    ]
    return np.sort(np.array(out, dtype=np.uint64))


def run_whole(path: str) -> tuple[np.ndarray, np.ndarray]:
    import rasterio
    import rasterio.features
    import shapely.geometry

    with rasterio.open(path) as ds:
        array, transform = ds.read(1), ds.transform
    pairs = [
        (int(v), shapely.geometry.shape(g))
        for g, v in rasterio.features.shapes(array, mask=array != 0, transform=transform)
    ]
    return np.array([c for c, _ in pairs]), np.array([g for _, g in pairs], dtype=object)


def run_tiled(path: str, chunk: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    import dask

    import seamline

    with dask.config.set(scheduler="threads", num_workers=workers):
        frame = seamline.vectorize(seamline.open(path, chunks=chunk))
    return frame["class_id"].to_numpy(), frame.geometry.to_numpy()


def child(mode: str, path: str, out: str, chunk: int, workers: int) -> None:
    """Run one side in this (child) process and report time and memory as JSON on stdout."""
    if mode == "whole":
        import rasterio.features  # noqa: F401 - imports are not timed
        import shapely  # noqa: F401
    else:
        import seamline

        seamline.plugins.registry("readers")
    baseline = rss_mb()
    start = time.perf_counter()
    classes, geometries = run_whole(path) if mode == "whole" else run_tiled(path, chunk, workers)
    seconds = time.perf_counter() - start
    peak = peak_mb()
    np.save(out, digests(classes, geometries))
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "baseline_mb": baseline, "polygons": len(geometries)}))


def measure(mode: str, path: Path, chunk: int, workers: int, folder: Path) -> dict:
    out = folder / f"{mode}.npy"
    args = [sys.executable, __file__, "--child", mode, "--path", str(path), "--out", str(out)]
    args += ["--chunk", str(chunk), "--workers", str(workers)]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["digests"] = np.load(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--child", choices=["whole", "tiled"])
    parser.add_argument("--path")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.out, args.chunk, args.workers)
        return
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        path = folder / "mask.tif"
        make_mask(path, args.size, args.classes)
        whole = measure("whole", path, args.chunk, args.workers, folder)
        tiled = measure("tiled", path, args.chunk, args.workers, folder)
    identical = np.array_equal(whole["digests"], tiled["digests"])
    grow_whole = whole["peak_mb"] - whole["baseline_mb"]
    grow_tiled = tiled["peak_mb"] - tiled["baseline_mb"]
    print(
        f"mask {args.size}x{args.size}, {args.classes} classes (0 = background), chunks {args.chunk}, "
        f"{args.workers} workers, {whole['polygons']} polygons"
    )
    print(f"{'':28}{'whole image':>14}{'seamline':>14}{'ratio':>10}{'goal':>9}")
    print(
        f"{'time (s)':28}{whole['seconds']:14.2f}{tiled['seconds']:14.2f}"
        f"{tiled['seconds'] / whole['seconds']:10.2f}{'<= 1.0':>9}"
    )
    print(
        f"{'peak RSS (MB)':28}{whole['peak_mb']:14.0f}{tiled['peak_mb']:14.0f}"
        f"{tiled['peak_mb'] / whole['peak_mb']:10.2f}{'<= 0.5':>9}"
    )
    print(f"{'peak RSS over imports (MB)':28}{grow_whole:14.0f}{grow_tiled:14.0f}{grow_tiled / grow_whole:10.2f}")
    print(f"identical polygons: {identical} ({len(tiled['digests'])} vs {len(whole['digests'])})")


if __name__ == "__main__":
    main()
