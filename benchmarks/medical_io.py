"""Benchmark NIfTI streaming, DICOM series reading and the geometry round trip; prints one table.

Each measurement runs in its own child process; a thread samples its resident memory
every 5 ms, and the table gives the peak above the RSS right after imports, also divided
by the volume's size in memory. Rows:

- write ``.nii`` / ``.nii.gz`` from a lazy volume (seamline streams blocks into a memory
  map) vs nibabel (``nib.save`` of the in-memory array);
- read + organ statistics of a label volume (chunk by chunk) vs nibabel + NumPy bincount;
- the geometry round trip (LPS -> RAS, 1.5x resample, back) written to ``.nii``;
- a DICOM series (one file per slice, 12-bit CT with a rescale): read + mean and standard
  deviation, slab by slab, vs SimpleITK's ``ImageSeriesReader`` (the whole volume);
- a DICOM series converted to ``.nii`` (streamed) vs dicom2nifti.

Usage::

    python benchmarks/medical_io.py           # 384 x 384 x 256 int16 (72 MiB)
    python benchmarks/medical_io.py --quick   # 128^3, a smoke run
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

CHILD = r"""
import json, os, sys, threading, time
import numpy as np, dask.array as da, nibabel as nib
import seamline
from seamline_medical.nifti import save_nifti
from seamline_medical.stats import organ_statistics
from seamline_medical.geometry import prepare_input
from types import SimpleNamespace

task, folder, shape = sys.argv[1], sys.argv[2], tuple(json.loads(sys.argv[3]))
affine = np.diag([-1.2, -1.2, 2.0, 1.0])


def rss():
    return int(open("/proc/self/statm").read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


base = rss()
peak = [base]
done = threading.Event()


def sample():
    while not done.wait(0.005):
        peak[0] = max(peak[0], rss())


threading.Thread(target=sample, daemon=True).start()
start = time.perf_counter()
if task.startswith("seamline-write"):
    suffix = task.rsplit("-", 1)[1]
    data = da.random.default_rng(0).integers(-1000, 1000, (1, *shape), dtype=np.int16, chunks=(1, *shape[:2], 16))
    save_nifti(seamline.Image(data, affine, meta={"anchor": "center"}), f"{folder}/s.{suffix}")
elif task.startswith("nibabel-write"):
    suffix = task.rsplit("-", 1)[1]
    array = np.random.default_rng(0).integers(-1000, 1000, shape, dtype=np.int16)
    nib.save(nib.Nifti1Image(array, affine), f"{folder}/n.{suffix}")
elif task == "seamline-stats":
    organ_statistics(seamline.open(f"{folder}/labels.nii.gz"))
elif task == "nibabel-stats":
    np.bincount(np.asanyarray(nib.load(f"{folder}/labels.nii.gz").dataobj).ravel())
elif task == "seamline-dicom-stats":
    image = seamline.open(f"{folder}/series")
    da.compute(image.data.mean(), image.data.std())
elif task == "simpleitk-dicom-stats":
    import SimpleITK as sitk
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(f"{folder}/series"))
    volume = reader.Execute()
    array = sitk.GetArrayViewFromImage(volume)  # a view: volume must outlive it
    array.mean(), array.std()
elif task == "seamline-dicom-nii":
    save_nifti(seamline.open(f"{folder}/series"), f"{folder}/d.nii")
elif task == "dicom2nifti-dicom-nii":
    import dicom2nifti
    dicom2nifti.convert_dicom.dicom_series_to_nifti(f"{folder}/series", f"{folder}/d2n.nii", reorient_nifti=False)
elif task == "seamline-roundtrip":
    image = seamline.open(f"{folder}/s.nii")
    model_input, restore = prepare_input(image, SimpleNamespace(target_spacing=(1.8, 1.8, 3.0), spatial_dims=3))
    save_nifti(restore(model_input, "scores"), f"{folder}/r.nii")
seconds = time.perf_counter() - start
done.set()
peak[0] = max(peak[0], rss())
print(json.dumps({"seconds": seconds, "peak_mib": (peak[0] - base) / 2**20}))
"""


def _run(task: str, folder: str, shape: tuple[int, ...]) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, task, folder, json.dumps(shape)], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _labels(folder: str, shape: tuple[int, ...]) -> None:
    import nibabel as nib
    import numpy as np

    grid = np.indices(shape, sparse=True)
    labels = ((grid[0] // 32) * 7 + (grid[1] // 48) + (grid[2] // 64) * 3) % 40
    nib.save(nib.Nifti1Image(labels.astype(np.uint8), np.eye(4)), f"{folder}/labels.nii.gz")


def _series(folder: str, shape: tuple[int, ...]) -> None:
    """The volume as a DICOM CT series, one file per slice (the tests' writer)."""
    import numpy as np

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from tests.medical.dicom_helpers import write_series

    volume = np.random.default_rng(0).integers(-1000, 2000, shape).astype(np.int16)
    affine = np.diag([-0.8, -0.8, 1.5, 1.0])
    write_series(volume, affine, Path(folder) / "series", rescale=(1.0, -1024.0), stored=np.uint16, bits_stored=12)


def main() -> None:
    """Run every measurement and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="small sizes, a smoke run")
    shape = (128, 128, 128) if parser.parse_args().quick else (384, 384, 256)
    volume_mib = 2 * shape[0] * shape[1] * shape[2] / 2**20
    with tempfile.TemporaryDirectory() as folder:
        _labels(folder, shape)
        _series(folder, shape)
        rows = []
        for seamline_task, reference in (
            ("seamline-write-nii", "nibabel-write-nii"),
            ("seamline-write-nii.gz", "nibabel-write-nii.gz"),
            ("seamline-stats", "nibabel-stats"),
            ("seamline-roundtrip", None),
            ("seamline-dicom-stats", "simpleitk-dicom-stats"),
            ("seamline-dicom-nii", "dicom2nifti-dicom-nii"),
        ):
            ours = _run(seamline_task, folder, shape)
            theirs = _run(reference, folder, shape) if reference else None
            rows.append((seamline_task, ours, theirs))
    print(f"volume {shape} int16 = {volume_mib:.0f} MiB in memory")
    print(
        f"{'task':24} {'time s':>8} {'peak MiB':>9} {'peak/vol':>9} {'ref time':>9} {'ref peak':>9} {'time ratio':>10}"
    )
    for task, ours, theirs in rows:
        line = f"{task:24} {ours['seconds']:8.2f} {ours['peak_mib']:9.1f} {ours['peak_mib'] / volume_mib:9.2f}"
        if theirs:
            ratio = ours["seconds"] / theirs["seconds"]
            line += f" {theirs['seconds']:9.2f} {theirs['peak_mib']:9.1f} {ratio:10.2f}"
        print(line)


if __name__ == "__main__":
    start = time.perf_counter()
    main()
    print(f"(ran in {time.perf_counter() - start:.0f} s; peak is sampled RSS above the child's post-import RSS)")
