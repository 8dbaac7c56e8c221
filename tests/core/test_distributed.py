"""The engine on dask.distributed: same output as the threaded scheduler, the model shipped once per worker."""

from __future__ import annotations

import os
from pathlib import Path

import dask.array as da
import numpy as np
import pytest
import torch

import seamline
from seamline.inference import predict

distributed = pytest.importorskip("distributed")


class Recording(torch.nn.Module):
    """A small conv net that notes, in a file, every process that unpickles it."""

    def __init__(self, log: Path) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.log = str(log)
        self.net = torch.nn.Sequential(torch.nn.Conv2d(2, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, 3, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)

    def __setstate__(self, state: dict) -> None:
        super().__setstate__(state)
        with open(self.log, "a") as f:
            f.write(f"{os.getpid()}\n")


@pytest.mark.slow
def test_distributed_equals_threaded_and_ships_the_model_once(tmp_path):
    x = np.random.default_rng(0).random((2, 150, 130), dtype=np.float32)
    model = Recording(tmp_path / "unpickled.txt")
    options = {"tile_size": 32, "overlap": 0.5, "progress": False, "batch_size": 3}
    # dask's threads run torch on one thread each, as the workers do (its float sums depend on it)
    expected = predict(x, model, **options).data.compute(scheduler="threads")
    with (
        distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0") as cluster,
        distributed.Client(cluster) as client,
    ):
        result = predict(x, model, **options)
        np.testing.assert_array_equal(result.data.compute(), expected)
        workers = set(client.run(os.getpid).values())
        unpickled = Path(model.log).read_text().split()
        per_worker = {pid: unpickled.count(str(pid)) for pid in workers}
        assert all(count <= 1 for count in per_worker.values()) and sum(per_worker.values()) >= 1, per_worker
        assert sum(client.run(torch.get_num_threads).values()) == 2
        seamline.save(predict(x, model, output="labels", **options), tmp_path / "labels.zarr")
        rng = np.random.default_rng(1)
        for _ in range(5):  # random tilings, as tests/core/test_engine_properties.py draws them
            shape = tuple(int(n) for n in rng.integers(1, 60, size=2))
            tiling = {
                "tile_size": [int(t) for t in rng.integers(8, 24, size=2)],
                "overlap": float(rng.choice([0, 0.5])),
            }
            y = rng.random((2, *shape), dtype=np.float32)
            chunked = da.from_array(y, chunks=(2, *(int(rng.integers(1, n + 1)) for n in shape)))
            threaded = predict(y, model, batch_size=4, progress=False, **tiling).data.compute(scheduler="threads")
            on_workers = predict(chunked, model, batch_size=3, progress=False, **tiling).data.compute()
            np.testing.assert_array_equal(on_workers, threaded)
    labels = seamline.open(tmp_path / "labels.zarr").data.compute()
    np.testing.assert_array_equal(labels[0], expected.argmax(0))
