"""Finding DICOM files and reading their headers, with errors that quote no value.

:func:`dicom_files` lists the files at a path: a folder (recursively, Part 10 files
only: 128 bytes of preamble, then ``DICM``), a ``DICOMDIR`` or a folder holding one (its
records name the files), or one file. :func:`read_header` reads a file without its pixel
data. Errors from pydicom (and highdicom) quote the value they could not take, which may
be a patient's (a malformed birth date): :func:`without_values` hides them, for every
message seamline passes on.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pydicom
from pydicom.errors import InvalidDicomError

from seamline.errors import InputError

from .formats import is_part10

__all__ = ["dicom_files", "read_header", "without_values"]

_READ_ERRORS = (InvalidDicomError, OSError, EOFError, ValueError, KeyError, TypeError, AttributeError)


def without_values(exc: BaseException) -> str:
    """``Type: message`` of a pydicom or highdicom error, with every quoted value hidden.

    Their messages quote the value they could not take (``Unable to convert '19010203x'
    to 'DA' object``), which may be a patient's; seamline's messages never carry one.

    Parameters
    ----------
    exc : BaseException

    Returns
    -------
    str
    """
    return f"{type(exc).__name__}: " + re.sub(r"(['\"]).*?\1", r"\1...\1", str(exc))


def read_header(path: str | os.PathLike, *, force: bool = False) -> pydicom.Dataset:
    """The header of a DICOM file, without its pixel data.

    Parameters
    ----------
    path : str or os.PathLike
        The file.
    force : bool
        Read a file without the Part 10 preamble too.

    Returns
    -------
    pydicom.Dataset

    Raises
    ------
    InputError
        If the file cannot be parsed as DICOM.
    """
    try:
        return pydicom.dcmread(path, stop_before_pixels=True, force=force)
    except _READ_ERRORS as exc:
        raise InputError(f"cannot be read as DICOM ({without_values(exc)})", path) from exc


def _dicomdir_files(dicomdir: Path) -> list[str]:
    """The files a DICOMDIR's records reference."""
    from pydicom.fileset import FileSet

    try:
        fileset = FileSet(pydicom.dcmread(dicomdir))
        return [os.fspath(instance.path) for instance in fileset]
    except _READ_ERRORS as exc:
        raise InputError(f"cannot be read as a DICOMDIR ({without_values(exc)})", dicomdir) from exc


def dicom_files(path: str | os.PathLike) -> tuple[list[str], bool]:
    """The DICOM files at *path*: a folder (recursively), a DICOMDIR, or one file.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    files : list of str
        In name order (a DICOMDIR's in record order).
    forced : bool
        True for a single file named by the user, which is read even without the preamble.

    Raises
    ------
    InputError
        If the folder holds no DICOM file.
    """
    path = Path(path)
    if path.is_dir() and (path / "DICOMDIR").is_file():
        path = path / "DICOMDIR"
    if path.is_file():
        return (_dicomdir_files(path), False) if path.name.upper() == "DICOMDIR" else ([os.fspath(path)], True)
    files = []
    for root, dirs, names in os.walk(path):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        files += [os.path.join(root, n) for n in sorted(names) if not n.startswith(".") and is_part10(Path(root, n))]
    if not files:
        raise InputError("holds no DICOM files (Part 10 files start with a preamble and 'DICM')", path)
    return files, False
