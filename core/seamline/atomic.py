"""Atomic output: a file appears at its path complete, or not at all.

Every writer goes through :func:`atomic_output`. It hands the writer a temporary path
beside the target (same directory, so the final rename never crosses file systems),
and renames it onto the target only when the writer finished without error. A writer
that fails, or a run that is interrupted, leaves no half-written file at the path the
user asked for.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

from .errors import InputError, OutputExistsError

__all__ = ["atomic_output", "check_writable"]


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that *path* may be written, before any work is done.

    Parameters
    ----------
    path : str or os.PathLike
        The output path.
    overwrite : bool
        Whether an existing file or directory at *path* may be replaced.

    Returns
    -------
    pathlib.Path
        *path* as a Path.

    Raises
    ------
    OutputExistsError
        If *path* exists and *overwrite* is false.
    InputError
        If the directory that should hold *path* does not exist.
    """
    target = Path(path)
    if target.exists() and not overwrite:
        raise OutputExistsError("exists already (pass overwrite=True or --overwrite)", target)
    if not target.absolute().parent.is_dir():
        raise InputError("its directory does not exist", target)
    return target


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        with contextlib.suppress(FileNotFoundError):
            path.unlink()


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write to a temporary path beside *path*, then rename it onto *path*.

    Works for files and for directory stores (Zarr) alike. The temporary name keeps the
    target's suffix, so libraries that choose a format from the suffix still do.

    Parameters
    ----------
    path : str or os.PathLike
        Where the output should appear.
    overwrite : bool
        Whether an existing output may be replaced.

    Yields
    ------
    pathlib.Path
        The temporary path to write to.

    Raises
    ------
    OutputExistsError
        If *path* exists and *overwrite* is false.

    Examples
    --------
    >>> import tempfile
    >>> target = Path(tempfile.mkdtemp()) / "report.txt"
    >>> with atomic_output(target) as tmp:
    ...     _ = tmp.write_text("done")  # a crash here would leave nothing at target
    ...     target.exists()
    False
    >>> target.read_text()
    'done'
    """
    target = check_writable(path, overwrite=overwrite)
    suffix = "".join(target.suffixes)
    stem = target.name[: len(target.name) - len(suffix)] if suffix else target.name
    tmp = target.with_name(f".{stem}.{uuid.uuid4().hex[:8]}.partial{suffix}")
    try:
        yield tmp
        if not tmp.exists():
            return
        if target.exists() and (tmp.is_dir() or (target.is_dir() and not target.is_symlink())):
            # os.replace puts a file over a file in one step, but not a directory over
            # anything: move the old output aside first, so one of the two is always there.
            old = target.with_name(f".{stem}.{uuid.uuid4().hex[:8]}.old{suffix}")
            os.replace(target, old)
            os.replace(tmp, target)
            _remove(old)
        else:
            os.replace(tmp, target)
    finally:
        if tmp.exists():
            _remove(tmp)
