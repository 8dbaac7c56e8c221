"""The command line: version, one-line errors, exit codes, --debug."""

from __future__ import annotations

import runpy
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from seamline import InputError, ModelError, hookimpl
from seamline.cli import get_cli


class FailingCommands:
    """A plugin whose commands fail in the ways the CLI must report."""

    @hookimpl
    def seamline_commands(self, cli):
        @cli.command("fail")
        @click.argument("kind")
        def fail(kind):
            if kind == "input":
                raise InputError("not a GeoTIFF", "scene.tif")
            if kind == "model":
                raise ModelError("weights do not match the architecture", "bundle")
            raise ZeroDivisionError("boom")


@pytest.fixture
def cli(fresh_plugins):
    fresh_plugins.register_plugin(FailingCommands(), name="failing")
    return get_cli()


def test_version(cli):
    result = CliRunner().invoke(cli, ["--version"])
    assert result.exit_code == 0 and result.output.startswith("seamline, version ")


@pytest.mark.parametrize(
    ("kind", "code", "line"),
    [
        ("input", 2, "error: scene.tif: not a GeoTIFF"),
        ("model", 2, "error: bundle: weights do not match the architecture"),
        ("other", 1, "error: ZeroDivisionError: boom (run with --debug for the traceback)"),
    ],
)
def test_errors_are_one_line_without_traceback(cli, kind, code, line):
    result = CliRunner().invoke(cli, ["fail", kind])
    assert result.exit_code == code
    assert result.output.strip() == line
    assert "Traceback" not in result.output


def test_debug_shows_the_exception(cli):
    result = CliRunner().invoke(cli, ["--debug", "fail", "input"])
    assert isinstance(result.exception, InputError)


def test_cli_reference_is_current():
    reference = runpy.run_path(str(Path(__file__).resolve().parents[2] / "tools" / "cli_reference.py"))
    assert reference["DOC"].read_text() == reference["render"](), "run: python tools/cli_reference.py"
