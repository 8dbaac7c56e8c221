"""The gallery tool: figures out of the notebooks' outputs, and a page that links them relatively."""

from __future__ import annotations

import base64
import importlib.util
import io
import json
import re

import numpy as np
import pytest

from tests.conftest import ROOT


def _tool():
    spec = importlib.util.spec_from_file_location("make_gallery", ROOT / "tools" / "make_gallery.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_notebook_figures_are_saved_with_their_section(tmp_path):
    picture = pytest.importorskip("PIL.Image")
    buffer = io.BytesIO()
    picture.fromarray(np.full((8, 12, 3), 200, np.uint8)).save(buffer, "PNG")
    figure = {
        "output_type": "display_data",
        "metadata": {},
        "data": {"image/png": base64.b64encode(buffer.getvalue()).decode()},
    }
    cells = [
        {"cell_type": "markdown", "metadata": {}, "source": "# Mapping lakes\n\nintro"},
        {"cell_type": "markdown", "metadata": {}, "source": "## The map"},
        {"cell_type": "code", "metadata": {}, "source": "show()", "outputs": [figure], "execution_count": 1},
    ]
    notebook = tmp_path / "lakes.ipynb"
    notebook.write_text(json.dumps({"cells": cells, "metadata": {}, "nbformat": 4, "nbformat_minor": 5}))
    figures = _tool().notebook_figures(notebook, tmp_path)
    assert figures == [("lakes-1.jpg", "[Mapping lakes](notebooks/lakes.ipynb): The map")]
    with picture.open(tmp_path / "lakes-1.jpg") as saved:
        assert saved.format == "JPEG" and saved.size == (12, 8)


def test_the_page_links_figures_relatively_with_plain_alt_text():
    text = _tool().page(
        [("Maps", "", [("demo.jpg", "`seamline demo` in [the guide](previews.md)")]), ("Empty", "", [])]
    )
    assert "![seamline demo in the guide](gallery/demo.jpg)" in text
    assert "*`seamline demo` in [the guide](previews.md)*" in text and "## Empty" not in text


def test_the_committed_gallery_shows_only_pictures_that_are_there():
    gallery = (ROOT / "docs" / "gallery.md").read_text()
    pictures = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", gallery)
    assert pictures and all((ROOT / "docs" / picture).is_file() for picture in pictures)
    assert not re.search(r"\]\(/", gallery)  # no absolute paths
