"""Atomic output: complete or absent, never half-written."""

from __future__ import annotations

import pytest

from seamline.atomic import atomic_output
from seamline.errors import InputError, OutputExistsError


def test_success_renames_onto_the_target(tmp_path):
    target = tmp_path / "mask.tif"
    with atomic_output(target) as tmp:
        assert tmp.parent == tmp_path and tmp.name.endswith(".tif") and tmp != target
        tmp.write_text("done")
    assert target.read_text() == "done"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.tif"]


def test_failure_leaves_nothing(tmp_path):
    target = tmp_path / "mask.tif"
    with pytest.raises(RuntimeError), atomic_output(target) as tmp:
        tmp.write_text("half")
        raise RuntimeError("writer crashed")
    assert list(tmp_path.iterdir()) == []


def test_directories_and_overwrite(tmp_path):
    target = tmp_path / "scores.zarr"
    target.mkdir()
    (target / "old").write_text("old")
    with pytest.raises(OutputExistsError, match=r"scores\.zarr: exists already"), atomic_output(target):
        pass
    with atomic_output(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    assert [p.name for p in target.iterdir()] == ["new"]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.zarr"]


def test_a_file_and_a_directory_replace_each_other(tmp_path):
    target = tmp_path / "out.zarr"
    target.write_text("a file")
    with atomic_output(target, overwrite=True) as tmp:
        tmp.mkdir()
    assert target.is_dir()
    with atomic_output(target, overwrite=True) as tmp:
        tmp.write_text("a file again")
    assert target.read_text() == "a file again"
    assert [p.name for p in tmp_path.iterdir()] == ["out.zarr"]


def test_missing_directory(tmp_path):
    with pytest.raises(InputError, match="its directory does not exist"), atomic_output(tmp_path / "no" / "x.tif"):
        pass
