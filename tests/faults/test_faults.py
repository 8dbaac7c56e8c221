"""The fault suite: kills, races and full disks, for every writer.

For GeoTIFF (COG), Zarr (with and without an atomic directory swap), NIfTI (.nii and
.nii.gz), GeoPackage, GeoParquet and FlatGeobuf:

- a child saving over a previous output is SIGKILLed at random moments, and just before
  each file-system step of its final moves: the output is then the previous one, byte
  for byte, or the new one, complete; and the next save leaves nothing else behind;
- two children save to one free path at once: one wins, the other gets
  OutputExistsError, and the file is one complete result;
- a full disk (a small tmpfs, where this machine lets tests mount one), a read-only file
  system, and a file-size limit (RLIMIT_FSIZE, everywhere) fail with one line naming the
  output, and leave nothing.

Run them with ``pytest -m faults tests/faults``.
"""

from __future__ import annotations

import multiprocessing
import os
import random
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest

import seamline
from seamline.errors import SeamlineError
from seamline.temporary import remove
from tests.faults import writers
from tests.faults.writers import DONE, EXISTS, KINDS, REFUSED, expected, suffix

pytestmark = [pytest.mark.faults, pytest.mark.slow]
pytest.importorskip("rasterio")
pytest.importorskip("nibabel")

RANDOM_KILLS = 2
STEP_KILLS = 3


@pytest.fixture(scope="module")
def context():
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["tests.faults.writers", "seamline_geo.polygons", "seamline_medical.nifti_write"])
    return context


def _snapshot(path: Path) -> dict[str, bytes] | None:
    if not os.path.lexists(path):
        return None
    if path.is_dir():
        return {os.fspath(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}
    return {"": path.read_bytes()}


def _complete(kind: str, path: Path, seed: int) -> bool:
    """Whether *path* holds the whole result for *seed*."""
    try:
        if kind in writers.RASTERS:
            return np.array_equal(np.asarray(seamline.open(path).data), expected(kind, seed))
        import geopandas as gpd

        frame = writers.polygons(kind, seed)
        saved = gpd.read_parquet(path) if kind == "parquet" else gpd.read_file(path)
        return len(saved) == len(frame) and np.isclose(saved.area.sum(), frame.area.sum())
    except (SeamlineError, OSError, ValueError):
        return False


def _run(context, kind, target, seed, overwrite, **options):
    saving = context.Event()
    process = context.Process(
        target=writers.child, args=(kind, os.fspath(target), seed, overwrite, saving), kwargs=options
    )
    process.start()
    return process, saving


def _check_killed_save(kind, directory, target, before):
    """After a kill: the previous output byte for byte, or the new one whole; then no litter."""
    now = _snapshot(target)
    if now is None and kind == "zarr-no-exchange":  # killed between its two renames:
        seamline.open(target)  # opening the output puts the previous one back
        now = _snapshot(target)
    assert now == before or _complete(kind, target, 2), f"{kind}: a partial output at {target}"
    writers.save(kind, os.fspath(target), 3, True)  # the next run
    assert _complete(kind, target, 3)
    assert sorted(p.name for p in directory.iterdir()) == [target.name], f"{kind}: litter left"


@pytest.mark.parametrize("kind", KINDS)
def test_a_killed_save_leaves_the_previous_output_or_the_new_one(tmp_path, context, kind):
    target = tmp_path / f"out{suffix(kind)}"
    rng = random.Random(kind)
    started = time.perf_counter()
    process, saving = _run(context, kind, target, 1, False)
    process.join()
    assert process.exitcode == DONE
    duration = time.perf_counter() - started
    for trial in range(RANDOM_KILLS + STEP_KILLS):
        before = _snapshot(target)  # the previous output: the first save's, then each next run's
        step = trial - RANDOM_KILLS + 1 if trial >= RANDOM_KILLS else 0
        process, saving = _run(context, kind, target, 2, True, step=step)
        if not step:
            assert saving.wait(60)
            time.sleep(rng.uniform(0, duration))
            process.kill()
        process.join()
        _check_killed_save(kind, tmp_path, target, before)
    # and a save to a free path, killed: nothing at the path, or the whole result
    remove(target)
    process, saving = _run(context, kind, target, 2, False)
    assert saving.wait(60)
    time.sleep(rng.uniform(0, duration))
    process.kill()
    process.join()
    assert not os.path.lexists(target) or _complete(kind, target, 2)
    writers.save(kind, os.fspath(target), 3, True)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


@pytest.mark.parametrize("kind", KINDS)
def test_two_racing_writers_one_wins(tmp_path, context, kind):
    target = tmp_path / f"out{suffix(kind)}"
    barrier = context.Barrier(2)
    runs = [_run(context, kind, target, seed, False, barrier=barrier) for seed in (1, 2)]
    processes = [process for process, _ in runs]
    for process in processes:
        process.join(120)
    codes = sorted(p.exitcode for p in processes)
    assert codes == [DONE, EXISTS], codes
    winner = 1 + [p.exitcode for p in processes].index(DONE)
    assert _complete(kind, target, winner)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]


def _mount(directory: Path, options: str) -> None:
    directory.mkdir()
    try:
        subprocess.run(
            ["mount", "-t", "tmpfs", "-o", options, "tmpfs", os.fspath(directory)], check=True, capture_output=True
        )
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("this machine does not let tests mount a tmpfs")


@pytest.fixture
def mounted(tmp_path):
    mounts = []

    def mount(name: str, options: str) -> Path:
        directory = tmp_path / name
        _mount(directory, options)
        mounts.append(directory)
        return directory

    yield mount
    for directory in mounts:
        subprocess.run(["umount", os.fspath(directory)], check=False)


@pytest.mark.parametrize("kind", KINDS)
def test_a_full_disk_is_one_line_naming_the_output(mounted, kind):
    full = mounted("full", "size=8k")
    target = full / f"out{suffix(kind)}"
    with pytest.raises(SeamlineError) as caught:
        writers.save(kind, os.fspath(target), 1, False)
    assert str(caught.value) == f"{target}: cannot be written: no space left on device"
    assert caught.value.exit_code == 1
    assert list(full.iterdir()) == []
    read_only = mounted("read-only", "ro,size=8k")
    with pytest.raises(SeamlineError, match=r"cannot be written: read-only file system$"):
        writers.save(kind, os.fspath(read_only / f"out{suffix(kind)}"), 1, False)


@pytest.mark.parametrize("kind", KINDS)
def test_a_file_size_limit_is_one_line_naming_the_output(tmp_path, context, kind):
    target = tmp_path / f"out{suffix(kind)}"
    receive, send = context.Pipe(duplex=False)
    process = context.Process(target=writers.limited_child, args=(kind, os.fspath(target), 512, send))
    process.start()
    process.join(120)
    assert process.exitcode == REFUSED
    assert receive.recv() == f"SeamlineError: {target}: cannot be written: file too large"
    assert list(tmp_path.iterdir()) == []


def test_the_command_line_says_one_line(mounted, tmp_path):
    from click.testing import CliRunner

    from seamline.cli import get_cli

    full = mounted("full", "size=8k")
    labels = tmp_path / "labels.tif"
    writers.save("tif", os.fspath(labels), 1, False)
    result = CliRunner().invoke(get_cli(), ["vectorize", str(labels), str(full / "fields.gpkg")])
    assert result.exit_code == 1
    assert result.stderr == f"error: {full / 'fields.gpkg'}: cannot be written: no space left on device\n"
    assert list(full.iterdir()) == []
