"""Gather the pictures seamline makes into docs/gallery/, and write the gallery page.

The documentation site's gallery (``docs/gallery.md``) shows:

- every figure the notebooks store in their outputs (execute them first with
  ``tools/execute_notebooks.py``), captioned with the section it belongs to;
- the ``seamline demo`` map, made here (a few seconds, offline);
- three-slice previews of TotalSegmentator's CT and MR examples with their reference
  organs, made here when the shared data is there (``SEAMLINE_DATA`` or ../shared/data);
- the benchmarks' figures, which the benchmarks write themselves into
  ``docs/gallery/benchmarks/`` (``python benchmarks/train_glaciers.py --figure
  docs/gallery/benchmarks/glaciers.png``; each caption is a ``.txt`` beside the figure, else
  the file name).

Pictures are stored as JPEG (quality 85) to keep the repository small; the page links
them by relative paths. Run from anywhere: ``python tools/make_gallery.py``.
"""

from __future__ import annotations

import base64
import io
import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
GALLERY = DOCS / "gallery"
BENCHMARKS = GALLERY / "benchmarks"
DATA = Path(os.environ.get("SEAMLINE_DATA") or ROOT.parent / "shared" / "data")
QUALITY = 85


def _save_jpeg(picture: bytes, path: Path) -> None:
    from PIL import Image as Picture

    with Picture.open(io.BytesIO(picture)) as image:
        image.convert("RGB").save(path, "JPEG", quality=QUALITY, optimize=True)


def _heading(source: str) -> str | None:
    for line in source.splitlines():
        if line.startswith("#"):
            return line.lstrip("#").strip()
    return None


def notebook_figures(notebook: Path, folder: Path) -> list[tuple[str, str]]:
    """Save the figures stored in *notebook*'s outputs into *folder*.

    Parameters
    ----------
    notebook : pathlib.Path
        An executed notebook.
    folder : pathlib.Path
        Where the JPEGs go.

    Returns
    -------
    list of (str, str)
        The file name and caption (the notebook's title and the section) of each figure.
    """
    cells = json.loads(notebook.read_text())["cells"]
    title, section, figures = notebook.stem, None, []
    for cell in cells:
        source = "".join(cell["source"])
        if cell["cell_type"] == "markdown" and _heading(source):
            if source.lstrip().startswith("# "):
                title = _heading(source)
            else:
                section = _heading(source)
        for output in cell.get("outputs", []):
            for kind in ("image/png", "image/jpeg"):
                if kind in output.get("data", {}):
                    name = f"{notebook.stem}-{len(figures) + 1}.jpg"
                    _save_jpeg(base64.b64decode("".join(output["data"][kind])), folder / name)
                    caption = f"[{title}](notebooks/{notebook.name})" + (f": {section}" if section else "")
                    figures.append((name, caption))
    return figures


def demo_figure(folder: Path) -> list[tuple[str, str]]:
    """Run ``seamline demo`` and keep its map."""
    from seamline_geo.demo import run_demo

    with tempfile.TemporaryDirectory() as out:
        summary = run_demo(Path(out), progress=False)
        _save_jpeg(summary["paths"]["preview"].read_bytes(), folder / "demo.jpg")
    caption = "`seamline demo`: glaciers near Everest, with the RGI 6.0 outlines, a scale bar and UTM coordinates"
    return [("demo.jpg", caption)]


def medical_figures(folder: Path) -> list[tuple[str, str]]:
    """Three slices of TotalSegmentator's CT and (LPS-stored) MR with their reference organs."""
    from matplotlib.figure import Figure

    import seamline
    from seamline_medical.presets import ct_window

    examples = DATA / "totalsegmentator_ct_mr"
    if not examples.is_dir():
        print(f"no shared data at {examples}: the CT and MR figures are left as they are", file=sys.stderr)
        return [(p.name, p.with_suffix(".txt").read_text().strip()) for p in sorted(folder.glob("ct*.jpg"))]
    names = json.loads((examples / "label_names.json").read_text())
    cases = [
        ("ct.jpg", "example_ct.nii.gz", "example_seg_fast_force_split.nii.gz", "total", ct_window("soft-tissue")),
        (
            "mr.jpg",
            "example_mr_sm.nii.gz",
            "example_seg_mr.nii.gz",
            "total_mr",
            {"kind": "percentile", "low": 1, "high": 99},
        ),
    ]
    captions = {
        "ct.jpg": "CT with TotalSegmentator's organs, soft-tissue window: the liver on the left of the screen",
        "mr.jpg": "MR stored LPS, drawn in the same radiological convention as the RAS CT",
    }
    figures = []
    for name, image, labels, task, window in cases:
        organs = seamline.open(examples / labels)
        organs = organs.replace(meta={**organs.meta, "class_names": {int(k): v for k, v in names[task].items()}})
        figure = Figure(dpi=80)
        seamline.show(seamline.open(examples / image), organs, window=window, ax=figure)
        buffer = io.BytesIO()
        figure.savefig(buffer, format="png", bbox_inches="tight")
        _save_jpeg(buffer.getvalue(), folder / name)
        figures.append((name, captions[name]))
    return figures


def benchmark_figures() -> list[tuple[str, str]]:
    """The figures benchmarks saved into docs/gallery/benchmarks/, with their captions."""
    figures = []
    for path in sorted(BENCHMARKS.glob("*.png")) + sorted(BENCHMARKS.glob("*.jpg")):
        if path.suffix == ".png":
            _save_jpeg(path.read_bytes(), path.with_suffix(".jpg"))
            path.unlink()
            path = path.with_suffix(".jpg")
        note = path.with_suffix(".txt")
        figures.append((f"benchmarks/{path.name}", note.read_text().strip() if note.exists() else path.stem))
    return figures


BENCHMARK_NOTE = (
    "The benchmarks draw these on the full data: `python benchmarks/train_glaciers.py --figure "
    "docs/gallery/benchmarks/glaciers.png` and `python benchmarks/train_organs.py --figure "
    "docs/gallery/benchmarks/organs.png`, then `python tools/make_gallery.py`."
)


def page(sections: list[tuple[str, str, list[tuple[str, str]]]]) -> str:
    """The gallery page: one section per source (a title, a note, figures with their captions)."""
    lines = [
        "# Gallery",
        "",
        "Pictures seamline makes, as `seamline.show` and `--preview` draw them (see [previews](previews.md)).",
        "This page is written by `tools/make_gallery.py`; do not edit it by hand.",
    ]
    for title, note, figures in sections:
        if not figures and not note:
            continue
        lines += ["", f"## {title}"] + (["", note] if note else [])
        for name, caption in figures:
            alt = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", caption).replace("`", "")
            lines += ["", f"![{alt}](gallery/{name})", "", f"*{caption}*"]
    return "\n".join(lines) + "\n"


def main() -> int:
    notebooks_folder = GALLERY / "notebooks"
    shutil.rmtree(notebooks_folder, ignore_errors=True)
    for folder in (notebooks_folder, BENCHMARKS):
        folder.mkdir(parents=True, exist_ok=True)
    medical = medical_figures(GALLERY)
    for name, caption in medical:
        (GALLERY / name).with_suffix(".txt").write_text(caption + "\n")
    notebooks = [
        (f"notebooks/{name}", caption)
        for notebook in sorted((ROOT / "notebooks").glob("*.ipynb"))
        for name, caption in notebook_figures(notebook, notebooks_folder)
    ]
    sections = [
        ("The demo", "", demo_figure(GALLERY)),
        ("Volumes", "", medical),
        ("Notebooks", "", notebooks),
        ("Benchmarks", BENCHMARK_NOTE, benchmark_figures()),
    ]
    (DOCS / "gallery.md").write_text(page(sections))
    print(f"wrote {DOCS / 'gallery.md'} with {sum(len(f) for _, _, f in sections)} figures")
    return 0


if __name__ == "__main__":
    sys.exit(main())
