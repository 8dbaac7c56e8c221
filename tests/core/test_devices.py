"""The device path: CPU threads side by side, and the CUDA path's logic run on the CPU with CUDA's calls replaced."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import torch

from seamline import devices, transfer
from seamline.inference import predict


def conv_net(bands: int = 2, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(bands, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, classes, 1))


class FakeCuda:
    """Replaces every call only CUDA can make, recording them; tensors stay on the CPU."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bf16: bool = True) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: bf16)
        monkeypatch.setattr(transfer, "_to", self.to)
        monkeypatch.setattr(transfer, "_pinned", lambda shape: self.note("pinned", shape) or torch.empty(shape))
        monkeypatch.setattr(
            transfer, "_zeros", lambda shape, device: self.note("zeros", str(device)) or torch.zeros(shape)
        )
        monkeypatch.setattr(transfer, "_copy_stream", lambda device: self.note("stream", str(device)) or "copy-stream")
        monkeypatch.setattr(transfer, "_on_stream", lambda stream: self.note("on", stream) or contextlib.nullcontext())
        monkeypatch.setattr(transfer, "_after_copy", lambda tensor, device, stream: self.note("wait", stream))
        monkeypatch.setattr(
            devices, "_autocast", lambda kind, dtype: self.note("autocast", kind, dtype) or contextlib.nullcontext()
        )
        monkeypatch.setattr(devices, "_peak_memory", lambda *_: self.note("probe") or 100 * 2**20)
        monkeypatch.setattr(devices, "_free_memory", lambda device: 2**30)

    def note(self, *call) -> None:
        with self.lock:
            self.calls.append(call)

    def to(self, value, device, non_blocking=False):
        self.note("to", type(value).__name__, str(device), non_blocking)
        return value

    def count(self, *prefix) -> int:
        return sum(call[: len(prefix)] == prefix for call in self.calls)


@pytest.mark.parametrize(("bf16", "dtype"), [(True, torch.bfloat16), (False, torch.float16)])
def test_the_cuda_path_pins_copies_on_a_second_stream_autocasts_and_blends_on_the_device(monkeypatch, bf16, dtype):
    x = np.random.default_rng(0).random((2, 70, 90), dtype=np.float32)
    x[1, 30:35, 40] = np.nan  # nodata goes through the device too
    model = conv_net()
    expected = predict(x, model, tile_size=32, device="cpu", progress=False).data.compute()
    cuda = FakeCuda(monkeypatch, bf16)
    result = predict(x, model, tile_size=32, batch_size=3, device="auto", progress=False).data.compute()
    np.testing.assert_allclose(result, expected, atol=1e-6)  # the GPU's task uses all torch threads here
    assert np.isnan(result[:, 30:35, 40]).all()
    tiles = 12  # 3 x 4 tiles of 32 at overlap 0.25 on 70 x 90
    assert cuda.count("to", "Sequential", "cuda") >= 1  # the model is placed on the GPU
    pinned = [call[1] for call in cuda.calls if call[0] == "pinned" and call[1][0]]
    assert sum(shape[0] for shape in pinned) >= tiles and all(shape[0] <= 3 for shape in pinned)
    sends = cuda.count("to", "Tensor", "cuda", True)  # batches; the weight window goes once per task, blocking
    assert sends >= cuda.count("pinned")  # every batch, the probe's empty one, and where nodata lies
    assert cuda.count("wait", "copy-stream") == sends == cuda.count("on", "copy-stream")
    assert cuda.count("zeros", "cuda") >= 1  # parts are summed on the device
    assert {call[2] for call in cuda.calls if call[0] == "autocast"} == {dtype}
    assert {call[1] for call in cuda.calls if call[0] == "autocast"} == {"cuda"}


def test_without_amp_the_cuda_path_runs_in_float32(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    predict(
        np.zeros((2, 40, 40), np.float32), conv_net(), tile_size=32, device="cuda", amp=False, progress=False
    ).data.compute()
    assert cuda.count("autocast") == 0


def test_on_a_gpu_batches_are_sized_from_free_memory(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    model = conv_net()
    seen: list[int] = []
    model.register_forward_pre_hook(lambda module, args: seen.append(args[0].shape[0]))
    predict(np.zeros((2, 200, 200), np.float32), model, tile_size=32, device="cuda", progress=False).data.compute()
    assert cuda.count("probe") == 1
    assert max(seen) == 4  # 40% of 1 GiB free at 100 MiB a tile
    monkeypatch.setattr(devices, "_free_memory", lambda device: 2**40)
    assert devices.auto_batch_size(model, 2, (32, 32), "cuda", None, default=4) == 64  # at most 64


def test_on_the_cpu_the_default_batch_is_four_and_amp_is_bfloat16_when_asked():
    model = conv_net()
    assert devices.auto_batch_size(model, 2, (32, 32), "cpu", None, default=4) == 4
    assert isinstance(devices.autocast(torch.device("cpu")), contextlib.nullcontext)
    on = devices.autocast(torch.device("cpu"), amp=True)
    assert isinstance(on, torch.autocast) and on.fast_dtype == torch.bfloat16


def test_dask_threads_run_torch_on_one_thread_each_and_the_main_thread_on_all():
    seen = {}

    def record(name: str) -> None:
        with devices.turn(torch.device("cpu")):
            seen[name] = torch.get_num_threads()

    before = torch.get_num_threads()
    record("main")
    worker = threading.Thread(target=record, args=("worker",))
    worker.start()
    worker.join()
    assert seen == {"main": before, "worker": 1}
    assert torch.get_num_threads() == before


def test_a_gpu_is_held_by_one_task_at_a_time():
    device = torch.device("cuda")
    inside, most = [0], [0]
    lock = threading.Lock()

    def task() -> None:
        with devices.turn(device):
            with lock:
                inside[0] += 1
                most[0] = max(most[0], inside[0])
            threading.Event().wait(0.01)
            with lock:
                inside[0] -= 1

    threads = [threading.Thread(target=task) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1


class Flattens(torch.nn.Module):
    """A convolution whose output is flattened with ``view``, which channels-last memory refuses."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return torch.tanh(y.view(y.shape[0], -1)).view(y.shape)


def test_convolutional_models_run_in_channels_last_memory_unless_they_refuse_it(monkeypatch):
    x = np.random.default_rng(1).random((2, 50, 60), dtype=np.float32)
    model = conv_net()
    result = predict(x, model, tile_size=32, progress=False).data.compute()
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    monkeypatch.setattr("seamline.inference.convolutional", lambda *_: False)
    contiguous = conv_net()
    expected = predict(x, contiguous, tile_size=32, progress=False).data.compute()
    assert contiguous[0].weight.is_contiguous()
    np.testing.assert_allclose(result, expected, atol=1e-6)
    monkeypatch.undo()
    flattens = Flattens()
    scores = predict(x, flattens, tile_size=32, progress=False).data.compute()
    assert flattens.conv.weight.is_contiguous()  # it stays as it was
    assert scores.shape == (3, 50, 60) and np.isfinite(scores).all()
    assert not devices.convolutional(torch.nn.Linear(3, 3), 2) and not devices.convolutional(conv_net(), 3)
