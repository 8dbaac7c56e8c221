"""Tiled vectorizing vs whole-image ``rasterio.features.shapes`` on large multi-class masks.

For each size, writes a synthetic multi-class label raster (smoothed noise cut into
classes: many components, holes, components spanning many chunks) as a tiled GeoTIFF,
then vectorizes it four ways, each in its own child process so that peak memory is
measured cleanly:

- **whole image, in memory**: read the raster, ``rasterio.features.shapes`` over it,
  shapely polygons (what a user would write);
- **whole image, to a file**: the same, then a GeoDataFrame written to GeoParquet;
- **seamline, in memory**: ``seamline.vectorize(seamline.open(path, chunks=...))`` on
  dask with N threads (one sorted GeoDataFrame);
- **seamline, to a file**: ``seamline.vectorize_batches`` streamed to GeoParquet by
  ``write_polygon_batches``, a group of chunks at a time.

It checks that all give identical polygons (normalized WKB and class, compared through
per-polygon digests; the files are read back after the peak is taken) and prints time
ratios (goal <= 0.6) and peak-RSS ratios (goal <= 0.5, streaming to a file), both as
whole-process peaks and as growth over the process's memory after imports.

GDAL's polygonize holds the GIL, so on dask's threaded scheduler chunks are traced one at
a time; ``--scheduler processes`` traces them in parallel worker processes.

Usage: ``python benchmarks/vectorize.py [--sizes 8192 16384] [--chunk 1024] [--workers 2]``
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rss import PeakRSS


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


def run_whole(path: str, target: str | None) -> tuple[np.ndarray, np.ndarray] | None:
    import geopandas as gpd
    import rasterio
    import rasterio.features
    import shapely.geometry

    with rasterio.open(path) as ds:
        array, transform, crs = ds.read(1), ds.transform, ds.crs
    pairs = [
        (int(v), shapely.geometry.shape(g))
        for g, v in rasterio.features.shapes(array, mask=array != 0, transform=transform)
    ]
    classes, geometries = np.array([c for c, _ in pairs]), np.array([g for _, g in pairs], dtype=object)
    if target is None:
        return classes, geometries
    del pairs, array
    gpd.GeoDataFrame({"class_id": classes}, geometry=geometries, crs=crs).to_parquet(target)
    return None


def run_tiled(path: str, target: str | None, chunk: int, workers: int, scheduler: str) -> tuple | None:
    import dask

    import seamline
    from seamline_geo.polygons import write_polygon_batches

    with dask.config.set(scheduler=scheduler, num_workers=workers):
        if target is not None:
            write_polygon_batches(seamline.vectorize_batches(seamline.open(path, chunks=chunk)), target)
            return None
        frame = seamline.vectorize(seamline.open(path, chunks=chunk))
    return frame["class_id"].to_numpy(), frame.geometry.to_numpy()


def child(mode: str, path: str, out: str, chunk: int, workers: int, scheduler: str) -> None:
    """Run one way in this (child) process and report time and memory as JSON on stdout."""
    import geopandas as gpd

    if mode.startswith("whole"):
        import rasterio.features  # noqa: F401 - imports are not timed
        import shapely  # noqa: F401
    else:
        import seamline

        seamline.plugins.registry("readers")
        seamline.plugins.registry("writers")
    target = out + ".parquet" if mode.endswith("file") else None
    start = time.perf_counter()
    with PeakRSS() as memory:
        run = (
            run_whole(path, target) if mode.startswith("whole") else run_tiled(path, target, chunk, workers, scheduler)
        )
    seconds = time.perf_counter() - start
    baseline, peak = memory.baseline_mb, memory.peak_mb
    if run is None:  # read the file back, after the peak was taken
        frame = gpd.read_parquet(target)
        run = frame["class_id"].to_numpy(), frame.geometry.to_numpy()
    classes, geometries = run
    np.save(out, digests(classes, geometries))
    print(json.dumps({"seconds": seconds, "peak_mb": peak, "baseline_mb": baseline, "polygons": len(geometries)}))


MODES = ("whole", "whole-file", "tiled", "tiled-file")


def measure(mode: str, path: Path, folder: Path, options: argparse.Namespace) -> dict:
    out = folder / f"{mode}.npy"
    args = [sys.executable, __file__, "--child", mode, "--path", str(path), "--out", str(out)]
    args += ["--chunk", str(options.chunk), "--workers", str(options.workers), "--scheduler", options.scheduler]
    done = subprocess.run(args, check=True, capture_output=True, text=True)
    result = json.loads(done.stdout.strip().splitlines()[-1])
    result["digests"] = np.load(out)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--classes", type=int, default=5)
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--scheduler", choices=["threads", "processes"], default="threads")
    parser.add_argument("--child", choices=MODES)
    parser.add_argument("--path")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.child:
        child(args.child, args.path, args.out, args.chunk, args.workers, args.scheduler)
        return
    print(f"{args.classes} classes (0 = background), chunks {args.chunk}, {args.workers} {args.scheduler}")
    print(f"{'measure':<46}{'ratio':>7}{'goal':>8}  detail")
    for size in args.sizes:
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            path = folder / "mask.tif"
            make_mask(path, size, args.classes)
            runs = {mode: measure(mode, path, folder, args) for mode in MODES}
        whole = runs["whole"]
        for mode in MODES[1:]:
            assert np.array_equal(runs[mode]["digests"], whole["digests"]), f"{mode}: polygons differ"
        for target, ours, theirs in (("in memory", "tiled", "whole"), ("to GeoParquet", "tiled-file", "whole-file")):
            a, b = runs[ours], runs[theirs]
            grow = [r["peak_mb"] - r["baseline_mb"] for r in (a, b)]
            name = f"vectorize {size}^2 {target}"
            print(
                f"{name + ': time':<46}{a['seconds'] / b['seconds']:>7.2f}{'<= 0.6':>8}  "
                f"{a['seconds']:.1f} s / {b['seconds']:.1f} s ({whole['polygons']} polygons, identical)"
            )
            print(
                f"{name + ': peak RSS':<46}{a['peak_mb'] / b['peak_mb']:>7.2f}"
                f"{'<= 0.5' if target != 'in memory' else '':>8}  "
                f"{a['peak_mb']:.0f} MB / {b['peak_mb']:.0f} MB; above imports {grow[0]:.0f} MB / {grow[1]:.0f} MB"
            )


if __name__ == "__main__":
    main()
