"""Weights from foreign files: read without running code, found under any prefix, loaded strictly."""

from __future__ import annotations

import io
import pickle
import zipfile

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from seamline import ModelError
from seamline.torchscript import is_torchscript, read_torchscript
from seamline.unet import build_unet
from seamline.weights import fit_weights, read_checkpoint, tensors_by_name

torch = pytest.importorskip("torch")


def small_net(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return build_unet(2, 3, widths=[4, 8], spatial_dims=2).eval()


def assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    sa, sb = a.state_dict(), b.state_dict()
    assert list(sa) == list(sb)
    for name in sa:
        assert torch.equal(sa[name], sb[name]), name


class Trap:
    """Unpickling it would create a file: proof that nothing ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


@pytest.mark.parametrize("kind", ["zip", "legacy", "safetensors", "torchscript"])
def test_every_wrapping_reads_back_the_state_dict(tmp_path, kind):
    net = small_net()
    path = tmp_path / ("w.safetensors" if kind == "safetensors" else "w.pt")
    if kind == "zip":
        torch.save(net.state_dict(), path)
    elif kind == "legacy":
        torch.save(net.state_dict(), path, _use_new_zipfile_serialization=False)
    elif kind == "safetensors":
        from safetensors.torch import save_file

        save_file(net.state_dict(), path)
    else:
        torch.jit.trace(net, torch.zeros(1, 2, 16, 16)).save(str(path))
    assert is_torchscript(path) == (kind == "torchscript")
    other = small_net(seed=1)
    fit_weights(other, read_checkpoint(path), source=path, architecture="core.UNet")
    assert_same_weights(other, net)


def test_torchscript_of_a_monai_network_gives_its_state_dict(tmp_path):
    nets = pytest.importorskip("monai.networks.nets")
    net = nets.UNet(spatial_dims=3, in_channels=1, out_channels=2, channels=(4, 8), strides=(2,), norm="batch")
    torch.jit.script(net).save(str(tmp_path / "m.ts"))
    tensors = read_torchscript(tmp_path / "m.ts")
    state = net.state_dict()
    assert set(tensors) == set(state)  # parameters and buffers (running stats, num_batches_tracked)
    assert all(torch.equal(tensors[k], state[k]) for k in state)


def test_a_pickle_that_needs_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.save({"weights": small_net().state_dict(), "trap": Trap(marker)}, tmp_path / "x.ckpt")
    with pytest.raises(ModelError, match=r"x\.ckpt: needs full unpickling \(it holds io\.open") as caught:
        read_checkpoint(tmp_path / "x.ckpt")
    assert "\n" not in str(caught.value)
    assert not marker.exists()


def test_a_torchscript_archive_naming_code_is_refused_and_nothing_runs(tmp_path):
    marker = tmp_path / "ran"
    torch.jit.trace(small_net(), torch.zeros(1, 2, 16, 16)).save(str(tmp_path / "m.ts"))
    with zipfile.ZipFile(tmp_path / "m.ts") as original, zipfile.ZipFile(tmp_path / "bad.ts", "w") as forged:
        for item in original.infolist():
            payload = original.read(item)
            if item.filename.endswith("/data.pkl"):
                payload = pickle.dumps(Trap(marker), protocol=2)
            forged.writestr(item, payload)
    assert is_torchscript(tmp_path / "bad.ts")
    with pytest.raises(ModelError, match=r"without running code: it holds io\.open"):
        read_checkpoint(tmp_path / "bad.ts")
    assert not marker.exists()


def test_unreadable_files_are_model_errors(tmp_path):
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint at all")
    (tmp_path / "junk.safetensors").write_bytes(b"\x00" * 16)
    for name in ("junk.pth", "junk.safetensors", "absent.pt"):
        with pytest.raises(ModelError, match=name):
            read_checkpoint(tmp_path / name)


def test_lightning_layout_with_other_tensors_around(tmp_path):
    net = small_net()
    optimizer = torch.optim.Adam(net.parameters())
    net(torch.zeros(1, 2, 16, 16)).sum().backward()
    optimizer.step()
    checkpoint = {
        "epoch": 3,
        "global_step": 30,
        "pytorch-lightning_version": "2.4.0",
        "state_dict": {
            **{f"model.{k}": v for k, v in net.state_dict().items()},
            "criterion.weight": torch.ones(3),
        },
        "optimizer_states": [optimizer.state_dict()],
        "hyper_parameters": {"lr": 0.001, "class_weights": torch.ones(3)},
    }
    torch.save(checkpoint, tmp_path / "l.ckpt")
    other = small_net(seed=1)
    fit_weights(other, read_checkpoint(tmp_path / "l.ckpt"), source="l.ckpt", architecture="core.UNet")
    assert_same_weights(other, net)


names = st.from_regex(r"[a-z_]{1,6}", fullmatch=True)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(path=st.lists(names, max_size=3), wrap_in_list=st.booleans())
def test_the_state_dict_is_found_under_any_prefix(path, wrap_in_list):
    net = small_net()
    checkpoint = dict(net.state_dict())
    for key in reversed(path):
        checkpoint = {key: checkpoint, "noise": torch.zeros(2)}
    if wrap_in_list:
        checkpoint = [checkpoint]
    buffer = io.BytesIO()
    torch.save(checkpoint, buffer)
    buffer.seek(0)
    other = small_net(seed=1)
    fit_weights(other, torch.load(buffer, weights_only=True), source="x.pt", architecture="core.UNet")
    assert_same_weights(other, net)


def test_data_parallel_prefix_and_flattened_names():
    net = small_net()
    wrapped = {f"module.{k}": v for k, v in net.state_dict().items()}
    assert list(tensors_by_name({"a": [torch.zeros(1), {"b": torch.ones(1)}]})) == ["a.0", "a.1.b"]
    other = small_net(seed=1)
    fit_weights(other, wrapped, source="x.pt", architecture="core.UNet")
    assert_same_weights(other, net)


def test_mismatches_name_the_first_of_each_kind():
    state = dict(small_net().state_dict())
    first = next(iter(state))
    del state[first]
    state["extra.weight"] = torch.zeros(1)
    state["head.weight"] = torch.zeros(5, 4, 1, 1)
    with pytest.raises(ModelError) as caught:
        fit_weights(small_net(), state, source="w.pt", architecture="core.UNet")
    message = str(caught.value)
    assert message.startswith("w.pt: weights do not fit core.UNet: ")
    assert f"missing {first}" in message and "unexpected extra.weight" in message
    assert "mis-shaped head.weight ([5, 4, 1, 1] in the file, [3, 4, 1, 1] in the network)" in message
    with pytest.raises(ModelError, match=r"no tensor in the file is named like core\.UNet's"):
        fit_weights(small_net(), {"x": torch.zeros(1)}, source="w.pt", architecture="core.UNet")
