"""Execute the notebooks and store them with their outputs, free of anything machine-specific.

The notebooks in ``notebooks/`` are committed executed, so that anyone browsing them (on
GitHub, in the documentation site) sees their maps, volumes and tables. This tool runs
each one top to bottom in a fresh kernel (nbclient, from the notebook's folder, as
nbmake does in CI) and then scrubs what would differ from one machine or run to the next:

- absolute paths: the repository, the virtual environment and temporary folders become
  ``<repo>``, ``<venv>`` and ``<tmp>``; an absolute path that is left is an error;
- standard error (progress bars, warnings that quote library paths);
- timings: cell execution timestamps, and ``1.2 s`` / ``it/s`` figures in printed text;
- metadata noise: kernel and widget state, the Python patch version; execution counts
  are numbered 1, 2, ... in order.

The result is deterministic for a given set of library versions (the notebooks seed
their training). Usage, from the repository root::

    python tools/execute_notebooks.py                      # every notebook in notebooks/
    python tools/execute_notebooks.py notebooks/organs.ipynb
    python tools/execute_notebooks.py --scrub-only         # scrub the stored outputs again

Set ``SEAMLINE_DATA`` to the shared data folder when it is not ``../shared/data`` seen
from the repository (the notebooks fall back to synthetic data without it).
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path

import nbformat

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = ROOT / "notebooks"
TIMEOUT = 600

#: An absolute POSIX path under a folder that says which machine it was on, or a Windows drive path.
ABSOLUTE_PATH = re.compile(r"(?<![\w.~<>-])(?:/(?:home|Users|root|tmp|var|private|work|opt|mnt|srv|usr)/|[A-Za-z]:\\)")
_TIMINGS = [
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:s|ms|sec|seconds)\b(?=[\s).,;:]|$)"), "<time>"),
    (re.compile(r"\b\d+(?:\.\d+)?\s?(?:it/s|s/it)\b"), "<rate>"),
]
_TEXT_TYPES = ("text/plain", "text/html", "text/markdown", "text/latex")


def _roots() -> list[tuple[str, str]]:
    """The absolute folders to replace, longest first so that nested ones win."""
    roots = {
        str(ROOT): "<repo>",
        sys.prefix: "<venv>",
        sysconfig.get_paths()["purelib"]: "<site-packages>",
        os.path.realpath(tempfile.gettempdir()): "<tmp>",
        tempfile.gettempdir(): "<tmp>",
        str(Path.home()): "<home>",
    }
    data = os.environ.get("SEAMLINE_DATA")
    if data:
        roots[str(Path(data).resolve())] = "<data>"
    return sorted(roots.items(), key=lambda item: -len(item[0]))


def scrub_text(text: str, roots: Iterable[tuple[str, str]] | None = None) -> str:
    """*text* with absolute folders replaced by placeholders and timings hidden.

    Parameters
    ----------
    text : str
        Printed output.
    roots : iterable of (str, str), optional
        ``(folder, placeholder)`` pairs; by default the repository, the environment,
        the temporary folder and the home folder.

    Returns
    -------
    str
    """
    for folder, placeholder in roots if roots is not None else _roots():
        text = text.replace(folder, placeholder)
    text = re.sub(r"<tmp>/[^/\s'\"]+", "<tmp>/…", text)  # mkdtemp's random names
    for pattern, replacement in _TIMINGS:
        text = pattern.sub(replacement, text)
    return text


def _scrub_output(output: dict, roots: list[tuple[str, str]]) -> dict | None:
    """The output with paths and timings scrubbed; None for standard error."""
    if output.get("output_type") == "stream":
        if output.get("name") == "stderr":
            return None
        output["text"] = scrub_text("".join(output["text"]), roots)
    elif output.get("output_type") in ("execute_result", "display_data"):
        output.pop("execution_count", None)
        for kind in _TEXT_TYPES:
            if kind in output.get("data", {}):
                output["data"][kind] = scrub_text("".join(output["data"][kind]), roots)
        output["metadata"] = {}
    elif output.get("output_type") == "error":
        output["traceback"] = [scrub_text(line, roots) for line in output.get("traceback", [])]
        output["evalue"] = scrub_text(output.get("evalue", ""), roots)
    return output


def _joined_streams(outputs: list[dict]) -> list[dict]:
    """Outputs with consecutive prints to standard output joined (standard error between them is gone)."""
    joined: list[dict] = []
    for output in outputs:
        previous = joined[-1] if joined else None
        if previous is not None and output.get("output_type") == "stream" == previous.get("output_type"):
            previous["text"] = "".join(previous["text"]) + "".join(output["text"])
        else:
            joined.append(output)
    return joined


def scrub(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Remove what is machine- or run-specific from an executed notebook, in place.

    Parameters
    ----------
    notebook : nbformat.NotebookNode
        An executed notebook.

    Returns
    -------
    nbformat.NotebookNode
        The same notebook.
    """
    roots = _roots()
    count = 0
    for cell in notebook.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("ExecuteTime", None)
        if cell.cell_type != "code":
            continue
        count += 1
        cell.execution_count = count
        outputs = (_scrub_output(output, roots) for output in cell.get("outputs", []))
        cell.outputs = _joined_streams([output for output in outputs if output is not None])
        for output in cell.outputs:
            if output.get("output_type") == "execute_result":
                output["execution_count"] = count
    notebook.metadata.pop("widgets", None)
    notebook.metadata.pop("papermill", None)
    notebook.metadata.get("language_info", {}).pop("version", None)
    return notebook


def absolute_paths(notebook: nbformat.NotebookNode) -> list[str]:
    """Lines of a notebook's outputs that still hold an absolute path.

    Parameters
    ----------
    notebook : nbformat.NotebookNode

    Returns
    -------
    list of str
    """
    found = []
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            texts = [output.get("text", "")] + [output.get("data", {}).get(kind, "") for kind in _TEXT_TYPES]
            texts += output.get("traceback", [])
            for text in texts:
                found += [line for line in "".join(text).splitlines() if ABSOLUTE_PATH.search(line)]
    return found


def execute(path: Path) -> nbformat.NotebookNode:
    """Run *path* top to bottom in a fresh kernel from its folder, and return it with its outputs.

    Parameters
    ----------
    path : pathlib.Path
        A notebook.

    Returns
    -------
    nbformat.NotebookNode
    """
    from nbclient import NotebookClient

    notebook = nbformat.read(path, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(path.parent)}},
        record_timing=False,
    )
    client.execute()
    return notebook


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("notebooks", nargs="*", type=Path, help="notebooks (default: notebooks/*.ipynb)")
    parser.add_argument("--scrub-only", action="store_true", help="do not execute; scrub the stored outputs")
    args = parser.parse_args(argv)
    paths = args.notebooks or sorted(NOTEBOOKS.glob("*.ipynb"))
    failed = False
    for path in paths:
        started = time.perf_counter()
        notebook = nbformat.read(path, as_version=4) if args.scrub_only else execute(path)
        scrub(notebook)
        left = absolute_paths(notebook)
        if left:
            failed = True
            print(f"{path}: absolute paths left in the outputs:", *left, sep="\n  ", file=sys.stderr)
            continue
        nbformat.write(notebook, path)
        done = "scrubbed" if args.scrub_only else f"executed in {time.perf_counter() - started:.0f} s"
        print(f"{path}: {done}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
