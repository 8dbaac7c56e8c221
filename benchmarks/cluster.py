"""The engine's raster row on dask.distributed: speed-up from 1 to 2 worker processes, and what moves between them.

A raster (8192 x 8192, one band, in a Zarr store of 512 x 512 blocks) goes through a
small conv net (tiles of 256, overlap 0.25, batch 4) into a Zarr store, on a
``LocalCluster`` of 1 and then 2 worker processes with one thread each. For each run it
prints the time and, per worker, the bytes it fetched from the other workers, by kind of
key: the model (it should reach each worker once), the tile sums that neighbouring
output chunks share (``pieces``), input blocks (``from-zarr``), and anything else.
Markers that order the tasks carry no data.

Usage: ``python benchmarks/cluster.py [--size 8192] [--quick]``

(Not ``distributed.py``: run from this folder, that name would hide the dask.distributed package.)
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import numpy as np


def _net():
    import torch

    torch.manual_seed(0)
    conv = torch.nn.Conv2d
    return torch.nn.Sequential(conv(1, 4, 3, padding=1), torch.nn.ReLU(), conv(4, 2, 3, padding=1)).eval()


def _fetched(dask_worker) -> dict:
    """Bytes this worker fetched from other workers, by the first part of the key's name."""
    kinds: dict[str, int] = collections.Counter()
    for transfer in dask_worker.transfer_incoming_log:
        for key, size in transfer["keys"].items():
            name = key[0] if isinstance(key, tuple) else key
            kinds[str(name).rsplit("-", 1)[0]] += size
    return dict(kinds)


def run(path: Path, out: Path, workers: int) -> tuple[float, dict]:
    import dask
    import distributed

    import seamline

    with (
        dask.config.set({"distributed.admin.low-level-log-length": 10**6}),
        distributed.LocalCluster(
            n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0"
        ) as cluster,
        distributed.Client(cluster) as client,
    ):
        image = seamline.open(path)
        labels = seamline.predict(image, _net(), tile_size=256, overlap=0.25, batch_size=4, progress=False)
        start = time.perf_counter()
        seamline.save(labels, out, overwrite=True)
        seconds = time.perf_counter() - start
        return seconds, client.run(_fetched)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=8192)
    parser.add_argument("--quick", action="store_true", help="a 2048 x 2048 raster")
    args = parser.parse_args()
    import zarr

    size = 2048 if args.quick else args.size
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "raster.zarr"
        store = zarr.create_array(path, shape=(1, size, size), chunks=(1, 512, 512), dtype=np.float32)
        store[...] = np.random.default_rng(0).random((1, size, size), dtype=np.float32)
        times = {}
        for workers in (1, 2):
            seconds, fetched = run(path, Path(tmp) / f"out{workers}.zarr", workers)
            times[workers] = seconds
            print(f"{workers} worker{'s' if workers > 1 else ''}: {seconds:.1f} s")
            for address, kinds in sorted(fetched.items()):
                total = sum(kinds.values())
                detail = ", ".join(
                    f"{kind} {b / 2**20:.1f} MB" for kind, b in sorted(kinds.items(), key=lambda kv: -kv[1])
                )
                print(
                    f"  {address} fetched {total / 2**20:.1f} MB from other workers" + (f": {detail}" if detail else "")
                )
        raster = size * size * 4 / 2**20
        print(
            f"raster {size}x{size} ({raster:.0f} MB of input): speed-up from 1 to 2 workers {times[1] / times[2]:.2f}x"
        )


if __name__ == "__main__":
    main()
