"""Atomic output: complete or absent, never half-written."""

from __future__ import annotations

import errno
import os
import re

import pytest

from seamline import atomic, temporary
from seamline.atomic import atomic_output, check_writable
from seamline.errors import InputError, OutputExistsError, SeamlineError
from seamline.fingerprints import reading
from seamline.temporary import owner_alive, remove, temporary_path


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


def _dead_owner_name(target, kind="partial"):
    """A temporary name like one a process that died left behind (its pid is not running)."""
    import subprocess

    child = subprocess.Popen(["true"])
    child.wait()
    name = temporary_path(target, kind).name
    parts = name.split(".")
    owner = parts[-4 if target.suffix else -3].split("-")
    owner[1] = str(child.pid)
    parts[-4 if target.suffix else -3] = "-".join(owner)
    return target.with_name(".".join(parts))


def test_a_second_writer_gets_output_exists_and_nothing_is_replaced(tmp_path):
    target = tmp_path / "mask.tif"
    with pytest.raises(OutputExistsError, match="written by another process meanwhile; nothing was replaced"):
        with atomic_output(target) as first:
            first.write_text("first")
            with atomic_output(target) as second:  # both found the name free
                second.write_text("second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["mask.tif"]


def test_directories_are_claimed_too(tmp_path, monkeypatch):
    target = tmp_path / "store.zarr"
    for exchange in (True, False):
        if not exchange:
            monkeypatch.setattr(atomic, "_renameat2", lambda: None)
        remove(target)
        with pytest.raises(OutputExistsError), atomic_output(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("mine")
            target.mkdir()
            (target / "b").write_text("theirs")
        assert [p.name for p in target.iterdir()] == ["b"]
        assert [p.name for p in tmp_path.iterdir()] == ["store.zarr"]


def test_temporary_names_carry_their_owner(tmp_path):
    name = temporary_path(tmp_path / "organs.nii.gz").name
    stem, host, pid, start, _, kind, *suffix = re.split(r"[.-]", name[1:])
    assert (stem, int(pid), kind, suffix) == ("organs", os.getpid(), "partial", ["nii", "gz"])
    assert owner_alive(host, int(pid), int(start))
    assert not owner_alive(host, int(pid), int(start) + 1)  # the same pid, started later: another process


def test_litter_of_dead_owners_is_removed_and_of_live_ones_kept(tmp_path):
    target = tmp_path / "glaciers.tif"
    dead = _dead_owner_name(target)
    dead.write_text("half")
    dead.with_name(dead.name + ".tiles.tif").write_text("tiles")
    journal = _dead_owner_name(tmp_path / "fields.gpkg")
    journal.with_name(journal.name + "-journal").write_text("journal")
    store = _dead_owner_name(tmp_path / "scores.zarr")
    store.mkdir()
    (store / "c").write_text("chunk")
    alive = temporary_path(tmp_path / "other.tif")
    alive.write_text("someone is writing")
    foreign = tmp_path / ".notes.txt"
    foreign.write_text("not ours")
    with atomic_output(target) as tmp:
        tmp.write_text("whole")
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["glaciers.tif", alive.name, ".notes.txt"])


def test_an_output_moved_aside_by_a_dead_owner_is_put_back(tmp_path):
    target = tmp_path / "scores.zarr"
    old = _dead_owner_name(target, "old")
    old.mkdir()
    (old / "zarr.json").write_text("{}")
    check_writable(tmp_path / "unrelated.tif")
    assert (target / "zarr.json").read_text() == "{}" and not old.exists()


def test_overwriting_a_directory_without_exchange_leaves_one_of_the_two(tmp_path, monkeypatch):
    monkeypatch.setattr(atomic, "_renameat2", lambda: None)
    target = tmp_path / "scores.zarr"
    target.mkdir()
    (target / "old").write_text("old")
    real_rename = os.rename
    calls = []

    def rename(source, destination):
        calls.append((source, destination))
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between moving the old one aside and moving the new one in
        real_rename(source, destination)

    monkeypatch.setattr(os, "rename", rename)
    with pytest.raises(KeyboardInterrupt), atomic_output(target, overwrite=True) as tmp:
        tmp.mkdir()
        (tmp / "new").write_text("new")
    monkeypatch.setattr(os, "rename", real_rename)
    assert not target.exists()  # the window this process died in...
    monkeypatch.setattr(temporary, "owner_alive", lambda *owner: False)
    check_writable(tmp_path / "next.tif")  # ...is closed by the next save in that directory
    assert [p.name for p in target.iterdir()] == ["old"]
    assert [p.name for p in tmp_path.iterdir()] == ["scores.zarr"]


def test_the_output_may_not_be_an_input_whatever_its_name(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_text("pixels")
    (tmp_path / "link.tif").symlink_to(scene)
    os.link(scene, tmp_path / "hard.tif")
    with reading(scene):
        for name in ("scene.tif", "link.tif", "hard.tif"):
            with (
                pytest.raises(InputError, match=r"is an input of this job"),
                atomic_output(tmp_path / name, overwrite=True),
            ):
                pass
        with atomic_output(tmp_path / "other.tif") as tmp:
            tmp.write_text("fine")
    assert scene.read_text() == "pixels"


def test_an_input_changed_during_the_job_writes_nothing(tmp_path):
    scene = tmp_path / "scene.tif"
    scene.write_text("pixels")
    with reading(scene), pytest.raises(InputError, match=r"scene\.tif: changed while this job read it"):
        with atomic_output(tmp_path / "out.tif") as tmp:
            tmp.write_text("half old, half new")
            scene.write_text("other pixels")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scene.tif"]


def test_disk_full_and_permission_failures_are_one_line_naming_the_output(tmp_path):
    target = tmp_path / "out.tif"
    for error in (
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("TIFFAppendToStrip: Write error\n_tiffWriteProc: No space left on device."),
        PermissionError(errno.EACCES, "Permission denied", str(tmp_path / ".out.x.partial.tif")),
    ):
        with pytest.raises(SeamlineError) as caught, atomic_output(target):
            raise error
        assert str(caught.value) in (
            f"{target}: cannot be written: {m}" for m in ("no space left on device", "permission denied")
        )
        assert caught.value.exit_code == 1
    reading_error = PermissionError(errno.EACCES, "Permission denied", "/elsewhere/input.tif")
    with pytest.raises(PermissionError), atomic_output(target):
        raise reading_error  # about an input, not the output
