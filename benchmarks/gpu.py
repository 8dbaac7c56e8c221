"""The engine on one GPU against MONAI's sliding window: a Sentinel-2 scene and a CT volume.

Two rows, each measured for seamline and for MONAI in child processes of their own:

- **scene**: a Sentinel-2-sized scene (10980 x 10980, 4 bands, synthetic values made
  lazily block by block) through an smp U-Net-ResNet34 with mixed precision, streamed
  into a Cloud-Optimized GeoTIFF of labels (``seamline.save(..., cog=True)``);
- **volume**: a CT-sized volume (512 x 512 x 600, one channel) through a MONAI 3D U-Net,
  into a Zarr store of labels.

MONAI runs ``sliding_window_inference`` on the same tiles, overlap, batch size, blending
and autocast dtype, with ``sw_device="cuda"`` and ``device="cpu"`` (its advice for inputs
too large for the GPU: tiles on the GPU, the stitched output in host memory), and then
takes the argmax; its input is the same synthetic image, made whole first (not timed).

Each row prints, for both: end-to-end seconds, tiles per second, the share of the run
the GPU was busy (``torch.cuda.utilization``, or ``nvidia-smi``, sampled every 0.1 s),
peak GPU memory (``torch.cuda.max_memory_allocated``) and peak RSS. Goals on one modern
data-centre GPU: the scene in 60 s or less, the GPU busy at least 80% of seamline's run,
and at least 1.5x MONAI's tiles per second at no more than MONAI's GPU memory.

The whole script takes under 10 minutes on one GPU. ``--quick --device cpu`` runs tiny
sizes on the CPU, to check that it works.

Usage::

    python benchmarks/gpu.py            # on a machine with a GPU
    python benchmarks/gpu.py --quick --device cpu
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

FULL = {"scene": (4, 10980, 10980), "volume": (1, 600, 512, 512), "scene_tile": 512, "volume_tile": 128}
QUICK = {"scene": (4, 700, 900), "volume": (1, 70, 64, 80), "scene_tile": 256, "volume_tile": 32}


def synthetic(shape: tuple[int, ...], seed: int = 0):
    """A lazy float32 image of smooth patterns and noise, made block by block (cheap, deterministic)."""
    import dask.array as da

    def block(block_info=None):
        info = block_info[None]
        lo = [start for start, _ in info["array-location"]]
        size = info["chunk-shape"]
        grids = np.meshgrid(
            *(np.arange(s, s + n, dtype=np.float32) for s, n in zip(lo, size, strict=True)), indexing="ij"
        )
        values = sum(np.sin(g / (40.0 + 17 * i)) for i, g in enumerate(grids[1:]))
        noise = np.random.default_rng(seed + sum(lo)).random(size, dtype=np.float32)
        return (values + 0.3 * noise).astype(np.float32) + grids[0] * 0.1

    chunks = (shape[0], *(1024 if len(shape) == 3 else 128 for _ in shape[1:]))
    return da.map_blocks(block, dtype=np.float32, chunks=da.core.normalize_chunks(chunks, shape))


class Busy:
    """Samples GPU utilization every 0.1 s in a thread; ``share`` is the mean over the run (0..1)."""

    def __init__(self, device: str) -> None:
        self.samples: list[float] = []
        self.device = device
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _read(self) -> float | None:
        import torch

        try:
            return float(torch.cuda.utilization())
        except Exception:
            query = ["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits", "-i", "0"]
            if shutil.which("nvidia-smi") is None:
                return None
            return float(subprocess.run(query, capture_output=True, text=True, check=False).stdout.split()[0])

    def _run(self) -> None:
        while not self._stop.is_set():
            value = self._read() if self.device == "cuda" else None
            if value is not None:
                self.samples.append(value / 100)
            self._stop.wait(0.1)

    def __enter__(self) -> Busy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def share(self) -> float:
        return float(np.mean(self.samples)) if self.samples else float("nan")


def _model(row: str, bands: int):
    import torch

    torch.manual_seed(0)
    if row == "scene":
        import segmentation_models_pytorch as smp

        return smp.Unet(encoder_name="resnet34", encoder_weights=None, in_channels=bands, classes=5).eval()
    from monai.networks.nets import UNet

    return UNet(3, bands, 4, channels=(32, 64, 128, 256), strides=(2, 2, 2), num_res_units=2).eval()


def _seamline(row: str, job: dict, image, model, folder: Path) -> int:
    import seamline
    from seamline.tiling import tile_grid

    affine = np.array([[0.0, -10.0, 3200000.0], [10.0, 0.0, 400000.0], [0.0, 0.0, 1.0]])
    if row == "scene":
        picture = seamline.Image(image, affine, "EPSG:32645")
        target = folder / "scene.tif"
        options = {"cog": True}
    else:
        picture = seamline.Image(image)
        target = folder / "volume.zarr"
        options = {}
    labels = seamline.predict(
        picture,
        model,
        tile_size=job["tile"],
        overlap=0.25,
        batch_size=job["batch"],
        device=job["device"],
        amp=job["amp"],
        output="labels",
        progress=False,
    )
    seamline.save(labels, target, overwrite=True, **options)
    return len(tile_grid(image.shape[1:], job["tile"], 0.25))


def _monai(job: dict, image, model) -> int:
    import torch
    from monai.inferers import sliding_window_inference

    from seamline.devices import autocast_dtype
    from seamline.tiling import tile_grid

    device = torch.device(job["device"])
    model.to(device)
    whole = torch.from_numpy(np.asarray(image))[None]
    dtype = autocast_dtype(device, True)  # as the engine's
    autocast = torch.autocast(device.type, dtype=dtype, enabled=job["amp"] and device.type == "cuda")
    with torch.inference_mode(), autocast:
        scores = sliding_window_inference(
            whole, job["tile"], job["batch"], model, overlap=0.25, mode="gaussian", sw_device=device, device="cpu"
        )
    scores[0].argmax(0).to(torch.uint8)
    return len(tile_grid(image.shape[1:], job["tile"], 0.25))


def child(job: dict) -> dict:
    """Run one side of one row in this process; report its figures."""
    import torch
    from monai.inferers import sliding_window_inference  # noqa: F401

    import seamline  # noqa: F401 - imports are not timed

    image = synthetic(tuple(job["shape"]))
    if job["tool"] == "monai":
        image = image.compute()  # MONAI takes the image whole; making it is not timed
    model = _model(job["row"], job["shape"][0])
    cuda = job["device"] == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    with tempfile.TemporaryDirectory() as tmp, Busy(job["device"]) as busy:
        start = time.perf_counter()
        if job["tool"] == "seamline":
            tiles = _seamline(job["row"], job, image, model, Path(tmp))
        else:
            tiles = _monai(job, image, model)
        seconds = time.perf_counter() - start
    return {
        "seconds": seconds,
        "tiles": tiles,
        "busy": busy.share,
        "gpu_mb": torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"),
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def measure(job: dict) -> dict:
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(job)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(f"{job['tool']} {job['row']} failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny sizes, to check the script")
    parser.add_argument("--device", default="cuda", help="cuda (default) or cpu")
    parser.add_argument("--batch", type=int, default=16, help="tiles per model call, the same for both (default 16)")
    parser.add_argument("--no-amp", dest="amp", action="store_false", help="run in float32")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(child(json.loads(args.child))))
        return
    sizes = QUICK if args.quick else FULL
    print(f"device {args.device}, batch {args.batch}, mixed precision {'on' if args.amp else 'off'}")
    header = f"{'row':<34}{'seconds':>9}{'tiles/s':>9}{'GPU busy':>10}{'GPU MB':>9}{'RSS MB':>9}"
    print(header)
    for row in ("scene", "volume"):
        job = {"row": row, "shape": sizes[row], "tile": sizes[f"{row}_tile"], "batch": args.batch}
        job.update(device=args.device, amp=args.amp)
        figures = {tool: measure({**job, "tool": tool}) for tool in ("seamline", "monai")}
        shape = "x".join(map(str, sizes[row][1:]))
        for tool, f in figures.items():
            print(
                f"{f'{row} {shape} {tool}':<34}{f['seconds']:>9.1f}{f['tiles'] / f['seconds']:>9.1f}"
                f"{f['busy']:>10.0%}{f['gpu_mb']:>9.0f}{f['rss_mb']:>9.0f}"
            )
        ours, theirs = figures["seamline"], figures["monai"]
        speed = theirs["seconds"] / ours["seconds"]
        print(
            f"  {row}: {speed:.2f}x MONAI's tiles/s (goal >= 1.5) at {ours['gpu_mb'] / theirs['gpu_mb']:.2f}x its GPU"
            f" memory (goal <= 1.0); GPU busy {ours['busy']:.0%} (goal >= 80%)"
            + (f"; scene end to end {ours['seconds']:.0f} s (goal <= 60)" if row == "scene" else "")
        )


if __name__ == "__main__":
    main()
