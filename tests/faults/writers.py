"""The child side of the fault suite: one save by each writer, slow enough to be killed during it.

Children are forked from a forkserver that imported seamline and the plugins once, so a
child starts in milliseconds. Each result is deterministic for its seed, so the parent
can tell a complete result from a partial one.
"""

from __future__ import annotations

import os
import shutil
import signal
import time
from unittest import mock

import dask.array as da
import numpy as np

import seamline
from seamline import atomic
from seamline.errors import OutputExistsError, SeamlineError

KINDS = ("tif", "zarr", "zarr-no-exchange", "nii", "nii.gz", "gpkg", "parquet", "fgb")
RASTERS = ("tif", "zarr", "zarr-no-exchange", "nii", "nii.gz")
#: Exit codes of a child.
DONE, EXISTS, REFUSED = 0, 3, 4


def suffix(kind: str) -> str:
    return ".zarr" if kind.startswith("zarr") else f".{kind}"


def _slow(block: np.ndarray) -> np.ndarray:
    time.sleep(0.02)
    return block


def expected(kind: str, seed: int) -> np.ndarray:
    """The pixels (rasters) or the label raster whose polygons are written (vectors)."""
    rng = np.random.default_rng(seed)
    if kind.startswith("nii"):
        return rng.normal(size=(1, 48, 40, 32)).astype(np.float32)
    if kind in RASTERS:
        return rng.integers(0, 4, (1, 256, 256)).astype(np.uint8)
    return rng.integers(0, 3, (1, 120, 120)).astype(np.uint8)


def image(kind: str, seed: int) -> seamline.Image:
    data = expected(kind, seed)
    lazy = da.from_array(data, chunks=(1, *[max(8, n // 4) for n in data.shape[1:]])).map_blocks(_slow)
    meta = {} if kind.startswith("nii") else {"class_names": {0: "a", 1: "b", 2: "c", 3: "d"}}
    affine = np.diag([30.0, -30.0, 1.0]) if data.ndim == 3 else None
    return seamline.Image(lazy, affine, "EPSG:32645" if data.ndim == 3 else None, meta)


def save(kind: str, target: str, seed: int, overwrite: bool) -> None:
    """Save the result for *seed* to *target* with the writer *kind* names."""
    # zarr-no-exchange: the fallback, moving the old store aside and then the new one in
    exchange = (lambda: None) if kind == "zarr-no-exchange" else atomic._renameat2
    with mock.patch.object(atomic, "_renameat2", exchange):
        if kind in RASTERS:
            seamline.save(image(kind, seed), target, overwrite=overwrite)
            return
        from seamline_geo.polygons import write_polygons

        write_polygons(polygons(kind, seed), target, overwrite=overwrite)


def polygons(kind: str, seed: int):
    """The polygons a vector writer saves for *seed*."""
    return seamline.vectorize(seamline.Image(expected(kind, seed), np.diag([30.0, -30.0, 1.0]), "EPSG:32645"))


def _kill_at_step(step: int) -> None:
    """SIGKILL this process just before the *step*-th file-system step of the final moves."""
    calls = [0]

    def wrap(function):
        def wrapped(*args, **kwargs):
            calls[0] += 1
            if calls[0] == step:
                os.kill(os.getpid(), signal.SIGKILL)
            return function(*args, **kwargs)

        return wrapped

    for name in ("rename", "replace", "link", "unlink"):
        setattr(os, name, wrap(getattr(os, name)))
    shutil.rmtree = wrap(shutil.rmtree)
    atomic._rename2 = wrap(atomic._rename2)


def child(kind: str, target: str, seed: int, overwrite: bool, saving=None, barrier=None, step: int = 0) -> None:
    """Run one save; exit DONE, EXISTS (another writer won) or REFUSED (a one-line error)."""
    if saving is not None:
        saving.set()
    if barrier is not None:
        claim = atomic._claim

        def wait_then_claim(tmp, path):
            barrier.wait(timeout=60)
            claim(tmp, path)

        atomic._claim = wait_then_claim
    if step:
        real_claim, real_replace = atomic._claim, atomic._replace

        def claim(*args):
            _kill_at_step(step)
            real_claim(*args)

        def replace(*args):
            _kill_at_step(step)
            real_replace(*args)

        atomic._claim, atomic._replace = claim, replace
    try:
        save(kind, target, seed, overwrite)
    except OutputExistsError:
        os._exit(EXISTS)
    except SeamlineError:
        os._exit(REFUSED)
    os._exit(DONE)


def limited_child(kind: str, target: str, limit: int, report) -> None:
    """Save under a file-size limit (RLIMIT_FSIZE): writes past it fail with EFBIG; send the error."""
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
    try:
        save(kind, target, 1, False)
    except Exception as exc:
        report.send(f"{type(exc).__name__}: {exc}")
        os._exit(REFUSED)
    os._exit(DONE)
