"""Hostile or broken bundles: refused before anything is allocated, opened or inflated.

Each problem is a ModelError naming the bundle, one line, exit 2 on the command line.
"""

from __future__ import annotations

import json
import time
import zipfile

import numpy as np
import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import save as save_tensors

from seamline import Image, ModelError, hookimpl
from seamline import bundle_files as files
from seamline.bundle import ModelCard, build_module, load_model, save_model
from seamline.cli import get_cli
from seamline.errors import first_line
from seamline.weights import fit_weights, safetensors_shapes, weights_mismatch


@pytest.fixture
def card():
    return ModelCard("core.UNet", 2, ["background", "ice"], kwargs={"widths": [4, 8]}, tile_size=32)


@pytest.fixture
def saved(tmp_path, card):
    torch.manual_seed(0)
    return save_model(build_module(card), tmp_path / "model", card)


def _edit_card(path, **changes):
    card_file = path / "seamline.json"
    card_file.write_text(json.dumps({**json.loads(card_file.read_text()), **changes}))


def test_card_sizes_are_checked_against_the_weights_before_building(saved):
    _edit_card(saved, kwargs={"widths": [20_000, 40_000]})  # 29 GB of weights if built for real
    start = time.perf_counter()
    with pytest.raises(ModelError) as caught:
        load_model(saved)
    assert time.perf_counter() - start < 10
    message = str(caught.value)
    assert message.startswith(f"{saved / 'weights.safetensors'}: weights do not fit core.UNet: ")
    assert "mis-shaped" in message and "[4, 2, 3, 3] in the file, [20000, 2, 3, 3] in the network" in message
    assert "\n" not in message


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"kwargs": {"widths": [-4, 8]}}, "cannot build"),
        ({"in_channels": -3}, "in_channels must be an integer from 1"),
        ({"in_channels": True}, "in_channels must be an integer from 1"),
        ({"tile_size": 0}, "tile_size must be a positive integer"),
        ({"overlap": 1.5}, "overlap must be a fraction"),
        ({"spatial_dims": 4}, "spatial_dims must be 2 or 3"),
        ({"classes": []}, "classes must be a list of 1 to"),
    ],
)
def test_bad_sizes_are_model_errors_naming_the_bundle(saved, changes, message):
    _edit_card(saved, **changes)
    with pytest.raises(ModelError, match=message) as caught:
        load_model(saved)
    assert caught.value.path is not None and str(saved) in caught.value.path


@pytest.mark.parametrize("value", ["/etc/hostname", "../weights.pth", "~/encoder.safetensors", "enc.safetensors"])
def test_card_arguments_may_not_name_files(saved, value, monkeypatch):
    _edit_card(saved, kwargs={"widths": [4, 8], "encoder_weights": value})
    opened = []
    monkeypatch.setattr("builtins.open", lambda *a, **k: opened.append(a) or (_ for _ in ()).throw(AssertionError))
    with pytest.raises(ModelError, match=r"kwargs\.encoder_weights names a file") as caught:
        load_model(saved)
    assert caught.value.path == str(saved) and not opened


def test_a_zip_member_that_inflates_out_of_proportion_is_refused(tmp_path, saved, monkeypatch):
    monkeypatch.setattr(files, "_SMALL", 2**20)
    bomb = tmp_path / "bomb.zip"
    with zipfile.ZipFile(bomb, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("seamline.json", (saved / "seamline.json").read_bytes())
        archive.writestr("weights.safetensors", bytes(8 * 2**20))
    inflated = []
    real_read = zipfile.ZipExtFile.read

    def read(*args):
        data = real_read(*args)
        inflated.append(len(data))
        return data

    monkeypatch.setattr(zipfile.ZipExtFile, "read", read)
    with pytest.raises(ModelError, match=r"weights\.safetensors would inflate from \d+ to 8388608 bytes; refused"):
        load_model(bomb)
    assert max(inflated) < 2**20
    monkeypatch.setattr(files, "CARD_LIMIT", 10)
    with pytest.raises(ModelError, match=r"seamline\.json inflates to \d+ bytes, more than the 10 allowed"):
        files.read_file(bomb, "seamline.json", files.CARD_LIMIT)


def test_a_deeply_nested_card_is_a_model_error(saved):
    (saved / "seamline.json").write_text(
        '{"architecture": "core.UNet", "kwargs": ' + "[" * 100_000 + "]" * 100_000 + "}"
    )
    with pytest.raises(ModelError, match=r"seamline\.json nests deeper than 64 levels") as caught:
        load_model(saved)
    assert caught.value.path == str(saved)
    assert files.loads(b'{"a": "[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[["}') is not None


@pytest.mark.parametrize("text", ['{"in_channels": ' + "9" * 5000 + "}", b'{"a": "\xff"}'])
def test_json_beyond_what_json_reads_is_a_model_error(saved, text):
    (saved / "seamline.json").write_bytes(text.encode() if isinstance(text, str) else text)
    with pytest.raises(ModelError, match=r"seamline\.json is not valid JSON"):
        load_model(saved)


def test_a_hostile_safetensors_header(tmp_path):
    with pytest.raises(ModelError, match="a header of 18446744073709551615 bytes"):
        safetensors_shapes(b"\xff" * 8 + b"{}")
    header = json.dumps({"w": {"dtype": "F32", "shape": [10**9], "data_offsets": [0, 4 * 10**9]}}).encode()
    with pytest.raises(ModelError, match="truncated: tensor 'w' ends at byte 4000000000 of 0"):
        safetensors_shapes(len(header).to_bytes(8, "little") + header)
    data = save_tensors({"a": torch.zeros(2, 3), "b": torch.zeros(4)})
    assert safetensors_shapes(data) == {"a": (2, 3), "b": (4,)}


def test_mismatch_lists_the_first_missing_unexpected_and_misshaped_keys(card):
    module = build_module(card)
    state = {k: v for k, v in module.state_dict().items()}
    names = list(state)
    del state[names[0]], state[names[1]]
    state["extra.weight"] = torch.zeros(1)
    state[names[2]] = torch.zeros(7, 7)
    with pytest.raises(ModelError) as caught:
        fit_weights(module, state, source="w.safetensors", architecture="core.UNet")
    message = str(caught.value)
    assert message.startswith(f"w.safetensors: weights do not fit core.UNet: missing {names[0]} (and 1 more); ")
    assert "; unexpected extra.weight; " in message
    assert f"; mis-shaped {names[2]} ([7, 7] in the file, " in message and "\n" not in message
    assert weights_mismatch({"a": (1,), "b": (2,)}, {"a": (1,), "b": (2,)}) is None


def test_an_exception_without_a_message_still_makes_one_line(fresh_plugins, saved):
    class Silent:
        @hookimpl
        def seamline_models(self, register):
            from seamline.plugins import Architecture

            def build(in_channels, classes, **kwargs):
                raise ValueError()

            register(Architecture("test.Silent", build))

    fresh_plugins.register_plugin(Silent(), name="silent")
    _edit_card(saved, architecture="test.Silent", kwargs={})
    with pytest.raises(ModelError, match=r"cannot build 'test.Silent' from the card: ValueError$"):
        load_model(saved)
    assert first_line(RuntimeError("")) == "RuntimeError" and first_line(RuntimeError("\n\n x \n")) == "x"


def test_cli_bad_bundle_exits_2_with_one_line(tmp_path, saved):
    scene = tmp_path / "scene.zarr"
    import seamline

    seamline.save(Image.from_array(np.zeros((2, 16, 16), np.float32)), scene)
    _edit_card(saved, kwargs={"widths": [20_000, 40_000]})
    result = CliRunner().invoke(get_cli(), ["predict", str(scene), str(tmp_path / "out.zarr"), "-m", str(saved)])
    assert result.exit_code == 2, result.output
    assert result.output.count("\n") == 1 and result.output.startswith(f"error: {saved / 'weights.safetensors'}: ")
    assert not (tmp_path / "out.zarr").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_device_cuda_without_a_gpu_is_one_line(tmp_path, saved):
    scene = tmp_path / "scene.zarr"
    import seamline

    seamline.save(Image.from_array(np.zeros((2, 16, 16), np.float32)), scene)
    args = ["predict", str(scene), str(tmp_path / "out.zarr"), "-m", str(saved), "--device", "cuda"]
    result = CliRunner().invoke(get_cli(), args)
    assert result.exit_code == 2
    assert result.output == "error: --device cuda: no CUDA device is available here; use --device cpu or auto\n"
