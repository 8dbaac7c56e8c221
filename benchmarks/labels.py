"""Chunked connected components: seamline.label vs dask-image's ndmeasure.label and whole-image scipy.

A mask of smoothed noise (many components, some winding through many chunks) is saved
once as ``.npy``; each child process loads it and labels it one way, so that its peak
RSS is its own:

- **scipy**: ``scipy.ndimage.label`` on the whole mask (one thread; needs the mask and
  its labels in memory at once);
- **dask-image**: ``dask_image.ndmeasure.label`` on the mask in chunks, the labels then
  stored into one array (the chunked anchor);
- **seamline**: ``seamline.label`` on the same chunks, stored the same way.

Both chunked tools run on dask's threaded scheduler with N threads. Each checks that its
component count is scipy's. The table gives each time ratio (goals: at most 1.0x
dask-image, at most 1.5x scipy) and the peak RSS above the loaded mask (sampled, see
``_rss.py``). A child that runs past ``--timeout`` seconds is reported as such (dask-image grows fast with the number
of components).

Usage: ``python benchmarks/labels.py [--sizes 8192 16384] [--chunk 1024] [--workers 2]``
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from _rss import PeakRSS


def make_mask(path: Path, size: int, seed: int = 0) -> None:
    """A size x size boolean mask: coarse smoothed noise plus fine noise, thresholded at 60%."""
    import scipy.ndimage as ndi

    rng = np.random.default_rng(seed)
    noise = rng.normal(size=(size // 8, size // 8)).astype(np.float32)
    field = ndi.zoom(ndi.gaussian_filter(noise, 1.5), 8, order=1)
    field += ndi.gaussian_filter(rng.normal(size=(size, size)).astype(np.float32), 2) * 0.6
    np.save(path, field > np.quantile(field[::16, ::16], 0.6))


def child(tool: str, path: str, chunk: int, workers: int) -> dict:
    """Label the mask with *tool* in this process; report time, count and peak RSS above the imports."""
    import dask
    import dask.array as da
    import scipy.ndimage as ndi

    if tool == "dask-image":
        from dask_image import ndmeasure
    if tool == "seamline":
        import seamline
    mask = np.load(path)
    start = time.perf_counter()
    with PeakRSS() as memory:
        if tool == "scipy":
            labels, count = ndi.label(mask)
        else:
            chunked = da.from_array(mask, chunks=chunk, name=False)
            with dask.config.set(scheduler="threads", num_workers=workers):
                labeled, count = (ndmeasure.label if tool == "dask-image" else seamline.label)(chunked)
                count = int(count.compute() if hasattr(count, "compute") else count)
                labels = np.empty(labeled.shape, labeled.dtype)
                da.store(labeled, labels, lock=False)
    seconds = time.perf_counter() - start
    return {"seconds": seconds, "count": int(count), "above_mb": memory.above_mb}


def measure(tool: str, path: Path, chunk: int, workers: int, timeout: float) -> dict | None:
    args = [sys.executable, __file__, "--child", tool, "--path", str(path), "--chunk", str(chunk)]
    try:
        done = subprocess.run(
            [*args, "--workers", str(workers)], check=True, capture_output=True, text=True, timeout=timeout
        )
    except subprocess.TimeoutExpired:
        return None
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[8192, 16384])
    parser.add_argument("--chunk", type=int, default=1024)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before a child is given up")
    parser.add_argument("--child", choices=["scipy", "dask-image", "seamline"])
    parser.add_argument("--path")
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.path, args.chunk, args.workers)))
        return
    print(f"chunks {args.chunk}, {args.workers} threads for the chunked tools")
    print(f"{'measure':<44}{'ratio':>8}{'goal':>9}  detail")
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            path = Path(tmp) / f"mask{size}.npy"
            make_mask(path, size)
            runs = {
                tool: measure(tool, path, args.chunk, args.workers, args.timeout)
                for tool in ("scipy", "dask-image", "seamline")
            }
            ours, scipy = runs["seamline"], runs["scipy"]
            assert ours is not None and scipy is not None and ours["count"] == scipy["count"], runs
            for tool, goal in (("dask-image", "<= 1.0"), ("scipy", "<= 1.5")):
                other = runs[tool]
                if other is None:
                    print(
                        f"{f'label {size}^2 vs {tool}: time':<44}{'':>8}{goal:>9}  {tool} ran past {args.timeout:.0f} s"
                    )
                    continue
                assert other["count"] == scipy["count"], (tool, other["count"], scipy["count"])
                print(
                    f"{f'label {size}^2 vs {tool}: time':<44}{ours['seconds'] / other['seconds']:>8.2f}{goal:>9}  "
                    f"{ours['seconds']:.2f} s / {other['seconds']:.2f} s; peak above imports "
                    f"{ours['above_mb']:.0f} MB / {other['above_mb']:.0f} MB ({scipy['count']} components)"
                )
            os.remove(path)


if __name__ == "__main__":
    main()
