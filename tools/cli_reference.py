"""Write docs/cli.md from the commands' own ``--help``, so the reference cannot drift.

Run: python tools/cli_reference.py   (tests/core/test_cli.py checks the file is current)
"""

from __future__ import annotations

from pathlib import Path

import click

from seamline.cli import get_cli

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"
WIDTH = 88

HEADER = """\
# Command line reference

`seamline` is one command with subcommands; plugins add their own (the geo plugin adds
`vectorize` and `demo`, the medical plugin `stats` and `dicom-info`, and `predict` gains an
option for each registered output such as `--polygons`, `--stats` or `--meshes`).
`seamline plugins --all` shows what is installed. This page is generated from the commands' `--help` by
`tools/cli_reference.py`.

Conventions shared by every command:

- Bad input (a file, an argument, a model bundle) prints one line, `error: <file>: <problem>`,
  and exits 2; other failures (a full disk, a refused permission: `error: <output>: cannot
  be written: <problem>`) exit 1; `seamline --debug <command> ...` shows the traceback instead.
- Outputs are written under a temporary name and renamed when complete, so a failed or
  interrupted run never leaves a half-written file at the output path, and the next run
  removes what a killed one left. An existing output is an error unless `--overwrite` is
  given; an output that is one of the command's inputs is an error even then, and so is an
  input that changed while the command read it. See docs/reliability.md.
- `SEAMLINE_PLUGINS=geo,medical` (comma-separated entry-point names) chooses which plugins
  load; unset, all of them do.
"""


def render() -> str:
    """The reference page: the group's help, then each command's, in name order."""
    cli = get_cli()
    root = click.Context(cli, info_name="seamline", terminal_width=WIDTH, max_content_width=WIDTH)
    sections = [HEADER, f"## seamline\n\n```text\n{cli.get_help(root)}\n```\n"]
    for name in cli.list_commands(root):
        command = cli.get_command(root, name)
        context = click.Context(command, info_name=name, parent=root, terminal_width=WIDTH, max_content_width=WIDTH)
        sections.append(f"## seamline {name}\n\n```text\n{command.get_help(context)}\n```\n")
    return "\n".join(sections)


if __name__ == "__main__":
    DOC.write_text(render())
    print(f"wrote {DOC}")
