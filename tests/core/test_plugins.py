"""The plugin contract: entry points, duplicates, broken plugins, selection, no torch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

import seamline
from seamline import hookimpl
from seamline.cli import get_cli
from seamline.errors import InputError, PluginError
from seamline.plugins import Reader, Writer

NPY_PLUGIN = '''
"""A third-party plugin: a reader and a writer for .npy files."""
import numpy as np
import seamline
from seamline import hookimpl
from seamline.plugins import Reader, Writer


def _open(path, chunks=None, **options):
    return seamline.Image.from_array(np.load(path, mmap_mode="r"), chunks=chunks or "auto")


def _save(image, path, *, overwrite=False, **options):
    with seamline.atomic_output(path, overwrite=overwrite) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, image.data.compute())


@hookimpl
def seamline_readers(register):
    register(Reader(name="npy", can_open=lambda p: p.endswith(".npy"), open=_open, suffixes=(".npy",)))


@hookimpl
def seamline_writers(register):
    register(Writer(name="npy", can_save=lambda p: p.endswith(".npy"), save=_save, suffixes=(".npy",)))
'''


def _install_plugin(root: Path, module: str, source: str, entry_name: str) -> None:
    """Lay out a module and its dist-info on *root*, as pip would install it."""
    (root / f"{module}.py").write_text(textwrap.dedent(source))
    info = root / f"{module}-0.3.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {module}\nVersion: 0.3\n")
    (info / "entry_points.txt").write_text(f"[seamline]\n{entry_name} = {module}\n")


@pytest.fixture
def site(tmp_path, monkeypatch, fresh_plugins):
    """A directory on sys.path where tests install third-party plugins."""
    root = tmp_path / "site"
    root.mkdir()
    monkeypatch.syspath_prepend(str(root))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(root), os.environ.get("PYTHONPATH", "")]))
    return root


def _cli(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    code = "import sys; from seamline.cli import main; main(sys.argv[1:])"
    return subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


def test_third_party_reader_is_listed_and_used(site, tmp_path):
    _install_plugin(site, "npy_plugin", NPY_PLUGIN, "npy")
    array = np.arange(2 * 5 * 7, dtype="float32").reshape(2, 5, 7)
    np.save(tmp_path / "a.npy", array)

    image = seamline.open(tmp_path / "a.npy")
    np.testing.assert_array_equal(image.data.compute(), array)
    seamline.save(image[:, 1:3], tmp_path / "b.npy")
    np.testing.assert_array_equal(np.load(tmp_path / "b.npy"), array[:, 1:3])

    listing = json.loads(_cli("plugins", "--json", "--all").stdout)
    npy = next(row for row in listing if row["name"] == "npy")
    assert npy["version"] == "0.3"
    assert npy["readers"] == ["npy"] and npy["writers"] == ["npy"]
    assert not npy["builtin"]
    assert {"core", "geo", "medical"} <= {row["name"] for row in listing if row["builtin"]}


def test_broken_plugin_warns_and_the_rest_works(site):
    _install_plugin(site, "broken_plugin", "raise ImportError('missing dependency: frobnicate')\n", "broken")
    with pytest.warns(RuntimeWarning, match="broken.*frobnicate"):
        names = {info.name for info in seamline.plugins.list_plugins()}
    assert "broken" not in names and "core" in names

    result = _cli("plugins")
    assert result.returncode == 0, result.stderr
    assert "broken" in result.stderr and "core" in result.stdout


def test_a_plugin_whose_hooks_raise_is_skipped_with_a_warning(fresh_plugins):
    class Faulty:
        @hookimpl
        def seamline_readers(self, register):
            raise RuntimeError("no GDAL here")

        @hookimpl
        def seamline_commands(self, cli):
            raise KeyError("click")

    fresh_plugins.register_plugin(Faulty(), name="faulty")
    with pytest.warns(RuntimeWarning, match="'faulty' failed in seamline_readers.*no GDAL here"):
        assert "zarr" in fresh_plugins.registry("readers")
    with pytest.warns(RuntimeWarning, match="'faulty' failed in seamline_commands"):
        assert "plugins" in get_cli().commands


def test_two_plugins_claiming_one_name_is_an_error_naming_both(fresh_plugins):
    class First:
        @hookimpl
        def seamline_readers(self, register):
            register(Reader(name="tiff", can_open=lambda p: False, open=None))

    class Second(First):
        pass

    fresh_plugins.register_plugin(First(), name="first")
    fresh_plugins.register_plugin(Second(), name="second")
    with pytest.raises(PluginError, match="'first' and 'second' both register reader 'tiff'"):
        fresh_plugins.registry("readers")


def test_a_record_of_the_wrong_type_is_an_error(fresh_plugins):
    class Wrong:
        @hookimpl
        def seamline_writers(self, register):
            register(Reader(name="x", can_open=lambda p: False, open=None))

    fresh_plugins.register_plugin(Wrong(), name="wrong")
    with pytest.raises(PluginError, match="'wrong' registered Reader from seamline_writers"):
        fresh_plugins.registry("writers")


def test_environment_variable_chooses_plugins(monkeypatch, fresh_plugins):
    monkeypatch.setenv("SEAMLINE_PLUGINS", "core")
    assert [info.name for info in fresh_plugins.list_plugins()] == ["core"]
    fresh_plugins.reset()
    monkeypatch.setenv("SEAMLINE_PLUGINS", "")
    assert fresh_plugins.list_plugins() == []


def test_unknown_format_lists_what_is_supported(tmp_path, fresh_plugins):
    path = tmp_path / "scene.xyz"
    path.write_bytes(b"\0")
    with pytest.raises(InputError, match=r"scene\.xyz: no reader for this format; supported: .*\.zarr"):
        seamline.open(path)
    with pytest.raises(InputError, match=r"out\.xyz: no writer for this format; supported:"):
        seamline.save(seamline.Image.from_array(np.zeros((1, 2, 2))), tmp_path / "out.xyz")
    with pytest.raises(InputError, match=r"missing\.tif: no such file"):
        seamline.open(tmp_path / "missing.tif")


def test_listing_plugins_imports_no_torch():
    code = textwrap.dedent(
        """
        import sys
        from seamline.cli import main
        try:
            main(["plugins", "--all", "--json"])
        except SystemExit as exit:
            assert exit.code in (0, None), exit.code
        heavy = sorted(m for m in ("torch", "monai", "segmentation_models_pytorch", "timm") if m in sys.modules)
        print("HEAVY", heavy, file=sys.stderr)
        sys.exit(1 if heavy else 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_writer_record_is_typed():
    writer = Writer(name="w", can_save=lambda p: True, save=lambda *a, **k: None)
    with pytest.raises(AttributeError):
        writer.name = "other"  # records are frozen


def test_options_a_reader_or_writer_does_not_take_are_input_errors(tmp_path):
    image = seamline.Image.from_array(np.zeros((1, 4, 4)))
    seamline.save(image, tmp_path / "a.zarr")
    with pytest.raises(InputError, match=r"a\.zarr: the zarr reader takes no option 'bands'"):
        seamline.open(tmp_path / "a.zarr", bands=[1])
    with pytest.raises(InputError, match=r"b\.zarr: the zarr writer takes no option 'cog'"):
        seamline.save(image, tmp_path / "b.zarr", cog=False)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.zarr"]


def test_a_refused_write_names_the_output(tmp_path, fresh_plugins):
    class Refusing:
        @staticmethod
        def save(image, path, *, overwrite=False):
            raise PermissionError(13, "Permission denied")

        @hookimpl
        def seamline_writers(self, register):
            register(Writer(name="refusing", can_save=lambda p: p.endswith(".deny"), save=self.save))

    fresh_plugins.register_plugin(Refusing(), name="refusing")
    with pytest.raises(seamline.SeamlineError, match=r"c\.deny: cannot be written: permission denied$"):
        seamline.save(seamline.Image.from_array(np.zeros((1, 4, 4))), tmp_path / "c.deny")
