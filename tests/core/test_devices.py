"""The device path: CPU threads side by side, and the CUDA path's logic run on the CPU with CUDA's calls replaced."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import torch

from seamline import devices, transfer
from seamline.errors import ModelError
from seamline.inference import predict


def conv_net(bands: int = 2, classes: int = 3) -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(bands, 4, 3, padding=1), torch.nn.Tanh(), torch.nn.Conv2d(4, classes, 1))


class FakeCuda:
    """Replaces every call only CUDA can make, recording them; tensors stay on the CPU."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch, bf16: bool = True) -> None:
        self.calls: list[tuple] = []
        self.lock = threading.Lock()
        major = 8 if bf16 else 7  # Ampere on; a V100 (7.0) or T4 (7.5) only emulates bfloat16
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)  # what torch says on a V100 too
        monkeypatch.setattr(
            torch.cuda, "get_device_capability", lambda device=None: self.note("capability", str(device)) or (major, 0)
        )
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
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


def test_a_gpu_is_held_by_one_task_at_a_time(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
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


@pytest.mark.parametrize(
    ("major", "amp", "dtype"),
    [
        (8, None, torch.bfloat16),
        (7, None, torch.float16),  # a V100 or T4, where torch.cuda.is_bf16_supported() says True (emulated)
        (7, True, torch.float16),
        (8, False, None),
        (8, "float16", torch.float16),  # as nnU-Net's torch.autocast("cuda")
        (7, "bfloat16", torch.bfloat16),
    ],
)
def test_mixed_precision_follows_the_given_gpu_or_the_dtype_asked_for(monkeypatch, major, amp, dtype):
    asked: list = []
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *_, **__: True)
    monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: asked.append(device) or (major, 0))
    assert devices.autocast_dtype(torch.device("cuda:1"), amp) == dtype
    assert set(map(str, asked)) <= {"cuda:1"}  # the device given, not the current one
    on_cpu = torch.bfloat16 if amp is True else dtype if isinstance(amp, str) else None
    assert devices.autocast_dtype(torch.device("cpu"), amp) == on_cpu


def test_amp_may_name_the_dtype_the_engine_runs_in(monkeypatch):
    cuda = FakeCuda(monkeypatch, bf16=True)
    x = np.zeros((2, 40, 40), np.float32)
    predict(x, conv_net(), tile_size=32, device="cuda", amp="float16", progress=False).data.compute()
    assert {call[2] for call in cuda.calls if call[0] == "autocast"} == {torch.float16}


def test_once_a_model_refuses_channels_last_no_task_converts_it_back():
    model, cpu = conv_net(), torch.device("cpu")
    assert devices.placed(model, cpu, True, 2) == (model, True)
    assert model[0].weight.is_contiguous(memory_format=torch.channels_last)
    devices.channels_last_refused(model, refused=True)  # a task's first batch failed so
    assert devices.placed(model, cpu, False, 2) == (model, False)
    assert devices.placed(model, cpu, True, 2) == (model, False)  # a task that chose channels-last before
    assert not model[0].weight.is_contiguous(memory_format=torch.channels_last)


class FailsOnce(torch.nn.Module):
    """A convolution that runs out of memory on its first batch of tiles (the probe's empty batch passes)."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.conv = torch.nn.Conv2d(2, 3, 3, padding=1)
        self.failed = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[0] and not self.failed:
            self.failed = True
            raise RuntimeError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return self.conv(x)


def test_only_a_layout_error_makes_a_model_run_contiguous():
    model = FailsOnce()
    x = np.zeros((2, 40, 40), np.float32)
    with pytest.raises(ModelError, match="out of memory"):
        predict(x, model, tile_size=32, progress=False).data.compute(scheduler="synchronous")
    assert not devices.channels_last_refused(model)


def test_the_layout_is_checked_on_a_kernel_that_tells_the_layouts_apart():
    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.Conv2d(4, 3, 3))  # (4, 1, 3, 3): both layouts
    cpu = torch.device("cpu")
    devices.placed(model, cpu, True, 2)
    model.to(memory_format=torch.contiguous_format)  # the user (or the trainer) puts it back
    devices.placed(model, cpu, True, 2)
    assert model[1].weight.is_contiguous(memory_format=torch.channels_last)


def test_cuda_and_its_index_share_one_lock(monkeypatch):
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    assert devices._device_lock(torch.device("cuda")) is devices._device_lock(torch.device("cuda:0"))
    assert devices._device_lock(torch.device("cuda:1")) is not devices._device_lock(torch.device("cuda:0"))


def test_without_an_openmp_runtime_cpu_tasks_take_turns(monkeypatch):
    from threadpoolctl import ThreadpoolController

    select = ThreadpoolController.select
    monkeypatch.setattr(ThreadpoolController, "select", lambda self, **_: select(self, user_api="none loaded"))
    assert not ThreadpoolController().select(user_api="openmp").lib_controllers  # an empty selection, not None
    assert devices._openmp.__wrapped__() is None  # so turn() locks the CPU instead of limiting nothing


def test_probes_leave_the_model_where_it_was(monkeypatch):
    cuda = FakeCuda(monkeypatch)
    model = conv_net()
    predict(np.zeros((2, 40, 40), np.float32), model, tile_size=32, device="cuda", progress=False)
    moves = [call[2] for call in cuda.calls if call[:2] == ("to", "Sequential")]
    assert "cuda" in moves and moves[-1] == "cpu"  # probed on the GPU, then shipped as given
