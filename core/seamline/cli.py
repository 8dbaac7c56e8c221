"""The ``seamline`` command line.

The group itself offers ``--version``, ``--debug`` and ``plugins``; every other command
comes from a plugin's ``seamline_commands`` hook (the core's own ``predict``,
``train`` and ``evaluate`` included, from :mod:`seamline.builtins`).

Errors: a :class:`~seamline.errors.SeamlineError` prints one line,
``error: <file>: <problem>``, and exits 2 for bad input and 1 otherwise; ``--debug``
shows the traceback instead.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import click

from . import __version__
from .errors import SeamlineError
from .plugins import KINDS, add_commands, list_plugins, not_installed, owners

__all__ = ["cli", "get_cli", "main"]


class SeamlineGroup(click.Group):
    """A click group that turns seamline errors into one line and an exit code."""

    def invoke(self, ctx: click.Context) -> object:
        """Run the command; a SeamlineError becomes one line and its exit code."""
        try:
            return super().invoke(ctx)
        except SeamlineError as exc:
            if ctx.params.get("debug"):
                raise
            click.echo(f"error: {exc}", err=True)
            ctx.exit(exc.exit_code)
        except (click.exceptions.Exit, click.ClickException, click.Abort):
            raise
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            ctx.exit(130)
        except Exception as exc:
            if ctx.params.get("debug"):
                raise
            missing = not_installed(exc)
            if missing is not None:
                click.echo(f"error: {missing}", err=True)
                ctx.exit(missing.exit_code)
            click.echo(f"error: {type(exc).__name__}: {exc} (run with --debug for the traceback)", err=True)
            ctx.exit(1)


@click.group(cls=SeamlineGroup)
@click.version_option(__version__, "--version", prog_name="seamline")
@click.option("--debug", is_flag=True, help="Show full tracebacks.")
def cli(debug: bool) -> None:
    """seamline: seamless tiled segmentation of huge rasters and volumes."""


@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Also list what each plugin registers.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def plugins_command(show_all: bool, as_json: bool) -> None:
    """List plugins, their versions and the hooks they implement."""
    infos = list_plugins()
    rows: list[dict[str, Any]] = [
        {"name": i.name, "version": i.version, "hooks": list(i.hooks), "builtin": i.builtin, "install": i.install}
        for i in infos
    ]
    if show_all:
        for kind in KINDS:
            for name, owner in owners(kind).items():
                for row in rows:
                    if row["name"] == owner:
                        row.setdefault(kind, []).append(name)
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    for row in rows:
        tag = " (built-in)" if row["builtin"] else ""
        missing = f": not installed ({row['install']})" if row["install"] else ""
        click.echo(f"{row['name']} {row['version'] or ''}{tag}{missing}")
        click.echo(f"  hooks: {', '.join(row['hooks']) or '-'}")
        for kind in KINDS:
            if row.get(kind):
                click.echo(f"  {kind}: {', '.join(row[kind])}")


def get_cli() -> click.Group:
    """Return a ``seamline`` group holding the commands of the plugins loaded now.

    Each call builds a new group, so commands of a plugin registered for a while (a test,
    a notebook) do not outlive it.

    Returns
    -------
    click.Group
    """
    group = copy.copy(cli)
    group.commands = dict(cli.commands)
    add_commands(group)
    return group


def main(argv: list[str] | None = None) -> None:
    """Run the ``seamline`` command line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments; ``sys.argv[1:]`` by default.
    """
    get_cli().main(args=argv, prog_name="seamline")
