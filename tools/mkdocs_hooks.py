"""mkdocs hooks: the site's home page is the README, its notebooks are notebooks/, and docstring roles link.

- The README is written for the repository's front page, with links like
  ``docs/engine.md``; the site's home page is that README with those links made
  relative to ``docs/``.
- The notebooks stay in ``notebooks/`` (nbmake runs them there) and join the site as
  ``notebooks/<name>.ipynb``, rendered by mkdocs-jupyter with their stored outputs.
- Docstrings cross-reference in Sphinx's roles (``:func:`seamline.open```), which
  Markdown leaves as text; they become mkdocs-autorefs references, links where the
  object has a page and plain code where it has none.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from mkdocs.plugins import event_priority
from mkdocs.structure.files import File, Files

ROOT = Path(__file__).resolve().parents[1]
_README_LINK = re.compile(r"\]\(docs/")
_ROLE = re.compile(r":(?:func|class|meth|mod|data|attr|exc|obj):<code>(~?)([\w.]+?)(\(\))?</code>")


def readme_as_home(text: str) -> str:
    """The README with its ``docs/`` links made relative to the docs folder.

    Parameters
    ----------
    text : str
        README.md.

    Returns
    -------
    str
    """
    return _README_LINK.sub("](", text)


def roles_as_references(html: str) -> str:
    """Sphinx roles left in rendered docstrings, as optional mkdocs-autorefs references.

    Parameters
    ----------
    html : str
        A page's HTML.

    Returns
    -------
    str

    Examples
    --------
    >>> roles_as_references(":func:<code>~seamline.io.open</code>")
    '<autoref identifier="seamline.io.open" optional><code>open</code></autoref>'
    """

    def reference(match: re.Match[str]) -> str:
        short, identifier, call = match.groups()
        title = (identifier.rsplit(".", 1)[-1] if short else identifier) + (call or "")
        return f'<autoref identifier="{identifier}" optional><code>{title}</code></autoref>'

    return _ROLE.sub(reference, html)


@event_priority(100)  # before mkdocs-jupyter looks for notebooks among the files
def on_files(files: Files, config: Any) -> Files:
    files.append(File.generated(config, "index.md", content=readme_as_home((ROOT / "README.md").read_text())))
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        files.append(
            File(
                f"notebooks/{notebook.name}",
                src_dir=str(ROOT),
                dest_dir=config["site_dir"],
                use_directory_urls=config["use_directory_urls"],
            )
        )
    return files


def on_page_content(html: str, **kwargs: Any) -> str:
    return roles_as_references(html)
