"""The documentation site: every public module has an API page, and the site's hooks do what they say.

CI builds the site itself (``mkdocs build --strict``: broken links, missing pages and
docstring warnings fail it); these tests keep its inputs complete and its hooks right.
"""

from __future__ import annotations

import importlib.util
import re

import pytest

from tests.conftest import ROOT

# Modules with an __all__ that are not API: command-line glue, path recognizers, a re-export shim.
NOT_API = {
    "seamline.cli",
    "seamline.catalog",
    "seamline_geo.commands",
    "seamline_geo.formats",
    "seamline_medical.commands",
    "seamline_medical.formats",
    "seamline_medical.nifti",
}


def _public_modules() -> set[str]:
    modules = set()
    for base in ("core", "plugins"):
        for path in (ROOT / base).rglob("*.py"):
            parts = path.relative_to(ROOT / base).with_suffix("").parts
            if any(part.startswith("_") for part in parts) or "__all__" not in path.read_text():
                continue  # private, a package's __init__, or a module without a public API
            name = ".".join(parts)
            if name not in NOT_API and not name.endswith("_command"):
                modules.add(name)
    return modules


def test_every_public_module_has_an_api_page():
    pages = "".join(path.read_text() for path in (ROOT / "docs" / "api").glob("*.md"))
    documented = set(re.findall(r"^::: ([\w.]+)", pages, flags=re.MULTILINE))
    missing = sorted(_public_modules() - documented)
    assert not missing, f"add `::: <module>` for {missing} to a page in docs/api/ (or to NOT_API if it is not API)"


def test_every_page_is_in_the_navigation():
    config = (ROOT / "mkdocs.yml").read_text()
    pages = {p.relative_to(ROOT / "docs").as_posix() for p in (ROOT / "docs").rglob("*.md")}
    notebooks = {f"notebooks/{p.name}" for p in (ROOT / "notebooks").glob("*.ipynb")}
    missing = sorted(page for page in pages | notebooks if page not in config)
    assert not missing, f"add {missing} to the nav of mkdocs.yml"


def _hooks():
    pytest.importorskip("mkdocs")
    spec = importlib.util.spec_from_file_location("mkdocs_hooks", ROOT / "tools" / "mkdocs_hooks.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_home_page_is_the_readme_with_links_into_docs():
    home = _hooks().readme_as_home((ROOT / "README.md").read_text())
    assert "](docs/" not in home and "](engine.md)" in home
    for link in re.findall(r"\]\(([^)#:]+)[)#]", home):  # every relative link leads to a page of the site
        assert (ROOT / "docs" / link).exists() or ((ROOT / link).exists() and link.startswith("notebooks/")), link


def test_docstring_roles_become_optional_references():
    roles = _hooks().roles_as_references
    assert roles(":class:<code>~seamline.plugins.Reader</code>") == (
        '<autoref identifier="seamline.plugins.Reader" optional><code>Reader</code></autoref>'
    )
    assert roles("see :func:<code>seamline.io.open()</code>.") == (
        'see <autoref identifier="seamline.io.open" optional><code>seamline.io.open()</code></autoref>.'
    )
    assert roles("a <code>plain</code> span") == "a <code>plain</code> span"
