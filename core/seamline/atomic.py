"""Atomic output: a file appears at its path complete, or not at all, and never over another.

Every writer goes through :func:`atomic_output`. It hands the writer a temporary path
beside the target (same directory, so the final rename never crosses file systems; named
after its owner, see :mod:`seamline.temporary`), and gives it the target's name only
when the writer finished without error:

- Without ``overwrite`` the name is *claimed*: the rename fails if anything took the
  name meanwhile (``renameat2(RENAME_NOREPLACE)`` on Linux, else a hard link for a file),
  so of two processes saving to one path, one wins and the other gets
  :class:`~seamline.errors.OutputExistsError`; neither replaces the other.
- With ``overwrite``, a file replaces a file in one ``rename``. A directory store (Zarr)
  is swapped with the old one in one step (``renameat2(RENAME_EXCHANGE)``); where the
  system cannot, the old output is moved aside under an ``old`` name first, and a
  process killed between the two renames leaves it there for the next save in that
  directory to put back (:func:`seamline.temporary.clean`).
- Before the name is taken, the job's inputs are checked (:mod:`seamline.fingerprints`):
  the output is none of them, and none changed while it was read.
- A full disk, a quota, a size limit, a read-only file system or a refused permission,
  however the writing library reports it, becomes one
  :class:`~seamline.errors.SeamlineError` naming the output: ``<path>: cannot be
  written: no space left on device``.

A writer that fails, or a run that is interrupted, leaves no half-written file at the
path the user asked for, and the next save in that directory removes what it left.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import functools
import glob
import os
from collections.abc import Callable, Iterator
from pathlib import Path

from .errors import InputError, OutputExistsError, SeamlineError
from .fingerprints import check_not_input, check_unchanged
from .temporary import clean, remove, temporary_path

__all__ = ["atomic_output", "check_writable", "write_problem"]

_RENAME_NOREPLACE, _RENAME_EXCHANGE, _AT_FDCWD = 1, 2, -100
_UNSUPPORTED = (errno.ENOSYS, errno.EINVAL, errno.ENOTSUP, errno.EOPNOTSUPP)
#: Failures that say the output cannot be written here, whoever reports them.
WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG, errno.EROFS, errno.EACCES, errno.EPERM)
_WRITE_BUFFER = 4 * 2**20  # the most a library writes at once (GDAL's and SQLite's buffers are smaller)


def check_writable(path: str | os.PathLike, *, overwrite: bool = False) -> Path:
    """Check that *path* may be written, before any work is done.

    It also removes what dead processes left in the target's directory (see
    :func:`seamline.temporary.clean`), so that a killed run's temporary files are
    gone by the next run's end.

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
        If *path* exists (even as a broken link) and *overwrite* is false.
    InputError
        If the directory that should hold *path* does not exist, or *path* is an input
        of the current job (:func:`seamline.fingerprints.reading`), even with *overwrite*.
    """
    target = Path(path)
    parent = target.absolute().parent
    if parent.is_dir():
        clean(parent)
    check_not_input(target)
    if os.path.lexists(target) and not overwrite:
        raise OutputExistsError("exists already (pass overwrite=True or --overwrite)", target)
    if not parent.is_dir():
        raise InputError("its directory does not exist", target)
    return target


@functools.cache
def _renameat2() -> Callable[..., int] | None:
    try:
        function = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError, TypeError):  # not Linux (or no C library to load)
        return None
    function.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    function.restype = ctypes.c_int
    return function


def _rename2(source: Path, target: Path, flag: int) -> bool:
    """``renameat2`` with *flag*; False where the system or file system cannot do it."""
    function = _renameat2()
    if function is None:
        return False
    if function(_AT_FDCWD, os.fsencode(source), _AT_FDCWD, os.fsencode(target), flag) == 0:
        return True
    code = ctypes.get_errno()
    if code in _UNSUPPORTED:
        return False
    raise OSError(code, os.strerror(code), os.fspath(target))


def _claim(tmp: Path, target: Path) -> None:
    """Rename *tmp* onto *target* only if nothing is there; else OutputExistsError."""
    try:
        if _rename2(tmp, target, _RENAME_NOREPLACE):
            return
        if tmp.is_dir():
            if os.path.lexists(target):
                raise FileExistsError(errno.EEXIST, "exists", os.fspath(target))
            os.rename(tmp, target)  # refuses a non-empty directory or a file at target
            return
        try:
            os.link(tmp, target)
        except OSError as exc:
            if exc.errno == errno.EEXIST:
                raise
            if os.path.lexists(target):  # no hard links on this file system
                raise FileExistsError(errno.EEXIST, "exists", os.fspath(target)) from exc
            os.rename(tmp, target)
            return
        tmp.unlink()
    except OSError as exc:
        if exc.errno in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR, errno.EISDIR):
            raise OutputExistsError("was written by another process meanwhile; nothing was replaced", target) from exc
        raise


def _replace(tmp: Path, target: Path) -> None:
    """Put *tmp* at *target*, replacing what is there; one of the two is always at *target*."""
    if not os.path.lexists(target) or not (tmp.is_dir() or (target.is_dir() and not target.is_symlink())):
        os.replace(tmp, target)
        return
    if _rename2(tmp, target, _RENAME_EXCHANGE):
        remove(tmp)  # now the old output
        return
    old = temporary_path(target, "old")
    os.rename(target, old)
    os.rename(tmp, target)
    remove(old)


def _errors(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def _size_limit() -> int | None:
    try:
        import resource
    except ImportError:  # not on Windows
        return None
    limit = resource.getrlimit(resource.RLIMIT_FSIZE)[0]
    return None if limit == resource.RLIM_INFINITY else int(limit)


def write_problem(exc: BaseException, target: str | os.PathLike, largest: int = 0) -> str | None:
    """What keeps *target* from being written, if *exc* is such a failure; else None.

    An ``OSError`` anywhere in the exception's chain with a disk-full, quota, size
    limit, read-only or permission ``errno`` says so; so does the text of errors that
    libraries raise without an errno (GDAL, libtiff, OGR, Arrow), and, failing both, a
    file system that is read-only or has no free space left, a directory this process
    may not write to, or a file that reached this process's file-size limit
    (``RLIMIT_FSIZE``).

    Parameters
    ----------
    exc : BaseException
        What the writer raised.
    target : str or os.PathLike
        The output being written.
    largest : int
        The size of the largest file the writer left (its temporary and helper files).

    Returns
    -------
    str or None
        The problem in a few lower-case words (``"no space left on device"``).
    """
    here = Path(target).absolute().parent
    chain = [
        error
        for error in _errors(exc)
        if not (isinstance(error, OSError) and error.filename is not None)
        or Path(os.fsdecode(error.filename)).absolute().parent == here  # not about reading an input
    ]
    for error in chain:
        if isinstance(error, OSError) and error.errno in WRITE_ERRNOS:
            return os.strerror(error.errno).lower()
    text = " ".join(str(error) for error in chain).lower()
    for code in WRITE_ERRNOS:
        if os.strerror(code).lower() in text:
            return os.strerror(code).lower()
    with contextlib.suppress(OSError):
        stat = os.statvfs(here)
        if stat.f_flag & os.ST_RDONLY:
            return os.strerror(errno.EROFS).lower()
        if stat.f_bavail * stat.f_frsize < 64 * 1024:
            return os.strerror(errno.ENOSPC).lower()
    if not os.access(here, os.W_OK):
        return os.strerror(errno.EACCES).lower()
    limit = _size_limit()
    if limit is not None and largest + _WRITE_BUFFER >= limit:  # the failed write would have crossed it
        return os.strerror(errno.EFBIG).lower()
    return None


@contextlib.contextmanager
def atomic_output(path: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Write to a temporary path beside *path*, then give it *path*'s name.

    Works for files and for directory stores (Zarr) alike. The temporary name keeps the
    target's suffix, so libraries that choose a format from the suffix still do; a
    writer's helper files should extend that name (``tmp.name + ".tiles.tif"``), so
    that they are recognised and removed with it.

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
        If *path* exists and *overwrite* is false, when the work starts or when it ends
        (another process took the name meanwhile).
    InputError
        If *path* is an input of the current job, or an input changed while it was read.
    SeamlineError
        If the file system refuses the write (full, read-only, a quota, permissions):
        one line naming *path*.

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
    tmp = temporary_path(target)

    def leftovers() -> list[Path]:
        return [tmp, *map(Path, glob.glob(glob.escape(os.fspath(tmp)) + "?*"))]

    try:
        yield tmp
        if not os.path.lexists(tmp):
            return
        check_unchanged(target)
        check_not_input(target)
        if overwrite:
            _replace(tmp, target)
        else:
            _claim(tmp, target)
    except SeamlineError:
        raise
    except Exception as exc:
        sizes = [p.stat().st_size for p in leftovers() if p.is_file()]
        problem = write_problem(exc, target, max(sizes, default=0))
        if problem is None:
            raise
        raise SeamlineError(f"cannot be written: {problem}", target) from exc
    finally:
        for leftover in leftovers():
            remove(leftover)
