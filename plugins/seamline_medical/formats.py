"""Which paths are NIfTI or DICOM, and what the NIfTI reader and writer accept, cheaply.

Loading the plugin (``seamline plugins``, choosing a reader for a path) needs only the
answers here, and imports neither nibabel nor pydicom:

- a path is NIfTI by its suffix, ``.nii`` or ``.nii.gz``;
- a file is DICOM when it has the 128-byte preamble and ``DICM`` (a Part 10 file), is
  named ``DICOMDIR``, or ends in ``.dcm``; a folder is DICOM when it holds a ``DICOMDIR``
  or one of the first files found in it (a bounded walk) is a Part 10 file;
- a DICOM file is a segmentation (SEG) when its file meta information says so
  (``MediaStorageSOPClassUID``, read from the first bytes after ``DICM``).

Options the NIfTI reader or writer does not take are refused as an
:class:`~seamline.errors.InputError` that names the file, as every seamline reader and
writer does, never a ``TypeError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seamline.errors import InputError

__all__ = [
    "SUFFIXES",
    "DICOM_SUFFIXES",
    "SEG_SOP_CLASS",
    "can_open",
    "can_save",
    "can_open_dicom",
    "can_open_seg",
    "can_save_seg",
    "is_part10",
    "refuse_options",
]

SUFFIXES = (".nii", ".nii.gz")
DICOM_SUFFIXES = (".dcm", "DICOMDIR", "a folder of DICOM files")
SEG_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.66.4"
#: How many files :func:`can_open_dicom` looks at in a folder, and how many entries it lists.
FILES_LOOKED_AT, ENTRIES_LISTED = 16, 512


def _is_nifti_path(path: str | os.PathLike) -> bool:
    return os.fspath(path).lower().endswith(SUFFIXES)


def can_open(path: str | os.PathLike) -> bool:
    """Whether *path* is a NIfTI file (by its suffix).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return _is_nifti_path(path) and Path(path).is_file()


def can_save(path: str | os.PathLike) -> bool:
    """Whether *path* asks for NIfTI (``.nii`` or ``.nii.gz``).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return _is_nifti_path(path)


def refuse_options(options: Mapping[str, Any], role: str, path: str | os.PathLike) -> None:
    """Refuse options that the NIfTI *role* (``"reader"`` or ``"writer"``) does not take.

    Parameters
    ----------
    options : mapping
        The extra keyword arguments received.
    role : str
        ``"reader"`` or ``"writer"``, for the message.
    path : str or os.PathLike
        The file being read or written.

    Raises
    ------
    InputError
        ``the nifti reader takes no option 'bands'``, naming *path*, when *options* is
        not empty.
    """
    if options:
        listed = ", ".join(repr(name) for name in options)
        raise InputError(f"the nifti {role} takes no option {listed}", path)


def _head(path: str | os.PathLike, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError:
        return b""


def is_part10(path: str | os.PathLike) -> bool:
    """Whether *path* is a DICOM Part 10 file: 128 bytes of preamble, then ``DICM``.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return _head(path, 132)[128:132] == b"DICM"


def _media_sop_class(head: bytes) -> str | None:
    """``MediaStorageSOPClassUID`` from the file meta group (explicit VR little endian) after ``DICM``."""
    at = 132
    while at + 8 <= len(head):
        group, element = int.from_bytes(head[at : at + 2], "little"), int.from_bytes(head[at + 2 : at + 4], "little")
        if group != 2:
            return None
        vr = head[at + 4 : at + 6]
        if vr in (b"OB", b"OW", b"OF", b"SQ", b"UT", b"UN"):
            length, at = int.from_bytes(head[at + 8 : at + 12], "little"), at + 12
        else:
            length, at = int.from_bytes(head[at + 6 : at + 8], "little"), at + 8
        if element == 2:
            return head[at : at + length].rstrip(b"\x00 ").decode("ascii", "replace")
        at += length
    return None


def _is_dicomdir(path: str | os.PathLike) -> bool:
    return Path(path).name.upper() == "DICOMDIR"


def _first_files(folder: Path) -> list[Path]:
    """Up to FILES_LOOKED_AT files under *folder*, breadth first, listing at most ENTRIES_LISTED entries."""
    files: list[Path] = []
    queue, listed = [folder], 0
    while queue and len(files) < FILES_LOOKED_AT and listed < ENTRIES_LISTED:
        try:
            entries = sorted(os.scandir(queue.pop(0)), key=lambda e: e.name)
        except OSError:
            continue
        listed += len(entries)
        for entry in entries:
            if entry.is_dir() and not entry.name.startswith("."):
                queue.append(Path(entry.path))
            elif entry.is_file() and len(files) < FILES_LOOKED_AT:
                files.append(Path(entry.path))
    return files


def can_open_dicom(path: str | os.PathLike) -> bool:
    """Whether *path* is DICOM images: a folder of DICOM files, a DICOMDIR or a DICOM file.

    A segmentation file (SEG) is not: :func:`can_open_seg` claims it.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    path = Path(path)
    if path.is_dir():
        return (path / "DICOMDIR").is_file() or any(is_part10(f) or _is_dicomdir(f) for f in _first_files(path))
    if not path.is_file():
        return False
    if _is_dicomdir(path):
        return True
    return (path.name.lower().endswith(".dcm") or is_part10(path)) and not can_open_seg(path)


def can_open_seg(path: str | os.PathLike) -> bool:
    """Whether *path* is a DICOM segmentation file (SEG storage, by its file meta).

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    head = _head(path, 1024) if Path(path).is_file() else b""
    return head[128:132] == b"DICM" and _media_sop_class(head) == SEG_SOP_CLASS


def can_save_seg(path: str | os.PathLike) -> bool:
    """Whether *path* asks for a DICOM file (``.dcm``): a segmentation is written there.

    Parameters
    ----------
    path : str or os.PathLike

    Returns
    -------
    bool
    """
    return os.fspath(path).lower().endswith(".dcm")
