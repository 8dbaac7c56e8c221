"""The notebooks are committed executed: with their figures, and nothing of the machine they ran on."""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import pytest

from tests.conftest import ROOT

NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
# A path under a folder that only exists on some machine: what a reader of the notebook must not see.
MACHINE_PATH = re.compile(r"/(?:home|Users|root|tmp|var|private|work|opt|mnt|srv)/|[A-Z]:\\\\")
IMAGE_TYPES = ("image/png", "image/jpeg", "image/svg+xml")


def _tool():
    spec = importlib.util.spec_from_file_location("execute_notebooks", ROOT / "tools" / "execute_notebooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _outputs(path: Path) -> list[dict]:
    cells = json.loads(path.read_text())["cells"]
    return [output for cell in cells if cell["cell_type"] == "code" for output in cell["outputs"]]


def test_there_are_notebooks():
    assert {p.name for p in NOTEBOOKS} >= {"glaciers.ipynb", "crop_fields.ipynb", "organs.ipynb"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_show_their_figures(path):
    notebook = json.loads(path.read_text())
    code = [cell for cell in notebook["cells"] if cell["cell_type"] == "code"]
    hint = f"run `python tools/execute_notebooks.py notebooks/{path.name}`"
    assert all(cell["execution_count"] is not None for cell in code), f"{path.name} is not executed: {hint}"
    figures = [o for o in _outputs(path) if any(kind in o.get("data", {}) for kind in IMAGE_TYPES)]
    assert figures, f"{path.name} has no figure in its outputs: {hint}"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_committed_notebooks_hold_no_machine_paths_or_timings(path):
    notebook = json.loads(path.read_text())
    for output in _outputs(path):
        assert output.get("name") != "stderr", f"{path.name}: standard error (progress bars, warnings) is stored"
        text = json.dumps({k: v for k, v in output.get("data", {}).items() if k not in IMAGE_TYPES})
        text += json.dumps(output.get("text", "")) + json.dumps(output.get("traceback", ""))
        assert not MACHINE_PATH.search(text), f"{path.name}: an absolute path in {text[:300]}"
    assert not any("execution" in cell.get("metadata", {}) for cell in notebook["cells"]), "cell timings are stored"


def test_scrubbing_replaces_folders_and_timings():
    tool = _tool()
    roots = [("/home/ana/seamline", "<repo>"), ("/tmp", "<tmp>")]
    text = "wrote /home/ana/seamline/out/a.tif and /tmp/seamline-glaciers-x1y2/run/model in 12.5 s (3.1 it/s)"
    assert tool.scrub_text(text, roots) == "wrote <repo>/out/a.tif and <tmp>/…/run/model in <time> (<rate>)"
    assert tool.scrub_text("329.2 km², (3.0, 3.0) mm, 5 seeds", roots) == "329.2 km², (3.0, 3.0) mm, 5 seeds"
    assert tool.ABSOLUTE_PATH.search("see /Users/ana/x") and not tool.ABSOLUTE_PATH.search("see <tmp>/x or a/tmp/b")


def test_scrubbing_drops_standard_error_timings_and_renumbers_cells():
    nbformat = pytest.importorskip("nbformat")
    tool = _tool()
    notebook = nbformat.v4.new_notebook()
    first, second = nbformat.v4.new_code_cell("1"), nbformat.v4.new_code_cell("print(2)")
    first.execution_count, second.execution_count = 7, 9
    first.metadata["execution"] = {"iopub.execute_input": "2024-01-01T00:00:00Z"}
    first.outputs = [nbformat.v4.new_output("execute_result", {"text/plain": "1"}, execution_count=7)]
    second.outputs = [
        nbformat.v4.new_output("stream", name="stdout", text="1\n"),
        nbformat.v4.new_output("stream", name="stderr", text="100%|██████| 8/8 [00:01<00:00, 6.2it/s]"),
        nbformat.v4.new_output("stream", name="stdout", text="2\n"),
    ]
    notebook.cells = [nbformat.v4.new_markdown_cell("# title"), first, second]
    notebook.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    tool.scrub(notebook)
    assert [first.execution_count, second.execution_count, first.outputs[0]["execution_count"]] == [1, 2, 1]
    assert "execution" not in first.metadata
    assert [(o["name"], o["text"]) for o in second.outputs] == [("stdout", "1\n2\n")]
    assert notebook.metadata["language_info"] == {"name": "python"}
