"""A plugin whose extra is not installed is listed as such, and what needs it says how to install it."""

from __future__ import annotations

import importlib
import importlib.util
import json
import sys
import textwrap

import pytest

import seamline
from seamline.cli import main
from seamline.errors import NotInstalledError

PLUGIN = '''
from seamline import hookimpl
from seamline.plugins import Reader, deferred


@hookimpl
def seamline_readers(register):
    register(Reader(name="sky", can_open=lambda path: path.endswith(".sky"),
                    open=deferred("skyplugin.reader", "open_sky"), suffixes=(".sky",)))


@hookimpl
def seamline_commands(cli):
    import click

    @cli.command("stars")
    def stars():
        """Count stars."""
        import skyplugin.reader  # noqa: F401
'''

READER = """
import not_a_real_library_for_seamline_tests  # what the [sky] extra would install


def open_sky(path, chunks=None):
    raise AssertionError("never reached")
"""


@pytest.fixture
def sky(tmp_path, monkeypatch, fresh_plugins):
    """A distribution 'skyplugin' whose entry point 'sky' needs the extra [sky], which lacks a library."""
    package = tmp_path / "skyplugin"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "plugin.py").write_text(textwrap.dedent(PLUGIN))
    (package / "reader.py").write_text(textwrap.dedent(READER))
    info = tmp_path / "skyplugin-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: skyplugin\nVersion: 1.2.0\nProvides-Extra: sky\n"
        'Requires-Dist: numpy\nRequires-Dist: not-a-real-library-for-seamline-tests; extra == "sky"\n'
    )
    (info / "entry_points.txt").write_text("[seamline]\nsky = skyplugin.plugin\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    yield tmp_path
    for name in [m for m in sys.modules if m.startswith("skyplugin")]:
        del sys.modules[name]


def test_listed_as_not_installed_with_the_command_that_installs_it(sky, capsys):
    infos = {info.name: info for info in seamline.plugins.list_plugins()}
    assert infos["sky"].missing == ("not-a-real-library-for-seamline-tests",)
    assert infos["sky"].install == "pip install 'skyplugin[sky]'"
    assert not infos["sky"].builtin and infos["sky"].version == "1.2.0"
    assert infos["core"].installed and infos["core"].builtin and infos["geo"].builtin
    with pytest.raises(SystemExit):
        main(["plugins"])
    assert "sky 1.2.0: not installed (pip install 'skyplugin[sky]')" in capsys.readouterr().out
    with pytest.raises(SystemExit):
        main(["plugins", "--json"])
    rows = {row["name"]: row for row in json.loads(capsys.readouterr().out)}
    assert rows["sky"]["install"] == "pip install 'skyplugin[sky]'" and rows["core"]["install"] is None


def test_opening_its_format_names_the_extra(sky):
    path = sky / "night.sky"
    path.write_text("")
    with pytest.raises(NotInstalledError, match=r"the sky plugin is not installed \(pip install 'skyplugin\[sky\]'\)"):
        seamline.open(path)


def test_its_command_is_one_line_and_exit_2(sky, capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["stars"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.strip() == (
        "error: the sky plugin is not installed (pip install 'skyplugin[sky]'); "
        "missing: not-a-real-library-for-seamline-tests"
    )


def test_an_unrelated_import_error_is_not_blamed_on_a_plugin(sky):
    try:
        import not_a_real_library_for_seamline_tests  # noqa: F401
    except ImportError as exc:
        assert seamline.plugins.not_installed(exc) is None


@pytest.mark.skipif(importlib.util.find_spec("rasterio") is not None, reason="the geo plugin's libraries are installed")
def test_with_the_core_alone_the_domain_plugins_say_how_to_add_them(fresh_plugins, capsys):
    with pytest.raises(SystemExit):
        main(["plugins"])
    out = capsys.readouterr().out
    assert "geo 0.1.0 (built-in): not installed (pip install 'seamline[geo]')" in out.replace(
        seamline.__version__, "0.1.0"
    )
    with pytest.raises(SystemExit) as exit_info:
        main(["demo"])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.startswith("error: the geo plugin is not installed (pip install 'seamline[geo]')")
