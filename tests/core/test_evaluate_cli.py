"""``seamline evaluate``: a table, a JSON report, and one-line errors naming both files."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from seamline import Image, hookimpl
from seamline.cli import get_cli
from seamline.metrics import evaluate
from seamline.plugins import Reader


def _open_npz(path: str, chunks=None) -> Image:
    with np.load(path, allow_pickle=False) as data:
        return Image.from_array(data["labels"][None], affine=data["affine"], chunks=chunks or 8)


class NpzReader:
    """A tiny third-party reader: labels and affine in a .npz file."""

    @hookimpl
    def seamline_readers(self, register):
        register(Reader("npz-labels", lambda path: path.endswith(".npz"), _open_npz, (".npz",)))


@pytest.fixture
def cli(fresh_plugins):
    fresh_plugins.register_plugin(NpzReader(), name="npz")
    return get_cli()


def save(path: Path, labels: np.ndarray, affine: np.ndarray | None = None) -> str:
    np.savez(path, labels=labels, affine=np.eye(labels.ndim + 1) if affine is None else affine)
    return str(path)


@pytest.fixture
def files(tmp_path):
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 3, (20, 16))
    pred = np.where(rng.random((20, 16)) < 0.8, truth, rng.integers(0, 3, (20, 16)))
    return save(tmp_path / "pred.npz", pred), save(tmp_path / "truth.npz", truth), pred, truth


def test_prints_the_table_and_writes_json(cli, files, tmp_path):
    pred_path, truth_path, pred, truth = files
    out = tmp_path / "report.json"
    result = CliRunner().invoke(
        cli, ["evaluate", pred_path, truth_path, "--classes", "bg,ice,rock", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "ice" in result.output and "mean_iou" in result.output
    report = json.loads(out.read_text())
    assert report["summary"]["mean_iou"] == pytest.approx(evaluate(pred, truth).mean_iou)
    assert [row["name"] for row in report["per_class"]] == ["bg", "ice", "rock"]
    again = CliRunner().invoke(cli, ["evaluate", pred_path, truth_path, "--json", str(out)])
    assert again.exit_code == 2 and "exists" in again.output


def test_spacing_and_objects_add_their_metrics(cli, tmp_path):
    truth = np.zeros((6, 8, 8), dtype=np.uint8)
    truth[1:5, 2:6, 2:6] = 1
    affine = np.diag([2.0, 1.0, 1.0, 1.0])
    paths = [save(tmp_path / "p.npz", np.roll(truth, 1, axis=0), affine), save(tmp_path / "t.npz", truth, affine)]
    result = CliRunner().invoke(cli, ["evaluate", *paths, "--classes", "2", "--spacing", "--objects"])
    assert result.exit_code == 0, result.output
    assert "hd95" in result.output and "mean_surface_dice" in result.output
    assert "objects_tp: 1" in result.output


@pytest.mark.parametrize(
    ("labels", "affine", "words"),
    [(np.zeros((20, 15), int), None, "differs"), (np.zeros((20, 16), int), np.diag([30.0, 30.0, 1.0]), "grid")],
)
def test_grids_must_match(cli, files, tmp_path, labels, affine, words):
    _, truth_path, _, _ = files
    other = save(tmp_path / "other.npz", labels, affine)
    result = CliRunner().invoke(cli, ["evaluate", other, truth_path])
    assert result.exit_code == 2
    line = result.output.strip()
    assert line.startswith(f"error: {other}:") and truth_path in line and words in line


def test_scores_instead_of_labels_name_the_file(cli, files, tmp_path):
    _, truth_path, _, _ = files
    scores = save(tmp_path / "scores.npz", np.random.default_rng(1).random((20, 16)))
    result = CliRunner().invoke(cli, ["evaluate", scores, truth_path])
    assert result.exit_code == 2
    assert result.output.strip() == f"error: {scores}: holds float64 values, not integer labels"
