"""Which paths are NIfTI, and what the NIfTI reader and writer accept, without nibabel.

Loading the plugin (``seamline plugins``, choosing a reader for a path) needs only the
answers here: a path is NIfTI by its suffix, ``.nii`` or ``.nii.gz``. Options the
reader or writer does not take are refused as an :class:`~seamline.errors.InputError`
that names the file, as every seamline reader and writer does, never a ``TypeError``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from seamline.errors import InputError

__all__ = ["SUFFIXES", "can_open", "can_save", "refuse_options"]

SUFFIXES = (".nii", ".nii.gz")


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
